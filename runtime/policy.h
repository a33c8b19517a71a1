/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The save policy of a context (policy.c, which states its invariants):
 * when ckpt_policy_due says a step is due.
 */
#ifndef CKPT_RUNTIME_POLICY_H
#define CKPT_RUNTIME_POLICY_H

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "ckpt/ckpt.h"
#include "base/err.h"

#define CKPT__POLICY_MAX_S 1e9 /* policy_every_s bound: its nanoseconds fit */
#ifdef NSIG
#define CKPT__NSIG NSIG
#else
#define CKPT__NSIG 65
#endif

/* Why a step is due; all but STEPS are agreed across ranks. */
enum {
    CKPT__DUE_TIME = 1,
    CKPT__DUE_SIGNAL = 2,
    CKPT__DUE_FILE = 4,
    CKPT__DUE_STEPS = 8,
    CKPT__DUE_MTBF = 16
};

#define CKPT__MTBF_WINDOW 5 /* saves whose median cost is a tier's C */
#define CKPT__MTBF_RING 8   /* finished saves and stalls kept for rank 0 */
#define CKPT__MTBF_MAX_EVERY 1000000 /* bound of the durable cadence it sets */

/* policy_mtbf_s: one tier's measured cost and the interval it gives
 * (rank 0).  Indexed by ckpt_tier. */
typedef struct ckpt__mtbf_tier {
    double win[CKPT__MTBF_WINDOW]; /* the last samples, a ring */
    unsigned n, next;              /* samples held (<= WINDOW), next slot */
    double cost_s;                 /* C: their median (n > 0) */
    double interval_s;             /* T = sqrt(2 C MTBF) */
    double logged_s;               /* the interval last logged; < 0 none */
} ckpt__mtbf_tier;

/* A finished save as the coordinator posts it for rank 0's policy. */
typedef struct ckpt__save_cost {
    uint64_t seq;
    double cpu_s[3];   /* per ckpt_tier: its pass's CPU time, 0 no pass */
    int last;          /* the tier of the pass that released the fence */
    int durable;       /* a DIR pass ran (a drain with the local tier) */
} ckpt__save_cost;

/* Owned by the caller's thread, like the rest of the context. */
typedef struct ckpt__policy {
    uint64_t ncalls;     /* counted calls of ckpt_policy_due since open */
    int agree;           /* some rank has a time, signal or file rule */
    uint64_t every_ns;   /* rank 0: policy_every_s, 0 off */
    uint64_t base_ns;    /* rank 0: start of the current period */
    int sig;             /* the signal whose handler this context holds, 0 none */
    unsigned sig_seen;   /* the handler's count this context last took */
    char *file;          /* copy of cfg.policy_request_file (cfg points here) */
    int dir_fd;          /* rank 0 with a request file: the folder, else -1 */
    int pending;         /* CKPT__DUE_* requests taken, not yet agreed */
    int durable_next;    /* the last due step was agreed for a signal or the
                            request file (a shutdown): the next ckpt_save
                            goes to DIR whatever the cadence */
    int stuck;           /* rank 0: a request file that could not be removed */
    dev_t stuck_dev;
    ino_t stuck_ino;
    /* policy_mtbf_s.  Every rank: mtbf, durable_every (agreed at the
     * agreement points) and since_durable; rank 0 measures and decides. */
    int mtbf;               /* cfg.policy_mtbf_s > 0 */
    int durable_every;      /* the durable cadence in force (ckpt_save) */
    uint64_t since_durable; /* local-only saves since the last durable one */
    uint64_t mtbf_base_ns;  /* rank 0: the last due step (or open) */
    ckpt__mtbf_tier tier[3];
    struct {
        uint64_t seq;
        double s;
    } stall[CKPT__MTBF_RING]; /* the caller's blocked time per save */
    uint64_t stall_seq;       /* the newest save: fence and wait add to it */
    ckpt__save_cost done[CKPT__MTBF_RING]; /* ctx->mu: posted by the coordinator */
    uint64_t ndone;           /* ctx->mu: saves posted since open */
    uint64_t ntaken;          /* rank 0: of those, taken into tier[] */
    double test_cost_s[3];    /* test hook: a tier's sample, < 0 measured */
    uint64_t test_now_ns;     /* test hook: the policy's clock, 0 the real one */
} ckpt__policy;

/* Installs the signal handler (every rank) and opens the folder (rank 0),
 * then agrees with the other ranks (a collective of ckpt_open). */
int ckpt__policy_open(ckpt_ctx *ctx, ckpt__err *err);
/* Undoes ckpt__policy_open; safe on a context it never reached once
 * ctx->pol.dir_fd is -1. */
void ckpt__policy_close(ckpt_ctx *ctx);

/* policy_mtbf_s's measurements.  note_stall (caller's thread): the caller
 * was blocked s seconds in ckpt_save for save seq, or (seq 0) in
 * ckpt_fence or ckpt_wait, which counts towards the newest save.
 * note_done (coordinator, under ctx->mu): a save finished (committed or
 * not: a failed one cost as much).  Both do nothing without the rule. */
struct ckpt__job;
void ckpt__policy_note_stall(ckpt_ctx *ctx, uint64_t seq, double s);
void ckpt__policy_note_done(ckpt_ctx *ctx, const struct ckpt__job *job);
/* Whether save seq (1, 2, ... since open) goes to DIR as well: always
 * without the local tier; else every durable_every-th save, the first
 * included, durable_every being policy_mtbf_s's agreed cadence when that
 * rule is on.  Caller's thread, from ckpt_save, once per save in order. */
int ckpt__policy_durable(ckpt_ctx *ctx, uint64_t seq);

#endif
