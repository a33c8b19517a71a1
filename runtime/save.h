/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Save jobs and the coordinator thread that runs them, one at a time, in
 * submission order (save.c).  ckpt_save (ctx.c) queues a job under
 * ctx->mu; the coordinator takes it, moves the snapshot through the
 * pipeline, commits, finishes its ticket and frees it.
 */
#ifndef CKPT_RUNTIME_SAVE_H
#define CKPT_RUNTIME_SAVE_H

#include <stdint.h>

#include "ckpt/ckpt.h"
#include "base/err.h"
#include "runtime/registry.h"

typedef struct ckpt__job {
    struct ckpt__job *next;
    ckpt_ctx *ctx;
    uint64_t ticket;
    int64_t step;
    uint64_t seq;
    ckpt__metastore meta; /* captured at ckpt_save */
    int wanted;           /* the caller holds the ticket */
    int durable;          /* the save goes to DIR (with the local tier: every
                             durable_every-th; without: always) */
    int committed;        /* coordinator: the tiers it committed in, bits
                             1 << CKPT_TIER_LOCAL, 1 << CKPT_TIER_DURABLE,
                             1 << CKPT_TIER_REPLICA */
    int started_sent;     /* coordinator: its STARTED event was emitted */
    int close_drain;      /* ckpt_close's drain of this kept local-only save */
    uint64_t reg_seen;    /* ctx->reg_changes at ckpt_save */
    struct ckpt__drain_src *kept; /* coordinator: the committed local file of
                             a local-only save, for ckpt_close's drain */
    int fence_tier;       /* coordinator: the ckpt_tier of the pass that took
                             the snapshot and released the fence (the save
                             policy charges the caller's stall to it) */
    int snap_done;        /* ctx->mu */
    int snap_queued;      /* ctx->mu: every snapshot copy is queued */
    ckpt__err err;
    uint64_t bytes;       /* set by the coordinator before the copies start */
    double layout_cpu_s;  /* the coordinator's CPU time in the rank file's
                             layout, close and metadata hash (events) */
    double cpu_s[3];      /* coordinator: per ckpt_tier, the CPU time of its
                             pass (coordinator and hash threads; the save
                             policy's cost, policy.c) */
    uint64_t t_save_ns;   /* when ckpt_save was called */
    uint64_t t_local_ns;  /* coordinator: the local tier's commit, 0 before */
    uint64_t t_repl_ns;   /* coordinator: the replication round's end, 0 before */
    uint64_t t_stage_ns;  /* the previous event (ctx->ev_mu) */
} ckpt__job;

/* The coordinator thread of a context (arg: the context). */
void *ckpt__coordinator_main(void *ctx);
void ckpt__job_free(ckpt__job *job);

#endif
