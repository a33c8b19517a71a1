/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The single-rank comm backend: rank 0 of 1; every collective is the
 * identity.  It is what ckpt_open uses when the caller passes no comm.
 */
#include <stdlib.h>
#include <string.h>

#include "runtime/comm.h"

static int single_rank(const ckpt_comm *c)
{
    (void)c;
    return 0;
}

static int single_size(const ckpt_comm *c)
{
    (void)c;
    return 1;
}

static int single_barrier(ckpt_comm *c, ckpt__err *err)
{
    (void)c, (void)err;
    return 0;
}

static int single_bcast(ckpt_comm *c, void *buf, size_t n, int root, ckpt__err *err)
{
    (void)c, (void)buf, (void)n;
    if (root != 0)
        return ckpt__err_set(err, CKPT_EINVAL, "bcast from rank %d of 1", root);
    return 0;
}

static int single_allreduce(ckpt_comm *c, int64_t *vals, int n, int op, ckpt__err *err)
{
    (void)c, (void)vals, (void)n, (void)op, (void)err;
    return 0;
}

static int single_gather(ckpt_comm *c, const void *send, size_t n, void *recv, int root,
                         ckpt__err *err)
{
    (void)c;
    if (root != 0)
        return ckpt__err_set(err, CKPT_EINVAL, "gather to rank %d of 1", root);
    memcpy(recv, send, n);
    return 0;
}

static void single_destroy(ckpt_comm *c)
{
    free(c);
}

static const ckpt__comm_methods single_methods = {
    .version = CKPT__COMM_VERSION,
    .name = "single",
    .rank = single_rank,
    .size = single_size,
    .barrier = single_barrier,
    .bcast = single_bcast,
    .allreduce_i64 = single_allreduce,
    .gather = single_gather,
    .destroy = single_destroy,
};

ckpt_comm *ckpt__comm_single(void)
{
    ckpt_comm *c = calloc(1, sizeof *c);
    if (c)
        ckpt__comm_init(c, &single_methods, NULL);
    return c;
}
