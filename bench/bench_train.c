/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckpt-bench train: what checkpointing costs a training loop.
 *
 * A synthetic loop whose step does a fixed amount of work, calibrated to
 * --step-ms: "forward/backward" reads the registered tensors (a strided
 * walk over every page) for 80% of the step, then ckpt_fence, then the
 * "optimizer" writes every page of every tensor and computes for the rest.
 * The loop runs once without checkpoints (the baseline) and once per busy
 * policy with ckpt_save every --every steps, in DESIGN.md's shape (save,
 * forward/backward, fence, optimizer).  Because the work per step is fixed,
 * background copying, hashing and writing show up in the step times on a
 * machine with few cores, as they would in a real job.
 *
 * Reported per run: step time p50/p99, overhead against the baseline (total
 * time), time inside ckpt_save, stall at the fence of checkpoint steps,
 * ckpt_save to durable and to committed (from the runtime's events), saves
 * refused (CKPT_BUSY_REFUSE), the restore throughput of the last
 * checkpoint, and the process's peak RSS during the run (VmHWM, reset
 * before each run through /proc/self/clear_refs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench_state.h"
#include "bench/bench_train.h"
#include "bench/bench_util.h"

#define PAGE 4096u
#define FWD_SHARE 0.8 /* of a step: forward/backward reads */

typedef struct train_opts {
    const char *dir;
    uint64_t state_bytes, staging_bytes;
    double step_ms;
    int every, steps, tensors;
    int busy_wait, busy_refuse;
    ckpt_io io;
    int json;
} train_opts;

/* One run of the loop. */
typedef struct run {
    const char *label; /* baseline, wait, refuse */
    double *step_ms;   /* per step */
    double *call_us;   /* per save call (accepted or refused) */
    double *stall_ms;  /* per checkpoint step */
    int ncalls, nstalls, refused, committed;
    double total_s;
    double restore_gbps;
    double peak_rss_mib;
    /* From the event callback (runtime threads): guarded by mu. */
    pthread_mutex_t mu;
    double *durable_s, *committed_s;
    int ndurable, ncommitted;
} run;

typedef struct workload {
    uint8_t **ptr;
    size_t *len;
    size_t n;
    uint64_t fwd_lines; /* cache lines read per step */
    uint64_t opt_spins; /* arithmetic iterations per step */
    volatile uint64_t sink;
} workload;

static void train_help(FILE *f)
{
    fprintf(f,
"usage: %s train --dir D [options]\n"
"\n"
"A synthetic training loop (fixed work per step: forward/backward reads the\n"
"registered tensors, then the fence, then an optimizer that writes them)\n"
"run without checkpoints and then with ckpt_save every K steps; reports the\n"
"overhead and where it comes from.\n"
"\n"
"options:\n"
"  --dir D          checkpoint folder (its checkpoints are removed at the end)\n"
"  --state SIZE     registered bytes (default 2G)\n"
"  --tensors N      number of tensors the state is split into (default 1000)\n"
"  --step-ms MS     step time without checkpoints (default 200)\n"
"  --every K        checkpoint every K steps (default 10)\n"
"  --steps N        steps per run (default 200)\n"
"  --staging SIZE   staging pool (default: the state size plus an eighth)\n"
"  --busy P         wait | refuse | both: what ckpt_save does while the\n"
"                   previous save persists (default both)\n"
"  --writer W       uring | pwrite | auto (default auto)\n"
"  --json           JSON on stdout (the table goes to stderr)\n",
            prog);
}

static int train_parse(int argc, char **argv, train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->state_bytes = 2 * GIB;
    o->step_ms = 200;
    o->every = 10;
    o->steps = 200;
    o->tensors = 1000;
    o->busy_wait = o->busy_refuse = 1;
    o->io = CKPT_IO_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int m;
        long n;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            train_help(stdout);
            return -1;
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if ((m = opt_value(argc, argv, &i, "--dir", &v)) != 0) {
            if (m < 0 || !*v)
                return usage_error("train", "--dir needs a folder");
            o->dir = v;
        } else if ((m = opt_value(argc, argv, &i, "--state", &v)) != 0) {
            if (m < 0 || parse_size(v, &o->state_bytes) != 0 || o->state_bytes < MIB)
                return usage_error("train", "--state: expected a size >= 1M like 2G");
        } else if ((m = opt_value(argc, argv, &i, "--staging", &v)) != 0) {
            if (m < 0 || parse_size(v, &o->staging_bytes) != 0 || o->staging_bytes < 4 * MIB)
                return usage_error("train", "--staging: expected a size >= 4M");
        } else if ((m = opt_value(argc, argv, &i, "--tensors", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, 100000, &n) != 0)
                return usage_error("train", "--tensors: expected 1..100000");
            o->tensors = (int)n;
        } else if ((m = opt_value(argc, argv, &i, "--step-ms", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, 100000, &n) != 0)
                return usage_error("train", "--step-ms: expected 1..100000");
            o->step_ms = (double)n;
        } else if ((m = opt_value(argc, argv, &i, "--every", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, 1000000, &n) != 0)
                return usage_error("train", "--every: expected a number >= 1");
            o->every = (int)n;
        } else if ((m = opt_value(argc, argv, &i, "--steps", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, 1000000, &n) != 0)
                return usage_error("train", "--steps: expected a number >= 1");
            o->steps = (int)n;
        } else if ((m = opt_value(argc, argv, &i, "--busy", &v)) != 0) {
            o->busy_wait = m > 0 && (strcmp(v, "wait") == 0 || strcmp(v, "both") == 0);
            o->busy_refuse = m > 0 && (strcmp(v, "refuse") == 0 || strcmp(v, "both") == 0);
            if (!o->busy_wait && !o->busy_refuse)
                return usage_error("train", "--busy: expected wait, refuse or both");
        } else if ((m = opt_value(argc, argv, &i, "--writer", &v)) != 0) {
            if (m > 0 && strcmp(v, "uring") == 0)
                o->io = CKPT_IO_URING;
            else if (m > 0 && strcmp(v, "pwrite") == 0)
                o->io = CKPT_IO_PWRITE;
            else if (m > 0 && strcmp(v, "auto") == 0)
                o->io = CKPT_IO_AUTO;
            else
                return usage_error("train", "--writer: expected uring, pwrite or auto");
        } else {
            return usage_error("train", "unknown argument '%s'", a);
        }
    }
    if (!o->dir)
        return usage_error("train", "--dir is required");
    /* Default: room for the whole snapshot.  Packing tensors into 4 MiB
     * slabs at 4 KiB boundaries costs a few percent, hence the eighth. */
    if (!o->staging_bytes)
        o->staging_bytes = o->state_bytes + o->state_bytes / 8 < 8 * MIB
                               ? 8 * MIB
                               : o->state_bytes + o->state_bytes / 8;
    if (o->state_bytes / (uint64_t)o->tensors < 64)
        return usage_error("train", "--tensors: fewer tensors or a bigger --state");
    return 0;
}

/* ---- the synthetic step ----------------------------------------------------- */

/* Reads `lines` cache lines, walking every tensor page by page. */
static void forward(workload *w, uint64_t lines)
{
    uint64_t acc = 0;
    size_t t = 0, off = 0;
    for (uint64_t i = 0; i < lines; i++) {
        acc += w->ptr[t][off];
        off += PAGE + 64; /* next page, next line: defeats the prefetcher a little */
        if (off >= w->len[t]) {
            off = (off - w->len[t]) % 64;
            t = t + 1 == w->n ? 0 : t + 1;
        }
    }
    w->sink += acc;
}

/* The optimizer: writes every page of every tensor, then computes. */
static void optimizer(workload *w, uint64_t spins)
{
    for (size_t t = 0; t < w->n; t++)
        for (size_t off = 0; off < w->len[t]; off += PAGE)
            w->ptr[t][off]++;
    uint64_t x = w->sink | 1;
    for (uint64_t i = 0; i < spins; i++)
        x = x * 6364136223846793005ull + 1442695040888963407ull;
    w->sink += x;
}

/* Sizes the work so that a step takes about step_ms without checkpoints. */
static void calibrate(workload *w, double step_ms)
{
    uint64_t probe = 1u << 20;
    double t0 = now_s();
    forward(w, probe);
    double per_line = (now_s() - t0) / (double)probe;
    t0 = now_s();
    optimizer(w, 0);
    double touch = now_s() - t0;
    t0 = now_s();
    optimizer(w, probe);
    double per_spin = (now_s() - t0 - touch) / (double)probe;
    if (per_spin <= 0)
        per_spin = 1e-9;
    double step = step_ms * 1e-3;
    w->fwd_lines = (uint64_t)(step * FWD_SHARE / per_line);
    double rest = step * (1 - FWD_SHARE) - touch;
    w->opt_spins = rest > 0 ? (uint64_t)(rest / per_spin) : 0;
}

/* ---- measurement helpers ------------------------------------------------------ */

static double pct(const double *v, int n, double p)
{
    if (n <= 0)
        return 0;
    double *c = malloc((size_t)n * sizeof *c);
    if (!c)
        return 0;
    memcpy(c, v, (size_t)n * sizeof *c);
    for (int i = 1; i < n; i++) /* insertion sort: n is a few hundred */
        for (int j = i; j > 0 && c[j - 1] > c[j]; j--) {
            double x = c[j];
            c[j] = c[j - 1];
            c[j - 1] = x;
        }
    double r = c[(int)((double)(n - 1) * p + 0.5)];
    free(c);
    return r;
}

static void reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static double peak_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kib = strtod(line + 6, NULL);
    if (f)
        fclose(f);
    return kib / 1024.0;
}

static void on_event(void *user, const ckpt_event *ev)
{
    run *r = user;
    pthread_mutex_lock(&r->mu);
    if (ev->kind == CKPT_EVENT_DURABLE)
        r->durable_s[r->ndurable++] = ev->since_save_s;
    else if (ev->kind == CKPT_EVENT_COMMITTED)
        r->committed_s[r->ncommitted++] = ev->since_save_s;
    pthread_mutex_unlock(&r->mu);
}

static int run_init(run *r, const char *label, int steps)
{
    memset(r, 0, sizeof *r);
    r->label = label;
    pthread_mutex_init(&r->mu, NULL);
    size_t n = (size_t)steps + 1;
    r->step_ms = calloc(n, sizeof(double));
    r->call_us = calloc(n, sizeof(double));
    r->stall_ms = calloc(n, sizeof(double));
    r->durable_s = calloc(n, sizeof(double));
    r->committed_s = calloc(n, sizeof(double));
    return r->step_ms && r->call_us && r->stall_ms && r->durable_s && r->committed_s ? 0 : -1;
}

static void run_free(run *r)
{
    free(r->step_ms);
    free(r->call_us);
    free(r->stall_ms);
    free(r->durable_s);
    free(r->committed_s);
    pthread_mutex_destroy(&r->mu);
}

/* ---- one run -------------------------------------------------------------------- */

static int open_train_ctx(const train_opts *o, const state *st, ckpt_busy busy, run *r,
                          ckpt_ctx **out)
{
    ckpt_config cfg;
    int rc = ckpt_config_init(&cfg);
    if (rc)
        return api_fail("ckpt_config_init", rc, NULL);
    cfg.dir = o->dir;
    cfg.staging_bytes = o->staging_bytes;
    cfg.busy = busy;
    cfg.device = CKPT_DEVICE_HOST;
    if (o->io != CKPT_IO_AUTO)
        cfg.io = o->io;
    cfg.keep_last = 2; /* a real job keeps a few; it also bounds the disk used */
    cfg.event_fn = r ? on_event : NULL;
    cfg.event_user = r;
    rc = ckpt_open(&cfg, NULL, out);
    if (rc)
        return api_fail("ckpt_open", rc, NULL);
    for (size_t i = 0; i < st->n; i++) {
        rc = ckpt_register(*out, st->v[i].name, st->v[i].ptr, st->v[i].dtype, st->v[i].ndim,
                           st->v[i].shape);
        if (rc) {
            api_fail("ckpt_register", rc, *out);
            ckpt_close(*out);
            return 1;
        }
    }
    return 0;
}

/* Runs the loop; ctx NULL is the baseline. */
static int loop(const train_opts *o, workload *w, ckpt_ctx *ctx, run *r)
{
    double t_run = now_s();
    for (int s = 0; s < o->steps; s++) {
        double t0 = now_s();
        int due = ctx && s % o->every == 0;
        if (due) {
            double tc = now_s();
            int rc = ckpt_save(ctx, s, NULL, NULL);
            r->call_us[r->ncalls++] = (now_s() - tc) * 1e6;
            if (rc == CKPT_EBUSY)
                r->refused++;
            else if (rc)
                return api_fail("ckpt_save", rc, ctx);
        }
        forward(w, w->fwd_lines);
        if (ctx) {
            double tf = now_s();
            int rc = ckpt_fence(ctx, NULL);
            if (rc)
                return api_fail("ckpt_fence", rc, ctx);
            if (due)
                r->stall_ms[r->nstalls++] = (now_s() - tf) * 1e3;
        }
        optimizer(w, w->opt_spins);
        r->step_ms[s] = (now_s() - t0) * 1e3;
    }
    r->total_s = now_s() - t_run;
    return 0;
}

/* Removes every committed step of the bench's folder. */
static void clean_dir(const char *dir)
{
    int64_t *steps = NULL;
    size_t n = 0;
    ckpt__err e;
    if (ckpt__catalog_scan(dir, &steps, &n, &e) == 0)
        for (size_t i = 0; i < n; i++)
            ckpt__catalog_delete(dir, steps[i], &e);
    free(steps);
}

static int checkpointed(const train_opts *o, state *st, workload *w, ckpt_busy busy, run *r)
{
    clean_dir(o->dir);
    reset_peak_rss();
    ckpt_ctx *ctx = NULL;
    int rc = open_train_ctx(o, st, busy, r, &ctx);
    if (!rc)
        rc = loop(o, w, ctx, r);
    if (ctx) {
        int c = ckpt_close(ctx); /* waits for the last commit */
        if (!rc && c)
            rc = api_fail("ckpt_close", c, NULL);
    }
    r->peak_rss_mib = peak_rss_mib();
    r->committed = r->ncommitted;
    /* Restore the newest checkpoint into the tensors: throughput. */
    if (!rc && r->ncommitted > 0) {
        rc = open_train_ctx(o, st, busy, NULL, &ctx);
        if (!rc) {
            double t0 = now_s();
            int rr = ckpt_restore(ctx, CKPT_LATEST, NULL, NULL);
            double dt = now_s() - t0;
            if (rr)
                rc = api_fail("ckpt_restore", rr, ctx);
            r->restore_gbps = (double)st->bytes / dt / 1e9;
            ckpt_close(ctx);
        }
    }
    clean_dir(o->dir);
    return rc;
}

/* ---- report -------------------------------------------------------------------- */

static double overhead_pct(const run *base, const run *r)
{
    return (r->total_s / base->total_s - 1.0) * 100.0;
}

static void print_table(FILE *f, const train_opts *o, const state *st, const run *base,
                        const run *runs, int nruns, const char *writer)
{
    char sz[32], stg[32];
    fprintf(f, "ckpt-bench train: %s in %zu tensors, staging %s, writer %s, %d steps of %.0f "
               "ms, a checkpoint every %d steps\n\n",
            fmt_bytes(st->bytes, sz, sizeof sz), st->n, fmt_bytes(o->staging_bytes, stg, sizeof stg),
            writer, o->steps, o->step_ms, o->every);
    fprintf(f, "  %-9s %9s %9s %9s %10s %10s %10s %9s %9s %8s %9s %9s\n", "run", "step p50",
            "step p99", "overhead", "save call", "stall p50", "stall max", "durable", "committed",
            "refused", "restore", "peak RSS");
    fprintf(f, "  %-9s %9s %9s %9s %10s %10s %10s %9s %9s %8s %9s %9s\n", "", "ms", "ms", "%",
            "us p50", "ms", "ms", "s p50", "s p50", "saves", "GB/s", "MiB");
    fprintf(f, "  %-9s %9.1f %9.1f %9s %10s %10s %10s %9s %9s %8s %9s %9.0f\n", base->label,
            pct(base->step_ms, o->steps, 0.5), pct(base->step_ms, o->steps, 0.99), "-", "-", "-",
            "-", "-", "-", "-", "-", base->peak_rss_mib);
    for (int i = 0; i < nruns; i++) {
        const run *r = &runs[i];
        fprintf(f, "  %-9s %9.1f %9.1f %9.2f %10.1f %10.2f %10.2f %9.3f %9.3f %4d/%-3d %9.3f "
                   "%9.0f\n",
                r->label, pct(r->step_ms, o->steps, 0.5), pct(r->step_ms, o->steps, 0.99),
                overhead_pct(base, r), pct(r->call_us, r->ncalls, 0.5),
                pct(r->stall_ms, r->nstalls, 0.5), pct(r->stall_ms, r->nstalls, 1.0),
                pct(r->durable_s, r->ndurable, 0.5), pct(r->committed_s, r->ncommitted, 0.5),
                r->refused, r->ncalls, r->restore_gbps, r->peak_rss_mib);
    }
    fprintf(f, "\n  overhead: total time against the baseline; stall: ckpt_fence on checkpoint "
               "steps;\n  durable/committed: ckpt_save to the runtime's events; GB = 1e9 "
               "bytes\n");
}

static void json_array(FILE *f, const char *key, const double *v, int n)
{
    fprintf(f, ", \"%s\": [", key);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%.3f", i ? ", " : "", v[i]);
    fputc(']', f);
}

static void json_run(FILE *f, const train_opts *o, const run *base, const run *r)
{
    fprintf(f, "{\"policy\": \"%s\", \"step_ms_p50\": %.3f, \"step_ms_p99\": %.3f", r->label,
            pct(r->step_ms, o->steps, 0.5), pct(r->step_ms, o->steps, 0.99));
    if (r != base)
        fprintf(f, ", \"overhead_pct\": %.3f, \"save_call_us\": %.1f, \"save_call_us_max\": %.1f"
                   ", \"stall_ms_p50\": %.3f, \"stall_ms_p99\": %.3f, \"durable_s_p50\": %.4f"
                   ", \"committed_s_p50\": %.4f, \"saves\": %d, \"refused\": %d, \"committed\": %d"
                   ", \"restore_gbps\": %.4f",
                overhead_pct(base, r), pct(r->call_us, r->ncalls, 0.5),
                pct(r->call_us, r->ncalls, 1.0), pct(r->stall_ms, r->nstalls, 0.5),
                pct(r->stall_ms, r->nstalls, 0.99), pct(r->durable_s, r->ndurable, 0.5),
                pct(r->committed_s, r->ncommitted, 0.5), r->ncalls, r->refused, r->committed,
                r->restore_gbps);
    fprintf(f, ", \"peak_rss_mib\": %.1f", r->peak_rss_mib);
    json_array(f, "step_ms", r->step_ms, o->steps);
    fputc('}', f);
}

static void print_json(FILE *f, const train_opts *o, const state *st, const run *base,
                       const run *runs, int nruns, const char *writer)
{
    const run *r = &runs[0];
    fprintf(f, "{\"bench\": \"train\", \"dir\": ");
    json_str(f, o->dir);
    fprintf(f, ", \"state_bytes\": %" PRIu64 ", \"tensors\": %zu, \"staging_bytes\": %" PRIu64
               ", \"writer\": \"%s\", \"device\": \"host\", \"step_ms\": %.1f, \"every\": %d"
               ", \"steps\": %d",
            st->bytes, st->n, o->staging_bytes, writer, o->step_ms, o->every, o->steps);
    /* The headline figures are those of the first checkpointed run. */
    fprintf(f, ",\n \"policy\": \"%s\", \"overhead_pct\": %.3f, \"save_call_us\": %.1f"
               ", \"stall_ms_p50\": %.3f, \"durable_s_p50\": %.4f, \"committed_s_p50\": %.4f"
               ", \"restore_gbps\": %.4f, \"peak_rss_mib\": %.1f",
            r->label, overhead_pct(base, r), pct(r->call_us, r->ncalls, 0.5),
            pct(r->stall_ms, r->nstalls, 0.5), pct(r->durable_s, r->ndurable, 0.5),
            pct(r->committed_s, r->ncommitted, 0.5), r->restore_gbps, r->peak_rss_mib);
    fprintf(f, ",\n \"baseline\": ");
    json_run(f, o, base, base);
    fprintf(f, ",\n \"runs\": [");
    for (int i = 0; i < nruns; i++) {
        fprintf(f, "%s\n  ", i ? "," : "");
        json_run(f, o, base, &runs[i]);
    }
    fprintf(f, "]}\n");
}

/* ---- the command ------------------------------------------------------------------ */

/* o->tensors f32 tensors of (nearly) equal size, filled with noise. */
static int make_state(const train_opts *o, state *st, workload *w)
{
    memset(st, 0, sizeof *st);
    size_t n = (size_t)o->tensors;
    uint64_t each = o->state_bytes / n / 4 * 4;
    st->v = calloc(n, sizeof *st->v);
    w->ptr = calloc(n, sizeof *w->ptr);
    w->len = calloc(n, sizeof *w->len);
    if (!st->v || !w->ptr || !w->len)
        return -1;
    for (size_t i = 0; i < n; i++) {
        tensor *t = &st->v[i];
        uint64_t bytes = i + 1 < n ? each : o->state_bytes - each * (n - 1) / 4 * 4;
        bytes = bytes / 4 * 4;
        snprintf(t->name, sizeof t->name, "layers.%zu.weight", i);
        t->dtype = CKPT_F32;
        t->ndim = 1;
        t->shape[0] = (int64_t)(bytes / 4);
        t->nbytes = (size_t)bytes;
        t->ptr = malloc(bytes ? bytes : 1);
        if (!t->ptr)
            return -1;
        gen_bytes(t->ptr, bytes, i + 1, 0);
        st->n++;
        st->bytes += bytes;
        w->ptr[i] = t->ptr;
        w->len[i] = bytes ? bytes : 1;
    }
    w->n = n;
    return 0;
}

int cmd_train(int argc, char **argv)
{
    train_opts o;
    int rc = train_parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    FILE *out = o.json ? stderr : stdout;
    state st;
    workload w;
    memset(&w, 0, sizeof w);
    run base, runs[2];
    int nruns = 0;
    if (make_state(&o, &st, &w) != 0 || run_init(&base, "baseline", o.steps) != 0 ||
        run_init(&runs[0], "wait", o.steps) != 0 || run_init(&runs[1], "refuse", o.steps) != 0) {
        errorf("out of memory for a state of %" PRIu64 " bytes", o.state_bytes);
        rc = 1;
    }
    char writer[32] = "?";
    if (!rc) {
        calibrate(&w, o.step_ms);
        fprintf(stderr, "%s train: %zu tensors, %" PRIu64 " bytes; %" PRIu64
                        " lines read and %" PRIu64 " spins per step\n",
                prog, st.n, st.bytes, w.fwd_lines, w.opt_spins);
        reset_peak_rss();
        rc = loop(&o, &w, NULL, &base);
        base.peak_rss_mib = peak_rss_mib();
    }
    if (!rc) {
        ckpt_ctx *probe = NULL;
        if (open_train_ctx(&o, &st, CKPT_BUSY_WAIT, NULL, &probe) == 0) {
            snprintf(writer, sizeof writer, "%s", ckpt_writer_name(probe));
            ckpt_close(probe);
        }
    }
    if (!rc && o.busy_wait) {
        runs[nruns].label = "wait";
        rc = checkpointed(&o, &st, &w, CKPT_BUSY_WAIT, &runs[nruns]);
        nruns++;
    }
    if (!rc && o.busy_refuse) {
        runs[nruns].label = "refuse";
        rc = checkpointed(&o, &st, &w, CKPT_BUSY_REFUSE, &runs[nruns]);
        nruns++;
    }
    if (!rc) {
        print_table(out, &o, &st, &base, runs, nruns, writer);
        if (o.json)
            print_json(stdout, &o, &st, &base, runs, nruns, writer);
    }
    if (o.dir)
        rmdir(o.dir); /* only when the bench left it empty */
    run_free(&base);
    run_free(&runs[0]);
    run_free(&runs[1]);
    for (size_t i = 0; i < st.n; i++)
        free(st.v[i].ptr);
    free(st.v);
    free(w.ptr);
    free(w.len);
    return rc;
}
