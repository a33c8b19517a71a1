/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NCCL comm backend: the runtime's few collectives over its own
 * communicator, split from the training job's.
 *
 * NCCL moves device memory only, so every collective stages through one
 * device buffer (`dbuf`, SCRATCH bytes, allocated at creation on the
 * communicator's device) and its pinned host mirror (`hbuf`, same layout):
 * the host bytes go into hbuf, in with cudaMemcpyAsync on the comm's
 * stream, the collective runs on the same stream, the result comes back
 * into hbuf the same way, the calling thread waits for the stream, and
 * only then copies the result out.  Larger payloads go in pieces.
 *
 * Built as libckpt_nccl, which needs no symbol of libckpt (comm.h): a
 * failure of ckpt_comm_nccl travels on the failed comm it returns.
 *
 * Invariants:
 *   1. Calls come only from the caller's thread (comm.h), so one buffer and
 *      one stream serve every collective without a lock.
 *   2. Each collective makes the comm's device current for its duration and
 *      puts the caller's current device back, so the training thread's
 *      device is never changed behind its back.
 *   3. Waiting polls the stream and ncclCommGetAsyncError: an asynchronous
 *      NCCL failure (a peer gone, a network error) aborts the split
 *      communicator and returns CKPT_ECOMM instead of hanging in a
 *      synchronize.  After that every collective fails at once.  So no CUDA
 *      call of a collective may block on the stream: copies touch pinned
 *      hbuf only (a copy to pageable memory returns only once it is done,
 *      which would wait for a collective that never ends).
 *   4. Every CUDA and NCCL result is checked and reported with the call's
 *      name and the library's message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ckpt/ckpt_nccl.h>

#include "runtime/comm.h"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 18, 0)
#error "ckptrt's NCCL backend needs NCCL 2.18 or later (ncclCommSplit)"
#endif

/* The device staging buffer; bcast and allreduce pieces use all of it,
 * gather splits it into size + 1 slots. */
#define SCRATCH ((size_t)1 << 20)

typedef struct nccl_comm {
    ncclComm_t comm; /* the runtime's own, from ncclCommSplit */
    cudaStream_t stream;
    int own_stream;
    int dev;
    int rank, size;
    int broken; /* Inv. 3: the communicator was aborted */
    unsigned char *dbuf;
    unsigned char *hbuf; /* pinned, SCRATCH bytes: dbuf's host side (Inv. 3) */
} nccl_comm;

static nccl_comm *impl(const ckpt_comm *c)
{
    return c->impl;
}

static int cuda_fail(ckpt__err *err, cudaError_t e, const char *call)
{
    return ckpt__err_set(err, CKPT_ECOMM, "%s: %s: %s", call, cudaGetErrorName(e),
                         cudaGetErrorString(e));
}

static int nccl_fail(ckpt__err *err, ncclComm_t comm, ncclResult_t r, const char *call)
{
    const char *last = comm ? ncclGetLastError(comm) : NULL;
    return ckpt__err_set(err, CKPT_ECOMM, "%s: %s%s%s", call, ncclGetErrorString(r),
                         last && *last ? ": " : "", last && *last ? last : "");
}

#define CUDA_TRY(call)                                                                      \
    do {                                                                                    \
        cudaError_t e_ = (call);                                                            \
        if (e_ != cudaSuccess) {                                                            \
            rc = cuda_fail(err, e_, #call);                                                 \
            goto out;                                                                       \
        }                                                                                   \
    } while (0)

#define NCCL_TRY(n, call)                                                                   \
    do {                                                                                    \
        ncclResult_t r_ = (call);                                                           \
        if (r_ != ncclSuccess) {                                                            \
            rc = nccl_fail(err, (n)->comm, r_, #call);                                      \
            goto out;                                                                       \
        }                                                                                   \
    } while (0)

/* Inv. 2: the device the caller had is put back by leave(), which is safe
 * to call whatever enter() returned. */
static int enter(nccl_comm *n, int *prev, ckpt__err *err)
{
    if (n->broken)
        return ckpt__err_set(err, CKPT_ECOMM,
                             "the NCCL communicator was aborted after an earlier failure");
    *prev = n->dev; /* leave() is a no-op until the caller's device is known */
    int cur = n->dev;
    cudaError_t e = cudaGetDevice(&cur);
    if (e != cudaSuccess)
        return cuda_fail(err, e, "cudaGetDevice");
    *prev = cur;
    e = cur == n->dev ? cudaSuccess : cudaSetDevice(n->dev);
    return e == cudaSuccess ? 0 : cuda_fail(err, e, "cudaSetDevice");
}

static void leave(const nccl_comm *n, int prev)
{
    if (prev != n->dev)
        cudaSetDevice(prev);
}

/* Inv. 3: waits for the stream while watching for asynchronous failures. */
static int wait_stream(nccl_comm *n, ckpt__err *err)
{
    struct timespec nap = {0, 20000};
    for (;;) {
        cudaError_t e = cudaStreamQuery(n->stream);
        if (e == cudaSuccess)
            return 0;
        if (e != cudaErrorNotReady)
            return cuda_fail(err, e, "cudaStreamQuery");
        ncclResult_t async = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(n->comm, &async);
        if (r != ncclSuccess || (async != ncclSuccess && async != ncclInProgress)) {
            int rc = nccl_fail(err, n->comm, r != ncclSuccess ? r : async,
                               "ncclCommGetAsyncError");
            ncclCommAbort(n->comm);
            n->broken = 1;
            return rc;
        }
        nanosleep(&nap, NULL);
    }
}

static int nc_rank(const ckpt_comm *c)
{
    return impl(c)->rank;
}

static int nc_size(const ckpt_comm *c)
{
    return impl(c)->size;
}

static int nc_allreduce(ckpt_comm *c, int64_t *vals, int count, int op, ckpt__err *err)
{
    nccl_comm *n = impl(c);
    if (count <= 0 || (size_t)count * sizeof *vals > SCRATCH ||
        (op != CKPT__MIN && op != CKPT__MAX))
        return ckpt__err_set(err, CKPT_EINVAL, "allreduce of %d values, op %d", count, op);
    int prev, rc = enter(n, &prev, err);
    if (rc)
        return rc;
    size_t nbytes = (size_t)count * sizeof *vals;
    memcpy(n->hbuf, vals, nbytes);
    CUDA_TRY(cudaMemcpyAsync(n->dbuf, n->hbuf, nbytes, cudaMemcpyHostToDevice, n->stream));
    NCCL_TRY(n, ncclAllReduce(n->dbuf, n->dbuf, (size_t)count, ncclInt64,
                              op == CKPT__MIN ? ncclMin : ncclMax, n->comm, n->stream));
    CUDA_TRY(cudaMemcpyAsync(n->hbuf, n->dbuf, nbytes, cudaMemcpyDeviceToHost, n->stream));
    rc = wait_stream(n, err);
    if (!rc)
        memcpy(vals, n->hbuf, nbytes);
out:
    leave(n, prev);
    return rc;
}

static int nc_barrier(ckpt_comm *c, ckpt__err *err)
{
    int64_t one = 1;
    return nc_allreduce(c, &one, 1, CKPT__MAX, err);
}

/* Runs one(n, arg, off, piece) for each piece of at most `most` bytes of
 * nbytes, waits for the stream after each, then land(...) copies the
 * piece's result out of hbuf (the next piece reuses both buffers), with
 * the comm's device current (Inv. 2). */
typedef int (*piece_fn)(nccl_comm *n, void *arg, size_t off, size_t piece, ckpt__err *err);
typedef void (*land_fn)(nccl_comm *n, void *arg, size_t off, size_t piece);

static int in_pieces(nccl_comm *n, size_t nbytes, size_t most, piece_fn one, land_fn land,
                     void *arg, ckpt__err *err)
{
    int prev, rc = enter(n, &prev, err);
    for (size_t off = 0; !rc && off < nbytes;) {
        size_t piece = nbytes - off < most ? nbytes - off : most;
        rc = one(n, arg, off, piece, err);
        if (!rc)
            rc = wait_stream(n, err);
        if (!rc)
            land(n, arg, off, piece);
        off += piece;
    }
    leave(n, prev);
    return rc;
}

typedef struct bcast_arg {
    char *buf;
    int root;
} bcast_arg;

static int bcast_piece(nccl_comm *n, void *arg, size_t off, size_t piece, ckpt__err *err)
{
    bcast_arg *a = arg;
    int rc = 0;
    if (n->rank == a->root) {
        memcpy(n->hbuf, a->buf + off, piece);
        CUDA_TRY(cudaMemcpyAsync(n->dbuf, n->hbuf, piece, cudaMemcpyHostToDevice, n->stream));
    }
    NCCL_TRY(n, ncclBroadcast(n->dbuf, n->dbuf, piece, ncclUint8, a->root, n->comm, n->stream));
    if (n->rank != a->root)
        CUDA_TRY(cudaMemcpyAsync(n->hbuf, n->dbuf, piece, cudaMemcpyDeviceToHost, n->stream));
out:
    return rc;
}

static void bcast_land(nccl_comm *n, void *arg, size_t off, size_t piece)
{
    bcast_arg *a = arg;
    if (n->rank != a->root)
        memcpy(a->buf + off, n->hbuf, piece);
}

static int nc_bcast(ckpt_comm *c, void *buf, size_t nbytes, int root, ckpt__err *err)
{
    nccl_comm *n = impl(c);
    if (root < 0 || root >= n->size)
        return ckpt__err_set(err, CKPT_EINVAL, "bcast from rank %d of %d", root, n->size);
    bcast_arg a = {buf, root};
    return in_pieces(n, nbytes, SCRATCH, bcast_piece, bcast_land, &a, err);
}

typedef struct gather_arg {
    const char *send;
    char *recv;
    size_t nbytes, slot;
    int root;
} gather_arg;

/* NCCL has no gather: an allgather into size slots after our own, and only
 * the root copies the slots out. */
static int gather_piece(nccl_comm *n, void *arg, size_t off, size_t piece, ckpt__err *err)
{
    gather_arg *a = arg;
    unsigned char *all = n->dbuf + a->slot;
    int rc = 0;
    memcpy(n->hbuf, a->send + off, piece);
    CUDA_TRY(cudaMemcpyAsync(n->dbuf, n->hbuf, piece, cudaMemcpyHostToDevice, n->stream));
    NCCL_TRY(n, ncclAllGather(n->dbuf, all, piece, ncclUint8, n->comm, n->stream));
    if (n->rank == a->root)
        CUDA_TRY(cudaMemcpyAsync(n->hbuf + a->slot, all, (size_t)n->size * piece,
                                 cudaMemcpyDeviceToHost, n->stream));
out:
    return rc;
}

static void gather_land(nccl_comm *n, void *arg, size_t off, size_t piece)
{
    gather_arg *a = arg;
    for (int r = 0; n->rank == a->root && r < n->size; r++)
        memcpy(a->recv + (size_t)r * a->nbytes + off, n->hbuf + a->slot + (size_t)r * piece,
               piece);
}

static int nc_gather(ckpt_comm *c, const void *send, size_t nbytes, void *recv, int root,
                     ckpt__err *err)
{
    nccl_comm *n = impl(c);
    if (root < 0 || root >= n->size || (n->rank == root && !recv && nbytes))
        return ckpt__err_set(err, CKPT_EINVAL, "gather of %zu bytes to rank %d of %d", nbytes,
                             root, n->size);
    size_t slot = SCRATCH / ((size_t)n->size + 1);
    if (slot == 0)
        return ckpt__err_set(err, CKPT_EINVAL, "gather over %d ranks", n->size);
    gather_arg a = {send, recv, nbytes, slot, root};
    return in_pieces(n, nbytes, slot, gather_piece, gather_land, &a, err);
}

static void nc_destroy(ckpt_comm *c)
{
    if (!c)
        return;
    nccl_comm *n = impl(c);
    int prev = n->dev;
    cudaGetDevice(&prev);
    cudaSetDevice(n->dev);
    if (n->comm && !n->broken)
        ncclCommDestroy(n->comm);
    if (n->dbuf)
        cudaFree(n->dbuf);
    if (n->hbuf)
        cudaFreeHost(n->hbuf);
    if (n->own_stream && n->stream)
        cudaStreamDestroy(n->stream);
    if (prev != n->dev)
        cudaSetDevice(prev);
    free(n);
    free(c);
}

static const ckpt__comm_methods nccl_methods = {
    .version = CKPT__COMM_VERSION,
    .name = "nccl",
    .rank = nc_rank,
    .size = nc_size,
    .barrier = nc_barrier,
    .bcast = nc_bcast,
    .allreduce_i64 = nc_allreduce,
    .gather = nc_gather,
    .destroy = nc_destroy,
};

ckpt_comm *ckpt_comm_nccl(ncclComm_t comm, cudaStream_t stream)
{
    ckpt__err errbuf, *err = &errbuf;
    ckpt__err_clear(err);
    if (!comm) {
        ckpt__err_set(err, CKPT_EINVAL, "ckpt_comm_nccl: comm is NULL");
        return ckpt__comm_failed(err);
    }
    ckpt_comm *c = calloc(1, sizeof *c);
    nccl_comm *n = calloc(1, sizeof *n);
    if (!c || !n) {
        free(c);
        free(n);
        return ckpt__comm_oom();
    }
    ckpt__comm_init(c, &nccl_methods, n);
    int rc = 0, prev = -1, rank = 0;
    NCCL_TRY(n, ncclCommCuDevice(comm, &n->dev));
    NCCL_TRY(n, ncclCommUserRank(comm, &rank));
    CUDA_TRY(cudaGetDevice(&prev));
    CUDA_TRY(cudaSetDevice(n->dev));
    /* Collective over the caller's comm: one color, ranks kept in order. */
    NCCL_TRY(n, ncclCommSplit(comm, 0, rank, &n->comm, NULL));
    if (!n->comm) {
        rc = ckpt__err_set(err, CKPT_ECOMM, "ncclCommSplit returned no communicator");
        goto out;
    }
    NCCL_TRY(n, ncclCommUserRank(n->comm, &n->rank));
    NCCL_TRY(n, ncclCommCount(n->comm, &n->size));
    if (stream) {
        n->stream = stream;
    } else {
        CUDA_TRY(cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
        n->own_stream = 1;
    }
    CUDA_TRY(cudaMalloc((void **)&n->dbuf, SCRATCH));
    CUDA_TRY(cudaMallocHost((void **)&n->hbuf, SCRATCH));
out:
    if (prev >= 0 && prev != n->dev)
        cudaSetDevice(prev);
    if (rc) {
        /* The message names the call that failed; it outlives the cleanup
         * on the failed comm. */
        nc_destroy(c);
        ckpt__err_prefix(err, "ckpt_comm_nccl");
        return ckpt__comm_failed(err);
    }
    return c;
}
