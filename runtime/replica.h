/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replicas of the local tier (replica.c; issue 13, [tiers];
 * docs/ARCHITECTURE.md, "Tiers"; docs/FORMAT.md, "Replicas"): after each
 * save's local commit, every rank sends its committed local files to the
 * ranks that keep its replicas (nodes.h, P1) and lands the replicas of the
 * ranks it keeps, verified, under LOCAL/replica-of-R/, on the coordinator
 * thread through the comm's exchange.  A failed replication is a warning;
 * it never fails the save.
 */
#ifndef CKPT_RUNTIME_REPLICA_H
#define CKPT_RUNTIME_REPLICA_H

#include <stdint.h>

#include "base/err.h"
#include "base/log.h"

struct ckpt_ctx;
typedef struct ckpt__replica_sent ckpt__replica_sent;

/* The coordinator's replication state, in the context. */
typedef struct ckpt__replicas {
    int off; /* an exchange failed: the channel may be broken (comm.h), so
                no more rounds (logged once) */
    /* Send buffers of rounds whose exchange failed: the backend may still
     * read them (comm.h), so they stay allocated and mapped until the
     * context is destroyed, after its comm. */
    ckpt__replica_sent *kept;
} ckpt__replicas;

/* One round for the save of step (its uuid), on the coordinator thread,
 * with every rank taking part in every round: this rank's committed local
 * files (have_local: its local pass committed) to each of its partners,
 * its sources' into LOCAL/replica-of-SRC/, each landed only once it
 * verified.  Waits at most half of cfg.commit_timeout_s, so that a peer
 * that never answers leaves the durable pass after it its time.  Returns
 * 1 when the round fully succeeded (every replica of this rank sent, every
 * replica it keeps landed), 0 when it did not (warnings name the step,
 * source and partner), -1 when replication is off (no round ran). */
int ckpt__replica_round(struct ckpt_ctx *ctx, int64_t step, const uint8_t uuid[16],
                        int have_local);

/* Frees what rounds kept (ckpt__replicas.kept).  Only once the comm is
 * destroyed. */
void ckpt__replicas_free(ckpt__replicas *r);

/* A node's leader at open: the leftovers of crashed replica landings
 * (partial and trash folders) in every replica-of-R folder of local_dir,
 * as ckpt__catalog_cleanup in the local folder itself. */
int ckpt__replica_cleanup(const char *local_dir, ckpt__log *log, ckpt__err *err);

#endif
