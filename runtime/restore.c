/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Restore: pick the newest committed checkpoint that verifies, check that
 * it matches what is registered, and read it back into the tensors.
 *
 * Order of checks for one checkpoint, so that nothing is overwritten unless
 * the checkpoint is structurally sound and matches the registry:
 *   1. manifest: user-block checksum, index, hash tree (io/manifest.c);
 *   2. every registered tensor has an entry with the same dtype and shape
 *      (else CKPT_EMISMATCH, no fallback: the caller's setup is wrong);
 *   3. the rank file is a regular file of the recorded size;
 *   4. metadata blobs are read and verified into a new store;
 *   5. tensor data streams through the pipeline, every chunk hashed before
 *      it is copied into its tensor.
 * A failure in 1, 3, 4 or 5 falls back to the next older checkpoint (with
 * CKPT_LATEST).  Only 5 can leave tensors partly written, and the fallback
 * then overwrites every registered tensor again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "io/manifest.h"
#include "runtime/internal.h"

static void shape_str(int ndim, const int64_t *shape, char *out, size_t cap)
{
    size_t k = (size_t)snprintf(out, cap, "[");
    for (int d = 0; d < ndim && k < cap; d++)
        k += (size_t)snprintf(out + k, cap - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < cap)
        snprintf(out + k, cap - k, "]");
}

/* Step 2: CKPT_EMISMATCH naming the first registered tensor that differs. */
static int match_registry(ckpt_ctx *ctx, const ckpt__index *idx, const char *what,
                          uint32_t *map, ckpt__err *err)
{
    for (uint32_t i = 0; i < ctx->reg.n; i++) {
        const ckpt__tensor *t = &ctx->reg.v[i];
        const ckpt__entry *e = ckpt__index_find(idx, CKPT__ENTRY_TENSOR, ctx->rank, t->name);
        if (!e)
            return ckpt__err_set(err, CKPT_EMISMATCH, "%s: tensor '%s' is not in the checkpoint",
                                 what, t->name);
        if (e->dtype != t->dtype)
            return ckpt__err_set(err, CKPT_EMISMATCH,
                                 "%s: tensor '%s' is %s in the checkpoint, registered as %s",
                                 what, t->name, ckpt_dtype_name(e->dtype),
                                 ckpt_dtype_name(t->dtype));
        int same = e->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++)
            same = e->shape[d] == t->shape[d] && e->count[d] == t->shape[d] && e->start[d] == 0;
        if (!same) {
            char a[256], b[256];
            shape_str(e->ndim, e->shape, a, sizeof a);
            shape_str(t->ndim, t->shape, b, sizeof b);
            return ckpt__err_set(err, CKPT_EMISMATCH,
                                 "%s: tensor '%s' has shape %s in the checkpoint, registered %s",
                                 what, t->name, a, b);
        }
        map[i] = (uint32_t)(e - idx->entries);
    }
    return 0;
}

static int read_exact(int fd, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ENODATA;
        got += (size_t)r;
    }
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
        int r = e->nbytes ? read_exact(fd, buf, e->nbytes, e->file_off) : 0;
        if (r == -ENODATA)
            rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s: metadata '%s' is cut short", path,
                               e->name);
        else if (r < 0)
            rc = ckpt__err_errno(err, -r, "read metadata '%s' from %s", e->name, path);
        for (uint32_t c = 0; !rc && c < e->nchunks; c++) {
            uint64_t off = (uint64_t)c * idx->chunk_bytes;
            uint64_t n = e->nbytes - off < idx->chunk_bytes ? e->nbytes - off : idx->chunk_bytes;
            if (ctx->cfg.verify &&
                XXH3_64bits(buf + off, n) != idx->hashes[e->chunk0 + c])
                rc = ckpt__err_set(err, CKPT_ECORRUPT,
                                   "%s: metadata '%s' chunk %u failed its checksum", path,
                                   e->name, c);
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

static int restore_one(ckpt_ctx *ctx, int64_t step, void *stream, ckpt__err *err)
{
    char name[32], dir[4096], path[4200], fname[32];
    ckpt__step_name(step, name);
    snprintf(dir, sizeof dir, "%s/%s", ctx->dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, CKPT__MANIFEST_NAME);
    ckpt__index idx;
    int rc = ckpt__manifest_read(path, &idx, err);
    if (rc)
        return rc;
    if (idx.step != step) {
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s records step %lld, not %lld", path,
                           (long long)idx.step, (long long)step);
        ckpt__index_free(&idx);
        return rc;
    }
    uint32_t *map = calloc(ctx->reg.n ? ctx->reg.n : 1, sizeof *map);
    void **ptrs = calloc(idx.nentries ? idx.nentries : 1, sizeof *ptrs);
    uint32_t *ids = calloc(ctx->reg.n ? ctx->reg.n : 1, sizeof *ids);
    ckpt__metastore meta = {0};
    ckpt__wfile *wf = NULL;
    uint32_t nids = 0;
    if (!map || !ptrs || !ids) {
        rc = ckpt__err_set(err, CKPT_ENOMEM, "restore: out of memory");
        goto out;
    }
    if (idx.world_size != (uint32_t)ctx->world) {
        rc = ckpt__err_set(err, CKPT_EMISMATCH, "%s: saved by %u ranks, restoring on %d", name,
                           idx.world_size, ctx->world);
        goto out;
    }
    rc = match_registry(ctx, &idx, name, map, err);
    if (rc)
        goto out;
    const ckpt__rankrec *rr = rank_rec(&idx, (uint32_t)ctx->rank);
    snprintf(fname, sizeof fname, "rank-%05d.h5", ctx->rank);
    snprintf(path, sizeof path, "%s/%s", dir, fname);
    rc = rr ? check_rank_file(path, rr->file_bytes, err)
            : ckpt__err_set(err, CKPT_ECORRUPT, "%s: no record of rank %d", name, ctx->rank);
    if (!rc)
        rc = read_meta(ctx, &idx, path, &meta, err);
    if (!rc)
        rc = ctx->eng.wm->file_open(ctx->eng.w, path, CKPT__WF_READ, &wf, err);
    if (rc)
        goto out;
    for (uint32_t i = 0; i < ctx->reg.n; i++) {
        ptrs[map[i]] = ctx->reg.v[i].ptr;
        if (ctx->reg.v[i].nbytes)
            ids[nids++] = map[i];
    }
    ckpt__pipe pipe;
    char what[128];
    snprintf(what, sizeof what, "%s/%s", name, fname);
    rc = ckpt__pipe_init(&pipe, CKPT__PIPE_LOAD, &ctx->eng, &idx, ptrs, ids, nids, what, err);
    if (!rc) {
        pipe.verify = ctx->cfg.verify;
        pipe.stream = stream;
        ckpt__pipe_set_file(&pipe, wf);
        rc = ckpt__pipe_run(&pipe);
        if (rc)
            *err = pipe.err;
    }
    ckpt__pipe_destroy(&pipe);
    if (!rc) {
        ckpt__meta_free(&ctx->meta);
        ctx->meta = meta;
        memset(&meta, 0, sizeof meta);
    }
out:
    if (wf)
        ctx->eng.wm->file_close(ctx->eng.w, wf);
    ckpt__meta_free(&meta);
    free(map);
    free(ptrs);
    free(ids);
    ckpt__index_free(&idx);
    return rc;
}

int ckpt__restore(ckpt_ctx *ctx, int64_t step, void *stream, int64_t *step_out)
{
    ckpt__err *err = &ctx->err;
    if (step_out)
        *step_out = -1;
    if (step != CKPT_LATEST && (step < 0 || step > CKPT__STEP_MAX))
        return ckpt__err_set(err, CKPT_EINVAL, "ckpt_restore: step %lld is not a step",
                             (long long)step);
    pthread_mutex_lock(&ctx->mu);
    int busy = ctx->inflight;
    if (!busy)
        ckpt__wait_janitor(ctx); /* restore what retention leaves */
    pthread_mutex_unlock(&ctx->mu);
    if (busy)
        return ckpt__err_set(err, CKPT_ESTATE,
                             "ckpt_restore: %d save(s) in flight; wait for them first", busy);
    int64_t *steps;
    size_t n;
    int rc = ckpt__catalog_scan(ctx->dir, &steps, &n, err);
    if (rc)
        return rc;
    size_t first = 0, last = n;
    if (step != CKPT_LATEST) {
        for (first = 0; first < n && steps[first] != step; first++)
            ;
        last = first < n ? first + 1 : first;
    }
    if (first >= last) {
        free(steps);
        if (step == CKPT_LATEST)
            return ckpt__err_set(err, CKPT_ENOTFOUND, "no checkpoint in %s", ctx->dir);
        return ckpt__err_set(err, CKPT_ENOTFOUND, "no checkpoint of step %lld in %s",
                             (long long)step, ctx->dir);
    }
    ckpt__err newest;
    ckpt__err_clear(&newest);
    rc = CKPT_ECORRUPT;
    int fatal = 0;
    for (size_t i = first; i < last && !fatal; i++) {
        ckpt__err e;
        ckpt__err_clear(&e);
        rc = restore_one(ctx, steps[i], stream, &e);
        if (rc == 0) {
            if (step_out)
                *step_out = steps[i];
            ckpt__logf(&ctx->log, newest.code ? CKPT_LOG_WARN : CKPT_LOG_INFO,
                       "restored step %lld from %s%s", (long long)steps[i], ctx->dir,
                       newest.code ? " after falling back" : "");
            break;
        }
        ckpt__err_keep(&newest, &e);
        /* A mismatch is the caller's setup, not damage: no fallback. */
        fatal = rc == CKPT_EMISMATCH || rc == CKPT_EFORMAT || rc == CKPT_ENOMEM ||
                step != CKPT_LATEST;
        if (fatal)
            *err = e;
        else
            ckpt__logf(&ctx->log, CKPT_LOG_WARN, "checkpoint step %lld is not valid (%s)%s",
                       (long long)steps[i], e.msg, i + 1 < last ? "; trying an older one" : "");
    }
    if (rc && !fatal)
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "no valid checkpoint in %s; newest failure: %s",
                           ctx->dir, newest.msg);
    free(steps);
    return rc;
}
