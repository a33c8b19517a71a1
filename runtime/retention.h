/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Retention (retention.c): which committed checkpoints to delete, and the
 * janitor, the thread of a context that applies the rules after each
 * commit on rank 0, so that deleting old checkpoints (seconds, at times)
 * delays neither the save's ticket nor the next save's snapshot.
 *
 * The janitor has its own mutex: the coordinator requests a pass while it
 * holds the context's mutex (lock order: ctx->mu, then the janitor's), in
 * the same critical section that finishes the save's ticket, so a caller
 * that saw the ticket finish and then waits for the janitor waits for that
 * pass too.  The janitor thread never takes the context's mutex.
 */
#ifndef CKPT_RUNTIME_RETENTION_H
#define CKPT_RUNTIME_RETENTION_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "base/err.h"
#include "base/log.h"

typedef struct ckpt__retention {
    int keep_last;
    int keep_every;
    double max_age_hours;
} ckpt__retention;

/* Deletes what the rules no longer keep among the committed steps older
 * than `protect`, a step known to be sound (the one just committed, or the
 * newest that `ckpt gc` verified); never `protect` itself nor a newer step,
 * and nothing when protect < 0.  *deleted (may be NULL) gets how many went. */
int ckpt__retention_apply(const char *dir, const ckpt__retention *rules, int64_t protect,
                          ckpt__log *log, int *deleted, ckpt__err *err);
/* Whether retention_apply deletes steps[i] of the catalog `steps` (newest
 * first) at time now: the rules alone, deleting nothing (`ckpt gc --dry-run`). */
int ckpt__retention_drops(const char *dir, const ckpt__retention *rules, const int64_t *steps,
                          size_t i, int64_t protect, const struct timespec *now);

typedef struct ckpt__janitor {
    const char *dir; /* borrowed: the context's folder */
    ckpt__retention rules;
    ckpt__log *log;  /* borrowed */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int running;
    int req, busy, stop; /* a pass requested / running; stop asked */
    int64_t step;        /* the step the requested pass must never delete */
} ckpt__janitor;

/* Starts the janitor of dir; CKPT_E* from pthread_create in err.  On
 * failure nothing is left to stop. */
int ckpt__janitor_start(ckpt__janitor *j, const char *dir, const ckpt__retention *rules,
                        ckpt__log *log, ckpt__err *err);
/* Asks for a pass after step was committed (replaces a pass not started). */
void ckpt__janitor_request(ckpt__janitor *j, int64_t step);
/* Blocks until no pass is pending or running.  A janitor never started
 * has none. */
void ckpt__janitor_wait(ckpt__janitor *j);
/* Finishes a pending pass, then ends the thread.  A janitor never started
 * (or stopped already) is left alone. */
void ckpt__janitor_stop(ckpt__janitor *j);

#endif
