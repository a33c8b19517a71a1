/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The MPI comm backend: the runtime's few collectives over a duplicate of
 * the caller's communicator.
 *
 * Built as libckpt_mpi, which needs no symbol of libckpt (comm.h): a
 * failure of ckpt_comm_mpi travels on the failed comm it returns.
 *
 * Invariants: the duplicate returns errors instead of aborting the job
 * (MPI_ERRORS_RETURN), so a failed collective becomes CKPT_ECOMM with
 * MPI's message; every call comes from the caller's thread (comm.h); byte
 * counts above INT_MAX are sent in pieces.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ckpt/ckpt_mpi.h>

#include "runtime/comm.h"

typedef struct mpi_comm {
    MPI_Comm comm;
    int rank, size;
} mpi_comm;

static mpi_comm *impl(const ckpt_comm *c)
{
    return c->impl;
}

static int fail(ckpt__err *err, int mrc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(mrc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "MPI error %d", mrc);
    return ckpt__err_set(err, CKPT_ECOMM, "%s: %s", what, msg);
}

static int mpi_rank(const ckpt_comm *c)
{
    return impl(c)->rank;
}

static int mpi_size(const ckpt_comm *c)
{
    return impl(c)->size;
}

static int mpi_barrier(ckpt_comm *c, ckpt__err *err)
{
    int mrc = MPI_Barrier(impl(c)->comm);
    return mrc == MPI_SUCCESS ? 0 : fail(err, mrc, "MPI_Barrier");
}

static int mpi_bcast(ckpt_comm *c, void *buf, size_t n, int root, ckpt__err *err)
{
    if (root < 0 || root >= impl(c)->size)
        return ckpt__err_set(err, CKPT_EINVAL, "bcast from rank %d of %d", root,
                             impl(c)->size);
    for (size_t off = 0; off < n;) {
        size_t piece = n - off > INT_MAX ? INT_MAX : n - off;
        int mrc = MPI_Bcast((char *)buf + off, (int)piece, MPI_BYTE, root, impl(c)->comm);
        if (mrc != MPI_SUCCESS)
            return fail(err, mrc, "MPI_Bcast");
        off += piece;
    }
    return 0;
}

static int mpi_allreduce(ckpt_comm *c, int64_t *vals, int n, int op, ckpt__err *err)
{
    if (n <= 0 || (op != CKPT__MIN && op != CKPT__MAX))
        return ckpt__err_set(err, CKPT_EINVAL, "allreduce of %d values, op %d", n, op);
    int mrc = MPI_Allreduce(MPI_IN_PLACE, vals, n, MPI_INT64_T, op == CKPT__MIN ? MPI_MIN : MPI_MAX,
                            impl(c)->comm);
    return mrc == MPI_SUCCESS ? 0 : fail(err, mrc, "MPI_Allreduce");
}

static int mpi_gather(ckpt_comm *c, const void *send, size_t n, void *recv, int root,
                      ckpt__err *err)
{
    if (root < 0 || root >= impl(c)->size || n > INT_MAX)
        return ckpt__err_set(err, CKPT_EINVAL, "gather of %zu bytes to rank %d of %d", n, root,
                             impl(c)->size);
    int mrc = MPI_Gather(send, (int)n, MPI_BYTE, recv, (int)n, MPI_BYTE, root, impl(c)->comm);
    return mrc == MPI_SUCCESS ? 0 : fail(err, mrc, "MPI_Gather");
}

static void mpi_destroy(ckpt_comm *c)
{
    if (!c)
        return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin)
        MPI_Comm_free(&impl(c)->comm);
    free(c->impl);
    free(c);
}

static const ckpt__comm_methods mpi_methods = {
    .version = CKPT__COMM_VERSION,
    .name = "mpi",
    .rank = mpi_rank,
    .size = mpi_size,
    .barrier = mpi_barrier,
    .bcast = mpi_bcast,
    .allreduce_i64 = mpi_allreduce,
    .gather = mpi_gather,
    .destroy = mpi_destroy,
};

ckpt_comm *ckpt_comm_mpi(MPI_Comm comm)
{
    ckpt__err err;
    ckpt__err_clear(&err);
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin) {
        ckpt__err_set(&err, CKPT_ESTATE, "ckpt_comm_mpi: MPI is %s",
                      fin ? "finalized" : "not initialized");
        return ckpt__comm_failed(&err);
    }
    if (comm == MPI_COMM_NULL) {
        ckpt__err_set(&err, CKPT_EINVAL, "ckpt_comm_mpi: comm is MPI_COMM_NULL");
        return ckpt__comm_failed(&err);
    }
    ckpt_comm *c = calloc(1, sizeof *c);
    mpi_comm *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c);
        free(m);
        return ckpt__comm_oom();
    }
    int mrc = MPI_Comm_dup(comm, &m->comm);
    if (mrc != MPI_SUCCESS) {
        fail(&err, mrc, "ckpt_comm_mpi: MPI_Comm_dup");
        free(c);
        free(m);
        return ckpt__comm_failed(&err);
    }
    MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(m->comm, &m->rank);
    MPI_Comm_size(m->comm, &m->size);
    ckpt__comm_init(c, &mpi_methods, m);
    return c;
}
