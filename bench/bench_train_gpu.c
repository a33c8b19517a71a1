/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckpt-bench train --device cuda: what checkpointing costs a training loop
 * whose state lives in GPU memory (CUDA builds only).
 *
 * The state is --state bytes of f32 in three equal kinds, "weight",
 * "adam.m" and "adam.v", each split into tensors (gpu_util.h), plus a
 * gradient buffer the size of the weights that is not checkpointed.  One
 * step, all on one stream, in the shape of docs/ARCHITECTURE.md:
 *
 *   event S; [ckpt_save]; forward/backward kernel (reads the weights,
 *   writes the gradients; iterations calibrated so that it takes 80% of
 *   --step-ms); event F; ckpt_fence; event W; Adam kernel (writes weights
 *   and moments); event E; the host waits for E (as a loop that reads its
 *   loss every step).
 *
 * The loop runs without a context (baseline), then with ckpt_save every
 * --every steps and ckpt_fence every step.  Per checkpoint:
 *   stall        device time F..W of the checkpoint step minus the
 *                baseline's median F..W: how long the stream waited at the
 *                fence (the GPU idles while the host is still inside
 *                ckpt_fence, which the events also count);
 *   snapshot     the runtime's SNAPSHOT event, since the ckpt_save call:
 *                the copy time the fence protects;
 *   compute      device time S..F: what ran between save and fence;
 *   durable, committed: the runtime's events, since the ckpt_save call.
 * And per run: overhead (wall time of the checkpointed loop against the
 * baseline's), step times, restore throughput (ckpt_restore into the device
 * tensors after scribbling over them, verified against a checksum of the
 * state taken on the device when the last checkpoint was saved), and a raw
 * O_DIRECT write of up to 2 GiB as the storage limit.
 *
 * The default --step-ms makes the compute between save and fence 1.5x the
 * copy time at 50 GB/s (cited in docs/ARCHITECTURE.md: pinned D2H is 52-55 GB/s on H100/H200),
 * the condition under which issue #5 expects a stall under 5% of the copy.
 *
 * Invariants: one context per run (opening pins the staging pool, seconds
 * at 32 GiB); the bench checks the free space before it writes and removes
 * every checkpoint of the folder at the end, as the host train does.
 */
#include <pthread.h>
#include <unistd.h>

#include "bench/bench_raw.h"
#include "bench/bench_state.h"
#include "bench/gpu_util.h"

#define FWD_SHARE 0.8
#define COPY_GBPS_GUESS 50.0
#define RAW_MAX (2 * GIB)
#define MAX_ITERS (1 << 30)

enum { EV_START, EV_FWD, EV_FENCED, EV_END, NEV };

typedef struct gstep {
    double step_ms, fwd_ms, gap_ms, opt_ms; /* device time, events */
} gstep;

typedef struct gsave {
    int64_t step;
    ckpt_ticket ticket;
    double call_us, fence_call_ms;     /* host time in ckpt_save, ckpt_fence */
    double compute_ms, gap_ms, stall_ms; /* device: S..F, F..W, F..W - baseline */
    double snapshot_ms, durable_s, committed_s; /* runtime events (mu) */
    double stall_pct; /* stall_ms / snapshot_ms * 100 */
} gsave;

typedef struct gloop {
    gstep *st;
    double total_s;
    gsave *sv;
    int nsv;
    pthread_mutex_t mu;
    int every;
} gloop;

typedef struct gtrain {
    const train_opts *o;
    uint64_t staging_bytes;
    double step_ms;
    gpu_dev dev;
    gpu_state st;
    float *grad;
    unsigned long long *dsum;
    cudaEvent_t ev[NEV];
    int nev;
    int iters;
    double fwd_ms, opt_ms; /* calibrated */
    ckpt_ctx *ctx;
    int64_t sum_step; /* the last checkpoint step: its state's checksum */
    uint64_t sum_saved;
    double raw_write_s;
    uint64_t raw_bytes;
    int raw_direct;
    double restore_s;
    int64_t restored;
} gtrain;

static void on_event(void *user, const ckpt_event *ev)
{
    gloop *L = user;
    int64_t i = ev->step / L->every;
    if (ev->step % L->every || i >= L->nsv)
        return;
    pthread_mutex_lock(&L->mu);
    if (ev->kind == CKPT_EVENT_SNAPSHOT)
        L->sv[i].snapshot_ms = ev->since_save_s * 1e3;
    else if (ev->kind == CKPT_EVENT_DURABLE)
        L->sv[i].durable_s = ev->since_save_s;
    else if (ev->kind == CKPT_EVENT_COMMITTED)
        L->sv[i].committed_s = ev->since_save_s;
    pthread_mutex_unlock(&L->mu);
}

/* ---- kernels and calibration ---------------------------------------------- */

static size_t nfloats(const gtrain *g)
{
    return (size_t)(g->st.kind_bytes / 4);
}

static int fwd(gtrain *g, int iters)
{
    return CU(gpu_forward_backward(g->st.slab[0], g->grad, nfloats(g), iters, g->dev.stream));
}

static int adam(gtrain *g)
{
    return CU(gpu_adam(g->st.slab[0], g->st.slab[1], g->st.slab[2], g->grad, nfloats(g),
                       g->dev.stream));
}

/* Device time of one kernel call, between two events. */
static int timed(gtrain *g, int (*fn)(gtrain *, int), int arg, double *ms)
{
    return CU(cudaEventRecord(g->ev[EV_START], g->dev.stream)) || fn(g, arg) ||
           CU(cudaEventRecord(g->ev[EV_END], g->dev.stream)) ||
           CU(cudaEventSynchronize(g->ev[EV_END])) || ev_ms(g->ev[EV_START], g->ev[EV_END], ms);
}

static int adam_arg(gtrain *g, int unused)
{
    (void)unused;
    return adam(g);
}

static int clamp_iters(double v)
{
    return v < 1 ? 1 : v > MAX_ITERS ? MAX_ITERS : (int)v;
}

/* Iterations of the forward/backward kernel for FWD_SHARE of the step:
 * doubling until a run takes a quarter of the target (so no run is longer
 * than half of it), then up to three proportional corrections.  Time is
 * t0 + k * iters with t0 >= 0 (the memory sweep), so scaling by target / t
 * never overshoots by more than the noise; the whole calibration takes a
 * few targets at most. */
static int calibrate(gtrain *g)
{
    double t = 0, target = g->step_ms * FWD_SHARE;
    int it = 1;
    if (timed(g, fwd, 1, &t)) /* first launch: module load */
        return 1;
    for (;;) {
        if (timed(g, fwd, it, &t))
            return 1;
        if (t >= target * 0.25 || it >= MAX_ITERS / 2)
            break;
        it *= 2;
    }
    g->iters = it;
    g->fwd_ms = t;
    for (int round = 0; round < 3 && t < target * 0.97 && it < MAX_ITERS; round++) {
        g->iters = clamp_iters((double)g->iters * target / (t > 1e-3 ? t : 1e-3));
        if (timed(g, fwd, g->iters, &t))
            return 1;
        g->fwd_ms = t;
        it = g->iters;
    }
    if (timed(g, adam_arg, 0, &g->opt_ms))
        return 1;
    if (g->fwd_ms < target * 0.8 || g->fwd_ms > target * 1.25)
        fprintf(stderr, "%s train: forward/backward takes %.1f ms, not the %.1f ms asked "
                        "(its memory sweep alone is longer, or the iterations ran out)\n",
                prog, g->fwd_ms, target);
    return 0;
}

/* ---- the loop ------------------------------------------------------------------ */

/* One step; L->sv[k] when it saves (save != NULL). */
static int step(gtrain *g, int s, gsave *save, gstep *out)
{
    cudaStream_t st = g->dev.stream;
    int rc = CU(cudaEventRecord(g->ev[EV_START], st));
    if (!rc && save) {
        double t0 = now_s();
        int arc = ckpt_save(g->ctx, s, (void *)st, &save->ticket);
        save->call_us = (now_s() - t0) * 1e6;
        if (arc)
            rc = api_fail("ckpt_save", arc, g->ctx);
    }
    rc = rc || fwd(g, g->iters) || CU(cudaEventRecord(g->ev[EV_FWD], st));
    if (!rc && g->ctx) {
        double t0 = now_s();
        int arc = ckpt_fence(g->ctx, (void *)st);
        if (save)
            save->fence_call_ms = (now_s() - t0) * 1e3;
        if (arc)
            rc = api_fail("ckpt_fence", arc, g->ctx);
    }
    rc = rc || CU(cudaEventRecord(g->ev[EV_FENCED], st)) || adam(g) ||
         CU(cudaEventRecord(g->ev[EV_END], st)) || CU(cudaEventSynchronize(g->ev[EV_END])) ||
         ev_ms(g->ev[EV_START], g->ev[EV_END], &out->step_ms) ||
         ev_ms(g->ev[EV_START], g->ev[EV_FWD], &out->fwd_ms) ||
         ev_ms(g->ev[EV_FWD], g->ev[EV_FENCED], &out->gap_ms) ||
         ev_ms(g->ev[EV_FENCED], g->ev[EV_END], &out->opt_ms);
    return rc;
}

/* Runs the loop (g->ctx NULL: the baseline), after one untimed step.  The
 * checksum of the last checkpoint step's state is taken before its event S
 * in both loops, so they do the same work. */
static int loop(gtrain *g, gloop *L)
{
    const train_opts *o = g->o;
    gstep warm;
    int rc = step(g, -1, NULL, &warm);
    double t0 = now_s();
    for (int s = 0; !rc && s < o->steps; s++) {
        uint64_t sum = 0;
        if (s == g->sum_step)
            rc = gpu_state_checksum(&g->st, 3, g->dsum, g->dev.stream, &sum);
        if (g->ctx && s == g->sum_step)
            g->sum_saved = sum;
        gsave *sv = g->ctx && s % o->every == 0 ? &L->sv[s / o->every] : NULL;
        if (sv)
            sv->step = s;
        rc = rc || step(g, s, sv, &L->st[s]);
    }
    L->total_s = now_s() - t0;
    /* Every accepted save ends before the restore (and the ticket is ours). */
    for (int i = 0; g->ctx && i < L->nsv; i++) {
        if (!L->sv[i].ticket)
            continue;
        int arc = ckpt_wait(g->ctx, L->sv[i].ticket, -1);
        if (arc && !rc)
            rc = api_fail("ckpt_wait", arc, g->ctx);
    }
    return rc;
}

static int restore(gtrain *g)
{
    cudaStream_t st = g->dev.stream;
    int rc = 0;
    for (int k = 0; !rc && k < 3; k++)
        rc = CU(cudaMemsetAsync(g->st.slab[k], 0xff, (size_t)g->st.kind_bytes, st));
    rc = rc || CU(cudaStreamSynchronize(st));
    if (rc)
        return rc;
    double t0 = now_s();
    int arc = ckpt_restore(g->ctx, CKPT_LATEST, (void *)st, &g->restored);
    g->restore_s = now_s() - t0;
    if (arc)
        return api_fail("ckpt_restore", arc, g->ctx);
    uint64_t sum = 0;
    if (gpu_state_checksum(&g->st, 3, g->dsum, st, &sum))
        return 1;
    if (g->restored != g->sum_step || sum != g->sum_saved) {
        errorf("train: restore verification failed: step %lld (saved %lld), checksum "
               "%016" PRIx64 " (saved %016" PRIx64 ")",
               (long long)g->restored, (long long)g->sum_step, sum, g->sum_saved);
        return 1;
    }
    return 0;
}

/* Storage limit: up to RAW_MAX bytes written sequentially with O_DIRECT. */
static int raw_limit(gtrain *g)
{
    uint64_t b = gpu_state_bytes(&g->st);
    g->raw_bytes = (b < RAW_MAX ? b : RAW_MAX) / RAW_ALIGN * RAW_ALIGN;
    char path[CKPT__PATH_MAX];
    raw_file_path(path, g->o->dir, -1);
    void *buf = NULL;
    if (posix_memalign(&buf, RAW_ALIGN, RAW_BLOCK) != 0) {
        errorf("out of memory");
        return 1;
    }
    gen_bytes(buf, RAW_BLOCK, 0x7261770000000000ull, 0);
    settle(g->o->dir);
    int rc = raw_write(path, g->raw_bytes, buf, 1, &g->raw_direct, &g->raw_write_s) ? 1 : 0;
    if (unlink(path) != 0 && errno != ENOENT) {
        errorf("remove %s: %s", path, strerror(errno));
        rc = 1;
    }
    free(buf);
    return rc;
}

/* ---- report ----------------------------------------------------------------------- */

/* The p-th percentile of a double field over n records of `stride` bytes. */
static double field_pct(const void *recs, size_t stride, int n, size_t field, double p)
{
    double *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
    if (!x)
        return 0;
    for (int i = 0; i < n; i++)
        x[i] = *(const double *)(const void *)((const char *)recs + (size_t)i * stride + field);
    double r = train_pct(x, n, p);
    free(x);
    return r;
}

static double pct_of(const gstep *v, int n, size_t field, double p)
{
    return field_pct(v, sizeof *v, n, field, p);
}

static double save_pct(const gloop *L, size_t field, double p)
{
    return field_pct(L->sv, sizeof *L->sv, L->nsv, field, p);
}

/* Fills the derived per-save figures from the step records. */
static void derive(const gloop *base, gloop *L, int steps)
{
    double gap0 = pct_of(base->st, steps, offsetof(gstep, gap_ms), 0.5);
    for (int i = 0; i < L->nsv; i++) {
        gsave *s = &L->sv[i];
        const gstep *t = &L->st[s->step];
        s->compute_ms = t->fwd_ms;
        s->gap_ms = t->gap_ms;
        s->stall_ms = t->gap_ms > gap0 ? t->gap_ms - gap0 : 0;
        s->stall_pct = s->snapshot_ms > 0 ? s->stall_ms / s->snapshot_ms * 100 : 0;
    }
}

typedef struct gsum {
    double overhead_pct, bytes;
} gsum;

static gsum summary(const gtrain *g, const gloop *base, const gloop *L)
{
    gsum s;
    s.bytes = (double)gpu_state_bytes(&g->st);
    s.overhead_pct = base->total_s > 0 ? (L->total_s / base->total_s - 1) * 100 : 0;
    return s;
}

static double gb_s(double bytes, double secs)
{
    return secs > 0 ? bytes / secs / 1e9 : 0;
}

static void print_table(FILE *f, const gtrain *g, const gloop *base, const gloop *L,
                        const gsum *s)
{
    const train_opts *o = g->o;
    char b1[32], b2[32];
    fprintf(f, "ckpt-bench train --device cuda: %s (weight, adam.m, adam.v) in %d tensors on "
               "%s\nwriter %s, staging %s, keep_last %d; step %.1f ms: forward/backward %d "
               "iterations %.1f ms, optimizer %.1f ms; %d steps, a checkpoint every %d (%d)\n\n",
            fmt_bytes(gpu_state_bytes(&g->st), b1, sizeof b1), 3 * g->st.per_kind, g->dev.name,
            ckpt_writer_name(g->ctx), fmt_bytes(g->staging_bytes, b2, sizeof b2), o->keep_last,
            g->step_ms, g->iters, g->fwd_ms, g->opt_ms, o->steps, o->every, L->nsv);
    fprintf(f, "  %-16s %12s %12s\n", "", "baseline", "checkpointed");
    fprintf(f, "  %-16s %12.3f %12.3f  s   overhead %.2f%%\n", "total", base->total_s,
            L->total_s, s->overhead_pct);
    fprintf(f, "  %-16s %12.2f %12.2f  ms\n", "step p50",
            pct_of(base->st, o->steps, offsetof(gstep, step_ms), 0.5),
            pct_of(L->st, o->steps, offsetof(gstep, step_ms), 0.5));
    fprintf(f, "  %-16s %12.2f %12.2f  ms\n", "step max",
            pct_of(base->st, o->steps, offsetof(gstep, step_ms), 1.0),
            pct_of(L->st, o->steps, offsetof(gstep, step_ms), 1.0));
    fprintf(f, "\n  %6s %9s %9s %10s %11s %9s %8s %9s %9s\n", "step", "save us", "fence ms",
            "compute ms", "snapshot ms", "stall ms", "stall %", "durable s", "commit s");
    for (int i = 0; i < L->nsv; i++) {
        const gsave *v = &L->sv[i];
        fprintf(f, "  %6lld %9.1f %9.3f %10.2f %11.2f %9.3f %8.2f %9.3f %9.3f\n",
                (long long)v->step, v->call_us, v->fence_call_ms, v->compute_ms, v->snapshot_ms,
                v->stall_ms, v->stall_pct, v->durable_s, v->committed_s);
    }
    fprintf(f, "  stall %% = stall / snapshot copy time; target <= 5%% when compute >= snapshot\n");
    fprintf(f, "\n  restore          %.3f s, %.3f GB/s into device tensors (checksum verified)\n",
            g->restore_s, gb_s(s->bytes, g->restore_s));
    fprintf(f, "  raw write        %.3f GB/s (%s, %s); save to durable p50 %.3f GB/s\n",
            gb_s((double)g->raw_bytes, g->raw_write_s), fmt_bytes(g->raw_bytes, b1, sizeof b1),
            g->raw_direct ? "O_DIRECT" : "buffered", gb_s(s->bytes,
            save_pct(L, offsetof(gsave, durable_s), 0.5)));
}

static void json_steps(FILE *f, const char *key, const gloop *L, int n)
{
    fprintf(f, ",\n  \"%s\": [", key);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%.3f", i ? ", " : "", L->st[i].step_ms);
    fputc(']', f);
}

static void print_json(FILE *f, const gtrain *g, const gloop *base, const gloop *L,
                       const gsum *s)
{
    const train_opts *o = g->o;
    fprintf(f, "{\n  \"bench\": \"train\",\n  \"device\": \"cuda\",\n  \"gpu\": ");
    json_str(f, g->dev.name);
    fprintf(f, ",\n  \"dir\": ");
    json_str(f, o->dir);
    fprintf(f, ",\n  \"writer\": ");
    json_str(f, ckpt_writer_name(g->ctx));
    fprintf(f, ",\n  \"state_bytes\": %" PRIu64 ", \"tensors\": %d, \"staging_bytes\": %" PRIu64
            ", \"keep_last\": %d, \"steps\": %d, \"every\": %d, \"saves\": %d",
            gpu_state_bytes(&g->st), 3 * g->st.per_kind, g->staging_bytes, o->keep_last,
            o->steps, o->every, L->nsv);
    fprintf(f, ",\n  \"step_ms_target\": %.3f, \"fwd_iters\": %d, \"fwd_ms\": %.3f, "
            "\"opt_ms\": %.3f", g->step_ms, g->iters, g->fwd_ms, g->opt_ms);
    fprintf(f, ",\n  \"baseline_total_s\": %.6f, \"total_s\": %.6f, \"overhead_pct\": %.4f",
            base->total_s, L->total_s, s->overhead_pct);
    fprintf(f, ",\n  \"baseline_step_ms_p50\": %.4f, \"step_ms_p50\": %.4f, "
            "\"baseline_step_ms_max\": %.4f, \"step_ms_max\": %.4f, "
            "\"baseline_fence_gap_ms_p50\": %.4f",
            pct_of(base->st, o->steps, offsetof(gstep, step_ms), 0.5),
            pct_of(L->st, o->steps, offsetof(gstep, step_ms), 0.5),
            pct_of(base->st, o->steps, offsetof(gstep, step_ms), 1.0),
            pct_of(L->st, o->steps, offsetof(gstep, step_ms), 1.0),
            pct_of(base->st, o->steps, offsetof(gstep, gap_ms), 0.5));
    fprintf(f, ",\n  \"stall_ms_p50\": %.4f, \"stall_ms_max\": %.4f, "
            "\"stall_pct_of_snapshot_p50\": %.4f, \"stall_pct_of_snapshot_max\": %.4f, "
            "\"stall_pct_target\": 5",
            save_pct(L, offsetof(gsave, stall_ms), 0.5), save_pct(L, offsetof(gsave, stall_ms), 1),
            save_pct(L, offsetof(gsave, stall_pct), 0.5),
            save_pct(L, offsetof(gsave, stall_pct), 1));
    fprintf(f, ",\n  \"snapshot_ms_p50\": %.4f, \"compute_ms_p50\": %.4f, "
            "\"save_call_us_p50\": %.2f, \"save_call_us_max\": %.2f, "
            "\"fence_call_ms_p50\": %.4f, \"fence_call_ms_max\": %.4f",
            save_pct(L, offsetof(gsave, snapshot_ms), 0.5),
            save_pct(L, offsetof(gsave, compute_ms), 0.5),
            save_pct(L, offsetof(gsave, call_us), 0.5), save_pct(L, offsetof(gsave, call_us), 1),
            save_pct(L, offsetof(gsave, fence_call_ms), 0.5),
            save_pct(L, offsetof(gsave, fence_call_ms), 1));
    double dur = save_pct(L, offsetof(gsave, durable_s), 0.5);
    fprintf(f, ",\n  \"durable_s_p50\": %.6f, \"committed_s_p50\": %.6f, "
            "\"durable_gbps_p50\": %.6f, \"raw_write_gbps\": %.6f, \"raw_write_bytes\": %" PRIu64
            ", \"raw_direct\": %s",
            dur, save_pct(L, offsetof(gsave, committed_s), 0.5), gb_s(s->bytes, dur),
            gb_s((double)g->raw_bytes, g->raw_write_s), g->raw_bytes,
            g->raw_direct ? "true" : "false");
    fprintf(f, ",\n  \"restore_s\": %.6f, \"restore_gbps\": %.6f, \"restore_verified\": true",
            g->restore_s, gb_s(s->bytes, g->restore_s));
    fprintf(f, ",\n  \"checkpoints\": [");
    for (int i = 0; i < L->nsv; i++) {
        const gsave *v = &L->sv[i];
        fprintf(f, "%s\n    {\"step\": %lld, \"save_call_us\": %.2f, \"fence_call_ms\": %.4f, "
                "\"compute_ms\": %.4f, \"fence_gap_ms\": %.4f, \"stall_ms\": %.4f, "
                "\"snapshot_ms\": %.4f, \"stall_pct_of_snapshot\": %.4f, \"durable_s\": %.6f, "
                "\"committed_s\": %.6f}",
                i ? "," : "", (long long)v->step, v->call_us, v->fence_call_ms, v->compute_ms,
                v->gap_ms, v->stall_ms, v->snapshot_ms, v->stall_pct, v->durable_s,
                v->committed_s);
    }
    fprintf(f, "\n  ]");
    json_steps(f, "baseline_step_ms", base, o->steps);
    json_steps(f, "step_ms", L, o->steps);
    fprintf(f, "\n}\n");
}

/* ---- the command -------------------------------------------------------------------- */

static int gloop_init(gloop *L, const train_opts *o)
{
    memset(L, 0, sizeof *L);
    pthread_mutex_init(&L->mu, NULL);
    L->every = o->every;
    L->nsv = (o->steps + o->every - 1) / o->every;
    L->st = calloc((size_t)o->steps, sizeof *L->st);
    L->sv = calloc((size_t)L->nsv, sizeof *L->sv);
    return L->st && L->sv ? 0 : 1;
}

static void gloop_free(gloop *L)
{
    free(L->st);
    free(L->sv);
    pthread_mutex_destroy(&L->mu);
}

/* Everything that needs the device, in order; the caller frees. */
static int run_all(gtrain *g, gloop *base, gloop *L)
{
    const train_opts *o = g->o;
    static const char *const kinds[] = {"weight", "adam.m", "adam.v"};
    if (gpu_state_alloc(&g->st, kinds, 3, o->state_bytes, o->tensors, g->dev.stream))
        return 1;
    void *p = NULL;
    if (CU(cudaMalloc(&p, (size_t)g->st.kind_bytes)))
        return 1;
    g->grad = p;
    if (CU(cudaMalloc(&p, sizeof *g->dsum)))
        return 1;
    g->dsum = p;
    for (; g->nev < NEV; g->nev++)
        if (CU(cudaEventCreate(&g->ev[g->nev])))
            return 1;
    uint64_t bytes = gpu_state_bytes(&g->st);
    if (g->step_ms <= 0) /* compute = 1.5x the copy at COPY_GBPS_GUESS */
        g->step_ms = (double)bytes / (COPY_GBPS_GUESS * 1e9) * 1e3 * 1.5 / FWD_SHARE;
    if (calibrate(g))
        return 1;
    fprintf(stderr, "%s train: %s in %d device tensors on %s; step %.1f ms: forward/backward "
                    "%d iterations %.1f ms, optimizer %.1f ms\n",
            prog, fmt_bytes(bytes, (char[32]){0}, 32), 3 * g->st.per_kind, g->dev.name,
            g->step_ms, g->iters, g->fwd_ms, g->opt_ms);
    if (loop(g, base))
        return 1;
    /* The context (it pins the staging pool and creates the folder), then
     * the room the checkpoints take at once: keep_last + 1 around a commit. */
    if (gpu_open_ctx(o->dir, g->staging_bytes, 4 * MIB, o->io, o->keep_last, on_event, L,
                     &g->ctx) ||
        gpu_state_register(&g->st, g->ctx))
        return 1;
    train_clean_dir(o->dir);
    int at_once = o->keep_last > 0 && o->keep_last + 1 < L->nsv ? o->keep_last + 1 : L->nsv;
    uint64_t need = (bytes + bytes / 32) * (uint64_t)at_once + 64 * MIB;
    if (disk_room("train", o->dir, need,
                  "fewer checkpoints at once (--keep-last 1, or --every >= --steps for one "
                  "save) or a smaller --state"))
        return 1;
    if (raw_limit(g))
        return 1;
    settle(o->dir);
    if (loop(g, L))
        return 1;
    derive(base, L, o->steps);
    return restore(g);
}

int train_gpu(const train_opts *o)
{
    gtrain g;
    memset(&g, 0, sizeof g);
    g.o = o;
    g.step_ms = o->step_ms;
    uint64_t b = o->state_bytes;
    g.staging_bytes = o->staging_bytes ? o->staging_bytes : b + b / 32 + 64 * MIB;
    gloop base, L;
    int rc = gloop_init(&base, o) | gloop_init(&L, o);
    if (rc)
        errorf("out of memory");
    g.sum_step = (int64_t)((o->steps - 1) / o->every) * o->every;
    if (!rc && gpu_open("train --device cuda", &g.dev))
        rc = 1;
    if (!rc)
        rc = run_all(&g, &base, &L);
    if (!rc) {
        gsum s = summary(&g, &base, &L);
        print_table(o->json ? stderr : stdout, &g, &base, &L, &s);
        if (o->json)
            print_json(stdout, &g, &base, &L, &s);
    }
    if (g.ctx) {
        int c = ckpt_close(g.ctx);
        if (c && !rc)
            rc = api_fail("ckpt_close", c, NULL);
        train_clean_dir(o->dir);
        rmdir(o->dir); /* only when the bench left it empty */
    }
    for (int i = 0; i < g.nev; i++)
        rc |= CU(cudaEventDestroy(g.ev[i]));
    if (g.dsum)
        rc |= CU(cudaFree(g.dsum));
    if (g.grad)
        rc |= CU(cudaFree(g.grad));
    gpu_state_free(&g.st);
    gpu_close(&g.dev);
    gloop_free(&base);
    gloop_free(&L);
    return rc ? 1 : 0;
}
