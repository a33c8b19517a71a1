/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The layout cache (layout.h): the key is a copy of the layout fields of
 * this rank's entries, compared in full on every save.  The compare costs
 * a pass over the entries and their names (microseconds at 10,000
 * tensors), against the milliseconds per thousand entries that HDF5 takes
 * to build the layout.
 */
#include <stdlib.h>
#include <string.h>

#include "runtime/fault_hooks.h"
#include "runtime/layout.h"

typedef struct key_entry {
    char *name;
    int kind;
    ckpt_dtype dtype;
    int ndim;
    int64_t shape[CKPT_MAX_NDIM], start[CKPT_MAX_NDIM], count[CKPT_MAX_NDIM];
    uint64_t nbytes;
    uint64_t file_off; /* not part of the key: what the build gave */
} key_entry;

struct ckpt__layout {
    uint32_t rank, world_size;
    uint16_t minor;
    uint64_t chunk_bytes;
    uint32_t n; /* entries of this rank */
    key_entry *v;
    ckpt__rankfile_image img;
};

static int same_entry(const key_entry *k, const ckpt__entry *e)
{
    if (k->kind != e->kind || k->dtype != e->dtype || k->ndim != e->ndim ||
        k->nbytes != e->nbytes)
        return 0;
    size_t dims = (size_t)e->ndim * sizeof(int64_t);
    return memcmp(k->shape, e->shape, dims) == 0 && memcmp(k->start, e->start, dims) == 0 &&
           memcmp(k->count, e->count, dims) == 0 && strcmp(k->name, e->name) == 0;
}

const ckpt__rankfile_image *ckpt__layout_find(ckpt__layout *c, ckpt__index *idx, uint32_t rank)
{
    if (!c || c->rank != rank || c->world_size != idx->world_size || c->minor != idx->minor ||
        c->chunk_bytes != idx->chunk_bytes)
        return NULL;
    uint32_t k = 0;
    for (uint32_t i = 0; i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        if ((uint32_t)e->rank != rank)
            continue;
        if (k == c->n || !same_entry(&c->v[k], e))
            return NULL;
        k++;
    }
    if (k != c->n)
        return NULL;
    k = 0;
    for (uint32_t i = 0; i < idx->nentries; i++)
        if ((uint32_t)idx->entries[i].rank == rank)
            idx->entries[i].file_off = c->v[k++].file_off;
    return &c->img;
}

void ckpt__layout_drop(ckpt__layout **c)
{
    if (!*c)
        return;
    for (uint32_t i = 0; i < (*c)->n; i++)
        free((*c)->v[i].name);
    free((*c)->v);
    ckpt__rankfile_image_free(&(*c)->img);
    free(*c);
    *c = NULL;
}

int ckpt__layout_keep(ckpt__layout **c, const ckpt__index *idx, uint32_t rank,
                      ckpt__rankfile_image *img, ckpt__err *err)
{
    ckpt__layout_drop(c);
    uint32_t n = 0;
    for (uint32_t i = 0; i < idx->nentries; i++)
        n += (uint32_t)idx->entries[i].rank == rank;
    ckpt__layout *l = calloc(1, sizeof *l);
    key_entry *v = l ? calloc(n ? n : 1, sizeof *v) : NULL;
    int bad = !v;
    for (uint32_t i = 0, k = 0; i < idx->nentries && !bad; i++) {
        const ckpt__entry *e = &idx->entries[i];
        if ((uint32_t)e->rank != rank)
            continue;
        key_entry *x = &v[k++];
        x->name = strdup(e->name);
        bad = !x->name;
        x->kind = e->kind;
        x->dtype = e->dtype;
        x->ndim = e->ndim;
        memcpy(x->shape, e->shape, sizeof x->shape);
        memcpy(x->start, e->start, sizeof x->start);
        memcpy(x->count, e->count, sizeof x->count);
        x->nbytes = e->nbytes;
        x->file_off = e->file_off;
    }
    if (l) {
        l->v = v;
        l->n = v ? n : 0;
    }
    if (bad) {
        ckpt__layout_drop(&l);
        ckpt__rankfile_image_free(img);
        return ckpt__err_set(err, CKPT_ENOMEM, "out of memory keeping the layout of %u entries",
                             n);
    }
    l->rank = rank;
    l->world_size = idx->world_size;
    l->minor = idx->minor;
    l->chunk_bytes = idx->chunk_bytes;
    l->img = *img;
    memset(img, 0, sizeof *img);
    *c = l;
    return 0;
}

int ckpt__layout_test_damage(ckpt__layout *c, int what, uint64_t k)
{
    if (!c)
        return CKPT_ENOTFOUND;
    if (what == CKPT__LAYOUT_DAMAGE_IMAGE && c->img.nbytes) {
        c->img.bytes[k % c->img.nbytes] ^= 1;
        return 0;
    }
    if (what == CKPT__LAYOUT_DAMAGE_HASH) {
        c->img.meta_hash ^= 1;
        return 0;
    }
    uint32_t with_data = 0;
    for (uint32_t i = 0; i < c->n; i++)
        with_data += c->v[i].nbytes > 0;
    if (what != CKPT__LAYOUT_DAMAGE_OFFSET || !with_data)
        return CKPT_EINVAL;
    uint64_t want = k % with_data;
    for (uint32_t i = 0; i < c->n; i++)
        if (c->v[i].nbytes > 0 && want-- == 0)
            c->v[i].file_off += 8;
    return 0;
}
