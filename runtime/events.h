/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Save events for cfg.event_fn (events.c), and the monotonic clock they
 * and the commit's waits are timed with.
 */
#ifndef CKPT_RUNTIME_EVENTS_H
#define CKPT_RUNTIME_EVENTS_H

#include <stdint.h>

#include "ckpt/ckpt.h"

typedef struct ckpt__job ckpt__job;

/* CLOCK_MONOTONIC, in nanoseconds. */
uint64_t ckpt__now_ns(void);
/* Calls the context's event callback for job (one event at a time). */
void ckpt__emit(ckpt_ctx *ctx, ckpt__job *job, ckpt_event_kind kind, int error,
                const char *message);

#endif
