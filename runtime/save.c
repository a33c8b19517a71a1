/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Saves, on the context's coordinator thread, one at a time in the order
 * ckpt_save accepted them:
 *
 *   1. describe the state as an index (tensors, then metadata blobs);
 *   2. start the snapshot copies into staging (they run while 3 happens);
 *   3. make the partial folder and the rank file's HDF5 layout: built
 *      through HDF5, or, when the layout is the one this context built
 *      last, written from its cached image without HDF5 (layout.h);
 *   4. run the pipeline: hash each chunk, write it at its dataset offset;
 *   5. finish the rank file (HDF5 closes a built one), fsync it, hash its
 *      bytes outside tensor data (HDF5's metadata: rankfile.h; a built
 *      file is read back once and its image and hash cached, a cached
 *      one's hash is the cache's), write the done-record; rank 0 seals and
 *      commits (commit.c) and applies retention.
 * Any failure abandons the partial folder; the ticket keeps the error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include <xxhash.h>

#include "io/h5util.h"
#include "io/names.h"
#include "io/paths.h"
#include "io/rankfile.h"
#include "runtime/backend.h"
#include "runtime/commit.h"
#include "runtime/context.h"
#include "runtime/layout.h"
#include "runtime/pipeline.h"

/* The local pass a drain copies from (run_job): its index (file offsets
 * and leaves of this rank's local file) and that file's committed path. */
typedef struct ckpt__drain_src {
    ckpt__index idx;
    char path[CKPT__PATH_MAX];
} drain_src;

static void drain_src_free(drain_src *src)
{
    if (src)
        ckpt__index_free(&src->idx);
    free(src);
}

void ckpt__job_free(ckpt__job *job)
{
    if (!job)
        return;
    drain_src_free(job->kept);
    ckpt__meta_free(&job->meta);
    free(job);
}

/* The save's uuid: the same on every rank without talking (docs/ARCHITECTURE.md: no
 * collective in a save), from the run uuid agreed at open and the step
 * (several ranks: a rank that missed one save still names the next one
 * like the others; ckpt_save refuses a step already in flight) or the
 * save's sequence number (one rank: the same step may be in flight twice). */
static void save_uuid(const ckpt_ctx *ctx, const ckpt__job *job, uint8_t out[16])
{
    uint8_t in[24];
    uint64_t v = ctx->world > 1 ? (uint64_t)job->step : job->seq;
    memcpy(in, ctx->run_uuid, 16);
    for (int k = 0; k < 8; k++)
        in[16 + k] = (uint8_t)(v >> (8 * k));
    XXH128_hash_t h = XXH3_128bits(in, sizeof in);
    for (int k = 0; k < 8; k++) {
        out[k] = (uint8_t)(h.high64 >> (8 * k));
        out[8 + k] = (uint8_t)(h.low64 >> (8 * k));
    }
}

typedef struct save_state {
    const ckpt__tier *t; /* the folder this pass writes (context.h) */
    uint32_t leader;     /* its group's leader */
    int last;            /* the job's last pass: it releases the fence and
                            emits the events */
    ckpt__index idx;
    void **ptrs;        /* per entry: tensor or metadata bytes */
    uint32_t *ids;      /* tensor entries with data, in order */
    uint32_t nids;
    ckpt__pipe pipe;
    int pipe_ready;
    int recorded;       /* this rank's done-record is written */
    int dfd;            /* the partial folder, open (commit.h); -1 */
    char partial[CKPT__FNAME_MAX];
    char ppath[CKPT__PATH_MAX];
    char path[CKPT__PATH_MAX];
    char fname[CKPT__FNAME_MAX];
    ckpt__rankfile *rf;
    const ckpt__rankfile_image *img; /* the cached layout written, or NULL */
    ckpt__wfile *wf;
    /* A drain (run_job): the tensors come from the local file src_wf,
     * src_off[] per entry, checked against expect[] per leaf. */
    ckpt__wfile *src_wf;
    uint64_t *src_off, *expect;
} save_state;

typedef struct by_size {
    uint64_t nbytes;
    const char *name;
    uint32_t i;
} by_size;

static int cmp_size(const void *a, const void *b)
{
    const by_size *x = a, *y = b;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? 1 : -1;
    return strcmp(x->name, y->name);
}

/* The greedy spread of assign_writers: the k-th item of v (largest first)
 * goes to the slot of out[k] among nslots, each to the slot with the
 * fewest bytes so far (ties: the lower slot); load has nslots zeroes. */
static void spread(const by_size *v, uint32_t n, uint32_t nslots, uint64_t *load,
                   uint32_t *out)
{
    for (uint32_t k = 0; k < n; k++) {
        uint32_t best = 0;
        for (uint32_t q = 1; q < nslots; q++)
            if (load[q] < load[best])
                best = q;
        load[best] += v[k].nbytes;
        out[k] = best;
    }
}

/* Which rank writes each registered tensor: a slice its own rank; the
 * replicated ones are spread over the tier's group (the world in DIR, the
 * node's ranks in local_dir, so that every node's local folder holds them
 * all), the largest first, each to the rank with the fewest replicated
 * bytes so far (ties: the lower rank).  With the local tier, DIR's spread
 * goes over the nodes instead, the same way, and a tensor's writer in DIR
 * is its writer in that node's local folder: a rank's durable file then
 * holds a subset of its local file's entries, which the drain copies
 * (run_job).  Computed from the registry and the node layout alone, so
 * ranks with the same registrations agree without talking (writer[] is
 * exact for this rank's tensors: another rank's are just not ctx->rank).
 * Ranks that registered different replicated tensors would not
 * agree, and a tensor could go to a rank that lacks it, so *set_hash gets
 * a hash of the replicated tensors' names, dtypes and shapes, which every
 * rank's done-record carries and rank 0 compares (commit.c, inv. 8);
 * rank 0's layout check catches slices that do not tile. */
static int assign_writers(const ckpt_ctx *ctx, const ckpt__tier *t, int32_t *writer,
                          uint64_t *set_hash, ckpt__err *err)
{
    const ckpt__registry *r = &ctx->reg;
    const ckpt__group *g = &t->g;
    *set_hash = 0;
    if (ctx->world == 1) {
        for (uint32_t i = 0; i < r->n; i++)
            writer[i] = 0;
        return 0;
    }
    /* DIR spread over nodes (with the local tier): slot = node. */
    const ckpt__nodes *nd = &ctx->nodes;
    int by_node = ctx->has_local && t->kind == CKPT_TIER_DURABLE && nd->nnodes > 0;
    uint32_t nslots = by_node ? nd->nnodes : g->n;
    uint32_t me = (uint32_t)ctx->rank;
    uint32_t mynode = by_node ? nd->node[me] : 0;
    uint32_t nlocal = by_node ? nd->first[mynode + 1] - nd->first[mynode] : 0;
    size_t m = r->n ? r->n : 1;
    by_size *v = malloc(m * sizeof *v);
    uint64_t *load = calloc((size_t)(nslots > nlocal ? nslots : nlocal), sizeof *load);
    uint32_t *slot = malloc(m * sizeof *slot);
    uint32_t *lslot = by_node ? malloc(m * sizeof *lslot) : NULL;
    XXH3_state_t *hs = XXH3_createState();
    if (!v || !load || !slot || (by_node && !lslot) || !hs) {
        free(v);
        free(load);
        free(slot);
        free(lslot);
        XXH3_freeState(hs);
        return ckpt__err_set(err, CKPT_ENOMEM, "out of memory assigning %u tensors", r->n);
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->n; i++) {
        writer[i] = ctx->rank;
        if (!r->v[i].sharded)
            v[n++] = (by_size){r->v[i].nbytes, r->v[i].name, i};
    }
    qsort(v, n, sizeof *v, cmp_size);
    XXH3_64bits_reset(hs);
    for (uint32_t k = 0; k < n; k++) {
        const ckpt__tensor *tt = &r->v[v[k].i];
        int32_t head[2] = {(int32_t)tt->dtype, tt->ndim};
        XXH3_64bits_update(hs, tt->name, strlen(tt->name) + 1);
        XXH3_64bits_update(hs, head, sizeof head);
        XXH3_64bits_update(hs, tt->shape, (size_t)tt->ndim * sizeof tt->shape[0]);
    }
    *set_hash = XXH3_64bits_digest(hs);
    XXH3_freeState(hs);
    spread(v, n, nslots, load, slot);
    if (by_node) {
        /* This node's local spread (the local tier's, over its ranks). */
        memset(load, 0, (size_t)nlocal * sizeof *load);
        spread(v, n, nlocal, load, lslot);
        for (uint32_t k = 0; k < n; k++)
            writer[v[k].i] = slot[k] == mynode
                                 ? (int32_t)nd->byrank[nd->first[mynode] + lslot[k]]
                                 : -1;
    } else {
        for (uint32_t k = 0; k < n; k++)
            writer[v[k].i] = (int32_t)ckpt__group_rank(g, slot[k]);
    }
    free(v);
    free(load);
    free(slot);
    free(lslot);
    return 0;
}

/* Step 1: the index of what this rank writes (its slices, the replicated
 * tensors assigned to it, its metadata), with ptrs and ids to match;
 * leaves are filled in later. */
static int build_index(ckpt_ctx *ctx, ckpt__job *job, save_state *s, ckpt__err *err)
{
    ckpt__index *idx = &s->idx;
    memset(idx, 0, sizeof *idx);
    idx->minor = CKPT__FORMAT_MINOR;
    idx->step = job->step;
    idx->world_size = (uint32_t)ctx->world;
    idx->chunk_bytes = ctx->cfg.chunk_bytes;
    save_uuid(ctx, job, idx->uuid);
    int32_t *writer = malloc((ctx->reg.n ? ctx->reg.n : 1) * sizeof *writer);
    if (!writer)
        return ckpt__err_set(err, CKPT_ENOMEM, "out of memory");
    uint64_t set_hash;
    int rc = assign_writers(ctx, s->t, writer, &set_hash, err);
    /* A done-record's created_unix field is free (the manifest's gets the
     * time at the commit): it carries the replicated set's hash. */
    idx->created_unix = (int64_t)set_hash;
    uint32_t n = job->meta.n;
    for (uint32_t i = 0; i < ctx->reg.n; i++)
        n += writer[i] == ctx->rank;
    idx->ranks = calloc(1, sizeof *idx->ranks);
    idx->entries = calloc(n ? n : 1, sizeof *idx->entries);
    s->ptrs = calloc(n ? n : 1, sizeof *s->ptrs);
    s->ids = calloc(n ? n : 1, sizeof *s->ids);
    if (!rc && (!idx->ranks || !idx->entries || !s->ptrs || !s->ids))
        rc = ckpt__err_set(err, CKPT_ENOMEM, "out of memory describing %u entries", n);
    if (rc) {
        free(writer);
        return rc;
    }
    idx->nranks = 1;
    idx->ranks[0].rank = (uint32_t)ctx->rank;
    uint64_t chunks = 0;
    job->bytes = 0;
    for (uint32_t i = 0, k = 0; i < ctx->reg.n + job->meta.n; i++) {
        if (i < ctx->reg.n && writer[i] != ctx->rank)
            continue;
        ckpt__entry *e = &idx->entries[k];
        const char *name;
        if (i < ctx->reg.n) {
            const ckpt__tensor *t = &ctx->reg.v[i];
            name = t->name;
            e->kind = CKPT__ENTRY_TENSOR;
            e->dtype = t->dtype;
            e->ndim = t->ndim;
            for (int d = 0; d < t->ndim; d++) {
                e->shape[d] = t->gshape[d];
                e->start[d] = t->start[d];
                e->count[d] = t->shape[d];
            }
            e->nbytes = t->nbytes;
            s->ptrs[k] = t->ptr;
            if (t->nbytes)
                s->ids[s->nids++] = k;
        } else {
            const ckpt__kv *kv = &job->meta.v[i - ctx->reg.n];
            name = kv->key;
            e->kind = CKPT__ENTRY_META;
            e->dtype = CKPT_BYTES;
            e->ndim = 1;
            e->shape[0] = e->count[0] = (int64_t)kv->len;
            e->nbytes = kv->len;
            s->ptrs[k] = kv->val;
        }
        e->name = strdup(name);
        if (!e->name) {
            free(writer);
            return ckpt__err_set(err, CKPT_ENOMEM, "out of memory describing '%s'", name);
        }
        e->rank = ctx->rank;
        e->file_off = CKPT__NO_OFFSET;
        e->chunk0 = chunks;
        e->nchunks = (uint32_t)((e->nbytes + idx->chunk_bytes - 1) / idx->chunk_bytes);
        chunks += e->nchunks;
        job->bytes += e->nbytes;
        idx->nentries++;
        k++;
    }
    free(writer);
    idx->nhashes = chunks;
    idx->hashes = calloc(chunks ? chunks : 1, sizeof *idx->hashes);
    if (!idx->hashes)
        return ckpt__err_set(err, CKPT_ENOMEM, "out of memory for %llu chunk hashes",
                             (unsigned long long)chunks);
    return 0;
}

/* Every copy of this save is queued: a backend that fences on the device
 * can order the caller's stream after them (idempotent). */
static void snapshot_queued(void *user)
{
    ckpt__job *job = user;
    ckpt_ctx *ctx = job->ctx;
    pthread_mutex_lock(&ctx->mu);
    if (!job->snap_queued) {
        job->snap_queued = 1;
        ctx->snap_unqueued--;
        pthread_cond_broadcast(&ctx->cv);
    }
    pthread_mutex_unlock(&ctx->mu);
}

/* Releases the fence for this save (idempotent). */
static void snapshot_done(void *user)
{
    ckpt__job *job = user;
    ckpt_ctx *ctx = job->ctx;
    snapshot_queued(job);
    pthread_mutex_lock(&ctx->mu);
    if (!job->snap_done) {
        job->snap_done = 1;
        ctx->snap_pending--;
        pthread_cond_broadcast(&ctx->cv);
    }
    pthread_mutex_unlock(&ctx->mu);
}

/* The pipeline copied every tensor (device thread, or the coordinator when
 * there is nothing to copy). */
static void snapshot_taken(void *user)
{
    ckpt__job *job = user;
    ckpt__emit(job->ctx, job, CKPT_EVENT_SNAPSHOT, 0, NULL);
    snapshot_done(job);
}

static void hash_meta(ckpt__index *idx, const void *const *data)
{
    for (uint32_t i = 0; i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        if (e->kind != CKPT__ENTRY_META)
            continue;
        for (uint32_t c = 0; c < e->nchunks; c++) {
            uint64_t off = (uint64_t)c * idx->chunk_bytes;
            uint64_t n = e->nbytes - off < idx->chunk_bytes ? e->nbytes - off : idx->chunk_bytes;
            idx->hashes[e->chunk0 + c] = XXH3_64bits((const uint8_t *)data[i] + off, n);
        }
    }
}

/* The layout cache of the tier a pass writes: the local and durable
 * indexes differ, so one cache would be rebuilt by HDF5 every pass. */
static ckpt__layout **tier_layout(ckpt_ctx *ctx, const ckpt__tier *t)
{
    return t->kind == CKPT_TIER_LOCAL ? &ctx->local_layout : &ctx->layout;
}

/* Steps 3 and 4 of the file comment: layout, then the data. */
static int write_rank_file(ckpt_ctx *ctx, ckpt__job *job, save_state *s, ckpt__err *err)
{
    const char *dir = s->t->dir;
    int rc = ckpt__commit_begin(dir, job->step, s->idx.uuid, s->t->g.n > 1, s->partial,
                                sizeof s->partial, &s->dfd, err);
    if (rc)
        return rc;
    rc = ckpt__path_join(s->ppath, dir, s->partial, err);
    if (!rc)
        rc = ckpt__path_join(s->path, s->ppath, s->fname, err);
    if (!rc)
        rc = ckpt__fault_check(&ctx->fault, CKPT__FAULT_LAYOUT, "create rank file layout", err);
    if (rc)
        return rc;
    uint64_t data_end; /* unused: big datasets are reserved one by one */
    int fd = -1;       /* the cached file's, for the writer */
    double t0 = ckpt__now_s(), c0 = ckpt__thread_cpu_s();
    s->img = ckpt__layout_find(*tier_layout(ctx, s->t), &s->idx, (uint32_t)ctx->rank);
    if (s->img) {
        rc = ckpt__rankfile_image_write(s->path, s->img, &s->idx, (uint32_t)ctx->rank,
                                        (const void *const *)s->ptrs, &fd, err);
    } else {
        ckpt__h5_enter();
        rc = ckpt__rankfile_create(s->path, &s->idx, (uint32_t)ctx->rank,
                                   (const void *const *)s->ptrs, &data_end, &s->rf, err);
        ckpt__h5_leave();
        /* The writer's descriptor without a second lookup; -1 (no
         * descriptor left) makes the writer open the path. */
        if (!rc)
            fd = ckpt__rankfile_dup_fd(s->rf);
    }
    /* Under ev_mu: ckpt__emit reads it from the copy thread too. */
    double dl = ckpt__thread_cpu_s() - c0;
    pthread_mutex_lock(&ctx->ev_mu);
    job->layout_cpu_s += dl;
    pthread_mutex_unlock(&ctx->ev_mu);
    ckpt__logf(&ctx->log, CKPT_LOG_DEBUG, "step %lld: layout of %u entries (%s) in %.3f s",
               (long long)job->step, s->idx.nentries, s->img ? "cached" : "built",
               ckpt__now_s() - t0);
    if (rc)
        return rc;
    if (s->img)
        ctx->layout_cached++;
    else
        ctx->layout_built++;
    hash_meta(&s->idx, (const void *const *)s->ptrs);
    rc = ckpt__writer_file_open(&ctx->eng, s->path, CKPT__WF_WRITE, fd, &s->wf, err);
    /* Reserve the big datasets: their O_DIRECT writes then never extend the
     * file, and a full disk fails here, before any data moves.  Small ones
     * stay sparse-friendly (they share HDF5's blocks with metadata). */
    for (uint32_t i = 0; !rc && i < s->idx.nentries; i++) {
        const ckpt__entry *e = &s->idx.entries[i];
        if (e->kind == CKPT__ENTRY_TENSOR && ckpt__rankfile_data_aligned(e->nbytes) &&
            ckpt__writer_allocate(&ctx->eng, s->wf, e->file_off, e->nbytes, err) != 0)
            rc = ckpt__err_prefix(err, "%s", s->path);
    }
    if (rc)
        return rc;
    return ckpt__pipe_set_file(&s->pipe, s->wf);
}

/* The rank file's size and metadata hash into the index (after its fsync).
 * Written from the cached layout: the cache's, computed from the built
 * file's bytes on disk (layout.h).  Built by HDF5: read back from the page
 * cache after HDF5 closed it, so the bytes hashed are its final ones, and
 * kept, with the layout, for the next save. */
static int hash_rank_file(ckpt_ctx *ctx, ckpt__job *job, save_state *s, ckpt__err *err)
{
    ckpt__rankrec *rr = &s->idx.ranks[0];
    if (s->img) {
        rr->file_bytes = s->img->file_bytes;
        rr->meta_hash = ckpt__meta_hash_tag(s->img->meta_hash);
        return 0;
    }
    struct stat st; /* of the file the writer holds open: no lookup */
    if (fstat(s->wf->fd, &st) != 0)
        return ckpt__err_errno(err, errno, "stat %s", s->path);
    ckpt__rankfile_image img;
    int rc = ckpt__rankfile_image_read(s->path, s->wf->fd, &s->idx, (uint32_t)ctx->rank,
                                       (uint64_t)st.st_size, &img, err);
    if (rc)
        return rc;
    rr->file_bytes = (uint64_t)st.st_size;
    rr->meta_hash = ckpt__meta_hash_tag(img.meta_hash);
    ckpt__err e2;
    ckpt__err_clear(&e2);
    if (ckpt__layout_keep(tier_layout(ctx, s->t), &s->idx, (uint32_t)ctx->rank, &img, &e2) != 0)
        ckpt__logf(&ctx->log, CKPT_LOG_WARN, "step %lld: %s (the next save builds its layout "
                   "again)", (long long)job->step, e2.msg);
    return 0;
}

/* A group leader's note on a save's outcome to each other rank of its
 * group (comm.h; they check step, uuid and tier: a note of a save they
 * gave up is skipped).  Notes go from rank 0 only (comm.h; MPI refuses
 * others), so rank 0 sends DIR's and its node's local folder's: a rank
 * there may hear of one save twice; another node's ranks learn their
 * local verdict from the folder. */
typedef struct verdict_note {
    int64_t step;
    uint8_t uuid[16];
    int32_t code; /* 0: committed (renamed, the tier's folder fsynced) */
    int32_t tier; /* ckpt_tier */
    char text[CKPT__NOTE_BYTES - 32];
} verdict_note;
_Static_assert(sizeof(verdict_note) == CKPT__NOTE_BYTES, "a note is CKPT__NOTE_BYTES long");

/* The first look in the folder while a rank waits for rank 0's note, and
 * the first gap between looks, which doubles: a note lost (rank 0 died
 * after the commit, a send failed) costs seconds, not the commit timeout,
 * and a save of T seconds costs log2(T / 5 s) lookups.  Rank 0 reads every
 * rank's done-record, so a healthy wait grows with the world: the first
 * look comes NOTE_LOOK_PER_RANK_S per rank later (4,096 ranks: 21 s). */
#define NOTE_LOOK_FIRST_S 5.0
#define NOTE_LOOK_PER_RANK_S 0.004

static void send_verdict(ckpt_ctx *ctx, ckpt__job *job, const save_state *s, int rc,
                         const ckpt__err *why)
{
    verdict_note n;
    memset(&n, 0, sizeof n);
    n.step = job->step;
    memcpy(n.uuid, s->idx.uuid, 16);
    n.code = rc;
    n.tier = (int32_t)s->t->kind;
    if (rc) /* cut to fit; the memset left the terminator */
        memcpy(n.text, why->msg, strnlen(why->msg, sizeof n.text - 1));
    for (uint32_t k = 1; k < s->t->g.n; k++) {
        int r = (int)ckpt__group_rank(&s->t->g, k);
        ckpt__err e;
        if (ckpt__comm_note_send(ctx->comm, r, &n, &e) != 0) {
            ckpt__logf(&ctx->log, CKPT_LOG_WARN,
                       "step %lld: note to rank %d and later ones not sent (%s); they look in "
                       "the folder",
                       (long long)job->step, r, e.msg);
            break;
        }
    }
}

/* Ranks other than the group's leader: its verdict, from its note where
 * the comm carries them and the leader is rank 0, with a look in the
 * folder now and then; from the folder alone otherwise (commit.c, inv. 11). */
static int wait_verdict(ckpt_ctx *ctx, ckpt__job *job, save_state *s, const ckpt__fileid *id,
                        ckpt__err *err)
{
    uint32_t rank = (uint32_t)ctx->rank;
    const char *dir = s->t->dir;
    double timeout = ctx->cfg.commit_timeout_s, t0 = ckpt__now_s();
    double look_at = NOTE_LOOK_FIRST_S + NOTE_LOOK_PER_RANK_S * ctx->world;
    double gap = look_at;
    /* Notes come from rank 0 only (comm.h): another node's leader is
     * heard of through the folder alone. */
    while (ctx->notes && s->leader == 0) {
        double el = ckpt__now_s() - t0;
        if (el > timeout)
            return ckpt__err_set(err, CKPT_ETIMEDOUT,
                                 "no commit of step %lld by rank %u within %.1f s "
                                 "(commit_timeout_s)",
                                 (long long)job->step, s->leader, timeout);
        double until = look_at < timeout ? look_at : timeout;
        verdict_note n;
        ckpt__err nerr;
        int got = ckpt__comm_note_recv(ctx->comm, &ctx->fault, &n, until > el ? until - el : 0,
                                       &nerr);
        if (got < 0) {
            ctx->notes = 0;
            ckpt__logf(&ctx->log, CKPT_LOG_WARN,
                       "step %lld: rank 0's notes failed (%s); the verdicts of this and later "
                       "saves come from the folder",
                       (long long)job->step, nerr.msg);
            return ckpt__commit_wait_verdict(s->dfd, dir, job->step, rank, id, timeout - el,
                                             err);
        }
        if (got == 1 && n.step == job->step && memcmp(n.uuid, s->idx.uuid, 16) == 0 &&
            n.tier == (int32_t)s->t->kind) {
            if (n.code == 0)
                return 0;
            n.text[sizeof n.text - 1] = 0;
            return ckpt__err_set(err, n.code < 0 ? n.code : CKPT_EIO,
                                 "rank %u abandoned step %lld: %s", s->leader,
                                 (long long)job->step, n.text[0] ? n.text : "(no message)");
        }
        if (got == 0 && ckpt__now_s() - t0 >= look_at) {
            int rc = ckpt__commit_verdict_look(s->dfd, dir, job->step, rank, id, 1, err);
            if (rc != CKPT__VERDICT_PENDING)
                return rc;
            gap *= 2;
            look_at += gap;
        }
    }
    return ckpt__commit_wait_verdict(s->dfd, dir, job->step, rank, id,
                                     ctx->cfg.commit_timeout_s, err);
}

/* Step 5: the file closed, durability, the metadata hash, done-record,
 * commit. */
static int finish_rank_file(ckpt_ctx *ctx, ckpt__job *job, save_state *s, ckpt__err *err)
{
    ckpt__index *idx = &s->idx;
    for (uint32_t i = 0; i < idx->nentries; i++)
        idx->entries[i].hash = ckpt__entry_hash(&idx->entries[i], idx->hashes +
                                                                     idx->entries[i].chunk0);
    idx->ranks[0].root = ckpt__rank_root(idx, (uint32_t)ctx->rank);
    /* The fault site of the file's last step, on both paths (a cached file
     * has nothing left to add). */
    int rc = ckpt__fault_check(&ctx->fault, CKPT__FAULT_FINISH, "finish rank file", err);
    double t0 = ckpt__now_s(), c0 = ckpt__thread_cpu_s();
    if (!rc && s->rf) {
        ckpt__h5_enter();
        rc = ckpt__rankfile_finish(s->rf, idx, (uint32_t)ctx->rank, err);
        ckpt__h5_leave();
        s->rf = NULL;
    }
    double c1 = ckpt__thread_cpu_s();
    double t1 = ckpt__now_s();
    if (!rc && ckpt__writer_sync(&ctx->eng, s->wf, err) != 0)
        rc = ckpt__err_prefix(err, "%s", s->path);
    double th0 = ckpt__now_s(), c2 = ckpt__thread_cpu_s();
    if (!rc)
        rc = hash_rank_file(ctx, job, s, err);
    double dl = (c1 - c0) + (ckpt__thread_cpu_s() - c2);
    pthread_mutex_lock(&ctx->ev_mu);
    job->layout_cpu_s += dl;
    pthread_mutex_unlock(&ctx->ev_mu);
    double th1 = ckpt__now_s();
    ckpt__fileid id;
    if (!rc) {
        rc = ckpt__commit_done_record(s->dfd, s->ppath, idx, (uint32_t)ctx->rank, &ctx->fault, &id,
                                      err);
        s->recorded = !rc;
    }
    double t2 = ckpt__now_s(), t3 = t2;
    if (!rc && s->last)
        ckpt__emit(ctx, job, CKPT_EVENT_DURABLE, 0, NULL);
    if (!rc && (uint32_t)ctx->rank == s->leader) {
        if (s->t->g.n > 1)
            rc = ckpt__commit_wait_records(s->dfd, s->ppath, &s->t->g,
                                           ctx->cfg.commit_timeout_s, err);
        t3 = ckpt__now_s();
        if (!rc)
            rc = ckpt__commit_seal(s->dfd, s->t->dir, s->partial, job->step, &s->t->g,
                                   &ctx->fault, &ctx->log, err);
    } else if (!rc) {
        rc = wait_verdict(ctx, job, s, &id, err);
    }
    ckpt__logf(&ctx->log, CKPT_LOG_DEBUG,
               "step %lld%s: closing the rank file %.3f s, metadata hash %.3f s, fsync + "
               "done-record %.3f s, waiting for ranks %.3f s, commit %.3f s",
               (long long)job->step, s->t->kind == CKPT_TIER_LOCAL ? " (local)" : "", t1 - t0, th1 - th0, (t2 - t1) - (th1 - th0), t3 - t2,
               ckpt__now_s() - t3);
    return rc;
}

/* A drain's source: each tensor entry of s->idx with data found in the
 * local index (same name, size and chunking: assign_writers makes DIR's
 * entries a subset of the local file's, in the same order), its offset
 * there and its leaves; then the local file opened for reading. */
static int plan_drain(ckpt_ctx *ctx, save_state *s, const drain_src *src, ckpt__err *err)
{
    const ckpt__index *li = &src->idx;
    ckpt__index *idx = &s->idx;
    s->src_off = calloc(idx->nentries ? idx->nentries : 1, sizeof *s->src_off);
    s->expect = calloc(idx->nhashes ? idx->nhashes : 1, sizeof *s->expect);
    if (!s->src_off || !s->expect)
        return ckpt__err_set(err, CKPT_ENOMEM, "out of memory planning the drain");
    uint32_t j = 0;
    for (uint32_t k = 0; k < s->nids; k++) {
        const ckpt__entry *e = &idx->entries[s->ids[k]];
        while (j < li->nentries && (li->entries[j].kind != CKPT__ENTRY_TENSOR ||
                                    strcmp(li->entries[j].name, e->name) != 0))
            j++;
        if (j == li->nentries)
            return ckpt__err_set(err, CKPT_EMISMATCH,
                                 "drain: '%s' is not in the local rank file %s", e->name,
                                 src->path);
        const ckpt__entry *le = &li->entries[j];
        if (le->nbytes != e->nbytes || le->nchunks != e->nchunks ||
            li->chunk_bytes != idx->chunk_bytes)
            return ckpt__err_set(err, CKPT_EMISMATCH,
                                 "drain: '%s' differs in size in the local rank file %s",
                                 e->name, src->path);
        s->src_off[s->ids[k]] = le->file_off;
        memcpy(s->expect + e->chunk0, li->hashes + le->chunk0, e->nchunks * sizeof *s->expect);
        s->ptrs[s->ids[k]] = NULL; /* the caller's tensors are not read again */
    }
    return ckpt__writer_file_open(&ctx->eng, src->path, CKPT__WF_READ, -1, &s->src_wf, err);
}

/* How a pass runs (run_save). */
typedef struct pass_opts {
    int last;              /* the job's last pass: it releases the fence (so a
                              pass before it copies from tensors the caller
                              cannot modify yet) and emits the events */
    drain_src *keep;       /* when the pass commits, its index and committed
                              file go here (the drain's source) */
    const drain_src *src;  /* a drain: the tensors come from this source */
    const ckpt__err *fail; /* the pass only takes part in the commit, to fail
                              it with this error at once (run_job) */
} pass_opts;

/* One pass of a save: its files into tier t's folder, committed there by
 * t's group, as o says. */
static int run_save(ckpt_ctx *ctx, ckpt__job *job, const ckpt__tier *t, pass_opts o,
                    ckpt__err *err)
{
    int last = o.last;
    drain_src *keep = o.keep;
    const drain_src *src = o.src;
    save_state *s = calloc(1, sizeof *s);
    if (!s)
        return ckpt__err_set(err, CKPT_ENOMEM, "out of memory");
    s->dfd = -1;
    s->t = t;
    s->leader = ckpt__group_rank(&t->g, 0);
    s->last = last;
    double c0 = ckpt__thread_cpu_s();
    ckpt__rank_file_name((uint32_t)ctx->rank, s->fname);
    int rc = build_index(ctx, job, s, err);
    if (last)
        job->fence_tier = t->kind;
    if (last && !job->started_sent) {
        job->started_sent = 1;
        ckpt__emit(ctx, job, CKPT_EVENT_STARTED, 0, NULL);
    }
    if (!rc && o.fail) {
        rc = ckpt__commit_begin(t->dir, job->step, s->idx.uuid, t->g.n > 1, s->partial,
                                sizeof s->partial, &s->dfd, err);
        if (!rc)
            rc = ckpt__err_set(err, o.fail->code, "%s", o.fail->msg);
    }
    if (!rc && src)
        rc = plan_drain(ctx, s, src, err);
    if (!rc && !o.fail) {
        rc = ckpt__pipe_init(&s->pipe, CKPT__PIPE_SAVE, &ctx->eng, &s->idx, s->ptrs, s->ids,
                             s->nids, s->fname, err);
        s->pipe_ready = 1;
    }
    if (!rc && src)
        rc = ckpt__pipe_set_source(&s->pipe, s->src_wf, src->path, s->src_off, s->expect,
                                   err);
    if (!rc) {
        /* Step 2 before 3: the snapshot does not wait for HDF5. */
        if (last) {
            s->pipe.on_snapshot = snapshot_taken;
            s->pipe.on_queued = snapshot_queued;
            s->pipe.snap_user = job;
        }
        ckpt__pipe_start(&s->pipe);
        rc = write_rank_file(ctx, job, s, err);
        if (rc)
            ckpt__pipe_fail(&s->pipe, err);
        double t0 = ckpt__now_s();
        int prc = ckpt__pipe_run(&s->pipe);
        ckpt__logf(&ctx->log, CKPT_LOG_DEBUG, "step %lld: data pipeline %.3f s",
                   (long long)job->step, ckpt__now_s() - t0);
        if (!rc && prc) {
            *err = s->pipe.err;
            rc = prc;
        }
    }
    if (!rc && !o.fail)
        rc = finish_rank_file(ctx, job, s, err);
    if (s->rf) {
        ckpt__h5_enter();
        ckpt__rankfile_abort(s->rf);
        ckpt__h5_leave();
    }
    if (s->wf)
        ckpt__writer_file_close(&ctx->eng, s->wf);
    if (s->src_wf)
        ckpt__writer_file_close(&ctx->eng, s->src_wf);
    /* The leader removes a failed save's folder; another rank leaves its
     * failure mark there instead, so the leader stops waiting for it. */
    int leads = (uint32_t)ctx->rank == s->leader;
    if (rc && s->partial[0] && leads && t->g.n > 1)
        ckpt__commit_abandon_shared(s->dfd, t->dir, s->partial, &t->g,
                                    ctx->cfg.commit_timeout_s, err, &ctx->log);
    else if (rc && s->partial[0] && leads)
        ckpt__commit_abandon(t->dir, s->partial, &ctx->log);
    else if (rc && s->partial[0] && !s->recorded)
        ckpt__commit_mark_failed(s->dfd, (uint32_t)ctx->rank, err);
    /* After the commit (folder fsynced) or once the folder is gone. */
    if (leads && t->g.n > 1 && ctx->notes && s->leader == 0)
        send_verdict(ctx, job, s, rc, err);
    if (s->dfd >= 0)
        close(s->dfd);
    double hc = s->pipe_ready ? (double)atomic_load(&s->pipe.hash_cpu_ns) * 1e-9 : 0;
    job->cpu_s[t->kind] += ckpt__thread_cpu_s() - c0 + hc;
    if (s->pipe_ready)
        ckpt__pipe_destroy(&s->pipe);
    ckpt__err perr;
    if (!rc && keep && ckpt__path_step(keep->path, t->dir, job->step, s->fname, &perr) == 0) {
        keep->idx = s->idx; /* moved */
        memset(&s->idx, 0, sizeof s->idx);
    } else if (keep) {
        keep->path[0] = 0; /* no source: nothing to drain */
    }
    ckpt__index_free(&s->idx);
    free(s->src_off);
    free(s->expect);
    free(s->ptrs);
    free(s->ids);
    free(s);
    return rc;
}



/* ckpt_close's drain (docs/ARCHITECTURE.md, "Tiers"): the newest save
 * was local-only, so every rank drains it into DIR now, as run_job drains
 * a durable save, from the committed local file job->kept.  Every rank
 * takes part (the decision is the cadence's, the same on every rank); one
 * that cannot drain fails the save in DIR at once: its local pass of this
 * step did not commit, or its registrations changed since the save (DIR's
 * entries come from the registry).  DIR keeps its newest step then. */
static int run_close_drain(ckpt_ctx *ctx, ckpt__job *job, ckpt__err *err)
{
    job->committed = 0;
    int rc;
    if (job->kept && job->reg_seen == ctx->reg_changes) {
        rc = run_save(ctx, job, &ctx->durable, (pass_opts){.src = job->kept}, err);
        if (rc)
            ckpt__err_prefix(err, "drain of %s", job->kept->path);
    } else {
        ckpt__err why;
        if (job->kept)
            ckpt__err_set(&why, CKPT_ESTATE,
                          "rank %d's tensors were registered or unregistered since the save",
                          ctx->rank);
        else
            ckpt__err_set(&why, CKPT_EIO, "rank %d has no committed local copy of the step",
                          ctx->rank);
        rc = run_save(ctx, job, &ctx->durable, (pass_opts){.fail = &why}, err);
    }
    if (!rc)
        job->committed = 1 << CKPT_TIER_DURABLE;
    return rc;
}

/* A job's passes (docs/ARCHITECTURE.md, "Tiers"): without the local tier
 * one, into DIR.  With it, the local folder first, then with replicas a
 * replication round (replica.c, which never fails the job), then, for a
 * durable save, the drain: DIR's files copied from this rank's committed
 * local file (its entries a subset of the local ones, assign_writers),
 * every chunk checked against the local file's hashes, committed in DIR
 * by today's protocol.  The local pass is then the job's last pass for
 * the fence: the snapshot is taken once, and the caller runs again while
 * the local file is written and drained.  When a drain is impossible
 * (ctx->drain_off: the last local pass failed; or this one failed before
 * its snapshot was released) DIR's pass copies from the tensors, and the
 * fence waits for it, as the tier that must not miss a save; a local pass
 * that fails after releasing the fence fails the save's durable copy too
 * (the tensors may have changed), and the next durable saves copy from
 * the tensors until a local pass commits again.  The job fails when either
 * pass does, with the first error. */
static int run_job(ckpt_ctx *ctx, ckpt__job *job, ckpt__err *err)
{
    if (job->close_drain)
        return run_close_drain(ctx, job, err);
    job->committed = 0;
    job->t_local_ns = 0;
    job->t_repl_ns = 0;
    if (!ctx->has_local) {
        int rc = run_save(ctx, job, &ctx->durable, (pass_opts){.last = 1}, err);
        job->committed = rc ? 0 : 1 << CKPT_TIER_DURABLE;
        return rc;
    }
    int drain = job->durable && !ctx->drain_off;
    /* A local-only save keeps its source too, for ckpt_close's drain. */
    drain_src *src = drain || !job->durable ? calloc(1, sizeof *src) : NULL;
    if (drain && !src)
        drain = 0;
    int rc = run_save(ctx, job, &ctx->local,
                      (pass_opts){.last = !job->durable || drain, .keep = src}, err);
    if (rc) {
        ckpt__err_prefix(err, "local tier %s", ctx->local_dir);
        ctx->drain_off = 1;
    } else {
        ctx->drain_off = 0;
        job->committed |= 1 << CKPT_TIER_LOCAL;
        job->t_local_ns = ckpt__now_ns(); /* the COMMITTED event's local_commit_s */
    }
    /* Every rank, whatever its local pass returned, so that every rank
     * takes part in every round (replica.c). */
    if (ctx->cfg.replicas > 0) {
        uint8_t uuid[16];
        save_uuid(ctx, job, uuid);
        int rr = ckpt__replica_round(ctx, job->step, uuid, rc == 0);
        if (rr > 0)
            job->committed |= 1 << CKPT_TIER_REPLICA;
        if (rr >= 0)
            job->t_repl_ns = ckpt__now_ns(); /* the COMMITTED event's replicated_s */
    }
    if (!job->durable) {
        if (!rc && src && src->path[0])
            job->kept = src;
        else
            drain_src_free(src);
        return rc;
    }
    ckpt__err e2;
    ckpt__err_clear(&e2);
    int rc2;
    pthread_mutex_lock(&ctx->mu);
    int released = job->snap_done;
    pthread_mutex_unlock(&ctx->mu);
    if (!rc && drain && src->path[0]) {
        rc2 = run_save(ctx, job, &ctx->durable, (pass_opts){.src = src}, &e2);
        if (rc2)
            ckpt__err_prefix(&e2, "drain of %s", src->path);
    } else if (!drain || !released) {
        rc2 = run_save(ctx, job, &ctx->durable, (pass_opts){.last = 1}, &e2);
    } else {
        /* Every rank of the world takes part in DIR's commit: this one
         * leaves its failure there, so rank 0 gives the save up at once. */
        ckpt__err why;
        ckpt__err_set(&why, CKPT_EIO,
                      "rank %d's local pass %s after the snapshot was released: nothing to "
                      "drain", ctx->rank, rc ? "failed" : "left no file");
        rc2 = run_save(ctx, job, &ctx->durable, (pass_opts){.fail = &why}, &e2);
    }
    drain_src_free(src);
    if (!rc2)
        job->committed |= 1 << CKPT_TIER_DURABLE;
    else if (rc)
        ckpt__logf(&ctx->log, CKPT_LOG_WARN, "step %lld: the durable save failed too: %s",
                   (long long)job->step, e2.msg);
    else
        *err = e2;
    return rc ? rc : rc2;
}

void *ckpt__coordinator_main(void *arg)
{
    ckpt_ctx *ctx = arg;
    pthread_mutex_lock(&ctx->mu);
    for (;;) {
        while (!ctx->qhead && !ctx->stop)
            pthread_cond_wait(&ctx->cv, &ctx->mu);
        ckpt__job *job = ctx->qhead;
        if (!job)
            break;
        ctx->qhead = job->next;
        if (!ctx->qhead)
            ctx->qtail = NULL;
        ctx->running_step = job->step;
        pthread_mutex_unlock(&ctx->mu);

        ckpt__err_clear(&job->err);
        int rc = run_job(ctx, job, &job->err);
        if (job->close_drain) {
            /* No ticket and no events: ckpt_close returns the result. */
            if (rc)
                ckpt__err_prefix(&job->err, "ckpt_close: step %lld into %s",
                                 (long long)job->step, ctx->dir);
            else
                ckpt__logf(&ctx->log, CKPT_LOG_INFO,
                           "ckpt_close: step %lld drained into %s", (long long)job->step,
                           ctx->dir);
            pthread_mutex_lock(&ctx->mu);
            if (!rc && ctx->rank == 0)
                ckpt__janitor_request(&ctx->jan, job->step);
            ctx->close_rc = rc;
            ctx->close_err = job->err;
            ctx->inflight--;
            ctx->running_step = -1;
            pthread_cond_broadcast(&ctx->cv);
            pthread_mutex_unlock(&ctx->mu);
            ckpt__job_free(job);
            pthread_mutex_lock(&ctx->mu);
            continue;
        }
        if (rc) {
            ckpt__err_prefix(&job->err, "save step %lld", (long long)job->step);
            /* Before the event: once event_fn sees FAILED, the caller's
             * next ckpt_save or ckpt_fence reports it (ckpt.h). */
            if (!job->wanted) {
                pthread_mutex_lock(&ctx->mu);
                ckpt__tickets_note_unobserved(&ctx->tix, &job->err);
                pthread_mutex_unlock(&ctx->mu);
            }
            ckpt__emit(ctx, job, CKPT_EVENT_FAILED, rc, job->err.msg);
        } else {
            ckpt__emit(ctx, job, CKPT_EVENT_COMMITTED, 0, NULL);
        }
        snapshot_done(job); /* a failed save may never have copied everything */


        /* Retention (deleting old checkpoints can take seconds) goes to the
         * janitor thread, so it neither delays this ticket nor the next
         * save's snapshot. */
        pthread_mutex_lock(&ctx->mu);
        if ((job->committed & (1 << CKPT_TIER_DURABLE)) && ctx->rank == 0)
            ckpt__janitor_request(&ctx->jan, job->step);
        if ((job->committed & (1 << CKPT_TIER_LOCAL)) &&
            (uint32_t)ctx->rank == ckpt__group_rank(&ctx->local.g, 0))
            ckpt__janitor_request(&ctx->ljan, job->step);
        ckpt__policy_note_done(ctx, job); /* with inflight, under ctx->mu */
        ckpt__tickets_finish(&ctx->tix, job->ticket, rc, job->err.msg);
        /* Only the newest save can be ckpt_close's drain. */
        ckpt__job *old = ctx->close_job;
        ctx->close_job = job->kept ? job : NULL;
        ctx->inflight--;
        ctx->running_step = -1;
        pthread_cond_broadcast(&ctx->cv);
        pthread_mutex_unlock(&ctx->mu);
        ckpt__job_free(old);
        if (!job->kept)
            ckpt__job_free(job);
        pthread_mutex_lock(&ctx->mu);
    }
    pthread_mutex_unlock(&ctx->mu);
    return NULL;
}
