/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Box arithmetic for sharded tensors (io/shard.h).  Everything here works
 * on an already decoded index, so shapes and offsets are range-checked and
 * products of counts cannot overflow (ckpt__index_decode); the layout
 * check adds what the decoder cannot see one entry at a time: how the
 * entries of one name fit together.
 */
#include <stdlib.h>
#include <string.h>

#include "io/shard.h"

void ckpt__box_of_entry(const ckpt__entry *e, ckpt__box *out)
{
    memset(out, 0, sizeof *out);
    out->ndim = e->ndim;
    for (int d = 0; d < e->ndim; d++) {
        out->start[d] = e->start[d];
        out->count[d] = e->count[d];
    }
}

uint64_t ckpt__box_volume(const ckpt__box *b)
{
    uint64_t v = 1;
    for (int d = 0; d < b->ndim; d++)
        v *= (uint64_t)b->count[d];
    return v;
}

int ckpt__box_intersect(const ckpt__box *a, const ckpt__box *b, ckpt__box *out)
{
    if (a->ndim != b->ndim)
        return 0;
    memset(out, 0, sizeof *out);
    out->ndim = a->ndim;
    for (int d = 0; d < a->ndim; d++) {
        int64_t lo = a->start[d] > b->start[d] ? a->start[d] : b->start[d];
        int64_t ea = a->start[d] + a->count[d], eb = b->start[d] + b->count[d];
        int64_t hi = ea < eb ? ea : eb;
        if (hi <= lo)
            return 0;
        out->start[d] = lo;
        out->count[d] = hi - lo;
    }
    return 1;
}

typedef struct named {
    const char *name;
    uint32_t id;
} named;

static int cmp_named(const void *a, const void *b)
{
    const named *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->id > y->id) - (x->id < y->id);
}

/* The entries e[0..n) of one name: consistent, disjoint, covering. */
static int check_group(const ckpt__index *idx, const named *g, uint32_t n, int cover, int code,
                       const char *what, ckpt__err *err)
{
    const ckpt__entry *first = &idx->entries[g[0].id];
    uint64_t global = 1, sum = 0;
    for (int d = 0; d < first->ndim; d++)
        global *= (uint64_t)first->shape[d];
    for (uint32_t i = 0; i < n; i++) {
        const ckpt__entry *e = &idx->entries[g[i].id];
        int same = e->dtype == first->dtype && e->ndim == first->ndim;
        for (int d = 0; same && d < e->ndim; d++)
            same = e->shape[d] == first->shape[d];
        if (!same)
            return ckpt__err_set(err, code,
                                 "%s: tensor '%s' has a different dtype or global shape on "
                                 "rank %d than on rank %d",
                                 what, e->name, e->rank, first->rank);
        ckpt__box bi, bj, x;
        ckpt__box_of_entry(e, &bi);
        for (uint32_t j = 0; j < i; j++) {
            ckpt__box_of_entry(&idx->entries[g[j].id], &bj);
            if (ckpt__box_intersect(&bi, &bj, &x))
                return ckpt__err_set(err, code,
                                     "%s: tensor '%s': the slices of ranks %d and %d overlap",
                                     what, e->name, idx->entries[g[j].id].rank, e->rank);
        }
        sum += ckpt__box_volume(&bi);
    }
    if (cover ? sum != global : sum > global)
        return ckpt__err_set(err, code,
                             "%s: tensor '%s': the saved slices cover %llu of its %llu elements "
                             "(did every rank register the same tensors?)",
                             what, first->name, (unsigned long long)sum,
                             (unsigned long long)global);
    return 0;
}

static int layout_check(const ckpt__index *idx, int cover, int code, const char *what,
                        ckpt__err *err)
{
    uint32_t n = 0;
    named *v = malloc((idx->nentries ? idx->nentries : 1) * sizeof *v);
    if (!v)
        return ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", what);
    for (uint32_t i = 0; i < idx->nentries; i++)
        if (idx->entries[i].kind == CKPT__ENTRY_TENSOR)
            v[n++] = (named){idx->entries[i].name, i};
    qsort(v, n, sizeof *v, cmp_named);
    int rc = 0;
    for (uint32_t i = 0, j; i < n && !rc; i = j) {
        for (j = i + 1; j < n && strcmp(v[j].name, v[i].name) == 0; j++)
            ;
        rc = check_group(idx, v + i, j - i, cover, code, what, err);
    }
    free(v);
    return rc;
}

int ckpt__layout_check(const ckpt__index *idx, int code, const char *what, ckpt__err *err)
{
    return layout_check(idx, 1, code, what, err);
}

int ckpt__layout_check_part(const ckpt__index *idx, int code, const char *what, ckpt__err *err)
{
    return layout_check(idx, 0, code, what, err);
}

void ckpt__runs_init(ckpt__runs *r, const ckpt__box *part, const ckpt__box *src,
                     const ckpt__box *dst, uint64_t elem)
{
    memset(r, 0, sizeof *r);
    int nd = part->ndim;
    uint64_t ss = elem, ds = elem;
    for (int d = nd - 1; d >= 0; d--) {
        r->sstride[d] = ss;
        r->dstride[d] = ds;
        r->sbase += (uint64_t)(part->start[d] - src->start[d]) * ss;
        r->dbase += (uint64_t)(part->start[d] - dst->start[d]) * ds;
        ss *= (uint64_t)src->count[d];
        ds *= (uint64_t)dst->count[d];
    }
    /* Merge trailing dimensions both sides hold whole into one run. */
    int k = nd - 1;
    while (k > 0 && part->count[k] == src->count[k] && part->count[k] == dst->count[k])
        k--;
    r->run = nd ? (uint64_t)part->count[k] * r->sstride[k] : elem;
    r->outer = nd ? k : 0;
    for (int d = 0; d < r->outer; d++)
        r->cnt[d] = part->count[d];
    r->done = ckpt__box_volume(part) == 0;
}

int ckpt__runs_next(ckpt__runs *r, uint64_t *src_off, uint64_t *dst_off, uint64_t *len)
{
    if (r->done)
        return 0;
    uint64_t so = r->sbase, dof = r->dbase;
    for (int d = 0; d < r->outer; d++) {
        so += (uint64_t)r->idx[d] * r->sstride[d];
        dof += (uint64_t)r->idx[d] * r->dstride[d];
    }
    *src_off = so;
    *dst_off = dof;
    *len = r->run;
    int d = r->outer - 1;
    for (; d >= 0; d--) {
        if (++r->idx[d] < r->cnt[d])
            break;
        r->idx[d] = 0;
    }
    if (d < 0)
        r->done = 1;
    return 1;
}
