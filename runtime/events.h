/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Save events for cfg.event_fn (events.c).  Their times, like every
 * duration of the runtime, come from base/clock.h.
 */
#ifndef CKPT_RUNTIME_EVENTS_H
#define CKPT_RUNTIME_EVENTS_H

#include <stdint.h>

#include "base/clock.h"
#include "ckpt/ckpt.h"

typedef struct ckpt__job ckpt__job;

/* Calls the context's event callback for job (one event at a time). */
void ckpt__emit(ckpt_ctx *ctx, ckpt__job *job, ckpt_event_kind kind, int error,
                const char *message);

#endif
