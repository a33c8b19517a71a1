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

/* Why a step is due; the first three are agreed across ranks. */
enum {
    CKPT__DUE_TIME = 1,
    CKPT__DUE_SIGNAL = 2,
    CKPT__DUE_FILE = 4,
    CKPT__DUE_STEPS = 8
};

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
    int stuck;           /* rank 0: a request file that could not be removed */
    dev_t stuck_dev;
    ino_t stuck_ino;
} ckpt__policy;

/* Installs the signal handler (every rank) and opens the folder (rank 0),
 * then agrees with the other ranks (a collective of ckpt_open). */
int ckpt__policy_open(ckpt_ctx *ctx, ckpt__err *err);
/* Undoes ckpt__policy_open; safe on a context it never reached once
 * ctx->pol.dir_fd is -1. */
void ckpt__policy_close(ckpt_ctx *ctx);

#endif
