/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckpt-bench train (bench_train.c): the cost of checkpointing to a
 * synthetic training loop, on one process or on the ranks of an MPI job;
 * its figures per rank, aggregated, and reported (bench_train_report.c).
 */
#ifndef CKPT_BENCH_BENCH_TRAIN_H
#define CKPT_BENCH_BENCH_TRAIN_H

#include <pthread.h>
#include <stdio.h>

#include "ckpt/ckpt.h"

#include "bench/bench_world.h"

/* Runs the subcommand: exit status 0, 1 (a failed call) or 2 (usage). */
int cmd_train(int argc, char **argv);

typedef struct train_opts {
    const char *dir;
    uint64_t state_bytes;   /* the whole state, split across the ranks */
    uint64_t staging_bytes; /* per rank; 0 until the world is known: picked */
    double step_ms;
    int every, steps, tensors;
    int busy_wait, busy_refuse, busy_set;
    int ranks; /* --ranks; 0 when not given */
    ckpt_io io;
    int json;
    int cuda;      /* --device cuda: state in GPU memory (bench_train_gpu.c) */
    int keep_last; /* --keep-last (cuda only; the host loop keeps 2) */
    /* Tiers: --local-dir L, --nodes K, --durable-every N (0 when not
     * given); train_fit sets this rank's node, its folder L/node-NODE and
     * its cfg.node_name "node-NODE". */
    const char *local_dir;
    int nodes, durable_every;
    int replicas; /* --replicas K (cfg.replicas), 0 when not given */
    int node, ranks_per_node;
    char local_path[4200]; /* CKPT__PATH_MAX */
    char node_name[32];
} train_opts;

/* One run of the loop on one rank. */
typedef struct run {
    const char *label; /* baseline, wait, refuse */
    int steps, every, nsaves; /* nsaves: checkpoint steps of the run */
    double *step_ms;   /* per step */
    double *call_us;   /* per save call (accepted or refused) */
    double *stall_ms;  /* per checkpoint step */
    int ncalls, nstalls, refused, committed;
    double total_s;
    double restore_s;         /* the newest checkpoint, as ckpt_restore picks it */
    double restore_durable_s; /* tiered: again, the local folders moved aside */
    double restore_replica_s; /* --replicas: the last node's local folder lost
                                 (moved aside) first, its ranks fetching from
                                 their partners' replicas */
    int64_t restore_step, restore_durable_step, restore_replica_step; /* the steps those
                                                                         restores read */
    int tiered;               /* --local-dir */
    double peak_rss_mib;
    /* Per checkpoint step (index step / every), CLOCK_REALTIME seconds, 0
     * when it did not happen: ckpt_save returned 0 (loop), and the save's
     * DURABLE and COMMITTED events (event callback).  Tiered, DURABLE is
     * the done-record of the save's last pass (the local one of a save
     * that does not go to dir). */
    double *accepted_rt, *durable_rt, *committed_rt;
    /* From the event callback (runtime threads): guarded by mu, as are the
     * *_rt arrays of the events. */
    pthread_mutex_t mu;
    /* durable_s: ckpt_save to the DURABLE event; tiered, to the COMMITTED
     * event of the saves that went to dir (their durable commit).
     * local_s: tiered, ckpt_save to the local commit (local_commit_s). */
    double *durable_s, *committed_s, *local_s;
    int ndurable, ncommitted, nlocal;
    /* repl_s: with --replicas, ckpt_save to the end of the replication
     * round (replicated_s) of the saves that ran one. */
    double *repl_s;
    int nrepl;
    /* Per durable save, in save order: the rank file's layout CPU time
     * (ckpt_event.layout_cpu_s), ms; the first is the HDF5 build. */
    double *layout_ms;
    int nlayout;
} run;

/* One rank's figures of one checkpointed run and of the baseline before
 * it; rank 0 gathers them as bytes (all doubles: no padding to differ). */
typedef struct rank_figs {
    double bytes; /* registered on this rank */
    double base_total_s, base_step_p50, base_step_p99, base_rss_mib;
    double total_s, step_p50, step_p99;
    double call_us_p50, call_us_max;
    double stall_p50, stall_p99, stall_max;
    double durable_p50, committed_p50;
    double layout_first_ms, layout_p50_ms, layout_max_ms; /* of the saves after the first */
    double restore_s, rss_mib;
    double tiered, local_commit_p50, restore_durable_s; /* --local-dir */
    double restore_step, restore_durable_step;
    double local_commits, durable_commits;
    double replicated_p50, replications; /* --replicas */
    double restore_replica_s, restore_replica_step;
    double raw_write_s, raw_bytes;
    double calls, refused, committed;
} rank_figs;

/* What rank 0 reports for one checkpointed run. */
typedef struct run_report {
    const run *r;   /* rank 0's own run: its step times */
    int nranks;
    rank_figs *per; /* [nranks] */
    rank_figs agg;  /* over the ranks: sums of bytes and memory, the
                       slowest rank's times (bench_train_report.c) */
    /* Per save that every rank made durable and rank 0 committed. */
    int nlat;
    double lat_ms_p50, lat_ms_max; /* COMMITTED on rank 0 - the last DURABLE */
    double save_gbps;              /* all ranks' bytes / (COMMITTED - first accepted), p50 */
    double skew_ms_p50;            /* last accepted - first accepted, p50 */
    double raw_gbps;               /* all ranks' raw bytes / the slowest raw write */
} run_report;

/* Shared by the train files. */
double train_pct(const double *v, int n, double p);
/* Removes every committed step of dir (one process at a time). */
void train_clean_dir(const char *dir);

/*
 * Collective: gathers every rank's figures of run r (with the baseline
 * base and this rank's raw write) to rank 0, which fills *rep (its own
 * allocation; free with train_report_free).  Returns 0, or 1 on rank 0
 * when out of memory.
 */
int train_report(bench_world *w, const run *base, const run *r, double raw_write_s,
                 uint64_t raw_bytes, uint64_t bytes, run_report *rep);
void train_report_free(run_report *rep);

/* Rank 0: the table (and the JSON object) of the runs. */
typedef struct train_shape {
    uint64_t bytes; /* the whole state */
    size_t ntensors;
    const char *writer;
    int raw_direct;
} train_shape;
void train_print_table(FILE *f, const train_opts *o, const train_shape *sh,
                       const run_report *reps, int nreps);
void train_print_json(FILE *f, const train_opts *o, const train_shape *sh, const run *base,
                      const run_report *reps, int nreps);

#endif
