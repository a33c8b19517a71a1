/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Failed comms (comm.h): what a comm factory returns instead of NULL, so
 * that its error reaches ckpt_open without libckpt's per-thread buffer,
 * which the comm libraries cannot reach.  Each comm library compiles its
 * own hidden copy of this file (and of error.c).
 *
 * Invariants: a failed comm's err.code is nonzero and never changes; its
 * collectives return that error without communicating (a rank whose comm
 * failed takes part in no collective); the static out-of-memory comm is
 * never written and never freed.
 */
#include <stdlib.h>

#include "runtime/comm.h"

static int failed_rank(const ckpt_comm *c)
{
    (void)c;
    return 0;
}

static int failed_size(const ckpt_comm *c)
{
    (void)c;
    return 1;
}

static int failed_call(const ckpt_comm *c, ckpt__err *err)
{
    if (err)
        *err = c->err;
    return c->err.code;
}

static int failed_barrier(ckpt_comm *c, ckpt__err *err)
{
    return failed_call(c, err);
}

static int failed_bcast(ckpt_comm *c, void *buf, size_t n, int root, ckpt__err *err)
{
    (void)buf, (void)n, (void)root;
    return failed_call(c, err);
}

static int failed_allreduce(ckpt_comm *c, int64_t *vals, int n, int op, ckpt__err *err)
{
    (void)vals, (void)n, (void)op;
    return failed_call(c, err);
}

static int failed_gather(ckpt_comm *c, const void *send, size_t n, void *recv, int root,
                         ckpt__err *err)
{
    (void)send, (void)n, (void)recv, (void)root;
    return failed_call(c, err);
}

static void failed_destroy(ckpt_comm *c)
{
    free(c);
}

static void oom_destroy(ckpt_comm *c)
{
    (void)c; /* immortal */
}

#define FAILED_METHODS(destroy_fn)                                                          \
    {                                                                                       \
        .version = CKPT__COMM_VERSION, .name = "failed", .rank = failed_rank,               \
        .size = failed_size, .barrier = failed_barrier, .bcast = failed_bcast,              \
        .allreduce_i64 = failed_allreduce, .gather = failed_gather, .destroy = destroy_fn,  \
    }

static const ckpt__comm_methods failed_methods = FAILED_METHODS(failed_destroy);
static const ckpt__comm_methods oom_methods = FAILED_METHODS(oom_destroy);

/* Never written: callers get it through a cast, and every path that could
 * write a comm (ckpt__comm_init) is for working comms only. */
static const ckpt_comm oom_comm = {
    .version = CKPT__COMM_VERSION,
    .m = &oom_methods,
    .impl = NULL,
    .err = {.code = CKPT_ENOMEM, .msg = "comm factory: out of memory"},
};

ckpt_comm *ckpt__comm_oom(void)
{
    return (ckpt_comm *)&oom_comm;
}

ckpt_comm *ckpt__comm_failed(const ckpt__err *err)
{
    ckpt_comm *c = malloc(sizeof *c);
    if (!c)
        return ckpt__comm_oom();
    c->version = CKPT__COMM_VERSION;
    c->m = &failed_methods;
    c->impl = NULL;
    c->err = *err;
    if (!c->err.code) /* a caller's slip must not make a failed comm look fine */
        c->err.code = CKPT_ECOMM;
    return c;
}
