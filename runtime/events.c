/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Save events: one structured log line (info; failures at error) and, when
 * configured, one call of the user's event_fn for each stage of a save
 * (ckpt.h: ckpt_event_kind).  Stages of one save are emitted in order, from
 * the coordinator or (SNAPSHOT) the device's copy thread; ctx->ev_mu makes
 * the calls one at a time and guards each job's stage clock.
 */
#include <time.h>

#include "runtime/context.h"

static const char *const names[] = {"?", "started", "snapshot taken", "durable", "committed",
                                    "failed"};

void ckpt__emit(ckpt_ctx *ctx, ckpt__job *job, ckpt_event_kind kind, int error,
                const char *message)
{
    uint64_t now = ckpt__now_ns();
    pthread_mutex_lock(&ctx->ev_mu);
    ckpt_event ev = {
        .kind = kind,
        .step = job->step,
        .ticket = job->ticket,
        .bytes = job->bytes,
        .since_save_s = (double)(now - job->t_save_ns) * 1e-9,
        .stage_s = (double)(now - job->t_stage_ns) * 1e-9,
        .error = error,
        .message = message ? message : "",
        .layout_cpu_s = job->layout_cpu_s,
    };
    if (kind == CKPT_EVENT_COMMITTED) {
        ev.tiers = (unsigned)job->committed;
        if (job->t_local_ns)
            ev.local_commit_s = (double)(job->t_local_ns - job->t_save_ns) * 1e-9;
        if (job->t_repl_ns)
            ev.replicated_s = (double)(job->t_repl_ns - job->t_save_ns) * 1e-9;
    }
    job->t_stage_ns = now;
    if (kind == CKPT_EVENT_FAILED)
        ckpt__logf(&ctx->log, CKPT_LOG_ERROR, "save step %lld failed after %.3f s: %s",
                   (long long)ev.step, ev.since_save_s, ev.message);
    else
        ckpt__logf(&ctx->log, CKPT_LOG_INFO,
                   "save step %lld %s: %llu bytes, %.3f s after ckpt_save (stage %.3f s)",
                   (long long)ev.step, names[kind], (unsigned long long)ev.bytes,
                   ev.since_save_s, ev.stage_s);
    if (ctx->cfg.event_fn)
        ctx->cfg.event_fn(ctx->cfg.event_user, &ev);
    pthread_mutex_unlock(&ctx->ev_mu);
}
