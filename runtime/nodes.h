/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The world's nodes, and the partners that keep a rank's replicas (issue
 * 13, [tiers]: the first slice; docs/ARCHITECTURE.md, "Tiers").
 *
 * A node is the set of ranks whose node names are equal.  A rank's node
 * name is, in order: the name it was given (ckpt__node_name's `given`,
 * the configuration's), the environment variable CKPT_NODE (so tests can
 * put the ranks of one machine on different "nodes"), the host name.
 *
 * Numbering, deterministic from the world layout alone:
 *   N1. Nodes are numbered 0..nnodes-1 in the order of their lowest rank
 *       (rank 0's node is node 0).
 *   N2. Within a node, ranks have a local index 0..size-1 in rank order.
 *
 * Partners (replicas 1 or 2 of each rank's local files):
 *   P1. Replica k (1 <= k <= replicas) of the files of rank r, on node n
 *       with local index i, is kept by the rank of local index
 *       i mod size(m) on node m = (n + k) mod nnodes: a ring of nodes, the
 *       k-th next node keeps the k-th copy (SCR's partner scheme, extended
 *       to k hops).
 *   P2. So every replica lies on another node than the rank itself and
 *       than its other replicas, which needs nnodes > replicas; with fewer
 *       nodes the layout is refused (CKPT_EINVAL, naming both numbers),
 *       never silently weaker.
 *   P3. ckpt__nodes_sources lists exactly the ranks whose replica k a rank
 *       keeps: the inverse of P1 (a node smaller than its predecessor's
 *       ring neighbour keeps several ranks' copies; a bigger one has ranks
 *       that keep none).
 *
 * Names compare as at most CKPT__NODE_NAME_MAX - 1 bytes; a longer name is
 * refused, not cut (two names that share a prefix must not merge nodes).
 */
#ifndef CKPT_RUNTIME_NODES_H
#define CKPT_RUNTIME_NODES_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CKPT__NODE_NAME_MAX 64 /* bytes with the terminating NUL */
#define CKPT__REPLICAS_MAX 2

struct ckpt__fault;
typedef struct ckpt_comm ckpt_comm;

typedef struct ckpt__nodes {
    uint32_t nranks, nnodes;
    uint32_t *node;  /* [nranks]: node of each rank (N1) */
    uint32_t *local; /* [nranks]: local index of each rank (N2) */
    uint32_t *first; /* [nnodes + 1]: node n's ranks are byrank[first[n] ..
                        first[n + 1]), in rank order */
    uint32_t *byrank;
} ckpt__nodes;

/* This rank's node name into out (CKPT__NODE_NAME_MAX bytes): `given` when
 * not NULL, else $CKPT_NODE when set, else gethostname().  An empty or too
 * long name is CKPT_EINVAL, naming where it came from. */
int ckpt__node_name(const char *given, char out[CKPT__NODE_NAME_MAX], ckpt__err *err);

/* The layout of nranks ranks from their names (names[r * CKPT__NODE_NAME_MAX],
 * each NUL-terminated).  *out is owned by the caller (ckpt__nodes_free),
 * zeroed on failure. */
int ckpt__nodes_build(const char *names, uint32_t nranks, ckpt__nodes *out, ckpt__err *err);

/* Collective over comm, on the caller's thread (comm.h's rule): every
 * rank's name gathered on rank 0, the layout built there and broadcast,
 * so every rank holds the same *out. */
int ckpt__nodes_gather(ckpt_comm *comm, struct ckpt__fault *f, const char *name,
                       ckpt__nodes *out, ckpt__err *err);

void ckpt__nodes_free(ckpt__nodes *n);

/* CKPT_EINVAL unless 0 <= replicas <= CKPT__REPLICAS_MAX and (replicas == 0
 * or nnodes > replicas) (P2). */
int ckpt__nodes_check_replicas(const ckpt__nodes *n, int replicas, ckpt__err *err);

/* The rank that keeps replica k (1-based) of rank's files (P1).  Requires
 * a layout that passed ckpt__nodes_check_replicas for k. */
uint32_t ckpt__nodes_partner(const ckpt__nodes *n, uint32_t rank, int k);

/* The ranks whose replica k this rank keeps, in rank order, into out
 * (room for n->nranks); returns how many (P3). */
uint32_t ckpt__nodes_sources(const ckpt__nodes *n, uint32_t rank, int k, uint32_t *out);

#ifdef __cplusplus
}
#endif

#endif
