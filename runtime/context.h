/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The context (struct ckpt_ctx, whose lifecycle and public entry points
 * are ctx.c) and the context-level calls the runtime's files make on it:
 * restore (restore.c).
 * Each part it holds has its own header: registry.h, tickets.h, save.h
 * (jobs, coordinator), retention.h (janitor), policy.h, engine.h.
 * Internal to runtime/; the CLI and the bench need none of it.
 *
 * Threads and ownership of a context:
 *   - the caller's thread runs every public function;
 *   - one coordinator thread per context runs saves, one at a time, in
 *     submission order (save.c);
 *   - the janitor applies retention after commits (retention.c);
 *   - backend threads (copy, hash, I/O) only touch what a request hands
 *     them (pipeline.h).
 * ctx->mu guards the job queue, the ticket table (tickets.h), inflight,
 * snap_pending and stop; everything else of the context belongs to the
 * caller's thread, except the registry, which the coordinator reads while
 * saves are in flight and which is therefore frozen then (ckpt_register ->
 * CKPT_ESTATE).
 */
#ifndef CKPT_RUNTIME_CONTEXT_H
#define CKPT_RUNTIME_CONTEXT_H

#include <pthread.h>
#include <stdint.h>

#include "ckpt/ckpt.h"
#include "runtime/comm.h"
#include "runtime/commit.h"
#include "runtime/engine.h"
#include "base/err.h"
#include "runtime/events.h"
#include "runtime/error_codes.h"
#include "runtime/fault.h"
#include "runtime/layout.h"
#include "runtime/nodes.h"
#include "base/log.h"
#include "runtime/policy.h"
#include "runtime/registry.h"
#include "runtime/replica.h"
#include "runtime/retention.h"
#include "runtime/save.h"
#include "runtime/tickets.h"

/* A folder that saves go to and restores read from (docs/ARCHITECTURE.md,
 * "Tiers"): DIR, committed by the whole world with rank 0 as leader, or
 * this node's local_dir, committed by the node's ranks with its lowest
 * rank as leader (a group, commit.h). */
typedef struct ckpt__tier {
    const char *dir;
    ckpt__group g;
    ckpt_tier kind; /* CKPT_TIER_DURABLE or CKPT_TIER_LOCAL */
} ckpt__tier;

struct ckpt_ctx {
    ckpt_config cfg; /* cfg.dir points at dir, cfg.policy_request_file at pol.file,
                        cfg.local_dir at local_dir, cfg.node_name at node_name */
    char *dir;
    char *local_dir; /* cfg.local_dir points here; NULL: no local tier */
    char *node_name; /* cfg.node_name points here, or NULL */
    ckpt__err err;   /* last error of a call on this context */
    ckpt__log log;
    ckpt_comm *comm;
    int rank, world;
    /* The other ranks learn a save's verdict from rank 0's note (comm.h)
     * rather than from the folder alone; the coordinator clears it when a
     * note fails (rank 0: once sending failed, it keeps trying). */
    int notes;
    ckpt__fault fault;
    ckpt__engine eng;
    ckpt__registry reg;
    ckpt__metastore meta;
    ckpt__providers prov;      /* ckpt_set_meta_fn */
    int64_t restored_step;     /* the last ckpt_restore's step, or -1 */
    uint8_t restored_uuid[16]; /* and its checkpoint's uuid */
    uint8_t run_uuid[16];
    uint64_t seq;
    /* The coordinator's: the layout cache (layout.h) and how many saves
     * built their rank file through HDF5 or wrote it from the cache (read
     * by the test hooks between saves). */
    ckpt__layout *layout;
    ckpt__layout *local_layout; /* the local tier's: its index spreads the
                                   replicated tensors over the node only */
    uint64_t layout_built, layout_cached;

    pthread_mutex_t ev_mu; /* one event at a time (events.c) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t coord;
    int coord_running;
    int stop;
    ckpt__job *qhead, *qtail;
    int inflight;     /* accepted saves not finished */
    int64_t running_step; /* the step the coordinator is saving, or -1 */
    ckpt__janitor jan;    /* applies retention after commits (retention.c) */
    /* Tiers, set at open and read-only after: the durable tier (DIR) and,
     * with local_dir, the local one, its node layout and its janitor (run
     * by the node's leader, local_keep_last). */
    ckpt__tier durable, local;
    int has_local;
    int drain_off; /* coordinator's: the last local pass failed, so durable
                      saves copy from the tensors (save.c, run_job) */
    struct ckpt__job *close_job; /* ctx->mu: the newest save when it was
                      local-only and its local pass committed, kept (with
                      its local file's index) for ckpt_close's drain */
    int64_t last_step;   /* ctx->mu: the newest accepted save's step */
    int last_durable;    /* ctx->mu: and whether it goes to DIR */
    uint64_t reg_changes; /* caller's: registrations since open */
    int close_rc;        /* ctx->mu: ckpt_close's drain, by the coordinator */
    ckpt__err close_err;
    ckpt__nodes nodes;
    ckpt__janitor ljan;
    ckpt__replicas repl; /* the coordinator's (replica.c) */
    ckpt_tier restored_tier; /* the tier the last ckpt_restore read this rank from */
    uint64_t restore_bytes[4]; /* per ckpt_tier: what the last ckpt_restore read */
    int snap_pending; /* accepted saves whose snapshot is not complete */
    int snap_unqueued; /* accepted saves whose snapshot copies are not all
                          queued (fence on the device waits for these) */
    ckpt__tickets tix;    /* ctx->mu (tickets.c) */
    ckpt__policy pol;     /* ckpt_policy_due (policy.c) */
};

/* restore.c */
int ckpt__restore(ckpt_ctx *ctx, int64_t step, void *stream, int64_t *step_out);
int ckpt__restore_tensors(ckpt_ctx *ctx, const char *const *names, size_t n, void *stream);

#endif
