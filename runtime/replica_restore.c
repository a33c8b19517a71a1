/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Restore from replicas (issue 13, [tiers]; docs/FORMAT.md, "The local
 * tier", "Restore from replicas").  Partner k of rank r (runtime/nodes.h,
 * P1) keeps a byte-identical copy of r's committed local files of a step
 * in LOCAL/replica-of-R/step-S/: the node's local manifest, rank-R.h5 and
 * done-R.rec.
 *
 * Invariants:
 *   R1. A fetched file is written only into a folder nobody reads yet (the
 *       node's step-S.partial-U, committed by one rename of the node's
 *       leader after every fetching rank of the world has fsynced its
 *       files), or under a temporary name in the committed folder, fsynced
 *       and renamed over the bad file; so a crash leaves the old state or
 *       the new one, never half a file under a committed name.
 *   R2. A node repairs only when every rank of it that lacks its file has
 *       a partner keeping the step (rank 0 decides, for all): the node's
 *       ranks read one another's files (replicated tensors are spread over
 *       the node), so half a repair would serve nobody.
 *   R3. Nothing here is trusted: the ordinary local restore reads what
 *       landed and verifies every chunk; a damaged replica so falls back
 *       to DIR like a damaged local copy.
 *   R4. The two sides of each move agree on it from the same facts: the
 *       plan rank 0 broadcast (fetch), or the list the partner sent in the
 *       reach exchange (refill); a header with the sizes goes first, so
 *       every receive knows its length.
 *   R5. An exchange that timed out may still read its send buffers
 *       (comm.h): they are then left allocated.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/manifest.h"
#include "io/paths.h"
#include "io/rankfile.h"
#include "runtime/backend.h"
#include "runtime/catalog.h"
#include "runtime/context.h"
#include "runtime/replica_restore.h"

/* The three files of a rank's local copy, in message order. */
enum { F_MANIFEST = 0, F_RANK, F_DONE, NFILES };

static void file_name(int which, uint32_t rank, char *out)
{
    if (which == F_MANIFEST)
        snprintf(out, CKPT__FNAME_MAX, "%s", CKPT__MANIFEST_NAME);
    else if (which == F_RANK)
        ckpt__rank_file_name(rank, out);
    else
        ckpt__done_name(rank, out);
}

/* The header of one move (R4): ok 0 says nothing follows. */
typedef struct xhdr {
    int64_t ok;
    int64_t nbytes[NFILES];
    uint8_t uuid[16];
} xhdr;

static uint64_t hdr_total(const xhdr *h)
{
    return (uint64_t)h->nbytes[0] + (uint64_t)h->nbytes[1] + (uint64_t)h->nbytes[2];
}

static int xchg(ckpt_ctx *ctx, ckpt__msg *s, int ns, ckpt__msg *r, int nr, ckpt__err *err)
{
    if (!ns && !nr)
        return 0;
    return ckpt__comm_exchange(ctx->comm, &ctx->fault, s, ns, r, nr, ctx->cfg.commit_timeout_s,
                               err);
}

static int list_has(const ckpt__reach_list *l, int64_t step)
{
    for (int64_t i = 0; i < l->n; i++)
        if (l->steps[i] == step)
            return 1;
    return 0;
}

/* ---- files ------------------------------------------------------------------ */

/* A regular file's bytes (never through a link) appended at buf + off. */
static int load_file(const char *path, uint8_t **buf, uint64_t off, int64_t *n, ckpt__err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return ckpt__err_errno(err, errno, "open %s", path);
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = ckpt__err_errno(err, errno, "stat %s", path);
    else if (!S_ISREG(st.st_mode))
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s is not a regular file", path);
    uint8_t *b = NULL;
    if (!rc && !(b = realloc(*buf, off + (uint64_t)st.st_size + 1)))
        rc = ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", path);
    if (b)
        *buf = b;
    for (uint64_t k = 0; !rc && k < (uint64_t)st.st_size;) {
        ssize_t got = pread(fd, b + off + k, (size_t)((uint64_t)st.st_size - k), (off_t)k);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            rc = got < 0 ? ckpt__err_errno(err, errno, "read %s", path)
                         : ckpt__err_set(err, CKPT_ECORRUPT, "%s shrank while read", path);
        else
            k += (uint64_t)got;
    }
    close(fd);
    *n = rc ? 0 : (int64_t)st.st_size;
    return rc;
}

/* Creates path (replacing a file of that name) holding n bytes, fsynced. */
static int store_file(const char *path, const uint8_t *b, uint64_t n, ckpt__err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return ckpt__err_errno(err, errno, "create %s", path);
    int rc = 0;
    for (uint64_t k = 0; !rc && k < n;) {
        ssize_t put = write(fd, b + k, (size_t)(n - k));
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0)
            rc = ckpt__err_errno(err, put < 0 ? errno : EIO, "write %s", path);
        else
            k += (uint64_t)put;
    }
    if (!rc && fsync(fd) != 0)
        rc = ckpt__err_errno(err, errno, "fsync %s", path);
    if (close(fd) != 0 && !rc)
        rc = ckpt__err_errno(err, errno, "close %s", path);
    return rc;
}

static int make_dir(const char *path, ckpt__err *err)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return ckpt__err_errno(err, errno, "mkdir %s", path);
    return 0;
}

/* The three files of rank's copy in dir, for a move: h filled, *buf
 * malloc'd (concatenated in message order).  The manifest must record
 * step and list rank with the rank file's size. */
static int load_copy(const char *dir, uint32_t rank, int64_t step, xhdr *h, uint8_t **buf,
                     ckpt__err *err)
{
    char path[CKPT__PATH_MAX], fname[CKPT__FNAME_MAX];
    memset(h, 0, sizeof *h);
    *buf = NULL;
    uint64_t off = 0;
    int rc = 0;
    for (int f = 0; !rc && f < NFILES; f++) {
        file_name(f, rank, fname);
        rc = ckpt__path_join(path, dir, fname, err);
        if (!rc)
            rc = load_file(path, buf, off, &h->nbytes[f], err);
        off += (uint64_t)h->nbytes[f];
    }
    ckpt__index idx;
    if (!rc)
        rc = ckpt__path_join(path, dir, CKPT__MANIFEST_NAME, err);
    if (!rc)
        rc = ckpt__manifest_read_part(path, &idx, err);
    if (rc) {
        free(*buf);
        *buf = NULL;
        memset(h, 0, sizeof *h);
        return rc;
    }
    const ckpt__rankrec *rr = NULL;
    for (uint32_t i = 0; i < idx.nranks; i++)
        if (idx.ranks[i].rank == rank)
            rr = &idx.ranks[i];
    if (idx.step != step || !rr || rr->file_bytes != (uint64_t)h->nbytes[F_RANK])
        rc = ckpt__err_set(err, CKPT_ECORRUPT,
                           "%s: the manifest does not record rank %u's file of step %lld as it "
                           "is there",
                           dir, rank, (long long)step);
    memcpy(h->uuid, idx.uuid, sizeof h->uuid);
    ckpt__index_free(&idx);
    if (rc) {
        free(*buf);
        *buf = NULL;
        memset(h, 0, sizeof *h);
    } else {
        h->ok = 1;
    }
    return rc;
}

/* Writes the moved files into dir under their names (with_manifest: the
 * manifest too), each fsynced, then fsyncs dir (R1: dir is a partial
 * folder nobody reads). */
static int land_fresh(const char *dir, uint32_t rank, const xhdr *h, const uint8_t *buf,
                      int with_manifest, ckpt__err *err)
{
    char path[CKPT__PATH_MAX], fname[CKPT__FNAME_MAX];
    uint64_t off = 0;
    int rc = 0;
    for (int f = 0; !rc && f < NFILES; f++) {
        file_name(f, rank, fname);
        if (f != F_MANIFEST || with_manifest) {
            rc = ckpt__path_join(path, dir, fname, err);
            if (!rc)
                rc = store_file(path, buf + off, (uint64_t)h->nbytes[f], err);
        }
        off += (uint64_t)h->nbytes[f];
    }
    return rc ? rc : ckpt__fsync_dir(dir, err);
}

/* Replaces rank's rank file and done-record in the committed folder dir:
 * each written as NAME.tmp, fsynced, renamed over NAME, then dir fsynced
 * (R1). */
static int land_in_place(const char *dir, uint32_t rank, const xhdr *h, const uint8_t *buf,
                         ckpt__err *err)
{
    char path[CKPT__PATH_MAX], tmp[CKPT__PATH_MAX], fname[CKPT__FNAME_MAX],
        tname[CKPT__FNAME_MAX];
    uint64_t off = (uint64_t)h->nbytes[F_MANIFEST];
    int rc = 0;
    for (int f = F_RANK; !rc && f < NFILES; f++) {
        file_name(f, rank, fname);
        ckpt__mark_tmp_name(fname, tname);
        rc = ckpt__path_join(path, dir, fname, err);
        if (!rc)
            rc = ckpt__path_join(tmp, dir, tname, err);
        if (!rc)
            rc = store_file(tmp, buf + off, (uint64_t)h->nbytes[f], err);
        if (!rc && rename(tmp, path) != 0)
            rc = ckpt__err_errno(err, errno, "rename %s to %s", tmp, fname);
        off += (uint64_t)h->nbytes[f];
    }
    return rc ? rc : ckpt__fsync_dir(dir, err);
}

/* Commits the partial folder `partial` of parent as step (R1): fsync, a
 * committed folder of the step that is there (unusable: its node fetched
 * every file) deleted, rename, fsync of parent. */
static int commit_partial(const char *parent, const char *partial, int64_t step, ckpt__err *err)
{
    char from[CKPT__PATH_MAX], to[CKPT__PATH_MAX];
    struct stat st;
    int rc = ckpt__path_join(from, parent, partial, err);
    if (!rc)
        rc = ckpt__path_step(to, parent, step, NULL, err);
    if (!rc)
        rc = ckpt__fsync_dir(from, err);
    if (!rc && lstat(to, &st) == 0)
        rc = ckpt__catalog_delete(parent, step, err);
    if (!rc && rename(from, to) != 0)
        rc = ckpt__err_errno(err, errno, "rename %s to %s", from, to);
    return rc ? rc : ckpt__fsync_dir(parent, err);
}

/* ---- step 1: what the partners keep ------------------------------------------ */

void ckpt__reach_free(ckpt__reach *r)
{
    for (int k = 0; k < CKPT__REPLICAS_MAX; k++) {
        free(r->src[k]);
        free(r->kept[k]);
    }
    memset(r, 0, sizeof *r);
}

/* The committed steps of LOCAL/replica-of-R, newest first, at most
 * CKPT__REACH_STEPS; a folder that is not there keeps nothing. */
static void scan_replica(ckpt_ctx *ctx, uint32_t src, ckpt__reach_list *l)
{
    char name[CKPT__FNAME_MAX], dir[CKPT__PATH_MAX];
    ckpt__err e;
    int64_t *steps = NULL;
    size_t n = 0;
    memset(l, 0, sizeof *l);
    ckpt__replica_name(src, name);
    if (ckpt__path_join(dir, ctx->local_dir, name, &e) != 0)
        return;
    struct stat st;
    if (lstat(dir, &st) != 0)
        return;
    if (ckpt__catalog_scan(dir, &steps, &n, &e) != 0) {
        ckpt__logf(&ctx->log, CKPT_LOG_WARN, "rank %d: replica folder %s: %s", ctx->rank, dir,
                   e.msg);
        return;
    }
    for (size_t i = 0; i < n && i < CKPT__REACH_STEPS; i++)
        l->steps[l->n++] = steps[i];
    free(steps);
}

int ckpt__reach_exchange(ckpt_ctx *ctx, ckpt__reach *out, ckpt__err *err)
{
    memset(out, 0, sizeof *out);
    out->replicas = ctx->cfg.replicas;
    uint32_t me = (uint32_t)ctx->rank, nsend = 0;
    for (int k = 1; k <= out->replicas; k++) {
        out->src[k - 1] = malloc(ctx->nodes.nranks * sizeof *out->src[k - 1]);
        out->kept[k - 1] = calloc(ctx->nodes.nranks, sizeof *out->kept[k - 1]);
        if (!out->src[k - 1] || !out->kept[k - 1])
            return ckpt__err_set(err, CKPT_ENOMEM, "restore: out of memory");
        out->nsrc[k - 1] = ckpt__nodes_sources(&ctx->nodes, me, k, out->src[k - 1]);
        for (uint32_t j = 0; j < out->nsrc[k - 1]; j++)
            scan_replica(ctx, out->src[k - 1][j], &out->kept[k - 1][j]);
        nsend += out->nsrc[k - 1];
    }
    ckpt__msg *sends = calloc(nsend ? nsend : 1, sizeof *sends), recvs[CKPT__REPLICAS_MAX];
    if (!sends)
        return ckpt__err_set(err, CKPT_ENOMEM, "restore: out of memory");
    int ns = 0;
    for (int k = 1; k <= out->replicas; k++) {
        for (uint32_t j = 0; j < out->nsrc[k - 1]; j++)
            sends[ns++] = (ckpt__msg){(int)out->src[k - 1][j], &out->kept[k - 1][j],
                                      sizeof out->kept[k - 1][j]};
        recvs[k - 1] = (ckpt__msg){(int)ckpt__nodes_partner(&ctx->nodes, me, k),
                                   &out->held[k - 1], sizeof out->held[k - 1]};
    }
    int rc = xchg(ctx, sends, ns, recvs, out->replicas, err);
    if (rc == CKPT_ETIMEDOUT) {
        /* R5: the lists stay allocated (leaked with the reach). */
        for (int k = 0; k < CKPT__REPLICAS_MAX; k++)
            out->kept[k] = NULL;
        return rc;
    }
    free(sends);
    for (int k = 0; k < out->replicas; k++) {
        ckpt__reach_list *l = &out->held[k];
        if (rc || l->n < 0 || l->n > CKPT__REACH_STEPS)
            l->n = 0;
    }
    return rc;
}

int64_t ckpt__reach_newest(const ckpt__reach *r, int64_t bound)
{
    int64_t best = -1;
    for (int k = 0; k < r->replicas; k++)
        for (int64_t i = 0; i < r->held[k].n; i++)
            if (r->held[k].steps[i] <= bound && r->held[k].steps[i] > best)
                best = r->held[k].steps[i];
    return best;
}

/* ---- steps 2 and 3: fetch ----------------------------------------------------- */

/* What a rank tells rank 0 of the agreed step. */
typedef struct want {
    int32_t usable;  /* its own local file of the step passes the cheap checks */
    int32_t mok;     /* its node's local manifest of the step reads */
    int32_t holders; /* bit k - 1: partner k keeps the step for it */
    int32_t pad;
} want;

enum { MODE_NONE = 0, MODE_FRESH, MODE_IN_PLACE };

/* Whether this rank's own local file of step is usable, cheaply: the
 * committed folder's manifest reads (checksum, index) with the step and
 * lists this rank, the rank file is a regular file of its recorded size
 * whose metadata hash matches, the done-record is there.  No chunk is
 * hashed: the local restore does that. */
static int own_usable(ckpt_ctx *ctx, int64_t step, int *mok)
{
    char dir[CKPT__PATH_MAX], path[CKPT__PATH_MAX], fname[CKPT__FNAME_MAX];
    struct stat st;
    ckpt__err e;
    ckpt__err_clear(&e);
    *mok = 0;
    if (ckpt__path_step(dir, ctx->local_dir, step, NULL, &e) != 0 ||
        ckpt__path_join(path, dir, CKPT__MANIFEST_NAME, &e) != 0)
        return 0;
    if (lstat(dir, &st) != 0) {
        ckpt__logf(&ctx->log, CKPT_LOG_INFO, "rank %d: no local copy of step %lld in %s",
                   ctx->rank, (long long)step, ctx->local_dir);
        return 0;
    }
    ckpt__index idx;
    if (ckpt__manifest_read_part(path, &idx, &e) != 0) {
        ckpt__logf(&ctx->log, CKPT_LOG_WARN, "rank %d: the local copy of step %lld: %s",
                   ctx->rank, (long long)step, e.msg);
        return 0;
    }
    int ok = idx.step == step && idx.world_size == (uint32_t)ctx->world;
    *mok = ok;
    const ckpt__rankrec *rr = NULL;
    for (uint32_t i = 0; i < idx.nranks; i++)
        if (idx.ranks[i].rank == (uint32_t)ctx->rank)
            rr = &idx.ranks[i];
    int hashed = 0;
    ckpt__rank_file_name((uint32_t)ctx->rank, fname);
    if (ok && !rr)
        ok = 0;
    if (ok && (ckpt__path_join(path, dir, fname, &e) != 0 ||
               ckpt__rankfile_check_meta(path, &idx, rr, &hashed, &e) != 0)) {
        ckpt__logf(&ctx->log, CKPT_LOG_WARN,
                   "rank %d: its local file of step %lld is not usable (%s)", ctx->rank,
                   (long long)step, e.msg);
        ok = 0;
    }
    ckpt__done_name((uint32_t)ctx->rank, fname);
    if (ok && (ckpt__path_join(path, dir, fname, &e) != 0 || lstat(path, &st) != 0 ||
               !S_ISREG(st.st_mode)))
        ok = 0;
    ckpt__index_free(&idx);
    return ok;
}

/* Rank 0: per rank, the partner that sends it its files (-1: none), and
 * per node how they land (R2). */
static void make_fetch_plan(ckpt_ctx *ctx, const want *all, int64_t step, int32_t *prov,
                            int32_t *mode)
{
    const ckpt__nodes *nd = &ctx->nodes;
    for (uint32_t r = 0; r < nd->nranks; r++)
        prov[r] = -1;
    for (uint32_t n = 0; n < nd->nnodes; n++) {
        uint32_t lo = nd->first[n], hi = nd->first[n + 1], lack = 0, stuck = UINT32_MAX;
        mode[n] = MODE_NONE;
        for (uint32_t j = lo; j < hi; j++) {
            uint32_t r = nd->byrank[j];
            if (all[r].usable)
                continue;
            lack++;
            if (!all[r].holders && stuck == UINT32_MAX)
                stuck = r;
        }
        if (!lack)
            continue;
        if (stuck != UINT32_MAX) {
            ckpt__logf(&ctx->log, CKPT_LOG_WARN,
                       "node %u: rank %u lacks its local files of step %lld and no partner "
                       "keeps a replica of them: the node's ranks that lack theirs read DIR",
                       n, stuck, (long long)step);
            continue;
        }
        mode[n] = lack == hi - lo && !all[nd->byrank[lo]].mok ? MODE_FRESH : MODE_IN_PLACE;
        for (uint32_t j = lo; j < hi; j++) {
            uint32_t r = nd->byrank[j];
            if (all[r].usable)
                continue;
            int k = 1;
            while (!(all[r].holders & (1 << (k - 1))))
                k++;
            prov[r] = (int32_t)ckpt__nodes_partner(nd, r, k);
        }
    }
}

/* The plan, decided on rank 0 from every rank's want and broadcast:
 * plan[0..world) the providers, plan[world..world + nnodes) the modes. */
static int fetch_plan(ckpt_ctx *ctx, const ckpt__reach *r, int64_t step, int32_t *plan,
                      ckpt__err *err)
{
    want me, *all = calloc((size_t)ctx->world, sizeof *all);
    if (!all)
        return ckpt__err_set(err, CKPT_ENOMEM, "restore: out of memory");
    int mok = 0;
    memset(&me, 0, sizeof me);
    me.usable = own_usable(ctx, step, &mok);
    me.mok = mok;
    for (int k = 0; k < r->replicas; k++)
        if (list_has(&r->held[k], step))
            me.holders |= 1 << k;
    int rc = ckpt__comm_gather(ctx->comm, &ctx->fault, &me, sizeof me, all, 0, err);
    if (!rc && ctx->rank == 0)
        make_fetch_plan(ctx, all, step, plan, plan + ctx->world);
    free(all);
    if (!rc)
        rc = ckpt__comm_bcast(ctx->comm, &ctx->fault, plan,
                              ((size_t)ctx->world + ctx->nodes.nnodes) * sizeof *plan, 0, err);
    return rc;
}

/* The keeper of replicas moves the files; returns the exchange's code.
 * *hdr, *buf: this rank's fetch (hdr->ok 0: nothing came). */
static int fetch_move(ckpt_ctx *ctx, int64_t step, const int32_t *prov, xhdr *hdr,
                      uint8_t **buf, ckpt__err *err)
{
    uint32_t me = (uint32_t)ctx->rank, n = 0;
    memset(hdr, 0, sizeof *hdr);
    *buf = NULL;
    for (int r = 0; r < ctx->world; r++)
        n += prov[r] == (int32_t)me;
    xhdr *out = calloc(n ? n : 1, sizeof *out);
    uint8_t **data = calloc(n ? n : 1, sizeof *data);
    ckpt__msg *sends = calloc(n ? n : 1, sizeof *sends);
    int rc = !out || !data || !sends ? ckpt__err_set(err, CKPT_ENOMEM, "restore: out of memory")
                                     : 0;
    uint32_t j = 0;
    for (int r = 0; !rc && r < ctx->world; r++) {
        if (prov[r] != (int32_t)me)
            continue;
        char name[CKPT__FNAME_MAX], dir[CKPT__PATH_MAX], sdir[CKPT__PATH_MAX];
        ckpt__err e;
        ckpt__replica_name((uint32_t)r, name);
        int lrc = ckpt__path_join(dir, ctx->local_dir, name, &e);
        if (!lrc)
            lrc = ckpt__path_step(sdir, dir, step, NULL, &e);
        if (!lrc)
            lrc = load_copy(sdir, (uint32_t)r, step, &out[j], &data[j], &e);
        if (lrc)
            ckpt__logf(&ctx->log, CKPT_LOG_WARN,
                       "rank %d: cannot send rank %d its files of step %lld from its replica: %s",
                       ctx->rank, r, (long long)step, e.msg);
        sends[j] = (ckpt__msg){r, &out[j], sizeof out[j]};
        j++;
    }
    ckpt__msg recv = {prov[me], hdr, sizeof *hdr};
    int fetching = prov[me] >= 0;
    if (!rc)
        rc = xchg(ctx, sends, (int)n, &recv, fetching, err);
    /* The data, for every header that said ok. */
    uint32_t nd = 0;
    for (uint32_t i = 0; !rc && i < n; i++)
        if (out[i].ok)
            sends[nd++] = (ckpt__msg){sends[i].peer, data[i], (size_t)hdr_total(&out[i])};
    int take = !rc && fetching && hdr->ok;
    if (take && !(*buf = malloc(hdr_total(hdr) ? hdr_total(hdr) : 1)))
        rc = ckpt__err_set(err, CKPT_ENOMEM, "restore: out of memory");
    recv = (ckpt__msg){prov[me], *buf, (size_t)hdr_total(hdr)};
    if (!rc)
        rc = xchg(ctx, sends, (int)nd, &recv, take, err);
    if (rc == CKPT_ETIMEDOUT)
        return rc; /* R5 */
    for (uint32_t i = 0; data && i < n; i++)
        free(data[i]);
    free(data);
    free(out);
    free(sends);
    return rc;
}

int ckpt__replica_fetch(ckpt_ctx *ctx, const ckpt__reach *r, int64_t step, int *fetched,
                        int *fatal, ckpt__err *err)
{
    const ckpt__nodes *nd = &ctx->nodes;
    uint32_t me = (uint32_t)ctx->rank, node = nd->node[me];
    *fetched = 0;
    *fatal = 1;
    int32_t *plan = calloc((size_t)ctx->world + nd->nnodes, sizeof *plan);
    int64_t *bad = calloc(nd->nnodes, sizeof *bad);
    if (!plan || !bad) {
        free(plan);
        free(bad);
        return ckpt__err_set(err, CKPT_ENOMEM, "restore: out of memory");
    }
    int rc = fetch_plan(ctx, r, step, plan, err);
    const int32_t *prov = plan, *mode = plan + ctx->world;
    int any = 0;
    for (int q = 0; !rc && q < ctx->world; q++)
        any |= prov[q] >= 0;
    xhdr hdr;
    uint8_t *buf = NULL;
    if (!rc && any)
        rc = fetch_move(ctx, step, prov, &hdr, &buf, err);
    int leader = nd->byrank[nd->first[node]] == me;
    char partial[CKPT__FNAME_MAX] = "", path[CKPT__PATH_MAX];
    ckpt__err e;
    ckpt__err_clear(&e);
    int landed = 0;
    if (!rc && any && prov[me] >= 0) {
        int lrc = hdr.ok ? 0
                         : ckpt__err_set(&e, CKPT_ENOTFOUND, "rank %d sent nothing", prov[me]);
        if (!lrc && mode[node] == MODE_FRESH) {
            ckpt__partial_name(step, hdr.uuid, partial);
            lrc = ckpt__path_join(path, ctx->local_dir, partial, &e);
            if (!lrc)
                lrc = make_dir(path, &e);
            if (!lrc)
                lrc = land_fresh(path, me, &hdr, buf, leader, &e);
        } else if (!lrc) {
            lrc = ckpt__path_step(path, ctx->local_dir, step, NULL, &e);
            if (!lrc)
                lrc = land_in_place(path, me, &hdr, buf, &e);
        }
        landed = !lrc;
        if (lrc) {
            bad[node] = 1;
            ckpt__logf(&ctx->log, CKPT_LOG_WARN,
                       "rank %d: fetching its files of step %lld from rank %d failed (%s): it "
                       "reads DIR",
                       ctx->rank, (long long)step, prov[me], e.msg);
        }
    }
    free(buf);
    /* R1: every fetching rank's files are durable before a leader
     * commits; the second allreduce holds every rank until the commits are
     * done, so nobody reads a node's folder before its rename. */
    if (!rc && any)
        rc = ckpt__comm_allreduce(ctx->comm, &ctx->fault, bad, (int)nd->nnodes, CKPT__MAX, err);
    if (mode[node] == MODE_FRESH)
        landed = landed && !bad[node]; /* and every other fetch of its node */
    if (!rc && any && mode[node] == MODE_FRESH && partial[0] && bad[node]) {
        /* Every rank that wrote one: the leader may have none (nothing
         * came to it). */
        ckpt__remove_tree(ctx->local_dir, partial, NULL);
        memset(bad, 0, nd->nnodes * sizeof *bad);
    } else if (!rc && any && leader && mode[node] == MODE_FRESH && partial[0]) {
        int lrc = commit_partial(ctx->local_dir, partial, step, &e);
        if (lrc)
            ckpt__logf(&ctx->log, CKPT_LOG_WARN,
                       "node %u: committing the fetched files of step %lld in %s failed: %s",
                       node, (long long)step, ctx->local_dir, e.msg);
        memset(bad, 0, nd->nnodes * sizeof *bad);
        bad[node] = lrc != 0;
    } else {
        memset(bad, 0, nd->nnodes * sizeof *bad);
    }
    if (!rc && any)
        rc = ckpt__comm_allreduce(ctx->comm, &ctx->fault, bad, (int)nd->nnodes, CKPT__MAX, err);
    if (!rc && landed && !bad[node]) {
        *fetched = 1;
        ckpt__logf(&ctx->log, CKPT_LOG_WARN,
                   "rank %d: fetched its files of step %lld from rank %d (node %u), which "
                   "keeps their replica, into %s",
                   ctx->rank, (long long)step, prov[me], nd->node[prov[me]], ctx->local_dir);
    }
    free(plan);
    free(bad);
    if (!rc)
        *fatal = 0;
    return rc;
}

/* ---- step 4: refill ------------------------------------------------------------ */

/* Lands rank src's files of step as LOCAL/replica-of-SRC/step-S (R1). */
static int land_replica(ckpt_ctx *ctx, uint32_t src, int64_t step, const xhdr *h,
                        const uint8_t *buf, ckpt__err *err)
{
    char name[CKPT__FNAME_MAX], partial[CKPT__FNAME_MAX], dir[CKPT__PATH_MAX],
        path[CKPT__PATH_MAX];
    struct stat st;
    ckpt__replica_name(src, name);
    ckpt__partial_name(step, h->uuid, partial);
    int rc = ckpt__path_join(dir, ctx->local_dir, name, err);
    if (!rc)
        rc = make_dir(dir, err);
    if (!rc)
        rc = ckpt__path_step(path, dir, step, NULL, err);
    if (!rc && lstat(path, &st) == 0)
        return 0; /* kept after all (older than the list reported) */
    if (!rc)
        rc = ckpt__path_join(path, dir, partial, err);
    if (!rc)
        rc = make_dir(path, err);
    if (!rc)
        rc = land_fresh(path, src, h, buf, 1, err);
    if (!rc)
        rc = commit_partial(dir, partial, step, err);
    if (rc)
        ckpt__remove_tree(dir, partial, NULL);
    return rc;
}

void ckpt__replica_refill(ckpt_ctx *ctx, const ckpt__reach *r, int64_t step)
{
    uint32_t me = (uint32_t)ctx->rank, nin = 0;
    ckpt__err e;
    ckpt__err_clear(&e);
    for (int k = 0; k < r->replicas; k++)
        for (uint32_t j = 0; j < r->nsrc[k]; j++)
            nin += !list_has(&r->kept[k][j], step);
    /* Sender side (R4: from the list the partner sent). */
    xhdr mine;
    uint8_t *data = NULL;
    int nout = 0, to[CKPT__REPLICAS_MAX];
    for (int k = 0; k < r->replicas; k++)
        if (!list_has(&r->held[k], step))
            to[nout++] = (int)ckpt__nodes_partner(&ctx->nodes, me, k + 1);
    memset(&mine, 0, sizeof mine);
    if (nout) {
        char dir[CKPT__PATH_MAX];
        if (ckpt__path_step(dir, ctx->local_dir, step, NULL, &e) != 0 ||
            load_copy(dir, me, step, &mine, &data, &e) != 0)
            ckpt__logf(&ctx->log, CKPT_LOG_WARN,
                       "rank %d: cannot re-create the replicas of its files of step %lld: %s",
                       ctx->rank, (long long)step, e.msg);
    }
    xhdr *hin = calloc(nin ? nin : 1, sizeof *hin);
    uint8_t **din = calloc(nin ? nin : 1, sizeof *din);
    uint32_t *from = calloc(nin ? nin : 1, sizeof *from);
    ckpt__msg *recvs = calloc(nin ? nin : 1, sizeof *recvs), sends[CKPT__REPLICAS_MAX];
    int rc = !hin || !din || !from || !recvs ? CKPT_ENOMEM : 0;
    uint32_t n = 0;
    for (int k = 0; !rc && k < r->replicas; k++)
        for (uint32_t j = 0; j < r->nsrc[k]; j++)
            if (!list_has(&r->kept[k][j], step)) {
                from[n] = r->src[k][j];
                recvs[n] = (ckpt__msg){(int)from[n], &hin[n], sizeof hin[n]};
                n++;
            }
    for (int i = 0; i < nout; i++)
        sends[i] = (ckpt__msg){to[i], &mine, sizeof mine};
    if (!rc)
        rc = xchg(ctx, sends, nout, recvs, (int)n, &e);
    int ns = 0;
    uint32_t nr = 0;
    for (int i = 0; !rc && mine.ok && i < nout; i++)
        sends[ns++] = (ckpt__msg){to[i], data, (size_t)hdr_total(&mine)};
    for (uint32_t i = 0; !rc && i < n; i++) {
        if (!hin[i].ok)
            continue;
        if (!(din[i] = malloc(hdr_total(&hin[i]) ? hdr_total(&hin[i]) : 1))) {
            rc = CKPT_ENOMEM;
            break;
        }
        recvs[nr++] = (ckpt__msg){(int)from[i], din[i], (size_t)hdr_total(&hin[i])};
    }
    if (!rc)
        rc = xchg(ctx, sends, ns, recvs, (int)nr, &e);
    if (rc) {
        ckpt__logf(&ctx->log, CKPT_LOG_WARN,
                   "rank %d: re-creating replicas of step %lld failed: %s", ctx->rank,
                   (long long)step, rc == CKPT_ENOMEM ? "out of memory" : e.msg);
        if (rc == CKPT_ETIMEDOUT)
            return; /* R5 */
    }
    for (uint32_t i = 0; !rc && i < n; i++) {
        if (!hin[i].ok)
            continue;
        if (land_replica(ctx, from[i], step, &hin[i], din[i], &e) != 0)
            ckpt__logf(&ctx->log, CKPT_LOG_WARN,
                       "rank %d: re-creating the replica of rank %u's files of step %lld "
                       "failed: %s",
                       ctx->rank, from[i], (long long)step, e.msg);
        else
            ckpt__logf(&ctx->log, CKPT_LOG_INFO,
                       "rank %d: re-created the replica of rank %u's files of step %lld in %s",
                       ctx->rank, from[i], (long long)step, ctx->local_dir);
    }
    for (uint32_t i = 0; din && i < n; i++)
        free(din[i]);
    free(din);
    free(hin);
    free(from);
    free(recvs);
    free(data);
}

uint64_t ckpt__restore_bytes(ckpt_ctx *ctx, int tier)
{
    return ctx && tier >= 0 && tier < 4 ? ctx->restore_bytes[tier] : 0;
}
