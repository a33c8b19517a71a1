/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The staging pipeline (see pipeline.h for the plan, the stages and the
 * invariants it keeps).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/clock.h"
#include "io/rankfile.h"
#include "runtime/backend.h"
#include "runtime/pipeline.h"

enum { EV_FILLED = 1, EV_HASHED, EV_DRAINED };
/* Values of p->bad[extent] while loading. */
enum { BAD_HASH = 1, BAD_CUT = 2 };

#define CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static const ckpt__entry *ext_entry(const ckpt__pipe *p, const ckpt__extent *x)
{
    return &p->idx->entries[x->entry];
}

static uint64_t ext_file_off(const ckpt__pipe *p, const ckpt__extent *x)
{
    return ext_entry(p, x)->file_off + x->src_off;
}

int ckpt__pipe_init(ckpt__pipe *p, int dir, ckpt__engine *eng, ckpt__index *idx,
                    void *const *ptrs, const uint32_t *entries, uint32_t n, const char *what,
                    ckpt__err *err)
{
    memset(p, 0, sizeof *p);
    p->dir = dir;
    p->eng = eng;
    p->idx = idx;
    p->ptrs = ptrs;
    p->what = what;
    p->verify = 1;
    ckpt__mbox_init(&p->mbox);
    atomic_init(&p->copied, 0);
    atomic_init(&p->copy_failed, 0);
    atomic_init(&p->hash_cpu_ns, 0);

    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++)
        total += idx->entries[entries[i]].nchunks;
    if (total > UINT32_MAX / 2)
        return ckpt__err_set(err, CKPT_EINVAL, "%s: %llu chunks is too many", what,
                             (unsigned long long)total);
    size_t m = total ? (size_t)total : 1;
    p->ext = calloc(m, sizeof *p->ext);
    p->ops = calloc(m, sizeof *p->ops);
    p->runs = calloc(m, sizeof *p->runs);
    p->run_slab_off = calloc(m, sizeof *p->run_slab_off);
    p->run_ext = calloc(m, sizeof *p->run_ext);
    p->bat = calloc(m, sizeof *p->bat);
    p->bad = calloc(m, 1);
    if (!p->ext || !p->ops || !p->runs || !p->run_slab_off || !p->run_ext || !p->bat ||
        !p->bad)
        return ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory planning %llu chunks", what,
                             (unsigned long long)total);
    p->next = (uint32_t)total;

    const uint64_t slab = idx->chunk_bytes < eng->staging.bytes ? idx->chunk_bytes
                                                                 : eng->staging.bytes;
    const uint64_t chunk = idx->chunk_bytes;
    uint64_t pos = 0;
    uint32_t k = 0;
    ckpt__batch *b = NULL;
    for (uint32_t i = 0; i < n; i++) {
        const ckpt__entry *e = &idx->entries[entries[i]];
        /* Big entries start 4 KiB-aligned in the file (rankfile.h). */
        int big = ckpt__rankfile_data_aligned(e->nbytes);
        for (uint32_t c = 0; c < e->nchunks; c++, k++) {
            ckpt__extent *x = &p->ext[k];
            x->entry = entries[i];
            x->chunk = c;
            x->src_off = (uint64_t)c * chunk;
            x->n = e->nbytes - x->src_off < chunk ? e->nbytes - x->src_off : chunk;
            uint64_t at = big ? (pos + CKPT__DIO_ALIGN - 1) / CKPT__DIO_ALIGN * CKPT__DIO_ALIGN
                              : pos;
            if (!b || at + x->n > slab) {
                b = &p->bat[p->nbat++];
                b->pipe = p;
                b->first = k;
                at = 0;
            }
            x->slab_off = at;
            pos = at + x->n;
            b->len = (pos + CKPT__STAGE_ALIGN - 1) / CKPT__STAGE_ALIGN * CKPT__STAGE_ALIGN;
            b->count++;
            p->bytes += x->n;
        }
    }
    return 0;
}

void ckpt__pipe_destroy(ckpt__pipe *p)
{
    free(p->ext);
    free(p->ops);
    free(p->runs);
    free(p->run_slab_off);
    free(p->run_ext);
    free(p->bat);
    free(p->bad);
    free(p->bads);
    free(p->src_reqs);
    ckpt__mbox_destroy(&p->mbox);
    memset(p, 0, sizeof *p);
}

void ckpt__pipe_fail(ckpt__pipe *p, const ckpt__err *why)
{
    ckpt__err_keep(&p->err, why);
    p->failed = 1;
}

/* ---- callbacks on backend threads ----------------------------------------- */

static void on_copied(ckpt__copyreq *req, const ckpt__err *err)
{
    ckpt__batch *b = req->user;
    ckpt__pipe *p = b->pipe;
    b->copy_rc = err ? err->code : 0;
    /* The backend's message (the failing call and its error) is kept once,
     * for the first failure: that is the one the ticket reports. */
    b->copy_msg = err && atomic_exchange(&p->copy_failed, 1) == 0;
    if (b->copy_msg)
        p->copy_err = *err;
    /* Snapshot complete: the caller may write its tensors again. */
    if (!err && atomic_fetch_add(&p->copied, 1) + 1 == p->nbat && p->on_snapshot)
        p->on_snapshot(p->snap_user);
    ckpt__mbox_post(&p->mbox, &b->ev, EV_FILLED);
}

static void on_io(ckpt__ioreq *req)
{
    ckpt__batch *b = req->user;
    ckpt__pipe *p = b->pipe;
    if (req->res != (int64_t)req->n && atomic_exchange(&b->io_failed, 1) == 0) {
        b->io_res = req->res;
        b->io_run = (uint32_t)(req - p->runs);
    }
    if (atomic_fetch_sub(&b->pending, 1) == 1)
        ckpt__mbox_post(&p->mbox, &b->ev, p->dir == CKPT__PIPE_SAVE ? EV_DRAINED : EV_FILLED);
}

/* A read of a batch filled from the source file (ckpt__pipe_set_source):
 * the last one posts the batch as filled, failed when any read failed or
 * came up short (the source is shorter than its index says). */
static void on_src_io(ckpt__ioreq *req)
{
    ckpt__batch *b = req->user;
    ckpt__pipe *p = b->pipe;
    if (req->res != (int64_t)req->n && atomic_exchange(&b->io_failed, 1) == 0) {
        b->io_res = req->res;
        b->io_run = (uint32_t)(req - p->src_reqs);
    }
    if (atomic_fetch_sub(&b->pending, 1) != 1)
        return;
    int failed = atomic_load(&b->io_failed);
    b->copy_rc = failed ? (b->io_res < 0 ? CKPT_EIO : CKPT_ECORRUPT) : 0;
    b->copy_msg = failed && atomic_exchange(&p->copy_failed, 1) == 0;
    if (b->copy_msg) {
        const ckpt__ioreq *q = &p->src_reqs[b->io_run];
        char who[64 + CKPT_MAX_NAME];
        snprintf(who, sizeof who, "'%s' chunk %u", ext_entry(p, &p->ext[b->io_run])->name,
                 p->ext[b->io_run].chunk);
        if (b->io_res < 0)
            ckpt__err_errno(&p->copy_err, (int)-b->io_res, "read %s at offset %llu (%s)",
                            p->src_what, (unsigned long long)q->off, who);
        else
            ckpt__err_set(&p->copy_err, CKPT_ECORRUPT,
                          "%s ends early: %s at offset %llu is cut short", p->src_what, who,
                          (unsigned long long)q->off);
    }
    if (!failed && atomic_fetch_add(&p->copied, 1) + 1 == p->nbat && p->on_snapshot)
        p->on_snapshot(p->snap_user);
    ckpt__mbox_post(&p->mbox, &b->ev, EV_FILLED);
}

static void hash_task(ckpt__task *t)
{
    ckpt__batch *b = CONTAINER(t, ckpt__batch, task);
    ckpt__pipe *p = b->pipe;
    const uint8_t *slab = p->eng->staging.base + b->off;
    double c0 = ckpt__thread_cpu_s();
    for (uint32_t i = b->first; i < b->first + b->count; i++) {
        const ckpt__extent *x = &p->ext[i];
        if (p->bad[i] == BAD_CUT)
            continue; /* never read: nothing to hash */
        uint64_t h = XXH3_64bits(slab + x->slab_off, x->n);
        uint64_t *leaf = &p->idx->hashes[ext_entry(p, x)->chunk0 + x->chunk];
        if (p->dir == CKPT__PIPE_SAVE) {
            *leaf = h;
            if (p->expect && h != p->expect[ext_entry(p, x)->chunk0 + x->chunk])
                p->bad[i] = BAD_HASH;
        } else
            p->bad[i] = h != *leaf ? BAD_HASH : 0;
    }
    /* Before the post: once posted, the coordinator may free the pipe. */
    double dc = ckpt__thread_cpu_s() - c0;
    atomic_fetch_add_explicit(&p->hash_cpu_ns, (uint_fast64_t)(dc * 1e9), memory_order_relaxed);
    ckpt__mbox_post(&p->mbox, &b->ev, EV_HASHED);
}

/* ---- coordinator ------------------------------------------------------------ */

int ckpt__pipe_set_source(ckpt__pipe *p, ckpt__wfile *src, const char *src_what,
                          const uint64_t *src_off, const uint64_t *expect, ckpt__err *err)
{
    uint32_t m = p->next ? p->next : 1; /* extents */
    p->src_reqs = calloc(m, sizeof *p->src_reqs);
    if (!p->src_reqs)
        return ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory planning %u reads", p->what,
                             p->next);
    p->src = src;
    p->src_what = src_what;
    p->src_off = src_off;
    p->expect = expect;
    return 0;
}

int ckpt__pipe_set_file(ckpt__pipe *p, ckpt__wfile *file)
{
    p->file = file;
    uint32_t nr = 0;
    for (uint32_t bi = 0; bi < p->nbat; bi++) {
        ckpt__batch *b = &p->bat[bi];
        b->run0 = nr;
        b->nruns = 0;
        const ckpt__extent *prev = NULL;
        for (uint32_t i = b->first; i < b->first + b->count; i++) {
            const ckpt__extent *x = &p->ext[i];
            if (prev && prev->slab_off + prev->n == x->slab_off &&
                ext_file_off(p, prev) + prev->n == ext_file_off(p, x)) {
                p->runs[nr - 1].n += x->n; /* contiguous in staging and file: one request */
            } else {
                ckpt__ioreq *r = &p->runs[nr];
                memset(r, 0, sizeof *r);
                r->file = file;
                r->op = p->dir == CKPT__PIPE_SAVE ? CKPT__IO_WRITE : CKPT__IO_READ;
                r->off = ext_file_off(p, x);
                r->n = x->n;
                r->cb = on_io;
                r->user = b;
                p->run_slab_off[nr] = x->slab_off;
                p->run_ext[nr] = i;
                nr++;
                b->nruns++;
            }
            prev = x;
        }
    }
    return 0;
}

static void submit_runs(ckpt__pipe *p, ckpt__batch *b)
{
    uint8_t *slab = p->eng->staging.base + b->off;
    atomic_store(&b->pending, b->nruns);
    atomic_store(&b->io_failed, 0);
    for (uint32_t r = b->run0; r < b->run0 + b->nruns; r++) {
        p->runs[r].buf = slab + p->run_slab_off[r];
        ckpt__writer_submit(p->eng, &p->runs[r]);
    }
}

static void start_batch(ckpt__pipe *p, ckpt__batch *b, uint64_t off)
{
    b->off = off;
    b->released = 0;
    p->outstanding++;
    if (p->dir == CKPT__PIPE_LOAD) {
        submit_runs(p, b);
        return;
    }
    uint8_t *base = p->eng->staging.base + off;
    if (p->src) {
        atomic_store(&b->pending, b->count);
        atomic_store(&b->io_failed, 0);
        for (uint32_t i = b->first; i < b->first + b->count; i++) {
            const ckpt__extent *x = &p->ext[i];
            ckpt__ioreq *r = &p->src_reqs[i];
            memset(r, 0, sizeof *r);
            r->file = p->src;
            r->op = CKPT__IO_READ;
            r->off = p->src_off[x->entry] + x->src_off;
            r->n = x->n;
            r->buf = base + x->slab_off;
            r->cb = on_src_io;
            r->user = b;
        }
        for (uint32_t i = b->first; i < b->first + b->count; i++)
            ckpt__writer_submit(p->eng, &p->src_reqs[i]);
        return;
    }
    for (uint32_t i = b->first; i < b->first + b->count; i++) {
        const ckpt__extent *x = &p->ext[i];
        p->ops[i].dst = base + x->slab_off;
        p->ops[i].src = (const uint8_t *)p->ptrs[x->entry] + x->src_off;
        p->ops[i].n = x->n;
    }
    b->creq.ops = &p->ops[b->first];
    b->creq.nops = b->count;
    b->creq.cb = on_copied;
    b->creq.user = b;
    ckpt__device_copy_out(p->eng, &b->creq);
}

/* Finds room for len bytes at the ring's head: 1 and *off, or 0 when the
 * batches still holding space leave none (Inv. 1). */
static int ring_alloc(ckpt__pipe *p, uint64_t len, uint64_t *off)
{
    const uint64_t size = p->eng->staging.bytes;
    if (p->ring_tail == p->started) { /* empty: start over at 0 */
        *off = 0;
        return len <= size;
    }
    uint64_t tail = p->bat[p->ring_tail].off;
    if (p->ring_head > tail) {
        if (p->ring_head + len <= size) {
            *off = p->ring_head;
            return 1;
        }
        if (len <= tail) { /* wrap: the end of the region stays unused */
            *off = 0;
            return 1;
        }
        return 0;
    }
    if (p->ring_head + len <= tail) {
        *off = p->ring_head;
        return 1;
    }
    return 0;
}

static void start_more(ckpt__pipe *p)
{
    uint64_t off;
    while (!p->failed && p->started < p->nbat &&
           ring_alloc(p, p->bat[p->started].len, &off)) {
        ckpt__batch *b = &p->bat[p->started++];
        p->ring_head = off + b->len;
        start_batch(p, b, off);
    }
    /* A device that fences on the device may release the caller now. */
    if (p->dir == CKPT__PIPE_SAVE && p->started == p->nbat && !p->queued_sent) {
        p->queued_sent = 1;
        if (p->on_queued)
            p->on_queued(p->snap_user);
    }
}

void ckpt__pipe_start(ckpt__pipe *p)
{
    start_more(p);
    if (p->dir == CKPT__PIPE_SAVE && p->nbat == 0 && p->on_snapshot)
        p->on_snapshot(p->snap_user);
}

static void finish_batch(ckpt__pipe *p, ckpt__batch *b)
{
    if (!p->failed) {
        for (uint32_t i = b->first; i < b->first + b->count; i++)
            if (p->bad[i] != BAD_CUT)
                p->done_bytes += p->ext[i].n;
        if (p->on_progress)
            p->on_progress(p->progress_user, p->done_bytes, p->bytes);
    }
    b->released = 1;
    while (p->ring_tail < p->started && p->bat[p->ring_tail].released)
        p->ring_tail++;
    p->outstanding--;
    p->finished++;
    start_more(p);
}

static void name_of(const ckpt__pipe *p, uint32_t ext, char *out, size_t cap)
{
    const ckpt__extent *x = &p->ext[ext];
    snprintf(out, cap, "'%s' chunk %u", ext_entry(p, x)->name, x->chunk);
}

static void add_bad(ckpt__pipe *p, uint32_t ext)
{
    if (p->nbads == p->cap_bads) {
        uint32_t cap = p->cap_bads ? p->cap_bads * 2 : 16;
        ckpt__bad_chunk *v = realloc(p->bads, cap * sizeof *v);
        if (!v)
            return; /* the first error is kept in p->err regardless */
        p->bads = v;
        p->cap_bads = cap;
    }
    p->bads[p->nbads].entry = p->ext[ext].entry;
    p->bads[p->nbads].chunk = p->ext[ext].chunk;
    p->nbads++;
}

/* The extents of run r: [run_ext[r], end). */
static uint32_t run_end(const ckpt__pipe *p, const ckpt__batch *b, uint32_t r)
{
    return r + 1 < b->run0 + b->nruns ? p->run_ext[r + 1] : b->first + b->count;
}

/* A save's write failed or came up short, or a read failed: report it. */
static void io_error(ckpt__pipe *p, const ckpt__batch *b, uint32_t r)
{
    const ckpt__ioreq *q = &p->runs[r];
    char who[64 + CKPT_MAX_NAME];
    name_of(p, p->run_ext[r], who, sizeof who);
    ckpt__err e;
    int save = p->dir == CKPT__PIPE_SAVE;
    if (q->res < 0)
        ckpt__err_errno(&e, (int)-q->res, "%s %s at offset %llu (%zu bytes, %s)",
                        save ? "write" : "read", p->what, (unsigned long long)q->off, q->n,
                        who);
    else
        ckpt__err_set(&e, CKPT_EIO, "write %s at offset %llu (%s): short write, %lld of %zu "
                      "bytes", p->what, (unsigned long long)q->off, who, (long long)q->res,
                      q->n);
    (void)b;
    ckpt__pipe_fail(p, &e);
}

/*
 * Some I/O of a loading batch failed.  An error fails the pipeline.  A short
 * read means the file ends early: exactly the extents that reach past the
 * end are marked BAD_CUT and named; the rest of the batch is still hashed.
 */
static void load_failure(ckpt__pipe *p, ckpt__batch *b)
{
    for (uint32_t r = b->run0; r < b->run0 + b->nruns; r++) {
        const ckpt__ioreq *q = &p->runs[r];
        if (q->res == (int64_t)q->n)
            continue;
        if (q->res < 0) {
            io_error(p, b, r);
            return;
        }
        uint64_t pos = 0;
        for (uint32_t i = p->run_ext[r]; i < run_end(p, b, r); i++) {
            const ckpt__extent *x = &p->ext[i];
            pos += x->n;
            if (pos <= (uint64_t)q->res)
                continue;
            p->bad[i] = BAD_CUT;
            char who[64 + CKPT_MAX_NAME];
            name_of(p, i, who, sizeof who);
            ckpt__err e;
            ckpt__err_set(&e, CKPT_ECORRUPT,
                          "%s ends early: %s at offset %llu is cut short (truncated file)",
                          p->what, who, (unsigned long long)ext_file_off(p, x));
            if (!p->keep_going) {
                ckpt__pipe_fail(p, &e);
                return;
            }
            add_bad(p, i);
            ckpt__err_keep(&p->err, &e);
        }
    }
}

static void check_hashes(ckpt__pipe *p, ckpt__batch *b)
{
    for (uint32_t i = b->first; i < b->first + b->count; i++) {
        if (p->bad[i] != BAD_HASH)
            continue;
        const ckpt__extent *x = &p->ext[i];
        char who[64 + CKPT_MAX_NAME];
        name_of(p, i, who, sizeof who);
        ckpt__err e;
        ckpt__err_set(&e, CKPT_ECORRUPT, "%s: %s (bytes %llu..%llu) failed its checksum",
                      p->src ? p->src_what : p->what, who, (unsigned long long)x->src_off,
                      (unsigned long long)(x->src_off + x->n));
        if (!p->keep_going) {
            ckpt__pipe_fail(p, &e);
            return;
        }
        add_bad(p, i);
        ckpt__err_keep(&p->err, &e);
    }
}

static void drain_load(ckpt__pipe *p, ckpt__batch *b)
{
    if (!p->ptrs)
        return;
    uint8_t *base = p->eng->staging.base + b->off;
    size_t nops = 0;
    ckpt__copy *ops = &p->ops[b->first];
    for (uint32_t i = b->first; i < b->first + b->count; i++) {
        const ckpt__extent *x = &p->ext[i];
        void *dst = p->ptrs[x->entry];
        if (!dst)
            continue;
        ops[nops].dst = (uint8_t *)dst + x->src_off;
        ops[nops].src = base + x->slab_off;
        ops[nops].n = x->n;
        nops++;
    }
    ckpt__err e;
    ckpt__err_clear(&e);
    if (nops && ckpt__device_copy_in(p->eng, ops, nops, p->stream, &e) != 0)
        ckpt__pipe_fail(p, &e);
}

/* Hands the held hash tasks to the hash pool, oldest first. */
static void release_hashes(ckpt__pipe *p)
{
    ckpt__task *rev = NULL;
    while (p->deferred) {
        ckpt__task *t = p->deferred;
        p->deferred = t->next;
        t->next = rev;
        rev = t;
    }
    while (rev) {
        ckpt__task *t = rev;
        rev = t->next;
        ckpt__workers_submit(p->eng->hashers, t);
    }
}

int ckpt__pipe_run(ckpt__pipe *p)
{
    start_more(p);
    while (p->finished < p->nbat && !(p->failed && p->outstanding == 0)) {
        /* After a failure, batches held for hashing just give their space back. */
        while (p->failed && p->deferred) {
            ckpt__task *t = p->deferred;
            p->deferred = t->next;
            finish_batch(p, CONTAINER(t, ckpt__batch, task));
        }
        if (p->failed && p->outstanding == 0)
            break;
        ckpt__event *ev = ckpt__mbox_wait(&p->mbox);
        ckpt__batch *b = CONTAINER(ev, ckpt__batch, ev);
        int stage = ev->type;
        if (stage == EV_FILLED) {
            if (p->dir == CKPT__PIPE_SAVE && b->copy_rc != 0) {
                ckpt__err e;
                ckpt__err_set(&e, b->copy_rc, "%s of batch %u failed%s%s",
                              p->src ? "reading the source" : "snapshot copy",
                              (unsigned)(b - p->bat), b->copy_msg ? ": " : "",
                              b->copy_msg ? p->copy_err.msg : "");
                ckpt__pipe_fail(p, &e);
            }
            if (p->dir == CKPT__PIPE_LOAD && atomic_load(&b->io_failed))
                load_failure(p, b);
            if (p->failed) {
                finish_batch(p, b);
                continue;
            }
            if (p->dir == CKPT__PIPE_LOAD && !p->verify) {
                drain_load(p, b);
                finish_batch(p, b);
                continue;
            }
            b->task.fn = hash_task;
            if (p->dir == CKPT__PIPE_LOAD) {
                ckpt__workers_submit(p->eng->hashers, &b->task);
                continue;
            }
            /* Snapshot first (pipeline.h): hold the hash while copies run. */
            b->task.next = p->deferred;
            p->deferred = &b->task;
            if (++p->filled == p->started)
                release_hashes(p);
        } else if (stage == EV_HASHED) {
            if (p->failed) {
                finish_batch(p, b);
                continue;
            }
            if (p->dir == CKPT__PIPE_SAVE) {
                if (p->expect)
                    check_hashes(p, b);
                if (p->failed) {
                    finish_batch(p, b);
                    continue;
                }
                submit_runs(p, b);
            } else {
                check_hashes(p, b);
                if (!p->failed)
                    drain_load(p, b);
                finish_batch(p, b);
            }
        } else { /* EV_DRAINED: the batch's writes are done */
            if (atomic_load(&b->io_failed))
                io_error(p, b, b->io_run);
            finish_batch(p, b);
        }
    }
    return p->err.code;
}
