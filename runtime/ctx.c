/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The public API's entry points: argument checks, the context's lifecycle,
 * registration, metadata, and the save/fence/poll/wait entry points, which
 * queue jobs for the coordinator thread (save.c) and consult the ticket
 * table (tickets.c, which states its invariants).  Restore lives in
 * restore.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/manifest.h"
#include "io/names.h"
#include "io/paths.h"
#include "runtime/backend.h"
#include "runtime/catalog.h"
#include "runtime/config.h"
#include "runtime/context.h"

/* ---- helpers ---------------------------------------------------------------- */

static int no_ctx(const char *fn)
{
    return ckpt__err_set(ckpt__thread_err(), CKPT_EINVAL, "%s: ctx is NULL", fn);
}

static int make_dirs(const char *path, ckpt__err *err)
{
    char buf[CKPT__PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return ckpt__err_set(err, CKPT_EINVAL, "folder path too long");
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return ckpt__err_errno(err, errno, "create folder %s", buf);
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return ckpt__err_errno(err, errno, "folder %s", path);
    if (!S_ISDIR(st.st_mode))
        return ckpt__err_set(err, CKPT_EINVAL, "%s is not a folder", path);
    if (access(path, W_OK | X_OK) != 0)
        return ckpt__err_errno(err, errno, "folder %s is not writable", path);
    return 0;
}

/* ---- lifecycle ---------------------------------------------------------------- */

static void destroy(ckpt_ctx *ctx)
{
    pthread_mutex_lock(&ctx->mu);
    ctx->stop = 1;
    pthread_cond_broadcast(&ctx->cv);
    pthread_mutex_unlock(&ctx->mu);
    /* The coordinator first (it may still request retention), then the
     * janitor, which finishes a pending pass before it sees stop. */
    if (ctx->coord_running)
        pthread_join(ctx->coord, NULL);
    ckpt__janitor_stop(&ctx->jan);
    ckpt__janitor_stop(&ctx->ljan);
    ckpt__job_free(ctx->close_job);
    ckpt__nodes_free(&ctx->nodes);
    ckpt__policy_close(ctx);
    ckpt__engine_close(&ctx->eng);
    ckpt__layout_drop(&ctx->layout);
    ckpt__layout_drop(&ctx->local_layout);
    ckpt__registry_free(&ctx->reg);
    ckpt__meta_free(&ctx->meta);
    ckpt__providers_free(&ctx->prov);
    ckpt__tickets_free(&ctx->tix);
    if (ctx->comm)
        ckpt__comm_destroy(ctx->comm);
    ckpt__replicas_free(&ctx->repl); /* after the comm: it may read them */
    pthread_cond_destroy(&ctx->cv);
    pthread_mutex_destroy(&ctx->mu);
    pthread_mutex_destroy(&ctx->ev_mu);
    ckpt__log_destroy(&ctx->log);
    free(ctx->pol.file);
    free(ctx->local_dir);
    free(ctx->node_name);
    free(ctx->dir);
    free(ctx);
}

/* A comm from another build, or one whose factory failed (comm.h), is
 * refused before anything else: the caller asked for several ranks, and
 * going on as a single rank would split the job silently.  A comm of
 * another interface version is not destroyed: past its version its layout
 * is unknown, so even its destroy method cannot be trusted. */
static int comm_refused(ckpt_comm *comm, ckpt__err *err)
{
    if (comm->version != CKPT__COMM_VERSION || !comm->m ||
        comm->m->version != CKPT__COMM_VERSION)
        return ckpt__err_set(err, CKPT_EINVAL,
                             "ckpt_open: the comm is for comm interface version %d, this "
                             "libckpt has %d (a backend library of another build?)",
                             comm->version == CKPT__COMM_VERSION && comm->m
                                 ? comm->m->version
                                 : comm->version,
                             CKPT__COMM_VERSION);
    if (!comm->err.code)
        return 0;
    int rc = ckpt__err_set(err, comm->err.code, "ckpt_open: %s", comm->err.msg);
    ckpt__comm_destroy(comm);
    return rc;
}

/* The local tier (every rank reaches it, or none: the open's allreduce
 * agreed): the node layout (a collective), local_dir made on every rank,
 * cleaned and given its janitor by the node's leader, then one allreduce
 * so that a failure anywhere fails the open everywhere and no rank saves
 * into local_dir before its leader cleaned it. */
static int tiers_open(ckpt_ctx *ctx, ckpt__err *err)
{
    char name[CKPT__NODE_NAME_MAX];
    int rc = ckpt__node_name(ctx->node_name, name, err);
    ckpt__err gerr;
    ckpt__err_clear(&gerr);
    /* A rank without a name sends "", which the layout refuses for all. */
    int grc = ckpt__nodes_gather(ctx->comm, &ctx->fault, rc ? "" : name, &ctx->nodes, &gerr);
    if (!rc && grc) {
        rc = grc;
        *err = gerr;
    }
    uint32_t me = (uint32_t)ctx->rank;
    if (!rc) {
        uint32_t node = ctx->nodes.node[me];
        const uint32_t *first = ctx->nodes.first;
        ctx->local = (ckpt__tier){ctx->local_dir,
                                  {(uint32_t)ctx->world, first[node + 1] - first[node],
                                   ctx->nodes.byrank + first[node]},
                                  CKPT_TIER_LOCAL};
        ctx->has_local = 1;
        rc = make_dirs(ctx->local_dir, err);
    }
    if (!rc && ctx->cfg.replicas)
        rc = ckpt__nodes_check_replicas(&ctx->nodes, ctx->cfg.replicas, err);
    if (!rc && ctx->cfg.replicas && !ckpt__comm_has_exchange(ctx->comm))
        rc = ckpt__err_set(err, CKPT_EINVAL,
                           "config: replicas is %d, but the %s comm offers no exchange to send "
                           "them (MPI: initialize with MPI_THREAD_MULTIPLE)",
                           ctx->cfg.replicas, ctx->comm->m->name);
    if (!rc && ckpt__group_rank(&ctx->local.g, 0) == me) {
        rc = ckpt__catalog_cleanup(ctx->local_dir, &ctx->log, err);
        /* The replicas this node's ranks keep: their crashed landings. */
        if (!rc)
            rc = ckpt__replica_cleanup(ctx->local_dir, &ctx->log, err);
        ckpt__retention rules = {ctx->cfg.local_keep_last, 0, 0};
        if (!rc)
            rc = ckpt__janitor_start(&ctx->ljan, ctx->local_dir, &rules, &ctx->log, err);
    }
    int64_t bad = rc ? 1 : 0;
    ckpt__err cerr;
    int crc = grc ? 0 : ckpt__comm_allreduce(ctx->comm, &ctx->fault, &bad, 1, CKPT__MAX, &cerr);
    if (!rc && crc) {
        rc = crc;
        *err = cerr;
    }
    if (!rc && bad)
        rc = ckpt__err_set(err, CKPT_ECOMM, "another rank failed to open local_dir");
    if (!rc)
        ckpt__logf(&ctx->log, CKPT_LOG_INFO,
                   "local tier %s: node %u of %u ('%s', %u rank(s)), durable every %d "
                   "save(s), %d replica(s)",
                   ctx->local_dir, ctx->nodes.node[me], ctx->nodes.nnodes, name,
                   ctx->local.g.n, ctx->cfg.durable_every, ctx->cfg.replicas);
    return rc;
}

int ckpt_open(const ckpt_config *cfg, ckpt_comm *comm, ckpt_ctx **out)
{
    ckpt__err *err = ckpt__thread_err();
    ckpt__err_clear(err);
    if (out)
        *out = NULL;
    if (comm && comm_refused(comm, err) != 0)
        return err->code;
    if (!out || !cfg) {
        if (comm)
            ckpt__comm_destroy(comm);
        return ckpt__err_set(err, CKPT_EINVAL, "ckpt_open: %s is NULL", out ? "cfg" : "out");
    }
    int rc = ckpt__config_validate(cfg, err);
    if (rc) {
        if (comm)
            ckpt__comm_destroy(comm);
        return rc;
    }
    ckpt_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        if (comm)
            ckpt__comm_destroy(comm);
        return ckpt__err_set(err, CKPT_ENOMEM, "ckpt_open: out of memory");
    }
    pthread_mutex_init(&ctx->mu, NULL);
    pthread_mutex_init(&ctx->ev_mu, NULL);
    pthread_cond_init(&ctx->cv, NULL);
    ckpt__log_init(&ctx->log, cfg->log_level, cfg->log_fn, cfg->log_user);
    ckpt__fault_init(&ctx->fault);
    ctx->pol.dir_fd = -1;
    ctx->cfg = *cfg;
    ctx->dir = strdup(cfg->dir);
    ctx->cfg.dir = ctx->dir;
    if (cfg->policy_request_file) {
        ctx->pol.file = strdup(cfg->policy_request_file);
        ctx->cfg.policy_request_file = ctx->pol.file;
    }
    if (cfg->local_dir) {
        ctx->local_dir = strdup(cfg->local_dir);
        ctx->cfg.local_dir = ctx->local_dir;
    }
    if (cfg->node_name) {
        ctx->node_name = strdup(cfg->node_name);
        ctx->cfg.node_name = ctx->node_name;
    }
    ctx->comm = comm ? comm : ckpt__comm_single();
    if (!ctx->dir || (cfg->policy_request_file && !ctx->pol.file) || !ctx->comm ||
        (cfg->local_dir && !ctx->local_dir) || (cfg->node_name && !ctx->node_name)) {
        destroy(ctx);
        return ckpt__err_set(err, CKPT_ENOMEM, "ckpt_open: out of memory");
    }
    ctx->rank = ckpt__comm_rank(ctx->comm);
    ctx->world = ckpt__comm_size(ctx->comm);
    ctx->notes = ctx->world > 1 && ckpt__comm_has_notes(ctx->comm);
    ctx->running_step = -1;
    ctx->restored_step = -1;
    ctx->durable = (ckpt__tier){ctx->dir, {(uint32_t)ctx->world, (uint32_t)ctx->world, NULL},
                                CKPT_TIER_DURABLE};

    if (ctx->world > 1 && cfg->busy == CKPT_BUSY_REFUSE)
        rc = ckpt__err_set(err, CKPT_EINVAL,
                           "config: busy=refuse with %d ranks: ranks could refuse different "
                           "saves; use wait",
                           ctx->world);
    if (!rc)
        rc = make_dirs(ctx->dir, err);
    if (!rc && ctx->rank == 0) {
        rc = ckpt__catalog_cleanup(ctx->dir, &ctx->log, err);
        if (!rc && getrandom(ctx->run_uuid, 16, 0) != 16)
            rc = ckpt__err_errno(err, errno, "getrandom");
    }
    ckpt__engine_config ec = {
        .io = cfg->io,
        .device = cfg->device,
        .io_threads = cfg->io_threads,
        .hash_threads = cfg->hash_threads,
        .queue_depth = cfg->queue_depth,
        .buffered = !cfg->direct_io,
        .staging_bytes = cfg->staging_bytes,
        .chunk_bytes = cfg->chunk_bytes,
    };
    if (!rc)
        rc = ckpt__engine_open(&ctx->eng, &ec, &ctx->log, &ctx->fault, err);
    if (!rc) {
        int e = pthread_create(&ctx->coord, NULL, ckpt__coordinator_main, ctx);
        if (e)
            rc = ckpt__err_errno(err, e, "ckpt_open: pthread_create");
        else
            ctx->coord_running = 1;
    }
    if (!rc) {
        ckpt__retention rules = {ctx->cfg.keep_last, ctx->cfg.keep_every,
                                 ctx->cfg.max_age_hours};
        rc = ckpt__janitor_start(&ctx->jan, ctx->dir, &rules, &ctx->log, err);
    }
    /* Open is a collective point: every rank reaches both collectives, so a
     * failure on one rank fails the open on all (no rank left waiting).
     * The same allreduce tells whether every rank agrees on the tiers:
     * the MAX of tiers (INT64_MAX for a failed rank) and of -tiers give
     * their range (durable_every, no_drain_at_close and replicas in one
     * number). */
    int64_t tiers = cfg->local_dir ? (int64_t)cfg->durable_every * 8 +
                                         cfg->no_drain_at_close * 4 + cfg->replicas
                                   : 0;
    int64_t bad[2] = {rc ? INT64_MAX : tiers, -tiers};
    int crc = ckpt__comm_allreduce(ctx->comm, &ctx->fault, bad, 2, CKPT__MAX, err);
    if (!crc && !rc && bad[0] == INT64_MAX)
        rc = ckpt__err_set(err, CKPT_ECOMM, "another rank failed to open %s", cfg->dir);
    if (!rc && crc)
        rc = crc;
    if (!rc && bad[0] != -bad[1])
        rc = ckpt__err_set(err, CKPT_EINVAL,
                           "config: local_dir must be set on every rank or none, with the "
                           "same durable_every and replicas and no_drain_at_close (ranks "
                           "have durable_every x 8 + no_drain_at_close x 4 + replicas "
                           "%lld..%lld; 0: no local_dir)",
                           (long long)-bad[1], (long long)bad[0]);
    if (!rc && tiers)
        rc = tiers_open(ctx, err);
    /* Every rank learns rank 0's run uuid. */
    if (!rc)
        rc = ckpt__comm_bcast(ctx->comm, &ctx->fault, ctx->run_uuid, 16, 0, err);
    /* Every rank gets here with the same rc, so all or none agree on the
     * save policy (a collective of its own). */
    if (!rc)
        rc = ckpt__policy_open(ctx, err);
    if (rc) {
        ckpt__err_prefix(err, "ckpt_open(%s)", cfg->dir);
        destroy(ctx);
        return rc;
    }
    ckpt__logf(&ctx->log, CKPT_LOG_INFO, "opened %s: rank %d of %d, writer %s, device %s",
               ctx->dir, ctx->rank, ctx->world, ctx->eng.wm->name, ctx->eng.dm->name);
    *out = ctx;
    return 0;
}

/* Under ctx->mu: job goes to the end of the coordinator's queue. */
static void enqueue(ckpt_ctx *ctx, ckpt__job *job)
{
    job->next = NULL;
    if (ctx->qtail)
        ctx->qtail->next = job;
    else
        ctx->qhead = job;
    ctx->qtail = job;
}

/* Under ctx->mu, nothing in flight: when the newest save was local-only,
 * the coordinator drains it into DIR (save.c, run_close_drain).  The same
 * decision on every rank: the durable cadence is. */
static void close_drain(ckpt_ctx *ctx, ckpt__err *err)
{
    if (!ctx->has_local || !ctx->seq || ctx->last_durable || !ctx->coord_running ||
        ctx->cfg.no_drain_at_close)
        return;
    ckpt__job *job = ctx->close_job;
    ctx->close_job = NULL;
    if (job && job->step != ctx->last_step) {
        ckpt__job_free(job);
        job = NULL;
    }
    if (!job && ctx->world == 1)
        return; /* nothing to drain, and no rank waits for this one */
    if (!job) {
        job = calloc(1, sizeof *job);
        if (!job) {
            ckpt__err_set(err, CKPT_ENOMEM, "ckpt_close: out of memory");
            return;
        }
        job->ctx = ctx;
        job->step = ctx->last_step;
        job->seq = ctx->seq;
    }
    job->close_drain = 1;
    job->snap_done = job->snap_queued = 1;
    job->started_sent = 1;
    ctx->close_rc = 0;
    ctx->inflight++;
    enqueue(ctx, job);
    pthread_cond_broadcast(&ctx->cv);
    while (ctx->inflight > 0)
        pthread_cond_wait(&ctx->cv, &ctx->mu);
    if (ctx->close_rc)
        *err = ctx->close_err;
}

int ckpt_close(ckpt_ctx *ctx)
{
    if (!ctx)
        return 0;
    pthread_mutex_lock(&ctx->mu);
    while (ctx->inflight > 0)
        pthread_cond_wait(&ctx->cv, &ctx->mu);
    ckpt__err drained;
    ckpt__err_clear(&drained);
    close_drain(ctx, &drained);
    ckpt__err unobserved;
    ckpt__tickets_unreported(&ctx->tix, &unobserved);
    pthread_mutex_unlock(&ctx->mu);
    if (!unobserved.code)
        unobserved = drained;
    ckpt__janitor_wait(&ctx->jan);
    ckpt__janitor_wait(&ctx->ljan);
    destroy(ctx);
    if (unobserved.code)
        *ckpt__thread_err() = unobserved;
    return unobserved.code;
}

const char *ckpt_writer_name(const ckpt_ctx *ctx)
{
    return ctx ? ctx->eng.wm->name : "(null)";
}

const char *ckpt_device_name(const ckpt_ctx *ctx)
{
    return ctx ? ctx->eng.dm->name : "(null)";
}

const char *ckpt_last_error(const ckpt_ctx *ctx)
{
    return ctx ? ctx->err.msg : ckpt__thread_err()->msg;
}

/* ---- registration and metadata ----------------------------------------------- */

static int frozen(ckpt_ctx *ctx, const char *fn)
{
    pthread_mutex_lock(&ctx->mu);
    int busy = ctx->inflight > 0;
    pthread_mutex_unlock(&ctx->mu);
    if (busy)
        return ckpt__err_set(&ctx->err, CKPT_ESTATE,
                             "%s: a save is in flight; wait for it before changing tensors",
                             fn);
    return 0;
}

static int add_tensor(ckpt_ctx *ctx, const char *fn, const char *name, void *ptr,
                      ckpt_dtype dtype, int ndim, const int64_t *shape, const int64_t *gshape,
                      const int64_t *start)
{
    if (!ctx)
        return no_ctx(fn);
    int rc = frozen(ctx, fn);
    if (!rc)
        rc = ckpt__registry_add(&ctx->reg, name, ptr, dtype, ndim, shape, gshape, start,
                                &ctx->err);
    if (!rc && ctx->reg.v[ctx->reg.n - 1].nbytes) {
        const ckpt__tensor *t = &ctx->reg.v[ctx->reg.n - 1];
        rc = ckpt__device_check_tensor(&ctx->eng, t->ptr, (size_t)t->nbytes, &ctx->err);
        if (rc) {
            ckpt__err keep = ctx->err;
            ckpt__registry_remove(&ctx->reg, name, &ctx->err);
            ctx->err = keep;
        }
    }
    if (!rc)
        ctx->reg_changes++;
    return rc;
}

int ckpt_register(ckpt_ctx *ctx, const char *name, void *ptr, ckpt_dtype dtype, int ndim,
                  const int64_t *shape)
{
    return add_tensor(ctx, "ckpt_register", name, ptr, dtype, ndim, shape, NULL, NULL);
}

int ckpt_register_shard(ckpt_ctx *ctx, const char *name, void *ptr, ckpt_dtype dtype, int ndim,
                        const int64_t *global_shape, const int64_t *start, const int64_t *count)
{
    if (ctx && ndim > 0 && (!global_shape || !start || !count)) {
        return ckpt__err_set(&ctx->err, CKPT_EINVAL, "ckpt_register_shard: %s is NULL",
                             !global_shape ? "global_shape" : !start ? "start" : "count");
    }
    if (ctx && ndim <= 0)
        return ckpt__err_set(&ctx->err, CKPT_EINVAL,
                             "ckpt_register_shard: tensor needs 1 or more dimensions, not %d",
                             ndim);
    return add_tensor(ctx, "ckpt_register_shard", name, ptr, dtype, ndim, count, global_shape,
                      start);
}

int ckpt_unregister(ckpt_ctx *ctx, const char *name)
{
    if (!ctx)
        return no_ctx("ckpt_unregister");
    int rc = frozen(ctx, "ckpt_unregister");
    if (!rc)
        rc = ckpt__registry_remove(&ctx->reg, name, &ctx->err);
    if (!rc)
        ctx->reg_changes++;
    return rc;
}

int ckpt_set_meta(ckpt_ctx *ctx, const char *key, const void *data, size_t len)
{
    if (!ctx)
        return no_ctx("ckpt_set_meta");
    int rc = ckpt__meta_put(&ctx->meta, key, data, len, &ctx->err);
    if (!rc)
        ckpt__provider_drop(&ctx->prov, key); /* the last call for a key wins */
    return rc;
}

int ckpt_set_meta_fn(ckpt_ctx *ctx, const char *key, ckpt_meta_fn fn, void *user)
{
    if (!ctx)
        return no_ctx("ckpt_set_meta_fn");
    int rc = ckpt__provider_set(&ctx->prov, key, fn, user, &ctx->err);
    if (!rc && !fn)
        ckpt__meta_del(&ctx->meta, key); /* removal takes the key out of saves */
    return rc;
}

int ckpt_get_meta(ckpt_ctx *ctx, const char *key, void *buf, size_t cap, size_t *len)
{
    if (!ctx)
        return no_ctx("ckpt_get_meta");
    int rc = ckpt__name_check(key, "metadata key", &ctx->err);
    if (rc)
        return rc;
    const ckpt__kv *kv = ckpt__meta_get(&ctx->meta, key);
    if (!kv)
        return ckpt__err_set(&ctx->err, CKPT_ENOTFOUND, "metadata '%s' is not set", key);
    if (len)
        *len = kv->len;
    if (kv->len > cap || (kv->len && !buf))
        return ckpt__err_set(&ctx->err, CKPT_ERANGE,
                             "metadata '%s' is %zu bytes, the buffer holds %zu", key, kv->len,
                             buf ? cap : 0);
    if (kv->len)
        memcpy(buf, kv->val, kv->len);
    return 0;
}

/* ---- saving -------------------------------------------------------------------- */

int ckpt_save(ckpt_ctx *ctx, int64_t step, void *stream, ckpt_ticket *ticket)
{
    if (ticket)
        *ticket = 0;
    if (!ctx)
        return no_ctx("ckpt_save");
    uint64_t t0 = ckpt__now_ns(); /* the caller's stall (policy_mtbf_s) */
    if (step < 0 || step > CKPT__STEP_MAX)
        return ckpt__err_set(&ctx->err, CKPT_EINVAL, "ckpt_save: step %lld out of 0..%lld",
                             (long long)step, CKPT__STEP_MAX);
    ckpt__job *job = calloc(1, sizeof *job);
    if (!job)
        return ckpt__err_set(&ctx->err, CKPT_ENOMEM, "ckpt_save: out of memory");
    int rc = ckpt__meta_capture(&job->meta, &ctx->meta, &ctx->prov, &ctx->err);
    if (rc) {
        free(job);
        return ckpt__err_prefix(&ctx->err, "ckpt_save: step %lld", (long long)step);
    }
    job->ctx = ctx;
    job->wanted = ticket != NULL;
    job->step = step;
    job->t_save_ns = job->t_stage_ns = ckpt__now_ns();

    pthread_mutex_lock(&ctx->mu);
    if (ctx->inflight >= ctx->cfg.max_inflight &&
        ctx->cfg.busy == CKPT_BUSY_REFUSE) {
        pthread_mutex_unlock(&ctx->mu);
        ckpt__job_free(job);
        return ckpt__err_set(&ctx->err, CKPT_EBUSY,
                             "ckpt_save: step %lld refused, %d save(s) still in flight",
                             (long long)step, ctx->cfg.max_inflight);
    }
    while (ctx->inflight >= ctx->cfg.max_inflight)
        pthread_cond_wait(&ctx->cv, &ctx->mu);
    /* Several ranks name a save's folder by its step (save.c), so one step
     * cannot be in flight twice. */
    int dup = ctx->world > 1 && ctx->running_step == step;
    for (const ckpt__job *q = ctx->qhead; ctx->world > 1 && q && !dup; q = q->next)
        dup = q->step == step;
    if (dup) {
        pthread_mutex_unlock(&ctx->mu);
        ckpt__job_free(job);
        return ckpt__err_set(&ctx->err, CKPT_ESTATE,
                             "ckpt_save: step %lld is already being saved", (long long)step);
    }
    rc = ckpt__tickets_reserve(&ctx->tix, &ctx->err);
    if (rc) {
        pthread_mutex_unlock(&ctx->mu);
        ckpt__job_free(job);
        return rc;
    }
    rc = ckpt__device_save_begin(&ctx->eng, stream, &ctx->err);
    if (rc) {
        pthread_mutex_unlock(&ctx->mu);
        ckpt__job_free(job);
        return rc;
    }
    ckpt_ticket t = job->ticket = ckpt__tickets_issue(&ctx->tix, ticket != NULL);
    uint64_t seq = job->seq = ++ctx->seq;
    job->durable = ckpt__policy_durable(ctx, seq);
    job->reg_seen = ctx->reg_changes;
    ctx->last_step = step;
    ctx->last_durable = job->durable;
    ctx->inflight++;
    ctx->snap_pending++;
    ctx->snap_unqueued++;
    enqueue(ctx, job);
    /* After the wait for a slot: a failure of the save this one waited for
     * is reported now, not one call later. */
    rc = ckpt__tickets_report_unobserved(&ctx->tix, &ctx->err);
    pthread_mutex_unlock(&ctx->mu);
    /* Signalled after unlocking, so the coordinator does not wake up only to
     * block on the mutex this thread still holds. */
    pthread_cond_broadcast(&ctx->cv);
    /* Not job->ticket: once unlocked, the coordinator may finish and free
     * the job. */
    if (ticket)
        *ticket = t;
    ckpt__policy_note_stall(ctx, seq, (double)(ckpt__now_ns() - t0) * 1e-9);
    return rc;
}

int ckpt_fence(ckpt_ctx *ctx, void *stream)
{
    if (!ctx)
        return no_ctx("ckpt_fence");
    uint64_t t0 = ckpt__now_ns();
    /* Host fence: wait for the copies.  Device fence: wait only until they
     * are all queued; the backend orders `stream` after them (device.h). */
    int on_host = (ctx->eng.dm->flags & CKPT__DEV_FENCE_ON_HOST) != 0;
    pthread_mutex_lock(&ctx->mu);
    while (on_host ? ctx->snap_pending > 0 : ctx->snap_unqueued > 0)
        pthread_cond_wait(&ctx->cv, &ctx->mu);
    pthread_mutex_unlock(&ctx->mu);
    int rc = ckpt__device_fence(&ctx->eng, stream, &ctx->err);
    ckpt__policy_note_stall(ctx, 0, (double)(ckpt__now_ns() - t0) * 1e-9);
    if (rc)
        return rc; /* the fence's own error first; a pending report waits */
    pthread_mutex_lock(&ctx->mu);
    rc = ckpt__tickets_report_unobserved(&ctx->tix, &ctx->err);
    pthread_mutex_unlock(&ctx->mu);
    return rc;
}

int ckpt_poll(ckpt_ctx *ctx, ckpt_ticket ticket)
{
    if (!ctx)
        return no_ctx("ckpt_poll");
    ckpt__ticketrec *r;
    pthread_mutex_lock(&ctx->mu);
    int rc = ckpt__tickets_lookup(&ctx->tix, ticket, "ckpt_poll", &r, NULL, &ctx->err);
    if (!rc) {
        rc = r->done ? r->result : CKPT_INPROGRESS;
        if (r->done && r->result)
            ckpt__err_set(&ctx->err, r->result, "%s", r->msg ? r->msg : "");
    }
    pthread_mutex_unlock(&ctx->mu);
    return rc;
}

static void deadline_after(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int ckpt_wait(ckpt_ctx *ctx, ckpt_ticket ticket, int64_t timeout_ms)
{
    if (!ctx)
        return no_ctx("ckpt_wait");
    uint64_t t0 = ckpt__now_ns();
    struct timespec deadline;
    if (timeout_ms >= 0)
        deadline_after(&deadline, timeout_ms);
    ckpt__ticketrec *r;
    size_t pos = 0;
    pthread_mutex_lock(&ctx->mu);
    int rc = ckpt__tickets_lookup(&ctx->tix, ticket, "ckpt_wait", &r, &pos, &ctx->err);
    while (!rc && !r->done) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&ctx->cv, &ctx->mu);
        } else if (pthread_cond_timedwait(&ctx->cv, &ctx->mu, &deadline) == ETIMEDOUT) {
            rc = ckpt__err_set(&ctx->err, CKPT_ETIMEDOUT,
                               "ckpt_wait: ticket %llu still running after %lld ms",
                               (unsigned long long)ticket, (long long)timeout_ms);
            break;
        }
        r = ckpt__tickets_find(&ctx->tix, ticket, &pos); /* the table may have moved */
    }
    if (!rc) {
        rc = r->result;
        if (rc)
            ckpt__err_set(&ctx->err, rc, "%s", r->msg ? r->msg : "");
        ckpt__tickets_drop(&ctx->tix, pos);
    }
    pthread_mutex_unlock(&ctx->mu);
    ckpt__policy_note_stall(ctx, 0, (double)(ckpt__now_ns() - t0) * 1e-9);
    return rc;
}

/* ---- restore and listing --------------------------------------------------------- */

int ckpt_restore(ckpt_ctx *ctx, int64_t step, void *stream, int64_t *step_out)
{
    if (!ctx)
        return no_ctx("ckpt_restore");
    return ckpt__restore(ctx, step, stream, step_out);
}

ckpt_tier ckpt_restore_tier(const ckpt_ctx *ctx)
{
    return ctx && ctx->restored_step >= 0 ? ctx->restored_tier : CKPT_TIER_NONE;
}

int ckpt_restore_tensors(ckpt_ctx *ctx, const char *const *names, size_t n, void *stream)
{
    if (!ctx)
        return no_ctx("ckpt_restore_tensors");
    return ckpt__restore_tensors(ctx, names, n, stream);
}

int ckpt_list(ckpt_ctx *ctx, ckpt_info *out, size_t cap, size_t *count)
{
    if (!ctx)
        return no_ctx("ckpt_list");
    if (!count || (cap && !out))
        return ckpt__err_set(&ctx->err, CKPT_EINVAL, "ckpt_list: %s is NULL",
                             count ? "out" : "count");
    *count = 0;
    /* List what retention leaves, not what it is deleting. */
    ckpt__janitor_wait(&ctx->jan);
    int64_t *steps;
    size_t n;
    int rc = ckpt__catalog_scan(ctx->dir, &steps, &n, &ctx->err);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        char path[CKPT__PATH_MAX], name[CKPT__FNAME_MAX];
        ckpt__step_name(steps[i], name);
        ckpt__index idx;
        ckpt__err e;
        if (ckpt__path_step(path, ctx->dir, steps[i], CKPT__MANIFEST_NAME, &e) != 0 ||
            ckpt__manifest_read(path, &idx, &e) != 0) {
            ckpt__logf(&ctx->log, CKPT_LOG_INFO, "list: skipping %s: %s", name, e.msg);
            continue;
        }
        if (idx.step != steps[i]) {
            ckpt__logf(&ctx->log, CKPT_LOG_INFO, "list: skipping %s: its manifest is step %lld",
                       name, (long long)idx.step);
            ckpt__index_free(&idx);
            continue;
        }
        if (*count < cap) {
            ckpt_info *o = &out[*count];
            memset(o, 0, sizeof *o);
            o->step = idx.step;
            o->created_unix = idx.created_unix;
            o->world_size = (int32_t)idx.world_size;
            for (uint32_t k = 0; k < idx.nentries; k++) {
                o->nbytes += idx.entries[k].nbytes;
                o->ntensors += idx.entries[k].kind == CKPT__ENTRY_TENSOR;
            }
            ckpt__uuid_hex(idx.uuid, o->uuid);
        }
        (*count)++;
        ckpt__index_free(&idx);
    }
    free(steps);
    return 0;
}

/* ---- test hooks ------------------------------------------------------------------ */

int ckpt__fault_arm(ckpt_ctx *ctx, int site, int64_t nth, int action)
{
    return ctx ? ckpt__fault_arm_table(&ctx->fault, site, nth, action) : CKPT_EINVAL;
}

int ckpt__fault_fired(ckpt_ctx *ctx, int site)
{
    return ctx ? ckpt__fault_fired_table(&ctx->fault, site) : 0;
}

int64_t ckpt__fault_hits(ckpt_ctx *ctx, int site)
{
    return ctx ? ckpt__fault_hits_table(&ctx->fault, site) : 0;
}

void ckpt__layout_counts(ckpt_ctx *ctx, uint64_t *built, uint64_t *cached)
{
    *built = ctx ? ctx->layout_built : 0;
    *cached = ctx ? ctx->layout_cached : 0;
}

int ckpt__layout_damage(ckpt_ctx *ctx, int what, uint64_t k)
{
    return ctx ? ckpt__layout_test_damage(ctx->layout, what, k) : CKPT_EINVAL;
}
