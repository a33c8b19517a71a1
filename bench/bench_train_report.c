/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckpt-bench train's figures: each rank's, gathered by rank 0, aggregated
 * over the ranks, and printed as a table and as JSON.
 *
 * Aggregates: bytes, peak RSS and the raw bytes are summed; times (step
 * percentiles, total, save call, stall, durable, committed, local commit,
 * the restores, raw write) are the slowest rank's, because a job moves at the pace of its
 * slowest rank; refusals are summed.  Per save, from CLOCK_REALTIME stamps
 * (one machine shares the clock; across machines these figures need
 * synchronized clocks):
 *   commit latency   rank 0's COMMITTED event - the last rank's DURABLE
 *                    event (its done-record is on disk);
 *   save throughput  all ranks' bytes / (COMMITTED - the first rank's
 *                    accepted ckpt_save), the ranks' skew included;
 * each reported as p50 (and max for the latency) over the saves that every
 * rank made durable.  Commit counts per tier are the fewest of any rank.
 * The raw limit is all ranks' raw bytes over the
 * slowest rank's raw write, the ranks having started together.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_train.h"
#include "bench/bench_util.h"

static rank_figs figs_of(const run *base, const run *r, double raw_write_s, uint64_t raw_bytes,
                         uint64_t bytes)
{
    rank_figs f;
    memset(&f, 0, sizeof f);
    f.bytes = (double)bytes;
    f.base_total_s = base->total_s;
    f.base_step_p50 = train_pct(base->step_ms, base->steps, 0.5);
    f.base_step_p99 = train_pct(base->step_ms, base->steps, 0.99);
    f.base_rss_mib = base->peak_rss_mib;
    f.total_s = r->total_s;
    f.step_p50 = train_pct(r->step_ms, r->steps, 0.5);
    f.step_p99 = train_pct(r->step_ms, r->steps, 0.99);
    f.call_us_p50 = train_pct(r->call_us, r->ncalls, 0.5);
    f.call_us_max = train_pct(r->call_us, r->ncalls, 1.0);
    f.stall_p50 = train_pct(r->stall_ms, r->nstalls, 0.5);
    f.stall_p99 = train_pct(r->stall_ms, r->nstalls, 0.99);
    f.stall_max = train_pct(r->stall_ms, r->nstalls, 1.0);
    f.durable_p50 = train_pct(r->durable_s, r->ndurable, 0.5);
    f.committed_p50 = train_pct(r->committed_s, r->ncommitted, 0.5);
    /* The first save of a run's context builds the layout through HDF5;
     * the later ones write it from the cache. */
    f.layout_first_ms = r->nlayout ? r->layout_ms[0] : 0;
    f.layout_p50_ms = r->nlayout > 1 ? train_pct(r->layout_ms + 1, r->nlayout - 1, 0.5) : 0;
    f.layout_max_ms = r->nlayout > 1 ? train_pct(r->layout_ms + 1, r->nlayout - 1, 1.0) : 0;
    f.restore_s = r->restore_s;
    f.tiered = r->tiered;
    f.local_commit_p50 = train_pct(r->local_s, r->nlocal, 0.5);
    f.restore_durable_s = r->tiered ? r->restore_durable_s : r->restore_s;
    f.restore_step = (double)r->restore_step;
    f.restore_durable_step = (double)(r->tiered ? r->restore_durable_step : r->restore_step);
    f.local_commits = r->nlocal;
    f.replicated_p50 = train_pct(r->repl_s, r->nrepl, 0.5);
    f.replications = r->nrepl;
    f.restore_replica_s = r->restore_replica_s;
    f.restore_replica_step = (double)r->restore_replica_step;
    f.durable_commits = r->ndurable;
    f.rss_mib = r->peak_rss_mib;
    f.raw_write_s = raw_write_s;
    f.raw_bytes = (double)raw_bytes;
    f.calls = r->ncalls;
    f.refused = r->refused;
    f.committed = r->committed;
    return f;
}

static double dmax(double a, double b)
{
    return a > b ? a : b;
}

static void aggregate(const rank_figs *v, int n, rank_figs *a)
{
    *a = v[0];
    for (int i = 1; i < n; i++) {
        const rank_figs *x = &v[i];
        a->bytes += x->bytes;
        a->base_rss_mib += x->base_rss_mib;
        a->rss_mib += x->rss_mib;
        a->raw_bytes += x->raw_bytes;
        a->refused += x->refused;
        a->base_total_s = dmax(a->base_total_s, x->base_total_s);
        a->base_step_p50 = dmax(a->base_step_p50, x->base_step_p50);
        a->base_step_p99 = dmax(a->base_step_p99, x->base_step_p99);
        a->total_s = dmax(a->total_s, x->total_s);
        a->step_p50 = dmax(a->step_p50, x->step_p50);
        a->step_p99 = dmax(a->step_p99, x->step_p99);
        a->call_us_p50 = dmax(a->call_us_p50, x->call_us_p50);
        a->call_us_max = dmax(a->call_us_max, x->call_us_max);
        a->stall_p50 = dmax(a->stall_p50, x->stall_p50);
        a->stall_p99 = dmax(a->stall_p99, x->stall_p99);
        a->stall_max = dmax(a->stall_max, x->stall_max);
        a->durable_p50 = dmax(a->durable_p50, x->durable_p50);
        a->committed_p50 = dmax(a->committed_p50, x->committed_p50);
        a->layout_first_ms = dmax(a->layout_first_ms, x->layout_first_ms);
        a->layout_p50_ms = dmax(a->layout_p50_ms, x->layout_p50_ms);
        a->layout_max_ms = dmax(a->layout_max_ms, x->layout_max_ms);
        a->restore_s = dmax(a->restore_s, x->restore_s);
        a->local_commit_p50 = dmax(a->local_commit_p50, x->local_commit_p50);
        a->replicated_p50 = dmax(a->replicated_p50, x->replicated_p50);
        a->replications = a->replications < x->replications ? a->replications : x->replications;
        a->restore_durable_s = dmax(a->restore_durable_s, x->restore_durable_s);
        a->restore_replica_s = dmax(a->restore_replica_s, x->restore_replica_s);
        a->local_commits = a->local_commits < x->local_commits ? a->local_commits
                                                               : x->local_commits;
        a->durable_commits = a->durable_commits < x->durable_commits ? a->durable_commits
                                                                     : x->durable_commits;
        a->raw_write_s = dmax(a->raw_write_s, x->raw_write_s);
        a->calls = dmax(a->calls, x->calls);
        a->committed = a->committed < x->committed ? a->committed : x->committed;
    }
}

/* The per-save figures of the file comment; times[q] holds rank q's
 * accepted stamps, then its durable stamps (nsaves each). */
static int per_save(run_report *rep, const run *r, const double *times)
{
    int n = r->nsaves, k = 0;
    double *lat = calloc((size_t)n + 1, sizeof *lat), *gbps = calloc((size_t)n + 1, sizeof *gbps),
           *skew = calloc((size_t)n + 1, sizeof *skew);
    if (!lat || !gbps || !skew) {
        free(lat);
        free(gbps);
        free(skew);
        errorf("out of memory");
        return 1;
    }
    for (int s = 0; s < n; s++) {
        double committed = r->committed_rt[s], first = 0, last = 0, durable = 0;
        int all = committed > 0;
        for (int q = 0; q < rep->nranks && all; q++) {
            double a = times[(size_t)q * 2 * n + s], d = times[(size_t)q * 2 * n + n + s];
            all = a > 0 && d > 0;
            first = q == 0 || a < first ? a : first;
            last = dmax(last, a);
            durable = dmax(durable, d);
        }
        if (!all || committed <= first)
            continue;
        lat[k] = (committed - durable) * 1e3;
        gbps[k] = rep->agg.bytes / (committed - first) / 1e9;
        skew[k] = (last - first) * 1e3;
        k++;
    }
    rep->nlat = k;
    rep->lat_ms_p50 = train_pct(lat, k, 0.5);
    rep->lat_ms_max = train_pct(lat, k, 1.0);
    rep->save_gbps = train_pct(gbps, k, 0.5);
    rep->skew_ms_p50 = train_pct(skew, k, 0.5);
    free(lat);
    free(gbps);
    free(skew);
    return 0;
}

int train_report(bench_world *w, const run *base, const run *r, double raw_write_s,
                 uint64_t raw_bytes, uint64_t bytes, run_report *rep)
{
    memset(rep, 0, sizeof *rep);
    rep->r = r;
    rep->nranks = w->size;
    rank_figs mine = figs_of(base, r, raw_write_s, raw_bytes, bytes);
    size_t nt = (size_t)r->nsaves * 2;
    double *times = calloc(nt + 1, sizeof *times), *all_times = NULL;
    if (w->rank == 0) {
        rep->per = calloc((size_t)w->size, sizeof *rep->per);
        all_times = calloc(nt * (size_t)w->size + 1, sizeof *all_times);
    }
    /* Every rank needs its buffers before the gathers, rank 0 most. */
    double bad = !times || (w->rank == 0 && (!rep->per || !all_times));
    w->m->sum(w, &bad, 1);
    int rc = 0;
    if (bad > 0) {
        errorf("out of memory gathering the figures");
        rc = 1;
    } else {
        memcpy(times, r->accepted_rt, (size_t)r->nsaves * sizeof *times);
        memcpy(times + r->nsaves, r->durable_rt, (size_t)r->nsaves * sizeof *times);
        w->m->gather(w, &mine, sizeof mine, rep->per);
        w->m->gather(w, times, nt * sizeof *times, all_times);
        if (w->rank == 0) {
            aggregate(rep->per, w->size, &rep->agg);
            rep->raw_gbps = rep->agg.raw_write_s > 0
                                ? rep->agg.raw_bytes / rep->agg.raw_write_s / 1e9
                                : 0;
            rc = per_save(rep, r, all_times);
        }
    }
    free(times);
    free(all_times);
    return rc;
}

void train_report_free(run_report *rep)
{
    free(rep->per);
    rep->per = NULL;
}

/* ---- derived figures ------------------------------------------------------------ */

static double overhead_pct(const rank_figs *x)
{
    return x->base_total_s > 0 ? (x->total_s / x->base_total_s - 1.0) * 100.0 : 0;
}

static double restore_gbps(const rank_figs *x)
{
    return x->restore_s > 0 ? x->bytes / x->restore_s / 1e9 : 0;
}

/* The local tier's restore against dir's, in the same run. */
static double restore_tier_ratio(const rank_figs *x)
{
    return x->tiered && x->restore_s > 0 ? x->restore_durable_s / x->restore_s : 0;
}

static double raw_gbps(const rank_figs *x)
{
    return x->raw_write_s > 0 ? x->raw_bytes / x->raw_write_s / 1e9 : 0;
}

static double save_ratio(const run_report *rep)
{
    return rep->raw_gbps > 0 ? rep->save_gbps / rep->raw_gbps : 0;
}

/* ---- table ---------------------------------------------------------------------- */

static void row(FILE *f, const char *label, const rank_figs *x)
{
    fprintf(f, "  %-9s %9.1f %9.1f %9.2f %10.1f %10.2f %10.2f %9.3f %9.3f %4.0f/%-3.0f %9.3f "
               "%9.0f\n",
            label, x->step_p50, x->step_p99, overhead_pct(x), x->call_us_p50, x->stall_p50,
            x->stall_max, x->durable_p50, x->committed_p50, x->refused, x->calls,
            restore_gbps(x), x->rss_mib);
}

static void header(FILE *f)
{
    fprintf(f, "  %-9s %9s %9s %9s %10s %10s %10s %9s %9s %8s %9s %9s\n", "run", "step p50",
            "step p99", "overhead", "save call", "stall p50", "stall max", "durable", "committed",
            "refused", "restore", "peak RSS");
    fprintf(f, "  %-9s %9s %9s %9s %10s %10s %10s %9s %9s %8s %9s %9s\n", "", "ms", "ms", "%",
            "us p50", "ms", "ms", "s p50", "s p50", "saves", "GB/s", "MiB");
}

void train_print_table(FILE *f, const train_opts *o, const train_shape *sh,
                       const run_report *reps, int nreps)
{
    char sz[32], stg[32], ranks[32] = "";
    int nranks = reps[0].nranks;
    if (nranks > 1)
        snprintf(ranks, sizeof ranks, " on %d ranks", nranks);
    fprintf(f, "ckpt-bench train: %s in %zu tensors%s, staging %s%s, writer %s, %d steps of "
               "%.0f ms, a checkpoint every %d steps\n\n",
            fmt_bytes(sh->bytes, sz, sizeof sz), sh->ntensors, ranks,
            fmt_bytes(o->staging_bytes, stg, sizeof stg), nranks > 1 ? " per rank" : "",
            sh->writer, o->steps, o->step_ms, o->every);
    header(f);
    const rank_figs *b = &reps[0].agg;
    fprintf(f, "  %-9s %9.1f %9.1f %9s %10s %10s %10s %9s %9s %8s %9s %9.0f\n", "baseline",
            b->base_step_p50, b->base_step_p99, "-", "-", "-", "-", "-", "-", "-", "-",
            b->base_rss_mib);
    for (int i = 0; i < nreps; i++)
        row(f, reps[i].r->label, &reps[i].agg);
    for (int i = 0; i < nreps && nranks > 1; i++) {
        fprintf(f, "\n  %s, per rank (baseline step p50 ms / raw write GB/s):\n",
                reps[i].r->label);
        for (int q = 0; q < nranks; q++) {
            char label[32];
            const rank_figs *x = &reps[i].per[q];
            snprintf(label, sizeof label, "rank %d", q);
            row(f, label, x);
            fprintf(f, "  %-9s %9.1f / %.3f\n", "", x->base_step_p50, raw_gbps(x));
        }
    }
    fprintf(f, "\n");
    for (int i = 0; i < nreps; i++) {
        const run_report *p = &reps[i];
        fprintf(f, "  %-7s commit %.1f ms p50, %.1f ms max after the last done-record (%d "
                   "saves)\n",
                p->r->label, p->lat_ms_p50, p->lat_ms_max, p->nlat);
        fprintf(f, "  %-7s layout CPU %.2f ms at the first save (built by HDF5), %.2f ms p50 "
                   "(%.2f max) after it (cached)\n",
                "", p->agg.layout_first_ms, p->agg.layout_p50_ms, p->agg.layout_max_ms);
        fprintf(f, "  %-7s save %.3f GB/s p50 against a raw write of %.3f GB/s%s: %.3f "
                   "(ranks %.1f ms apart p50)\n",
                "", p->save_gbps, p->raw_gbps,
                sh->raw_direct ? "" : " (buffered: no O_DIRECT here)", save_ratio(p),
                p->skew_ms_p50);
        const rank_figs *a = &p->agg;
        if (a->tiered)
            fprintf(f, "  %-7s tiers: local commit %.3f s p50 (%.0f saves), durable commit "
                       "%.3f s p50 (%.0f saves);\n  %-7s restore local %.3f s (step %.0f), "
                       "durable %.3f s (step %.0f): %.2fx\n",
                    "", a->local_commit_p50, a->local_commits, a->durable_p50,
                    a->durable_commits, "", a->restore_s, a->restore_step, a->restore_durable_s,
                    a->restore_durable_step, restore_tier_ratio(a));
        if (a->tiered && a->replications > 0)
            fprintf(f, "  %-7s replicas: round done %.3f s p50 after ckpt_save (%.0f saves); "
                       "restore with the last node's folder lost %.3f s (step %.0f)\n",
                    "", a->replicated_p50, a->replications, a->restore_replica_s,
                    a->restore_replica_step);
    }
    fprintf(f, "\n  overhead: total time against the baseline; stall: ckpt_fence on checkpoint "
               "steps;\n  durable/committed: ckpt_save to the runtime's events; GB = 1e9 "
               "bytes\n");
    if (reps[0].agg.tiered)
        fprintf(f, "  tiers (node-local in %s, %d node(s)): durable is ckpt_save to the commit "
                   "in the\n  durable folder; restore: the newest checkpoint from the local "
                   "tier, then the\n  newest in the durable folder with the local folders "
                   "moved aside\n",
                o->local_dir, nranks / o->ranks_per_node);
    if (nranks > 1)
        fprintf(f, "  all ranks: bytes and RSS summed, times the slowest rank's; save: all "
                   "ranks' bytes from\n  the first ckpt_save to the commit; raw write: every "
                   "rank's share at once\n  (median of three rounds)\n");
}

/* ---- JSON ----------------------------------------------------------------------- */

static void json_array(FILE *f, const char *key, const double *v, int n)
{
    fprintf(f, ", \"%s\": [", key);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%.3f", i ? ", " : "", v[i]);
    fputc(']', f);
}

/* A figure that may not exist (no save to measure): null then. */
static void json_opt(FILE *f, const char *key, double v, int prec, int valid)
{
    if (valid)
        fprintf(f, ", \"%s\": %.*f", key, prec, v);
    else
        fprintf(f, ", \"%s\": null", key);
}

static void json_saves(FILE *f, const run_report *p)
{
    json_opt(f, "commit_latency_ms_p50", p->lat_ms_p50, 3, p->nlat > 0);
    json_opt(f, "commit_latency_ms_max", p->lat_ms_max, 3, p->nlat > 0);
    fprintf(f, ", \"commit_latency_saves\": %d", p->nlat);
    json_opt(f, "save_gbps_agg", p->save_gbps, 4, p->nlat > 0);
    json_opt(f, "raw_write_gbps_agg", p->raw_gbps, 4, p->raw_gbps > 0);
    json_opt(f, "save_ratio_agg", save_ratio(p), 4, p->nlat > 0 && p->raw_gbps > 0);
    json_opt(f, "save_skew_ms_p50", p->skew_ms_p50, 3, p->nlat > 0);
}

/* The tiers' figures: local ones null without --local-dir; the durable
 * restore is then the only one. */
static void json_tiers(FILE *f, const rank_figs *x)
{
    int t = x->tiered > 0;
    json_opt(f, "local_commit_s_p50", x->local_commit_p50, 4, t && x->local_commits > 0);
    json_opt(f, "replicated_s_p50", x->replicated_p50, 4, t && x->replications > 0);
    json_opt(f, "restore_local_s", x->restore_s, 4, t && x->restore_s > 0);
    json_opt(f, "restore_durable_s", x->restore_durable_s, 4, x->restore_durable_s > 0);
    json_opt(f, "restore_replica_s", x->restore_replica_s, 4, x->restore_replica_s > 0);
    json_opt(f, "restore_replica_step", x->restore_replica_step, 0, x->restore_replica_s > 0);
    json_opt(f, "restore_local_step", x->restore_step, 0, t && x->restore_s > 0);
    json_opt(f, "restore_durable_step", x->restore_durable_step, 0, x->restore_durable_s > 0);
    json_opt(f, "restore_tier_ratio", restore_tier_ratio(x), 3, restore_tier_ratio(x) > 0);
    json_opt(f, "local_commits", x->local_commits, 0, t);
    json_opt(f, "durable_commits", x->durable_commits, 0, t);
}

static void json_figs(FILE *f, const rank_figs *x)
{
    fprintf(f, "\"step_ms_p50\": %.3f, \"step_ms_p99\": %.3f, \"overhead_pct\": %.3f"
               ", \"save_call_us\": %.1f, \"save_call_us_max\": %.1f, \"stall_ms_p50\": %.3f"
               ", \"stall_ms_p99\": %.3f, \"stall_ms_max\": %.3f, \"durable_s_p50\": %.4f"
               ", \"committed_s_p50\": %.4f, \"saves\": %.0f, \"refused\": %.0f"
               ", \"committed\": %.0f, \"restore_gbps\": %.4f, \"peak_rss_mib\": %.1f"
               ", \"layout_ms_first\": %.3f, \"layout_ms_p50\": %.3f, \"layout_ms_max\": %.3f",
            x->step_p50, x->step_p99, overhead_pct(x), x->call_us_p50, x->call_us_max,
            x->stall_p50, x->stall_p99, x->stall_max, x->durable_p50, x->committed_p50, x->calls,
            x->refused, x->committed, restore_gbps(x), x->rss_mib, x->layout_first_ms,
            x->layout_p50_ms, x->layout_max_ms);
    json_tiers(f, x);
}

static void json_rank(FILE *f, int q, const rank_figs *x)
{
    fprintf(f, "{\"rank\": %d, \"bytes\": %.0f, ", q, x->bytes);
    json_figs(f, x);
    fprintf(f, ", \"baseline_step_ms_p50\": %.3f, \"baseline_peak_rss_mib\": %.1f"
               ", \"raw_write_gbps\": %.4f}",
            x->base_step_p50, x->base_rss_mib, raw_gbps(x));
}

/* One run: the figures over all ranks, rank 0's step times. */
static void json_run(FILE *f, const run_report *p)
{
    fprintf(f, "{\"policy\": \"%s\", ", p->r->label);
    json_figs(f, &p->agg);
    json_saves(f, p);
    json_array(f, "step_ms", p->r->step_ms, p->r->steps);
    fputc('}', f);
}

void train_print_json(FILE *f, const train_opts *o, const train_shape *sh, const run *base,
                      const run_report *reps, int nreps)
{
    const run_report *p = &reps[0];
    const rank_figs *a = &p->agg;
    fprintf(f, "{\"bench\": \"train\", \"dir\": ");
    json_str(f, o->dir);
    fprintf(f, ", \"state_bytes\": %" PRIu64 ", \"tensors\": %zu, \"staging_bytes\": %" PRIu64
               ", \"writer\": \"%s\", \"device\": \"host\", \"step_ms\": %.1f, \"every\": %d"
               ", \"steps\": %d, \"world_size\": %d, \"raw_direct\": %s",
            sh->bytes, sh->ntensors, o->staging_bytes, sh->writer, o->step_ms, o->every,
            o->steps, p->nranks, sh->raw_direct ? "true" : "false");
    fprintf(f, ", \"local_dir\": ");
    if (o->local_dir)
        json_str(f, o->local_dir);
    else
        fputs("null", f);
    fprintf(f, ", \"nodes\": %d, \"durable_every\": %d, \"replicas\": %d",
            o->local_dir ? p->nranks / o->ranks_per_node : 1,
            o->durable_every ? o->durable_every : 1, o->replicas);
    /* The headline figures are those of the first checkpointed run, over
     * all ranks. */
    fprintf(f, ",\n \"policy\": \"%s\", \"overhead_pct\": %.3f, \"save_call_us\": %.1f"
               ", \"stall_ms_p50\": %.3f, \"durable_s_p50\": %.4f, \"committed_s_p50\": %.4f"
               ", \"restore_gbps\": %.4f, \"peak_rss_mib\": %.1f, \"layout_ms_first\": %.3f"
               ", \"layout_ms_p50\": %.3f",
            p->r->label, overhead_pct(a), a->call_us_p50, a->stall_p50, a->durable_p50,
            a->committed_p50, restore_gbps(a), a->rss_mib, a->layout_first_ms, a->layout_p50_ms);
    json_tiers(f, a);
    json_saves(f, p);
    fprintf(f, ",\n \"ranks\": [");
    for (int q = 0; q < p->nranks; q++) {
        fprintf(f, "%s\n  ", q ? "," : "");
        json_rank(f, q, &p->per[q]);
    }
    fprintf(f, "],\n \"baseline\": {\"policy\": \"baseline\", \"step_ms_p50\": %.3f"
               ", \"step_ms_p99\": %.3f, \"peak_rss_mib\": %.1f",
            a->base_step_p50, a->base_step_p99, a->base_rss_mib);
    json_array(f, "step_ms", base->step_ms, base->steps);
    fprintf(f, "},\n \"runs\": [");
    for (int i = 0; i < nreps; i++) {
        fprintf(f, "%s\n  ", i ? "," : "");
        json_run(f, &reps[i]);
    }
    fprintf(f, "]}\n");
}
