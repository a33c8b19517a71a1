/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The restore side of the replicas (issue 13, [tiers]; docs/FORMAT.md,
 * "The local tier", "Restore from replicas"): which steps each rank's
 * partners keep for it, fetching a rank's missing or damaged local files
 * of the agreed step from a partner into its node's local folder before
 * the ordinary local restore reads them, and re-creating the replicas
 * that partners lost once a restore has succeeded.
 *
 * Every function here is collective over the context's comm (the caller's
 * thread of every rank, in the same order), except ckpt__reach_newest and
 * ckpt__reach_free; the point-to-point moves go through the exchange
 * (comm.h), which a restore may use from the caller's thread because no
 * save is in flight then (restore quiesces).
 */
#ifndef CKPT_RUNTIME_REPLICA_RESTORE_H
#define CKPT_RUNTIME_REPLICA_RESTORE_H

#include <stdint.h>

#include "base/err.h"
#include "runtime/nodes.h"

typedef struct ckpt_ctx ckpt_ctx;

/* How many of its newest committed steps a partner reports per replica:
 * the message has a fixed size; an older step is reached through DIR. */
#define CKPT__REACH_STEPS 64

/* Committed steps of one replica folder, newest first. */
typedef struct ckpt__reach_list {
    int64_t n;
    int64_t steps[CKPT__REACH_STEPS];
} ckpt__reach_list;

typedef struct ckpt__reach {
    int replicas;
    /* held[k - 1]: what this rank's partner k keeps of this rank's files. */
    ckpt__reach_list held[CKPT__REPLICAS_MAX];
    /* The ranks whose replica k this rank keeps (src[k - 1][0..nsrc)), and
     * what it reported keeping of each (kept[k - 1][j]). */
    uint32_t nsrc[CKPT__REPLICAS_MAX];
    uint32_t *src[CKPT__REPLICAS_MAX];
    ckpt__reach_list *kept[CKPT__REPLICAS_MAX];
} ckpt__reach;

/* Collective (cfg.replicas > 0): every rank scans the replica folders it
 * keeps and sends each source the list, through one exchange.  *out is
 * the caller's (ckpt__reach_free), also on failure. */
int ckpt__reach_exchange(ckpt_ctx *ctx, ckpt__reach *out, ckpt__err *err);
void ckpt__reach_free(ckpt__reach *r);

/* The newest step at or below bound that some partner keeps; -1: none. */
int64_t ckpt__reach_newest(const ckpt__reach *r, int64_t bound);

/* Collective, before the checks of the agreed step: every rank tells rank
 * 0 whether its own local file of step is usable; rank 0 plans, per node
 * whose every lacking rank has a partner keeping step, who sends whom; the
 * files move and land in the node's local folder with a commit of their
 * own.  *fetched: this rank's files were fetched and landed.  A failure
 * to fetch is no error (the rank reads DIR then); only a broken comm is
 * (*fatal = 1). */
int ckpt__replica_fetch(ckpt_ctx *ctx, const ckpt__reach *r, int64_t step, int *fetched,
                        int *fatal, ckpt__err *err);

/* Collective, after a restore of step succeeded: every rank whose partner
 * reported no replica of step for it sends its local files, and the
 * partner lands them.  Failures are logged, never returned. */
void ckpt__replica_refill(ckpt_ctx *ctx, const ckpt__reach *r, int64_t step);

#endif
