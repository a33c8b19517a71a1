/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Restore: the ranks agree on the newest committed checkpoint that every
 * one of them can verify, and each reads its tensors back from it, also
 * when the checkpoint was saved by a different number of ranks.
 *
 * Order of checks for one checkpoint on one rank, so that nothing is
 * overwritten unless the checkpoint is structurally sound and matches the
 * registry:
 *   1. manifest: user-block checksum, index, hash tree (io/manifest.c), and
 *      the layout: every tensor's saved slices tile it (io/shard.h);
 *   2. every registered tensor (or slice) has saved data with the same
 *      dtype and global shape (else CKPT_EMISMATCH, no fallback: the
 *      caller's setup is wrong), and every tensor of the checkpoint is
 *      registered (else a warning after the restore, or with
 *      CKPT_RESTORE_FAIL, CKPT_EMISMATCH);
 *   3. every rank file it reads is a regular file of the recorded size;
 *   4. this rank's metadata blobs are read and verified into a new store
 *      (none when the checkpoint had fewer ranks than this job);
 *   5. tensor data is read and every chunk hashed before it is copied into
 *      a tensor: a slice saved with exactly the registered box streams
 *      through the pipeline; any other overlap (resharding) reads the
 *      chunks it touches through the writer, up to the queue depth ahead
 *      (runtime/reshard.h), and copies the overlapping runs.
 * A failure in 1, 3, 4 or 5 falls back to the next older checkpoint (with
 * CKPT_LATEST).  Only 5 can leave tensors partly written, and the fallback
 * then overwrites every registered tensor again.  The ranks agree after 4,
 * so that no rank starts 5 unless every rank's checks passed, and after 5.
 *
 * Agreement (collective, the caller's thread on every rank): each round,
 * every rank proposes the newest step of its catalog at or below a bound,
 * all try the smallest proposal, and all succeed or all fall back below it
 * together; an error that allows no fallback ends the restore on every
 * rank, with the message of the rank that had it.
 *
 * Restoring by name (ckpt_restore_tensors) runs the same steps on a
 * selection of the registered tensors, from the checkpoint the last
 * restore chose (same step and uuid), without metadata or fallback, and
 * agrees on the result the same way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/assemble.h"
#include "io/manifest.h"
#include "io/paths.h"
#include "io/shard.h"
#include "runtime/backend.h"
#include "runtime/catalog.h"
#include "runtime/context.h"
#include "runtime/pipeline.h"
#include "runtime/replica_restore.h"
#include "runtime/reshard.h"

static void shape_str(int ndim, const int64_t *shape, char *out, size_t cap)
{
    size_t k = (size_t)snprintf(out, cap, "[");
    for (int d = 0; d < ndim && k < cap; d++)
        k += (size_t)snprintf(out + k, cap - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < cap)
        snprintf(out + k, cap - k, "]");
}

#define NONE UINT32_MAX

/* What one rank reads from a checkpoint: per registered tensor, either one
 * saved entry with exactly its box (whole) or a list of overlaps. */
typedef struct plan {
    uint32_t *next;      /* per entry: the next tensor entry of the same name */
    ckpt__strmap heads;  /* tensor name -> its first entry */
    uint32_t *whole;     /* per registered tensor: entry read whole, or NONE */
    uint8_t *need;       /* per saved rank: its file is read */
    const uint8_t *sel;  /* per registered tensor: restore it (NULL: all) */
} plan;

/* What one restore of a checkpoint restores, and what it found. */
typedef struct restore_req {
    const uint8_t *sel; /* per registered tensor: restore it; NULL: every one
                           and the metadata (ckpt_restore) */
    uint8_t uuid[16];   /* sel: the checkpoint must be this one; else out */
    uint32_t nunreg;    /* out (sel NULL): tensors of the checkpoint that are
                           not registered, */
    char unreg[320];    /* the first few of them, quoted */
} restore_req;

#define UNREG_NAMED 5 /* how many unregistered tensors a message names */

static void plan_free(plan *p)
{
    free(p->next);
    free(p->whole);
    free(p->need);
    ckpt__strmap_free(&p->heads);
}

static void box_of_tensor(const ckpt__tensor *t, ckpt__box *b)
{
    memset(b, 0, sizeof *b);
    b->ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) {
        b->start[d] = t->start[d];
        b->count[d] = t->shape[d];
    }
}

static int same_box(const ckpt__box *a, const ckpt__box *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->start[d] != b->start[d] || a->count[d] != b->count[d])
            return 0;
    return 1;
}

/* Step 2, the other way round: the tensors of the checkpoint that this
 * rank did not register, counted and the first few named in req. */
static void find_unregistered(ckpt_ctx *ctx, const ckpt__index *idx, const plan *p,
                              restore_req *req)
{
    size_t k = 0;
    req->nunreg = 0;
    req->unreg[0] = '\0';
    for (uint32_t i = 0; i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        uint32_t head;
        /* Each name once: at the entry that heads its chain. */
        if (e->kind != CKPT__ENTRY_TENSOR || !ckpt__strmap_get(&p->heads, e->name, 0, &head) ||
            head != i || ckpt__strmap_get(&ctx->reg.map, e->name, 0, NULL))
            continue;
        if (++req->nunreg <= UNREG_NAMED && k < sizeof req->unreg) {
            int w = snprintf(req->unreg + k, sizeof req->unreg - k, "%s'%.48s'", k ? ", " : "",
                             e->name);
            k += w > 0 ? (size_t)w : 0;
        }
    }
}

/* Step 2: CKPT_EMISMATCH naming the first registered tensor that differs
 * (CKPT_ENOTFOUND for one missing when restoring by name); fills the plan. */
static int make_plan(ckpt_ctx *ctx, const ckpt__index *idx, int part, const char *what,
                     restore_req *req, plan *p, ckpt__err *err)
{
    memset(p, 0, sizeof *p);
    p->sel = req->sel;
    p->next = malloc((idx->nentries ? idx->nentries : 1) * sizeof *p->next);
    p->whole = malloc((ctx->reg.n ? ctx->reg.n : 1) * sizeof *p->whole);
    p->need = calloc(idx->world_size ? idx->world_size : 1, 1);
    if (!p->next || !p->whole || !p->need)
        return ckpt__err_set(err, CKPT_ENOMEM, "restore: out of memory");
    for (uint32_t i = 0; i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        uint32_t head;
        p->next[i] = NONE;
        if (e->kind != CKPT__ENTRY_TENSOR)
            continue;
        if (ckpt__strmap_get(&p->heads, e->name, 0, &head)) {
            p->next[i] = head; /* chain: the newest entry of a name heads it */
            ckpt__strmap_set(&p->heads, e->name, 0, i);
        } else if (ckpt__strmap_put(&p->heads, e->name, 0, i) != 0) {
            return ckpt__err_set(err, CKPT_ENOMEM, "restore: out of memory");
        }
    }
    /* A whole slice streams through the pipeline only when one of the
     * checkpoint's chunks fits this context's staging pool: a checkpoint
     * saved with bigger chunks would stall the pipeline (no batch could
     * start), so the resharding read, which then reads into a buffer of
     * its own, takes every slice. */
    uint64_t slab = (idx->chunk_bytes + CKPT__STAGE_ALIGN - 1) / CKPT__STAGE_ALIGN *
                    CKPT__STAGE_ALIGN;
    int streams = slab <= ctx->eng.staging.bytes;
    for (uint32_t i = 0; i < ctx->reg.n; i++) {
        const ckpt__tensor *t = &ctx->reg.v[i];
        uint32_t first;
        p->whole[i] = NONE;
        if (p->sel && !p->sel[i])
            continue;
        if (!ckpt__strmap_get(&p->heads, t->name, 0, &first))
            return ckpt__err_set(err, p->sel ? CKPT_ENOTFOUND : CKPT_EMISMATCH,
                                 "%s: tensor '%s' is not in the checkpoint", what, t->name);
        const ckpt__entry *e = &idx->entries[first];
        if (e->dtype != t->dtype)
            return ckpt__err_set(err, CKPT_EMISMATCH,
                                 "%s: tensor '%s' is %s in the checkpoint, registered as %s",
                                 what, t->name, ckpt_dtype_name(e->dtype),
                                 ckpt_dtype_name(t->dtype));
        int same = e->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++)
            same = e->shape[d] == t->gshape[d];
        if (!same) {
            char a[256], b[256];
            shape_str(e->ndim, e->shape, a, sizeof a);
            shape_str(t->ndim, t->gshape, b, sizeof b);
            return ckpt__err_set(err, CKPT_EMISMATCH,
                                 "%s: tensor '%s' has shape %s in the checkpoint, registered %s",
                                 what, t->name, a, b);
        }
        /* The layout check (step 1) guarantees the saved slices tile the
         * global shape, so the registered box is covered. */
        ckpt__box want, have, x;
        box_of_tensor(t, &want);
        uint64_t covered = 0;
        for (uint32_t k = first; k != NONE; k = p->next[k]) {
            ckpt__box_of_entry(&idx->entries[k], &have);
            if (same_box(&want, &have) && streams)
                p->whole[i] = k;
            if (ckpt__box_intersect(&want, &have, &x) && ckpt__box_volume(&x) > 0) {
                p->need[idx->entries[k].rank] = 1;
                covered += ckpt__box_volume(&x);
            }
        }
        /* A node's local copy holds its ranks' slices only (the part
         * check found them disjoint): it serves this rank only when they
         * cover the registered box. */
        if (part && covered != ckpt__box_volume(&want))
            return ckpt__err_set(err, CKPT_ENOTFOUND,
                                 "%s: the node's local copy holds %llu of the %llu elements of "
                                 "tensor '%s' that rank %d restores",
                                 what, (unsigned long long)covered,
                                 (unsigned long long)ckpt__box_volume(&want), t->name,
                                 ctx->rank);
    }
    if (req->sel)
        return 0;
    find_unregistered(ctx, idx, p, req);
    if (req->nunreg && ctx->cfg.restore_unregistered == CKPT_RESTORE_FAIL)
        return ckpt__err_set(err, CKPT_EMISMATCH,
                             "%s: %u tensor(s) of the checkpoint are not registered on rank %d: "
                             "%s%s (cfg.restore_unregistered is CKPT_RESTORE_FAIL)",
                             what, req->nunreg, ctx->rank, req->unreg,
                             req->nunreg > UNREG_NAMED ? ", ..." : "");
    return 0;
}

/* Step 4: this rank's metadata blobs, verified, into *out. */
static int read_meta(ckpt_ctx *ctx, const ckpt__index *idx, const char *path,
                     ckpt__metastore *out, ckpt__err *err)
{
    memset(out, 0, sizeof *out);
    /* O_NONBLOCK: a FIFO planted under this name must not hang the open. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return ckpt__err_errno(err, errno, "open %s", path);
    int rc = 0;
    for (uint32_t i = 0; i < idx->nentries && !rc; i++) {
        const ckpt__entry *e = &idx->entries[i];
        if (e->kind != CKPT__ENTRY_META || e->rank != ctx->rank)
            continue;
        uint8_t *buf = malloc(e->nbytes ? e->nbytes : 1);
        if (!buf) {
            rc = ckpt__err_set(err, CKPT_ENOMEM, "metadata '%s': out of memory", e->name);
            break;
        }
        for (uint32_t c = 0; !rc && c < e->nchunks; c++) {
            uint64_t n;
            rc = ckpt__chunk_read(fd, idx, e, c, ctx->cfg.verify,
                                  buf + (uint64_t)c * idx->chunk_bytes, &n, path, err);
        }
        if (!rc)
            rc = ckpt__meta_put(out, e->name, buf, (size_t)e->nbytes, err);
        free(buf);
    }
    close(fd);
    if (rc)
        ckpt__meta_free(out);
    return rc;
}

/* Step 3: the rank file exists, is a regular file (no symlink) and has the
 * size the manifest recorded. */
static int check_rank_file(const char *path, uint64_t want, ckpt__err *err)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? ckpt__err_set(err, CKPT_ECORRUPT, "%s is missing", path)
                               : ckpt__err_errno(err, errno, "stat %s", path);
    if (!S_ISREG(st.st_mode))
        return ckpt__err_set(err, CKPT_ECORRUPT, "%s is not a regular file", path);
    if ((uint64_t)st.st_size != want)
        return ckpt__err_set(err, CKPT_ECORRUPT,
                             "%s is %lld bytes, the manifest says %llu (truncated or replaced)",
                             path, (long long)st.st_size, (unsigned long long)want);
    return 0;
}

static const ckpt__rankrec *rank_rec(const ckpt__index *idx, uint32_t rank)
{
    for (uint32_t r = 0; r < idx->nranks; r++)
        if (idx->ranks[r].rank == rank)
            return &idx->ranks[r];
    return NULL;
}

/* Step 5, whole slices of one rank file, through the pipeline. */
static int read_whole(ckpt_ctx *ctx, ckpt__index *idx, const plan *p, uint32_t rank,
                      const char *path, const char *what, void *stream, ckpt__err *err)
{
    void **ptrs = calloc(idx->nentries ? idx->nentries : 1, sizeof *ptrs);
    uint32_t *ids = calloc(ctx->reg.n ? ctx->reg.n : 1, sizeof *ids);
    uint32_t nids = 0;
    int rc = 0;
    if (!ptrs || !ids)
        rc = ckpt__err_set(err, CKPT_ENOMEM, "restore: out of memory");
    for (uint32_t i = 0; !rc && i < ctx->reg.n; i++) {
        uint32_t k = p->whole[i];
        if (k == NONE || (uint32_t)idx->entries[k].rank != rank || !ctx->reg.v[i].nbytes)
            continue;
        ptrs[k] = ctx->reg.v[i].ptr;
        ids[nids++] = k;
    }
    ckpt__wfile *wf = NULL;
    if (!rc && nids)
        rc = ckpt__writer_file_open(&ctx->eng, path, CKPT__WF_READ, -1, &wf, err);
    if (!rc && nids) {
        ckpt__pipe pipe;
        rc = ckpt__pipe_init(&pipe, CKPT__PIPE_LOAD, &ctx->eng, idx, ptrs, ids, nids, what, err);
        if (!rc) {
            pipe.verify = ctx->cfg.verify;
            pipe.stream = stream;
            ckpt__pipe_set_file(&pipe, wf);
            rc = ckpt__pipe_run(&pipe);
            if (rc)
                *err = pipe.err;
        }
        ckpt__pipe_destroy(&pipe);
    }
    if (wf)
        ckpt__writer_file_close(&ctx->eng, wf);
    free(ptrs);
    free(ids);
    return rc;
}

/* Step 5, the overlaps of one rank file that are not whole slices (the
 * resharding read: each chunk they touch read once through the writer,
 * up to the queue depth ahead, verified before it is copied). */
static int read_parts(ckpt_ctx *ctx, const ckpt__index *idx, const plan *p, uint32_t rank,
                      const char *path, void *stream, ckpt__err *err)
{
    ckpt__reshard_part *parts = NULL;
    uint32_t n = 0, cap = 0;
    int rc = 0;
    for (uint32_t i = 0; !rc && i < ctx->reg.n; i++) {
        const ckpt__tensor *t = &ctx->reg.v[i];
        uint32_t k;
        if ((p->sel && !p->sel[i]) || p->whole[i] != NONE ||
            !ckpt__strmap_get(&p->heads, t->name, 0, &k))
            continue;
        for (; k != NONE; k = p->next[k]) {
            const ckpt__entry *e = &idx->entries[k];
            if ((uint32_t)e->rank != rank)
                continue;
            if (n == cap) {
                uint32_t c2 = cap ? cap * 2 : 16;
                ckpt__reshard_part *v = realloc(parts, c2 * sizeof *v);
                if (!v) {
                    rc = ckpt__err_set(err, CKPT_ENOMEM, "restore: out of memory");
                    break;
                }
                parts = v;
                cap = c2;
            }
            parts[n].e = e;
            box_of_tensor(t, &parts[n].box);
            parts[n].dst = t->ptr;
            n++;
        }
    }
    ckpt__wfile *wf = NULL;
    if (!rc && n)
        rc = ckpt__writer_file_open(&ctx->eng, path, CKPT__WF_READ, -1, &wf, err);
    if (!rc && n)
        rc = ckpt__reshard_read(&ctx->eng, idx, wf, parts, n, ctx->cfg.queue_depth,
                                ctx->cfg.verify, path, stream, err);
    if (wf)
        ckpt__writer_file_close(&ctx->eng, wf);
    free(parts);
    return rc;
}

/* One checkpoint being restored on this rank: what steps 1-4 found, for
 * step 5. */
typedef struct attempt {
    const ckpt__tier *tier; /* the folder read */
    char name[CKPT__FNAME_MAX];
    char dir[CKPT__PATH_MAX];
    ckpt__index idx;
    int have_idx;
    plan p;
    ckpt__metastore meta;
    int mine; /* this rank reads its metadata from the checkpoint */
} attempt;

static void attempt_free(attempt *a)
{
    ckpt__meta_free(&a->meta);
    plan_free(&a->p);
    if (a->have_idx)
        ckpt__index_free(&a->idx);
    a->have_idx = 0;
}

/* Steps 1-4: everything that can refuse the checkpoint before a tensor is
 * written. */
static int attempt_check(ckpt_ctx *ctx, const ckpt__tier *tier, int64_t step, restore_req *req,
                         attempt *a, ckpt__err *err)
{
    char path[CKPT__PATH_MAX], fname[CKPT__FNAME_MAX];
    int part = tier->kind == CKPT_TIER_LOCAL;
    a->tier = tier;
    ckpt__step_name(step, a->name);
    int rc = ckpt__path_step(a->dir, tier->dir, step, NULL, err);
    if (!rc)
        rc = ckpt__path_join(path, a->dir, CKPT__MANIFEST_NAME, err);
    if (!rc)
        rc = part ? ckpt__manifest_read_part(path, &a->idx, err)
                  : ckpt__manifest_read(path, &a->idx, err);
    if (rc)
        return rc;
    a->have_idx = 1;
    const ckpt__index *idx = &a->idx;
    if (idx->step != step)
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s records step %lld, not %lld", path,
                           (long long)idx->step, (long long)step);
    if (!rc && req->sel && memcmp(idx->uuid, req->uuid, sizeof idx->uuid) != 0)
        rc = ckpt__err_set(err, CKPT_ENOTFOUND,
                           "%s was saved again after ckpt_restore restored it; the checkpoint "
                           "it restored is gone",
                           a->name);
    /* A local copy serves the job that saved it: the same ranks. */
    if (!rc && part && idx->world_size != (uint32_t)ctx->world)
        rc = ckpt__err_set(err, CKPT_ENOTFOUND, "%s/%s was saved by %u ranks, not %d",
                           tier->dir, a->name, idx->world_size, ctx->world);
    if (!rc)
        rc = part ? ckpt__layout_check_part(idx, CKPT_ECORRUPT, a->name, err)
                  : ckpt__layout_check(idx, CKPT_ECORRUPT, a->name, err);
    if (!rc)
        rc = make_plan(ctx, idx, part, a->name, req, &a->p, err);
    /* Step 3 for every file this rank reads; a restore by name reads no
     * metadata. */
    a->mine = ctx->rank < (int)idx->world_size && !req->sel;
    for (uint32_t r = 0; !rc && r < idx->world_size; r++) {
        if (!a->p.need[r] && !(a->mine && r == (uint32_t)ctx->rank))
            continue;
        const ckpt__rankrec *rr = rank_rec(idx, r);
        ckpt__rank_file_name(r, fname);
        rc = ckpt__path_join(path, a->dir, fname, err);
        if (!rc)
            rc = rr ? check_rank_file(path, rr->file_bytes, err)
                    : ckpt__err_set(err, CKPT_ECORRUPT, "%s: no record of rank %u", a->name, r);
    }
    if (!rc && a->mine) {
        ckpt__rank_file_name((uint32_t)ctx->rank, fname);
        rc = ckpt__path_join(path, a->dir, fname, err);
        if (!rc)
            rc = read_meta(ctx, idx, path, &a->meta, err);
    }
    return rc;
}

/* Step 5, then the metadata (ckpt_restore only) replaces the store.  The
 * bytes it reads count for its tier (fetched: its local files came from a
 * replica), ckpt__restore_bytes. */
static int attempt_read(ckpt_ctx *ctx, attempt *a, void *stream, restore_req *req,
                        int fetched, ckpt__err *err)
{
    char path[CKPT__PATH_MAX], fname[CKPT__FNAME_MAX], what[128];
    int rc = 0;
    uint64_t before = atomic_load(&ctx->eng.read_bytes);
    for (uint32_t r = 0; !rc && r < a->idx.world_size; r++) {
        if (!a->p.need[r])
            continue;
        ckpt__rank_file_name(r, fname);
        snprintf(what, sizeof what, "%s/%s", a->name, fname);
        rc = ckpt__path_join(path, a->dir, fname, err);
        if (!rc)
            rc = read_whole(ctx, &a->idx, &a->p, r, path, what, stream, err);
        if (!rc)
            rc = read_parts(ctx, &a->idx, &a->p, r, path, stream, err);
    }
    ckpt_tier kind = a->tier->kind == CKPT_TIER_LOCAL && fetched ? CKPT_TIER_REPLICA
                                                                 : a->tier->kind;
    ctx->restore_bytes[kind] += atomic_load(&ctx->eng.read_bytes) - before;
    if (!rc && !req->sel) {
        if (!a->mine)
            ckpt__logf(&ctx->log, CKPT_LOG_INFO,
                       "%s was saved by %u ranks: rank %d restores no metadata", a->name,
                       a->idx.world_size, ctx->rank);
        ckpt__meta_free(&ctx->meta);
        ctx->meta = a->meta;
        memset(&a->meta, 0, sizeof a->meta);
        memcpy(req->uuid, a->idx.uuid, sizeof req->uuid);
    }
    return rc;
}

/* An error every rank agrees on: the code and message of the rank that had
 * it (the lowest rank with an error that allows no fallback, else the
 * lowest with any error), from one allreduce and, on failure, a bcast.
 * Returns 0 when no rank failed; else *fatal says whether a fallback is
 * allowed, and err holds the agreed message. */
static int agree(ckpt_ctx *ctx, int rc, int fatal, ckpt__err *err, int *fatal_out)
{
    int64_t key = rc ? (int64_t)(fatal ? 0 : 1) * ctx->world + ctx->rank : INT64_MAX;
    ckpt__err cerr;
    ckpt__err_clear(&cerr);
    int crc = ckpt__comm_allreduce(ctx->comm, &ctx->fault, &key, 1, CKPT__MIN, &cerr);
    if (crc) {
        *err = cerr;
        *fatal_out = 1;
        return crc;
    }
    if (key == INT64_MAX)
        return 0;
    int who = (int)(key % ctx->world);
    *fatal_out = key < ctx->world;
    struct {
        int64_t code;
        char msg[CKPT__ERR_MSG];
    } m;
    memset(&m, 0, sizeof m);
    if (who == ctx->rank) {
        m.code = err->code;
        snprintf(m.msg, sizeof m.msg, "%s", err->msg);
    }
    if (ctx->world > 1) {
        crc = ckpt__comm_bcast(ctx->comm, &ctx->fault, &m, sizeof m, who, &cerr);
        if (crc) {
            *err = cerr;
            *fatal_out = 1;
            return crc;
        }
        m.msg[sizeof m.msg - 1] = 0;
        if (who != ctx->rank)
            ckpt__err_set(err, (int)m.code, "rank %d: %s", who, m.msg);
    }
    return err->code ? err->code : CKPT_ECOMM;
}

/* CKPT_ESTATE while saves are in flight; else waits for retention, so a
 * restore reads what retention leaves. */
static int quiesce(ckpt_ctx *ctx, const char *fn, ckpt__err *err)
{
    pthread_mutex_lock(&ctx->mu);
    int busy = ctx->inflight;
    pthread_mutex_unlock(&ctx->mu);
    /* Only this thread queues saves, so none starts before the wait. */
    if (!busy) {
        ckpt__janitor_wait(&ctx->jan);
        ckpt__janitor_wait(&ctx->ljan);
    }
    if (busy)
        return ckpt__err_set(err, CKPT_ESTATE, "%s: %d save(s) in flight; wait for them first",
                             fn, busy);
    return 0;
}

/* Restores one checkpoint on every rank, agreeing twice: after steps 1-4,
 * so that no rank writes a tensor unless every rank's checks passed (a
 * mismatch on one rank leaves every rank's tensors untouched), and after
 * step 5.  present: this rank's catalog holds the step; active 0: this
 * rank has nothing to restore and only takes part.  A failure allows a
 * fallback only with `fallback` and a code that is damage, not the
 * caller's setup.  Returns the agreed result; *fatal as for agree(). */
/* Steps 1-4 from this rank's local copy of the step when it has one
 * (local) and it passes, else from DIR (durable): the local copy's failure
 * is logged, naming it, and the durable copy's decides. */
static int check_tiers(ckpt_ctx *ctx, int64_t step, int local, int durable, restore_req *req,
                       attempt *a, ckpt__err *err)
{
    if (local) {
        ckpt__err le;
        ckpt__err_clear(&le);
        int rc = attempt_check(ctx, &ctx->local, step, req, a, &le);
        if (!rc || !durable) {
            if (rc)
                *err = le;
            return rc;
        }
        ckpt__logf(&ctx->log, CKPT_LOG_WARN,
                   "rank %d: the local copy of step %lld in %s is not usable (%s); trying the "
                   "durable copy in %s",
                   ctx->rank, (long long)step, ctx->local_dir, le.msg, ctx->dir);
        attempt_free(a);
        memset(a, 0, sizeof *a);
    }
    if (durable)
        return attempt_check(ctx, &ctx->durable, step, req, a, err);
    return ckpt__err_set(err, CKPT_ECORRUPT, "rank %d does not see step %lld in %s", ctx->rank,
                         (long long)step, ctx->dir);
}

/* Step 5 from the tier check_tiers chose; a local copy that fails here (a
 * chunk that does not verify) gives way to the durable copy, logged. */
static int read_tiers(ckpt_ctx *ctx, int64_t step, int durable, int fetched, void *stream,
                      restore_req *req, attempt *a, ckpt__err *err)
{
    int rc = attempt_read(ctx, a, stream, req, fetched, err);
    if (!rc || a->tier->kind != CKPT_TIER_LOCAL || !durable || rc == CKPT_ENOMEM)
        return rc;
    ckpt__logf(&ctx->log, CKPT_LOG_WARN,
               "rank %d: the local copy of step %lld in %s failed while reading (%s); reading "
               "the durable copy in %s",
               ctx->rank, (long long)step, ctx->local_dir, err->msg, ctx->dir);
    attempt_free(a);
    memset(a, 0, sizeof *a);
    ckpt__err_clear(err);
    rc = attempt_check(ctx, &ctx->durable, step, req, a, err);
    return rc ? rc : attempt_read(ctx, a, stream, req, 0, err);
}

/* With the local tier, ranks may read one step from different folders:
 * all of them must hold the same save (its uuid), never a step that one
 * node saved in another run.  One allreduce; the same verdict everywhere. */
static int agree_uuid(ckpt_ctx *ctx, int64_t step, const attempt *a, int active, ckpt__err *err,
                      int *fatal)
{
    int64_t v[2] = {INT64_MIN, INT64_MIN};
    if (active) {
        uint64_t h = 0;
        memcpy(&h, a->idx.uuid, sizeof h);
        v[0] = (int64_t)(h & INT64_MAX);
        v[1] = -v[0];
    }
    ckpt__err cerr;
    int rc = ckpt__comm_allreduce(ctx->comm, &ctx->fault, v, 2, CKPT__MAX, &cerr);
    if (rc) {
        *err = cerr;
        *fatal = 1;
        return rc;
    }
    if (v[0] == INT64_MIN || v[0] == -v[1])
        return 0;
    *fatal = 0;
    return ckpt__err_set(err, CKPT_ECORRUPT,
                         "the ranks' copies of step %lld come from different saves (a node's "
                         "local copy from another run)",
                         (long long)step);
}

/* Restores one checkpoint on every rank, agreeing twice: after steps 1-4,
 * so that no rank writes a tensor unless every rank's checks passed (a
 * mismatch on one rank leaves every rank's tensors untouched), and after
 * step 5.  local, durable: this rank's local tier, DIR hold the step;
 * active 0: this rank has nothing to restore and only takes part.  A
 * failure allows a fallback only with `fallback` and a code that is
 * damage, not the caller's setup.  Returns the agreed result; *fatal as
 * for agree(); *tier (may be NULL) the tier this rank read.  reach (not
 * NULL with cfg.replicas, ckpt_restore only): first the ranks whose local
 * file of step is missing or damaged fetch it from a partner's replica
 * into their node's local folder (replica_restore.h), then read it as
 * their local copy. */
static int restore_agreed(ckpt_ctx *ctx, int64_t step, int local, int durable, int active,
                          int fallback, const ckpt__reach *reach, void *stream,
                          restore_req *req, ckpt__err *err, int *fatal, ckpt_tier *tier)
{
    attempt a;
    memset(&a, 0, sizeof a);
    int fetched = 0;
    if (reach) {
        int rc = ckpt__replica_fetch(ctx, reach, step, &fetched, fatal, err);
        if (rc)
            return rc;
        local |= fetched;
    }
    int one = !active ? 0 : check_tiers(ctx, step, local, durable, req, &a, err);
    for (int phase = 0; phase < 2; phase++) {
        if (phase == 1)
            one = active ? read_tiers(ctx, step, durable, fetched, stream, req, &a, err) : 0;
        /* A mismatch is the caller's setup, not damage: no fallback. */
        int f = !fallback || one == CKPT_EMISMATCH || one == CKPT_EFORMAT ||
                one == CKPT_ENOMEM;
        int rc = agree(ctx, one, f, err, fatal);
        if (!rc && phase == 0 && ctx->has_local && !req->sel)
            rc = agree_uuid(ctx, step, &a, active, err, fatal);
        if (rc) {
            attempt_free(&a);
            return rc;
        }
    }
    if (tier)
        *tier = !active || !a.tier                               ? CKPT_TIER_NONE
                : a.tier->kind == CKPT_TIER_LOCAL && fetched ? CKPT_TIER_REPLICA
                                                             : a.tier->kind;
    attempt_free(&a);
    return 0;
}

int ckpt__restore(ckpt_ctx *ctx, int64_t step, void *stream, int64_t *step_out)
{
    ckpt__err *err = &ctx->err;
    if (step_out)
        *step_out = -1;
    ctx->restored_step = -1; /* whatever happens below, no longer that one */
    int rc = 0, fatal = 0;
    if (step != CKPT_LATEST && (step < 0 || step > CKPT__STEP_MAX))
        rc = ckpt__err_set(err, CKPT_EINVAL, "ckpt_restore: step %lld is not a step",
                           (long long)step);
    if (!rc)
        rc = quiesce(ctx, "ckpt_restore", err);
    int64_t *steps = NULL, *lsteps = NULL;
    size_t n = 0, ln = 0;
    if (!rc)
        rc = ckpt__catalog_scan(ctx->dir, &steps, &n, err);
    if (!rc && ctx->has_local)
        rc = ckpt__catalog_scan(ctx->local_dir, &lsteps, &ln, err);
    memset(ctx->restore_bytes, 0, sizeof ctx->restore_bytes);
    /* Every rank reaches each collective below, whatever it found. */
    rc = agree(ctx, rc, 1, err, &fatal);
    /* Step 1 of the replicas: what each rank's partners keep for it. */
    ckpt__reach reach, *rp = NULL;
    memset(&reach, 0, sizeof reach);
    if (!rc && ctx->cfg.replicas > 0) {
        rp = &reach;
        rc = ckpt__reach_exchange(ctx, &reach, err);
        rc = agree(ctx, rc, 1, err, &fatal);
    }
    if (rc) {
        ckpt__reach_free(&reach);
        free(steps);
        free(lsteps);
        return rc;
    }
    ckpt__err newest;
    ckpt__err_clear(&newest);
    size_t i = 0, li = 0;
    int64_t bound = step == CKPT_LATEST ? INT64_MAX : step;
    for (;;) {
        /* The newest step of either tier (docs/ARCHITECTURE.md, "Tiers"). */
        while (i < n && steps[i] > bound)
            i++;
        while (li < ln && lsteps[li] > bound)
            li++;
        int64_t prop = i < n ? steps[i] : -1;
        if (li < ln && lsteps[li] > prop)
            prop = lsteps[li];
        if (rp && ckpt__reach_newest(rp, bound) > prop)
            prop = ckpt__reach_newest(rp, bound);
        ckpt__err cerr;
        rc = ckpt__comm_allreduce(ctx->comm, &ctx->fault, &prop, 1, CKPT__MIN, &cerr);
        if (rc) {
            *err = cerr;
            break;
        }
        if (prop < 0 || (step != CKPT_LATEST && prop != step)) {
            rc = newest.code && step == CKPT_LATEST
                     ? ckpt__err_set(err, CKPT_ECORRUPT,
                                     "no valid checkpoint in %s; newest failure: %s", ctx->dir,
                                     newest.msg)
                 : step == CKPT_LATEST
                     ? ckpt__err_set(err, CKPT_ENOTFOUND, "no checkpoint in %s", ctx->dir)
                     : ckpt__err_set(err, CKPT_ENOTFOUND, "no checkpoint of step %lld in %s",
                                     (long long)step, ctx->dir);
            break;
        }
        ckpt__err e;
        ckpt__err_clear(&e);
        restore_req req;
        memset(&req, 0, sizeof req);
        /* The agreed step may be older than this rank's proposal. */
        while (i < n && steps[i] > prop)
            i++;
        while (li < ln && lsteps[li] > prop)
            li++;
        ckpt_tier tier = CKPT_TIER_NONE;
        rc = restore_agreed(ctx, prop, li < ln && lsteps[li] == prop, i < n && steps[i] == prop,
                            1, step == CKPT_LATEST, rp, stream, &req, &e, &fatal, &tier);
        if (rc == 0) {
            if (step_out)
                *step_out = prop;
            ctx->restored_step = prop;
            ctx->restored_tier = tier;
            memcpy(ctx->restored_uuid, req.uuid, sizeof req.uuid);
            ckpt__logf(&ctx->log, newest.code ? CKPT_LOG_WARN : CKPT_LOG_INFO,
                       "restored step %lld from %s%s%s", (long long)prop,
                       tier == CKPT_TIER_DURABLE ? ctx->dir : ctx->local_dir,
                       !ctx->has_local             ? ""
                       : tier == CKPT_TIER_LOCAL   ? " (local tier)"
                       : tier == CKPT_TIER_REPLICA ? " (local tier, fetched from a replica)"
                                                   : " (durable tier)",
                       newest.code ? " after falling back" : "");
            if (req.nunreg)
                ckpt__logf(&ctx->log, CKPT_LOG_WARN,
                           "restore of step %lld left out %u tensor(s) of the checkpoint that "
                           "are not registered: %s%s; register them and restore them with "
                           "ckpt_restore_tensors(), or set cfg.restore_unregistered = "
                           "CKPT_RESTORE_FAIL to refuse such a restore",
                           (long long)prop, req.nunreg, req.unreg,
                           req.nunreg > UNREG_NAMED ? ", ..." : "");
            break;
        }
        if (fatal) {
            *err = e;
            break;
        }
        ckpt__err_keep(&newest, &e);
        ckpt__logf(&ctx->log, CKPT_LOG_WARN, "checkpoint step %lld is not valid (%s)%s",
                   (long long)prop, e.msg, "; trying an older one");
        bound = prop - 1;
    }
    /* Step 4 of the replicas: strictly after the restore succeeded, the
     * partners that lost their copy of the step get it again. */
    if (!rc && rp)
        ckpt__replica_refill(ctx, rp, ctx->restored_step);
    ckpt__reach_free(&reach);
    free(steps);
    free(lsteps);
    return rc;
}

/* The registered tensors named, as a selection; CKPT_EINVAL or
 * CKPT_ENOTFOUND naming the first bad name. */
static int select_names(ckpt_ctx *ctx, const char *const *names, size_t n, uint8_t *sel,
                        ckpt__err *err)
{
    if (n && !names)
        return ckpt__err_set(err, CKPT_EINVAL, "ckpt_restore_tensors: names is NULL (n = %zu)",
                             n);
    for (size_t k = 0; k < n; k++) {
        uint32_t i;
        if (!names[k])
            return ckpt__err_set(err, CKPT_EINVAL, "ckpt_restore_tensors: names[%zu] is NULL",
                                 k);
        if (!ckpt__strmap_get(&ctx->reg.map, names[k], 0, &i))
            return ckpt__err_set(err, CKPT_ENOTFOUND,
                                 "ckpt_restore_tensors: tensor '%.255s' is not registered",
                                 names[k]);
        if (sel[i])
            return ckpt__err_set(err, CKPT_EINVAL,
                                 "ckpt_restore_tensors: tensor '%s' is named twice", names[k]);
        sel[i] = 1;
    }
    return 0;
}

int ckpt__restore_tensors(ckpt_ctx *ctx, const char *const *names, size_t n, void *stream)
{
    ckpt__err *err = &ctx->err;
    int64_t step = ctx->restored_step;
    int rc = 0, fatal = 0;
    uint8_t *sel = calloc(ctx->reg.n ? ctx->reg.n : 1, 1);
    if (!sel)
        rc = ckpt__err_set(err, CKPT_ENOMEM, "ckpt_restore_tensors: out of memory");
    if (!rc && step < 0)
        rc = ckpt__err_set(err, CKPT_ESTATE,
                           "ckpt_restore_tensors: no checkpoint restored on this context (a "
                           "ckpt_restore must succeed first)");
    if (!rc)
        rc = quiesce(ctx, "ckpt_restore_tensors", err);
    if (!rc)
        rc = select_names(ctx, names, n, sel, err);
    char dir[CKPT__PATH_MAX];
    struct stat st;
    /* The tier the restore read (a local copy that is gone falls back to
     * DIR, whose copy of the same save the uuid check accepts). */
    int local = ctx->restored_tier == CKPT_TIER_LOCAL || ctx->restored_tier == CKPT_TIER_REPLICA,
        durable = 1;
    if (local && !rc && ckpt__path_step(dir, ctx->local_dir, step < 0 ? 0 : step, NULL, err) == 0)
        local = lstat(dir, &st) == 0;
    if (!rc)
        rc = ckpt__path_step(dir, local ? ctx->local_dir : ctx->dir, step < 0 ? 0 : step, NULL,
                             err);
    if (!rc && n && lstat(dir, &st) != 0)
        rc = errno == ENOENT ? ckpt__err_set(err, CKPT_ENOTFOUND,
                                             "ckpt_restore_tensors: %s, which ckpt_restore "
                                             "restored, is gone (retention or gc deleted it)",
                                             dir)
                             : ckpt__err_errno(err, errno, "ckpt_restore_tensors: stat %s", dir);
    /* Every rank reaches both agreements whatever it found (and whether it
     * names any tensor): all succeed or all fail. */
    rc = agree(ctx, rc, 1, err, &fatal);
    if (!rc) {
        restore_req req;
        memset(&req, 0, sizeof req);
        req.sel = sel;
        memcpy(req.uuid, ctx->restored_uuid, sizeof req.uuid);
        if (local) {
            char d2[CKPT__PATH_MAX];
            durable = ckpt__path_step(d2, ctx->dir, step, NULL, NULL) == 0 && lstat(d2, &st) == 0;
        }
        rc = restore_agreed(ctx, step, local, durable, n > 0, 0, NULL, stream, &req, err, &fatal,
                            NULL);
        if (rc)
            ckpt__err_prefix(err, "ckpt_restore_tensors");
    }
    free(sel);
    if (!rc && n)
        ckpt__logf(&ctx->log, CKPT_LOG_INFO, "restored %zu tensor(s) by name from step %lld",
                   n, (long long)step);
    return rc;
}
