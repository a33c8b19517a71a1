/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckpt-bench d2h: how fast a snapshot of device tensors reaches the host
 * staging pool, as a fraction of raw pinned cudaMemcpy bandwidth measured
 * in the same run (docs/ARCHITECTURE.md, Performance model; issue #5's target is 0.9).
 * This file parses the options and reports; d2h_measure (bench_gpu.c, CUDA
 * builds only) measures.
 *
 * Each repetition copies the same device tensors three ways: the raw limit
 * in the runtime's piece size (cudaMemcpyAsync of chunk_bytes each, device
 * to a pinned cudaMallocHost buffer of the same size), the raw limit in
 * whole tensors, and a snapshot: an event on the caller's stream, ckpt_save
 * on that stream, ckpt_fence on it, an event; the time between the events
 * is the snapshot, complete on the device (the fence waits for the copy of
 * every chunk).  The save then persists; time to durable and committed come
 * from the runtime's events and the step is removed before the next
 * repetition, so the folder holds one checkpoint at most.
 *
 * Reported: the raw limit (the best repetition of either way), the
 * snapshot's median and best, and their ratio to the limit (median: the
 * conservative figure).
 */
#include <stddef.h>

#include "bench/bench_gpu.h"

#define D2H_MIN_BYTES (4 * MIB)

static void d2h_help(FILE *f)
{
    fprintf(f,
"usage: %s d2h --dir D [options]\n"
"\n"
"Device-to-host snapshot throughput on the CUDA backend: device tensors\n"
"(cudaMalloc) are saved with ckpt_save + ckpt_fence on a stream, and the time\n"
"until the fence releases the stream is set against raw pinned cudaMemcpyAsync\n"
"of the same bytes, measured in the same run.  Each save also persists to D:\n"
"time to durable is reported, and the step is removed afterwards.  Needs a\n"
"GPU and a build with CUDA kernels.  GB/s means 1e9 bytes per second.\n"
"\n"
"options:\n"
"  --dir D          checkpoint folder (created if missing; only the steps this\n"
"                   run saves are removed)\n"
"  --size SIZE      device state, N[KMG] (default 4G, >= 4M)\n"
"  --tensors N      tensors the state is split into (default 64)\n"
"  --chunk SIZE     the runtime's chunk and the raw copy's piece (default 4M)\n"
"  --staging SIZE   pinned staging pool (default: the state plus 64M, so the\n"
"                   whole snapshot fits)\n"
"  --reps N         repetitions (default 3, at most %d)\n"
"  --writer W       uring | pwrite | auto (default auto)\n"
"  --json           JSON on stdout (the table goes to stderr)\n"
"\n"
"Exit status: 0 ok, 1 no GPU or a failed call, 2 usage error.\n", prog, D2H_MAX_REPS);
}

static int d2h_parse(int argc, char **argv, d2h_opts *o)
{
    memset(o, 0, sizeof *o);
    o->bytes = 4 * GIB;
    o->chunk_bytes = 4 * MIB;
    o->tensors = 64;
    o->reps = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int m;
        long n;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            d2h_help(stdout);
            return -1;
        } else if ((m = common_opt(argc, argv, &i, "d2h", &o->c)) != 0) {
            if (m == 2)
                return 2;
        } else if ((m = opt_value(argc, argv, &i, "--size", &v)) != 0) {
            if (m < 0 || parse_size(v, &o->bytes) != 0 || o->bytes < D2H_MIN_BYTES)
                return usage_error("d2h", "--size: expected a size >= 4M like 4G");
        } else if ((m = opt_value(argc, argv, &i, "--tensors", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, 100000, &n) != 0)
                return usage_error("d2h", "--tensors: expected 1..100000");
            o->tensors = (int)n;
        } else if ((m = opt_value(argc, argv, &i, "--chunk", &v)) != 0) {
            if (m < 0 || parse_size(v, &o->chunk_bytes) != 0 || o->chunk_bytes < 64 * KIB ||
                o->chunk_bytes > GIB || o->chunk_bytes % 4096)
                return usage_error("d2h", "--chunk: expected a multiple of 4K in 64K..1G");
        } else if ((m = opt_value(argc, argv, &i, "--reps", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, D2H_MAX_REPS, &n) != 0)
                return usage_error("d2h", "--reps: expected 1..%d", D2H_MAX_REPS);
            o->reps = (int)n;
        } else {
            return usage_error("d2h", "unknown argument '%s'", a);
        }
    }
    if (!o->c.dir)
        return usage_error("d2h", "--dir is required");
    /* Tensors of whole 4 KiB pages: the raw pieces and the staging slabs
     * then line up, and the pool default below holds the whole state. */
    if (o->bytes / (uint64_t)o->tensors < 4096)
        return usage_error("d2h", "--tensors: at most one tensor per 4K of --size");
    if (!o->c.staging_bytes)
        o->c.staging_bytes = o->bytes + 64 * MIB;
    if (o->c.staging_bytes < o->chunk_bytes)
        return usage_error("d2h", "--staging must be at least --chunk");
    return 0;
}

/* ---- report -------------------------------------------------------------- */

typedef struct d2h_report {
    stat3 raw_piece, raw_whole, snap, snap_event, durable, committed, call_us, fence_ms;
    double limit_gbps; /* the best raw repetition of either way */
} d2h_report;

static double gbps(uint64_t bytes, double secs)
{
    return secs > 0 ? (double)bytes / secs / 1e9 : 0;
}

/* Median, min and max over the repetitions of a field; with to_gbps the
 * field is seconds and the result GB/s (so min and max swap meaning:
 * stat3 keeps min <= max of the converted values). */
static stat3 over_reps(const d2h_result *r, int reps, size_t field, int to_gbps)
{
    double v[D2H_MAX_REPS];
    for (int i = 0; i < reps; i++) {
        double x = *(const double *)(const void *)((const char *)&r->rep[i] + field);
        v[i] = to_gbps ? gbps(r->bytes, x) : x;
    }
    return stat3_of(v, reps);
}

static d2h_report summarize(const d2h_opts *o, const d2h_result *r)
{
    d2h_report p;
    p.raw_piece = over_reps(r, o->reps, offsetof(d2h_rep, raw_piece_s), 1);
    p.raw_whole = over_reps(r, o->reps, offsetof(d2h_rep, raw_whole_s), 1);
    p.snap = over_reps(r, o->reps, offsetof(d2h_rep, snapshot_s), 1);
    p.snap_event = over_reps(r, o->reps, offsetof(d2h_rep, snapshot_event_s), 1);
    p.durable = over_reps(r, o->reps, offsetof(d2h_rep, durable_s), 0);
    p.committed = over_reps(r, o->reps, offsetof(d2h_rep, committed_s), 0);
    p.call_us = over_reps(r, o->reps, offsetof(d2h_rep, save_call_us), 0);
    p.fence_ms = over_reps(r, o->reps, offsetof(d2h_rep, fence_call_ms), 0);
    p.limit_gbps = p.raw_piece.max > p.raw_whole.max ? p.raw_piece.max : p.raw_whole.max;
    return p;
}

static double ratio(double x, double limit)
{
    return limit > 0 ? x / limit : 0;
}

static void print_table(FILE *f, const d2h_opts *o, const d2h_result *r, const d2h_report *p)
{
    char b1[32], b2[32], b3[32], what[64];
    fprintf(f, "ckpt-bench d2h: %s in %d device tensors on %s, chunk %s, staging %s, "
            "writer %s, %d rep%s\nGB/s = 1e9 bytes per second; best = fastest repetition\n\n",
            fmt_bytes(r->bytes, b1, sizeof b1), r->ntensors, r->gpu,
            fmt_bytes(o->chunk_bytes, b2, sizeof b2),
            fmt_bytes(o->c.staging_bytes, b3, sizeof b3),
            r->writer, o->reps, o->reps > 1 ? "s" : "");
    fprintf(f, "  %-28s %9s %9s\n", "", "median", "best");
    snprintf(what, sizeof what, "raw D2H, %s pieces", b2);
    fprintf(f, "  %-28s %9.3f %9.3f  GB/s\n", what, p->raw_piece.med, p->raw_piece.max);
    fprintf(f, "  %-28s %9.3f %9.3f  GB/s\n", "raw D2H, whole tensors", p->raw_whole.med,
            p->raw_whole.max);
    fprintf(f, "  %-28s %9.3f %9.3f  GB/s  %.3f of raw %.3f (median; target >= 0.9)\n",
            "snapshot (save..fence)", p->snap.med, p->snap.max,
            ratio(p->snap.med, p->limit_gbps), p->limit_gbps);
    fprintf(f, "  %-28s %9.3f %9.3f  GB/s\n", "snapshot (SNAPSHOT event)", p->snap_event.med,
            p->snap_event.max);
    fprintf(f, "  %-28s %9.3f %9.3f  s     %.3f GB/s (median)\n", "save to durable",
            p->durable.med, p->durable.min, gbps(r->bytes, p->durable.med));
    fprintf(f, "  %-28s %9.3f %9.3f  s\n", "save to committed", p->committed.med,
            p->committed.min);
    fprintf(f, "  %-28s %9.1f %9.1f  us\n", "ckpt_save call", p->call_us.med, p->call_us.min);
    fprintf(f, "  %-28s %9.3f %9.3f  ms    (host; the stream waits on the device)\n",
            "ckpt_fence call", p->fence_ms.med, p->fence_ms.min);
}

static void json_stat(FILE *f, const char *key, stat3 v, int best_is_max)
{
    fprintf(f, ",\n  \"%s_median\": %.6f, \"%s_best\": %.6f", key, v.med, key,
            best_is_max ? v.max : v.min);
}

static void print_json(FILE *f, const d2h_opts *o, const d2h_result *r, const d2h_report *p)
{
    fprintf(f, "{\n  \"bench\": \"d2h\",\n  \"device\": \"cuda\",\n  \"gpu\": ");
    json_str(f, r->gpu);
    fprintf(f, ",\n  \"dir\": ");
    json_str(f, o->c.dir);
    fprintf(f, ",\n  \"writer\": ");
    json_str(f, r->writer);
    fprintf(f, ",\n  \"state_bytes\": %" PRIu64 ", \"tensors\": %d, \"chunk_bytes\": %" PRIu64
            ", \"staging_bytes\": %" PRIu64 ", \"reps\": %d",
            r->bytes, r->ntensors, o->chunk_bytes, o->c.staging_bytes, o->reps);
    json_stat(f, "raw_piece_gbps", p->raw_piece, 1);
    json_stat(f, "raw_whole_gbps", p->raw_whole, 1);
    fprintf(f, ",\n  \"raw_gbps\": %.6f", p->limit_gbps);
    json_stat(f, "snapshot_gbps", p->snap, 1);
    json_stat(f, "snapshot_event_gbps", p->snap_event, 1);
    fprintf(f, ",\n  \"snapshot_ratio\": %.6f, \"snapshot_ratio_best\": %.6f, "
            "\"snapshot_ratio_target\": 0.9",
            ratio(p->snap.med, p->limit_gbps), ratio(p->snap.max, p->limit_gbps));
    json_stat(f, "durable_s", p->durable, 0);
    fprintf(f, ",\n  \"durable_gbps_median\": %.6f", gbps(r->bytes, p->durable.med));
    json_stat(f, "committed_s", p->committed, 0);
    json_stat(f, "save_call_us", p->call_us, 0);
    json_stat(f, "fence_call_ms", p->fence_ms, 0);
    fprintf(f, ",\n  \"runs\": [");
    for (int i = 0; i < o->reps; i++) {
        const d2h_rep *x = &r->rep[i];
        fprintf(f, "%s\n    {\"raw_piece_s\": %.6f, \"raw_whole_s\": %.6f, \"snapshot_s\": %.6f, "
                "\"snapshot_event_s\": %.6f, \"save_call_us\": %.1f, \"fence_call_ms\": %.3f, "
                "\"durable_s\": %.6f, \"committed_s\": %.6f}",
                i ? "," : "", x->raw_piece_s, x->raw_whole_s, x->snapshot_s,
                x->snapshot_event_s, x->save_call_us, x->fence_call_ms, x->durable_s,
                x->committed_s);
    }
    fprintf(f, "\n  ]\n}\n");
}

int cmd_d2h(int argc, char **argv)
{
    d2h_opts o;
    int rc = d2h_parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    d2h_result *r = calloc(1, sizeof *r);
    if (!r) {
        errorf("out of memory");
        return 1;
    }
    rc = d2h_measure(&o, r);
    if (!rc) {
        d2h_report p = summarize(&o, r);
        print_table(o.c.json ? stderr : stdout, &o, r, &p);
        if (o.c.json)
            print_json(stdout, &o, r, &p);
    }
    free(r);
    return rc;
}
