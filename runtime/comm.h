/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The comm interface: the few collectives the runtime needs to agree across
 * ranks.  Backends: comm_single.c (one rank), comm_mpi.c (MPI) and
 * cuda/comm_nccl.c (NCCL).
 *
 * Rule (DESIGN.md): collectives run only on the caller's thread, at points
 * every rank reaches in the same order (open, restore, close, an explicit
 * barrier); never from a background thread.
 */
#ifndef CKPT_RUNTIME_COMM_H
#define CKPT_RUNTIME_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/err.h"

#define CKPT__COMM_VERSION 1

enum ckpt__reduce { CKPT__MIN = 1, CKPT__MAX = 2 };

typedef struct ckpt__comm_methods {
    int version;
    const char *name;
    int (*rank)(const ckpt_comm *c);
    int (*size)(const ckpt_comm *c);
    int (*barrier)(ckpt_comm *c, ckpt__err *err);
    int (*bcast)(ckpt_comm *c, void *buf, size_t n, int root, ckpt__err *err);
    int (*allreduce_i64)(ckpt_comm *c, int64_t *vals, int n, int op, ckpt__err *err);
    /* recv (root only) gets size() * n bytes, rank order. */
    int (*gather)(ckpt_comm *c, const void *send, size_t n, void *recv, int root,
                  ckpt__err *err);
    void (*destroy)(ckpt_comm *c);
} ckpt__comm_methods;

struct ckpt_comm {
    const ckpt__comm_methods *m;
    void *impl;
};

/* A heap-allocated single-rank comm; NULL when out of memory. */
ckpt_comm *ckpt__comm_single(void);

#endif
