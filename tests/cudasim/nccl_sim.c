/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NCCL half of libcudasim: communicators whose ranks are threads of
 * one process, over the CUDA stand-in's device memory and streams.  It
 * exports what cuda/comm_nccl.c and the NCCL tests call: unique-id and
 * InitAll creation, ncclCommSplit, AllReduce, Broadcast and AllGather,
 * the queries, ncclCommGetAsyncError, ncclCommAbort and ncclCommDestroy.
 *
 * Strict where NCCL is: buffers must be device (or managed) memory inside
 * one allocation; two ranks of a communicator on one device is
 * ncclInvalidUsage; a collective runs on its stream, in order with that
 * stream's copies, and the host call returns at once.
 *
 * A rank that stops participating never hangs the others: every wait of a
 * collective or an init gives up after CUDASIM_NCCL_TIMEOUT_MS (default
 * 5000) and fails the communicator (ncclRemoteError, reported through
 * ncclCommGetAsyncError, the way NCCL reports a lost peer) and, as NCCL's
 * kernel does, stays on its stream until that rank aborts or destroys the
 * communicator; ncclCommAbort on one rank fails the collectives its peers
 * are in or start.
 * cudasim_nccl_fail_collective(rank, n) makes the n-th collective that a
 * comm's rank `rank` runs from then on fail asynchronously
 * (ncclSystemError) and the communicator with it, so a rank whose
 * collective fails can be tested.
 *
 * Every collective is a two-phase meeting of the communicator's ranks: all
 * arrive and publish their buffers; each computes its own result into a
 * private buffer, reading the others' inputs; all leave; each writes its
 * result.  So in-place calls (send == recv) are safe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nccl.h>

#include "cudasim.h"
#include "cudasim_internal.h"

#define API __attribute__((visibility("default")))

typedef struct group {
    int n;
    int dead; /* a rank aborted or timed out: every meeting fails */
    char why[160];
    int arrived, left;
    uint64_t gen_in, gen_out;
    const char **in; /* per rank: its input in the current meeting */
    int *arg;        /* per rank: split color, key */
    int *arg2;
    struct ncclComm **members;
    struct group *next_all;
} group;

struct ncclComm {
    group *g;
    int rank, dev;
    int live;
    ncclResult_t async;
    char last[256];
    struct ncclComm *next_all;
};

/* Inits by unique id not yet complete. */
typedef struct pending {
    char key[NCCL_UNIQUE_ID_BYTES];
    int n, arrived, taken;
    group *g;
    int bad; /* ranks disagree on n, or share a device */
    struct pending *next;
} pending;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t ids;
    group *groups;
    struct ncclComm *comms;
    pending *pending;
    int fail_rank;     /* cudasim_nccl_fail_collective */
    uint64_t fail_left;
} N = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static long timeout_ms(void)
{
    const char *e = getenv("CUDASIM_NCCL_TIMEOUT_MS");
    long t = e ? atol(e) : 5000;
    return t > 0 ? t : 5000;
}

static struct timespec deadline(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long ms = timeout_ms();
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* N.mu held. */
static group *group_make_locked(int n)
{
    group *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->n = n;
    g->in = calloc((size_t)n, sizeof *g->in);
    g->arg = calloc((size_t)n, sizeof *g->arg);
    g->arg2 = calloc((size_t)n, sizeof *g->arg2);
    g->members = calloc((size_t)n, sizeof *g->members);
    if (!g->in || !g->arg || !g->arg2 || !g->members) {
        free(g->in);
        free(g->arg);
        free(g->arg2);
        free(g->members);
        free(g);
        return NULL;
    }
    g->next_all = N.groups;
    N.groups = g;
    return g;
}

static struct ncclComm *comm_make_locked(group *g, int rank, int dev)
{
    struct ncclComm *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->g = g;
    c->rank = rank;
    c->dev = dev;
    c->live = 1;
    g->members[rank] = c;
    c->next_all = N.comms;
    N.comms = c;
    return c;
}

static int live_locked(const struct ncclComm *c)
{
    for (struct ncclComm *k = N.comms; k; k = k->next_all)
        if (k == c)
            return k->live;
    return 0;
}

static void kill_group_locked(group *g, const char *why)
{
    if (!g->dead) {
        g->dead = 1;
        snprintf(g->why, sizeof g->why, "%s", why);
    }
    pthread_cond_broadcast(&N.cv);
}

/* The first half of a meeting: publish `in`, wait for every rank.
 * 0, or -1 with the group dead.  N.mu held. */
static int arrive_locked(struct ncclComm *c, const char *in)
{
    group *g = c->g;
    if (g->dead)
        return -1;
    struct timespec until = deadline();
    g->in[c->rank] = in;
    uint64_t gen = g->gen_in;
    if (++g->arrived == g->n) {
        g->arrived = 0;
        g->gen_in++;
        pthread_cond_broadcast(&N.cv);
        return 0;
    }
    while (g->gen_in == gen && !g->dead) {
        if (pthread_cond_timedwait(&N.cv, &N.mu, &until) == ETIMEDOUT) {
            char why[160];
            snprintf(why, sizeof why, "rank %d waited %ld ms for its peers", c->rank,
                     timeout_ms());
            kill_group_locked(g, why);
        }
    }
    return g->gen_in == gen ? -1 : 0;
}

/* The second half: wait until every rank has read the inputs. */
static int leave_locked(struct ncclComm *c)
{
    group *g = c->g;
    struct timespec until = deadline();
    uint64_t gen = g->gen_out;
    if (++g->left == g->n) {
        g->left = 0;
        g->gen_out++;
        pthread_cond_broadcast(&N.cv);
        return 0;
    }
    while (g->gen_out == gen && !g->dead) {
        if (pthread_cond_timedwait(&N.cv, &N.mu, &until) == ETIMEDOUT)
            kill_group_locked(g, "a peer did not finish a collective");
    }
    return g->gen_out == gen ? -1 : 0;
}

static void fail_comm_locked(struct ncclComm *c, ncclResult_t r, const char *why)
{
    if (c->async == ncclSuccess) {
        c->async = r;
        snprintf(c->last, sizeof c->last, "cudasim: %s", why);
    }
}

/* ---- creation ----------------------------------------------------------------- */

API ncclResult_t ncclGetVersion(int *version)
{
    if (!version)
        return ncclInvalidArgument;
    *version = NCCL_VERSION_CODE;
    return ncclSuccess;
}

API ncclResult_t ncclGetUniqueId(ncclUniqueId *uniqueId)
{
    if (!uniqueId)
        return ncclInvalidArgument;
    memset(uniqueId, 0, sizeof *uniqueId);
    pthread_mutex_lock(&N.mu);
    uint64_t id = ++N.ids;
    pthread_mutex_unlock(&N.mu);
    snprintf(uniqueId->internal, sizeof uniqueId->internal, "cudasim-%d-%llu", (int)getpid(),
             (unsigned long long)id);
    return ncclSuccess;
}

static int duplicate_devices(group *g)
{
    for (int i = 0; i < g->n; i++)
        for (int j = i + 1; j < g->n; j++)
            if (g->members[i] && g->members[j] && g->members[i]->dev == g->members[j]->dev)
                return 1;
    return 0;
}

API ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId commId, int rank)
{
    if (!comm || nranks < 1 || rank < 0 || rank >= nranks)
        return ncclInvalidArgument;
    *comm = NULL;
    int dev = cudasim__device();
    pthread_mutex_lock(&N.mu);
    pending *p = N.pending;
    while (p && memcmp(p->key, commId.internal, sizeof p->key))
        p = p->next;
    if (!p) {
        p = calloc(1, sizeof *p);
        if (p)
            p->g = group_make_locked(nranks);
        if (!p || !p->g) {
            free(p);
            pthread_mutex_unlock(&N.mu);
            return ncclSystemError;
        }
        memcpy(p->key, commId.internal, sizeof p->key);
        p->n = nranks;
        p->next = N.pending;
        N.pending = p;
    }
    ncclResult_t r = ncclSuccess;
    if (p->n != nranks || p->g->members[rank])
        p->bad = 1;
    struct ncclComm *c = p->bad ? NULL : comm_make_locked(p->g, rank, dev);
    if (!c && !p->bad)
        r = ncclSystemError;
    p->arrived++;
    struct timespec until = deadline();
    int timed_out = 0;
    pthread_cond_broadcast(&N.cv);
    while (p->arrived < p->n && !timed_out)
        timed_out = pthread_cond_timedwait(&N.cv, &N.mu, &until) == ETIMEDOUT;
    if (timed_out)
        r = ncclRemoteError; /* a peer never came */
    else if (p->bad)
        r = ncclInvalidArgument;
    else if (duplicate_devices(p->g))
        r = ncclInvalidUsage; /* "Duplicate GPU detected" */
    if (c && r != ncclSuccess)
        c->live = 0;
    if (++p->taken == p->n || timed_out) {
        /* The last one out, or one giving up, retires the id. */
        for (pending **pp = &N.pending; *pp; pp = &(*pp)->next) {
            if (*pp == p) {
                *pp = p->next;
                break;
            }
        }
        if (timed_out)
            kill_group_locked(p->g, "ncclCommInitRank timed out");
        free(p);
    }
    pthread_mutex_unlock(&N.mu);
    if (r == ncclSuccess)
        *comm = c;
    return r;
}

API ncclResult_t ncclCommInitAll(ncclComm_t *comms, int ndev, const int *devlist)
{
    if (!comms || ndev < 1)
        return ncclInvalidArgument;
    pthread_mutex_lock(&N.mu);
    group *g = group_make_locked(ndev);
    ncclResult_t r = g ? ncclSuccess : ncclSystemError;
    for (int i = 0; r == ncclSuccess && i < ndev; i++) {
        comms[i] = comm_make_locked(g, i, devlist ? devlist[i] : i);
        if (!comms[i])
            r = ncclSystemError;
    }
    if (r == ncclSuccess && duplicate_devices(g))
        r = ncclInvalidUsage;
    for (int i = 0; g && r != ncclSuccess && i < ndev; i++) {
        if (g->members[i])
            g->members[i]->live = 0;
        comms[i] = NULL;
    }
    pthread_mutex_unlock(&N.mu);
    return r;
}

/* Collective over comm: each rank gets the communicator of its color, ranks
 * ordered by key then old rank; NCCL_SPLIT_NOCOLOR gets NULL. */
API ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t *newcomm,
                               ncclConfig_t *config)
{
    (void)config;
    if (!newcomm)
        return ncclInvalidArgument;
    *newcomm = NULL;
    pthread_mutex_lock(&N.mu);
    if (!live_locked(comm)) {
        pthread_mutex_unlock(&N.mu);
        return ncclInvalidArgument;
    }
    group *g = comm->g;
    g->arg[comm->rank] = color;
    g->arg2[comm->rank] = key;
    ncclResult_t r = ncclSuccess;
    if (arrive_locked(comm, NULL)) {
        r = ncclRemoteError;
    } else {
        /* Rank 0's pass through here builds every new group; the others
         * wait for it in leave_locked, whose second meeting orders it. */
        if (comm->rank == 0) {
            int *done = calloc((size_t)g->n, sizeof *done);
            for (int i = 0; done && i < g->n; i++) {
                if (done[i] || g->arg[i] == NCCL_SPLIT_NOCOLOR)
                    continue;
                int cnt = 0;
                for (int j = 0; j < g->n; j++)
                    cnt += g->arg[j] == g->arg[i];
                group *ng = group_make_locked(cnt);
                for (int k = 0; ng && k < cnt; k++) {
                    int best = -1; /* the next rank of this color by (key, rank) */
                    for (int j = 0; j < g->n; j++)
                        if (!done[j] && g->arg[j] == g->arg[i] &&
                            (best < 0 || g->arg2[j] < g->arg2[best]))
                            best = j;
                    done[best] = 1;
                    comm_make_locked(ng, k, g->members[best]->dev);
                    g->in[best] = (const char *)ng->members[k];
                }
            }
            free(done);
        }
        if (leave_locked(comm))
            r = ncclRemoteError;
        else if (g->arg[comm->rank] != NCCL_SPLIT_NOCOLOR)
            *newcomm = (ncclComm_t)(uintptr_t)g->in[comm->rank];
        if (!r && g->arg[comm->rank] != NCCL_SPLIT_NOCOLOR && !*newcomm)
            r = ncclSystemError;
        /* A third meeting: nobody reuses g->in before all have read it. */
        if (!r && (arrive_locked(comm, NULL) || leave_locked(comm)))
            r = ncclRemoteError;
    }
    pthread_mutex_unlock(&N.mu);
    return r;
}

API ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
    if (!comm)
        return ncclSuccess;
    pthread_mutex_lock(&N.mu);
    int ok = live_locked(comm);
    if (ok)
        comm->live = 0; /* kept until unload: a late handle check still works */
    pthread_cond_broadcast(&N.cv);
    pthread_mutex_unlock(&N.mu);
    return ok ? ncclSuccess : ncclInvalidArgument;
}

API ncclResult_t ncclCommAbort(ncclComm_t comm)
{
    if (!comm)
        return ncclSuccess;
    pthread_mutex_lock(&N.mu);
    int ok = live_locked(comm);
    if (ok) {
        comm->live = 0;
        char why[96];
        snprintf(why, sizeof why, "rank %d aborted the communicator", comm->rank);
        kill_group_locked(comm->g, why);
    }
    pthread_mutex_unlock(&N.mu);
    return ok ? ncclSuccess : ncclInvalidArgument;
}

/* ---- queries -------------------------------------------------------------------- */

#define QUERY(comm, out, value)                                                             \
    do {                                                                                    \
        if (!(out))                                                                         \
            return ncclInvalidArgument;                                                     \
        pthread_mutex_lock(&N.mu);                                                          \
        int ok_ = live_locked(comm);                                                        \
        if (ok_)                                                                            \
            *(out) = (value);                                                               \
        pthread_mutex_unlock(&N.mu);                                                        \
        return ok_ ? ncclSuccess : ncclInvalidArgument;                                     \
    } while (0)

API ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int *device)
{
    QUERY(comm, device, comm->dev);
}

API ncclResult_t ncclCommUserRank(const ncclComm_t comm, int *rank)
{
    QUERY(comm, rank, comm->rank);
}

API ncclResult_t ncclCommCount(const ncclComm_t comm, int *count)
{
    QUERY(comm, count, comm->g->n);
}

API ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *asyncError)
{
    QUERY(comm, asyncError, comm->async);
}

API const char *ncclGetErrorString(ncclResult_t result)
{
    switch (result) {
    case ncclSuccess:
        return "no error";
    case ncclUnhandledCudaError:
        return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError:
        return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError:
        return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument:
        return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage:
        return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError:
        return "remote process exited or there was a network error";
    case ncclInProgress:
        return "NCCL operation in progress";
    default:
        return "unknown result code";
    }
}

/* The comm's last message; a thread-unsafe read as NCCL's is, but the
 * buffer is only written by that rank's own stream before it reports. */
API const char *ncclGetLastError(ncclComm_t comm)
{
    return comm ? comm->last : "";
}

/* ---- collectives ------------------------------------------------------------------ */

enum { COLL_ALLREDUCE, COLL_BCAST, COLL_ALLGATHER };

typedef struct coll {
    int kind;
    struct ncclComm *c;
    const char *send; /* resolved */
    char *recv;       /* resolved */
    size_t count, esize;
    ncclDataType_t dt;
    ncclRedOp_t op;
    int root;
} coll;

static size_t type_size(ncclDataType_t dt)
{
    switch (dt) {
    case ncclInt8:
    case ncclUint8:
        return 1;
    case ncclFloat16:
    case ncclBfloat16:
        return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
        return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
        return 8;
    default:
        return 0;
    }
}

#define REDUCE(T)                                                                           \
    do {                                                                                    \
        T *o_ = (T *)out;                                                                   \
        const T *a_ = (const T *)in;                                                        \
        for (size_t i_ = 0; i_ < count; i_++) {                                             \
            T x_ = o_[i_], y_ = a_[i_];                                                     \
            o_[i_] = op == ncclSum ? (T)(x_ + y_)                                           \
                     : op == ncclProd ? (T)(x_ * y_)                                        \
                     : op == ncclMin  ? (x_ < y_ ? x_ : y_)                                 \
                                      : (x_ > y_ ? x_ : y_);                                \
        }                                                                                   \
    } while (0)

static void reduce(char *out, const char *in, size_t count, ncclDataType_t dt, ncclRedOp_t op)
{
    switch (dt) {
    case ncclInt8: REDUCE(int8_t); break;
    case ncclUint8: REDUCE(uint8_t); break;
    case ncclInt32: REDUCE(int32_t); break;
    case ncclUint32: REDUCE(uint32_t); break;
    case ncclInt64: REDUCE(int64_t); break;
    case ncclUint64: REDUCE(uint64_t); break;
    case ncclFloat32: REDUCE(float); break;
    case ncclFloat64: REDUCE(double); break;
    default: break;
    }
}

static void run_coll(void *arg, int run)
{
    coll *k = arg;
    struct ncclComm *c = k->c;
    group *g = c->g;
    size_t nbytes = k->count * k->esize;
    size_t out_n = k->kind == COLL_ALLGATHER ? nbytes * (size_t)g->n : nbytes;
    char *out = run ? malloc(out_n ? out_n : 1) : NULL;
    pthread_mutex_lock(&N.mu);
    if (!run) {
        fail_comm_locked(c, ncclUnhandledCudaError, "a CUDA error stopped the stream");
    } else if (!out) {
        fail_comm_locked(c, ncclSystemError, "out of memory");
    } else if (N.fail_left && c->rank == N.fail_rank && --N.fail_left == 0) {
        fail_comm_locked(c, ncclSystemError, "this rank's collective failed (injected)");
        kill_group_locked(g, "a peer's collective failed");
    } else if (arrive_locked(c, k->send)) {
        char why[200];
        snprintf(why, sizeof why, "collective failed: %s", g->why);
        fail_comm_locked(c, ncclRemoteError, why);
    } else {
        /* Every input stays valid until all ranks leave. */
        cudasim__lock_memory();
        if (k->kind == COLL_ALLREDUCE) {
            memcpy(out, g->in[0], nbytes);
            for (int r = 1; r < g->n; r++)
                reduce(out, g->in[r], k->count, k->dt, k->op);
        } else if (k->kind == COLL_BCAST) {
            memcpy(out, g->in[k->root], nbytes);
        } else {
            for (int r = 0; r < g->n; r++)
                memcpy(out + (size_t)r * nbytes, g->in[r], nbytes);
        }
        cudasim__unlock_memory();
        if (leave_locked(c)) {
            char why[200];
            snprintf(why, sizeof why, "collective failed: %s", g->why);
            fail_comm_locked(c, ncclRemoteError, why);
        } else {
            pthread_mutex_unlock(&N.mu);
            cudasim__lock_memory();
            memcpy(k->recv, out, out_n);
            cudasim__unlock_memory();
            pthread_mutex_lock(&N.mu);
        }
    }
    /* A failed collective never completes on its own, as NCCL's kernel
     * spins when a peer is lost: the stream is stuck until the rank sees
     * the error (ncclCommGetAsyncError) and aborts or destroys the comm. */
    while (c->async != ncclSuccess && c->live)
        pthread_cond_wait(&N.cv, &N.mu);
    pthread_mutex_unlock(&N.mu);
    free(out);
    free(k);
}

static ncclResult_t submit(coll *k, ncclComm_t comm, const void *send, void *recv,
                           cudaStream_t stream)
{
    pthread_mutex_lock(&N.mu);
    int ok = live_locked(comm);
    pthread_mutex_unlock(&N.mu);
    if (!ok)
        return ncclInvalidArgument;
    k->c = comm;
    k->esize = type_size(k->dt);
    if (!k->esize) {
        snprintf(comm->last, sizeof comm->last, "cudasim: unsupported data type %d", (int)k->dt);
        return ncclInvalidArgument;
    }
    size_t nbytes = k->count * k->esize;
    size_t recv_n = k->kind == COLL_ALLGATHER ? nbytes * (size_t)comm->g->n : nbytes;
    char *s = NULL, *r = NULL;
    int need_send = k->kind != COLL_BCAST || comm->rank == k->root;
    if ((need_send && cudasim__resolve_device(send, nbytes, &s)) ||
        cudasim__resolve_device(recv, recv_n, &r)) {
        snprintf(comm->last, sizeof comm->last,
                 "cudasim: a buffer is not device memory of that size");
        return ncclInvalidArgument;
    }
    coll *q = malloc(sizeof *q);
    if (!q)
        return ncclSystemError;
    *q = *k;
    q->send = s;
    q->recv = r;
    cudaError_t e = cudasim__enqueue_fn(stream, run_coll, q);
    if (e != cudaSuccess) {
        free(q);
        snprintf(comm->last, sizeof comm->last, "cudasim: the stream refused the collective");
        return ncclUnhandledCudaError;
    }
    return ncclSuccess;
}

API ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count,
                               ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                               cudaStream_t stream)
{
    if (op != ncclSum && op != ncclProd && op != ncclMin && op != ncclMax)
        return ncclInvalidArgument;
    coll k = {.kind = COLL_ALLREDUCE, .count = count, .dt = datatype, .op = op};
    return submit(&k, comm, sendbuff, recvbuff, stream);
}

API ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count,
                               ncclDataType_t datatype, int root, ncclComm_t comm,
                               cudaStream_t stream)
{
    if (!comm || root < 0 || root >= comm->g->n)
        return ncclInvalidArgument;
    coll k = {.kind = COLL_BCAST, .count = count, .dt = datatype, .root = root};
    return submit(&k, comm, sendbuff, recvbuff, stream);
}

API ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount,
                               ncclDataType_t datatype, ncclComm_t comm, cudaStream_t stream)
{
    coll k = {.kind = COLL_ALLGATHER, .count = sendcount, .dt = datatype};
    return submit(&k, comm, sendbuff, recvbuff, stream);
}

/* ---- controls ----------------------------------------------------------------------- */

API void cudasim_nccl_fail_collective(int rank, uint64_t nth)
{
    pthread_mutex_lock(&N.mu);
    N.fail_rank = rank;
    N.fail_left = nth;
    pthread_mutex_unlock(&N.mu);
}

__attribute__((destructor)) static void nccl_unload(void)
{
    pthread_mutex_lock(&N.mu);
    while (N.comms) {
        struct ncclComm *c = N.comms;
        N.comms = c->next_all;
        free(c);
    }
    while (N.groups) {
        group *g = N.groups;
        N.groups = g->next_all;
        free(g->in);
        free(g->arg);
        free(g->arg2);
        free(g->members);
        free(g);
    }
    pthread_mutex_unlock(&N.mu);
}
