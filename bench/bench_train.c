/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckpt-bench train: what checkpointing costs a training loop.
 *
 * A synthetic loop whose step does a fixed amount of work, calibrated to
 * --step-ms: "forward/backward" reads the registered tensors (a strided
 * walk over every page) for 80% of the step, then ckpt_fence, then the
 * "optimizer" writes every page of every tensor and computes for the rest.
 * The loop runs once without checkpoints (the baseline) and once per busy
 * policy with ckpt_save every --every steps, in the shape of docs/ARCHITECTURE.md (save,
 * forward/backward, fence, optimizer).  Because the work per step is fixed,
 * background copying, hashing and writing show up in the step times on a
 * machine with few cores, as they would in a real job.
 *
 * With --ranks N (or under mpirun) every rank of the job runs the loop on
 * its shard: each tensor of the --state is split by rows across the ranks
 * and registered with ckpt_register_shard, and the context commits over
 * MPI (bench_world.h picks the processes; bench_ranks.c is the MPI part).
 * The ranks agree on the work per step (the mean of their calibrations),
 * start each run together and meet once per step where a data-parallel job
 * all-reduces its gradients (a barrier that sleeps between tests rather
 * than polling, which would take the cores the runtime's threads need on a
 * small machine).  Only busy=wait runs on several ranks (the runtime
 * refuses busy=refuse there: ranks could refuse different saves).
 *
 * Reported per rank and aggregated over the ranks (bench_train_report.c):
 * step time p50/p99, overhead against the baseline (total time), time
 * inside ckpt_save, stall at the fence of checkpoint steps, ckpt_save to
 * durable and to committed (from the runtime's events), saves refused, the
 * restore throughput of the last checkpoint, the CPU time of the rank
 * file's layout (ckpt_event.layout_cpu_s: at the first save of a run, when
 * HDF5 builds it, and p50/max of the later saves, written from the cached
 * layout), and the process's peak RSS
 * during the run (VmHWM, reset before each run through
 * /proc/self/clear_refs).  Per save: the commit latency (rank 0's COMMITTED
 * event after the last rank's DURABLE one) and the aggregate save
 * throughput against the raw O_DIRECT write of every rank's share at once,
 * measured in the same run before the checkpointed runs.
 *
 * With --local-dir every run saves to the node-local tier too (cfg.local_dir,
 * one folder per "node", --nodes blocks of ranks named by cfg.node_name) and
 * to dir every --durable-every-th save.  The COMMITTED event says which
 * tiers a save committed to and when the local commit came
 * (ckpt_event.tiers, local_commit_s); after each run the newest checkpoint
 * is restored twice, from the local tier and then, each node's folder
 * renamed aside, from dir, each checked with ckpt_restore_tier().
 *
 * Invariants: every rank calls the same collectives in the same order (the
 * runs, their phases and the failure checks between phases, agree()); only
 * rank 0 removes checkpoints and prints results.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/paths.h"
#include "runtime/catalog.h"

#include "bench/bench_gpu.h"
#include "bench/bench_raw.h"
#include "bench/bench_state.h"
#include "bench/bench_train.h"
#include "bench/bench_util.h"

#define PAGE 4096u
#define FWD_SHARE 0.8 /* of a step: forward/backward reads */
#define MAX_RANKS 4096
#define MAX_GPU_STEPS 10000

/* Rows [start, start + count) of each tensor on this rank (1-D). */
typedef struct shard {
    int64_t global, start;
} shard;

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
"  --state SIZE     registered bytes, all ranks together (default 2G)\n"
"  --tensors N      number of tensors the state is split into (default 1000)\n"
"  --step-ms MS     step time without checkpoints (default 200)\n"
"  --every K        checkpoint every K steps (default 10)\n"
"  --steps N        steps per run (default 200)\n"
"  --staging SIZE   staging pool per rank (default: the rank's state plus an\n"
"                   eighth)\n"
"  --busy P         wait | refuse | both: what ckpt_save does while the\n"
"                   previous save persists (default both; several ranks: wait\n"
"                   only, as the runtime refuses busy=refuse there)\n"
"  --writer W       uring | pwrite | auto (default auto)\n"
"  --ranks N        run on N ranks of an MPI job: the bench starts itself\n"
"                   again under `mpirun -np N` (Open MPI, from PATH) unless\n"
"                   mpirun started it; every tensor is split by rows across the\n"
"                   ranks (ckpt_register_shard).  Also reported: the commit\n"
"                   latency after the last rank's done-record, and the\n"
"                   aggregate save throughput against all ranks writing their\n"
"                   share with O_DIRECT at once (median of three rounds)\n"
"  --json           JSON on stdout (the table goes to stderr)\n"
"  --device D       host (default) | cuda: the state in GPU memory, real\n"
"                   kernels on one stream (forward/backward reads the weights,\n"
"                   then ckpt_fence, then an Adam update); reports the device\n"
"                   stall at the fence per checkpoint against the snapshot copy\n"
"                   time.  Needs a GPU and a build with CUDA kernels.  Its\n"
"                   defaults: --step-ms auto (forward/backward 1.5x the copy at\n"
"                   50 GB/s), --steps 40, --every 20, --tensors 999, --staging\n"
"                   the state plus 1/32 plus 64M, --keep-last 1; busy=wait only;\n"
"                   one process (no --ranks)\n"
"  --keep-last N    (cuda) checkpoints kept on disk, 0 all (default 1); the\n"
"                   bench checks the free space for keep-last + 1 of them\n"
"  --local-dir L    the node-local tier (cfg.local_dir): each rank's node\n"
"                   folder is L/node-K, K = rank / (ranks per node), keeping\n"
"                   2 checkpoints like D.  Also reported per save: ckpt_save to\n"
"                   the local commit (local_commit_s_p50) and to the commit\n"
"                   in D (durable_s_p50, which without --local-dir is\n"
"                   ckpt_save to this rank's done-record in D); and the\n"
"                   restore time from each tier in the same run: the newest\n"
"                   checkpoint (local tier: restore_local_s), then, the local\n"
"                   folders moved aside, the newest in D (restore_durable_s;\n"
"                   an older step than the local one unless the last save went\n"
"                   to D: restore_*_step say which); the bench fails when\n"
"                   ckpt_restore_tier says another tier.  With --replicas,\n"
"                   between the two: the last node's folder moved aside, its\n"
"                   ranks fetch their files from their partners' replicas\n"
"                   (restore_replica_s, restore_replica_step).\n"
"                   Neither restore drops the page cache (as restore_gbps\n"
"                   never did): the runtime reads chunk data with O_DIRECT\n"
"                   where the file system allows it, so a D on disk is read\n"
"                   from the disk, and a tier on tmpfs (/dev/shm) from memory.\n"
"                   No restore from replicas yet (restore_replica_s)\n"
"  --nodes K        (with --local-dir) the ranks as K nodes: contiguous\n"
"                   blocks of ranks, cfg.node_name node-0 .. node-(K-1)\n"
"                   (default 1; K must divide the ranks)\n"
"  --durable-every N (with --local-dir) every N-th save also goes to D, the\n"
"                   first one included (cfg.durable_every; default 1)\n"
"  --replicas K     (with --local-dir and K < --nodes) K other nodes keep a\n"
"                   copy of each rank's local files (cfg.replicas; MPI is\n"
"                   initialized with MPI_THREAD_MULTIPLE); reported: ckpt_save\n"
"                   to the end of the rank's replication round\n"
"                   (replicated_s_p50)\n",
            prog);
}

/* --device cuda: its defaults for what was not given, and what it refuses
 * (bench_train_gpu.c runs one process, busy=wait). */
static int cuda_fit(train_opts *o, int steps_set, int every_set, int step_ms_set,
                    int tensors_set)
{
    if (o->ranks > 1)
        return usage_error("train", "--device cuda runs one process: no --ranks");
    if (o->busy_set && (o->busy_refuse || !o->busy_wait))
        return usage_error("train", "--device cuda runs busy=wait only");
    o->busy_refuse = 0;
    /* Two saves 20 steps apart: at the default step time that is about 18
     * copy times, so a disk of 1.4 GB/s or more persists one save before
     * the next is due and the overhead is the checkpoint's, not the disk's. */
    if (!steps_set)
        o->steps = 40;
    if (!every_set)
        o->every = 20;
    if (!step_ms_set)
        o->step_ms = 0; /* auto (bench_train_gpu.c) */
    if (!tensors_set)
        o->tensors = 999;
    if (o->keep_last < 0)
        o->keep_last = 1;
    if (o->steps > MAX_GPU_STEPS)
        return usage_error("train", "--device cuda: --steps at most %d", MAX_GPU_STEPS);
    if (o->state_bytes / (uint64_t)(o->tensors < 3 ? 3 : o->tensors) < 4096)
        return usage_error("train", "--tensors: at most one tensor per 4K of --state");
    return 0;
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
    o->keep_last = -1;
    int steps_set = 0, every_set = 0, step_ms_set = 0, tensors_set = 0;
    common_opts c = {NULL, 0, 0, CKPT_IO_AUTO};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int m;
        long n;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            train_help(stdout);
            return -1;
        } else if ((m = opt_value(argc, argv, &i, "--device", &v)) != 0) {
            if (m > 0 && (strcmp(v, "host") == 0 || strcmp(v, "cuda") == 0))
                o->cuda = strcmp(v, "cuda") == 0;
            else
                return usage_error("train", "--device: expected host or cuda");
        } else if ((m = opt_value(argc, argv, &i, "--keep-last", &v)) != 0) {
            if (m < 0 || parse_int(v, 0, 1000, &n) != 0)
                return usage_error("train", "--keep-last: expected 0..1000");
            o->keep_last = (int)n;
        } else if ((m = opt_value(argc, argv, &i, "--local-dir", &v)) != 0) {
            if (m < 0 || !v[0])
                return usage_error("train", "--local-dir: expected a folder");
            o->local_dir = v;
        } else if ((m = opt_value(argc, argv, &i, "--nodes", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, MAX_RANKS, &n) != 0)
                return usage_error("train", "--nodes: expected 1..%d", MAX_RANKS);
            o->nodes = (int)n;
        } else if ((m = opt_value(argc, argv, &i, "--durable-every", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, 1000000, &n) != 0)
                return usage_error("train", "--durable-every: expected a number >= 1");
            o->durable_every = (int)n;
        } else if ((m = opt_value(argc, argv, &i, "--replicas", &v)) != 0) {
            if (m < 0 || parse_int(v, 0, 2, &n) != 0)
                return usage_error("train", "--replicas: expected 0..2");
            o->replicas = (int)n;
        } else if ((m = common_opt(argc, argv, &i, "train", &c)) != 0) {
            if (m == 2)
                return 2;
        } else if ((m = opt_value(argc, argv, &i, "--state", &v)) != 0) {
            if (m < 0 || parse_size(v, &o->state_bytes) != 0 || o->state_bytes < MIB)
                return usage_error("train", "--state: expected a size >= 1M like 2G");
        } else if ((m = opt_value(argc, argv, &i, "--tensors", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, 100000, &n) != 0)
                return usage_error("train", "--tensors: expected 1..100000");
            o->tensors = (int)n;
            tensors_set = 1;
        } else if ((m = opt_value(argc, argv, &i, "--step-ms", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, 100000, &n) != 0)
                return usage_error("train", "--step-ms: expected 1..100000");
            o->step_ms = (double)n;
            step_ms_set = 1;
        } else if ((m = opt_value(argc, argv, &i, "--every", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, 1000000, &n) != 0)
                return usage_error("train", "--every: expected a number >= 1");
            o->every = (int)n;
            every_set = 1;
        } else if ((m = opt_value(argc, argv, &i, "--steps", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, 1000000, &n) != 0)
                return usage_error("train", "--steps: expected a number >= 1");
            o->steps = (int)n;
            steps_set = 1;
        } else if ((m = opt_value(argc, argv, &i, "--busy", &v)) != 0) {
            o->busy_wait = m > 0 && (strcmp(v, "wait") == 0 || strcmp(v, "both") == 0);
            o->busy_refuse = m > 0 && (strcmp(v, "refuse") == 0 || strcmp(v, "both") == 0);
            if (!o->busy_wait && !o->busy_refuse)
                return usage_error("train", "--busy: expected wait, refuse or both");
            o->busy_set = 1;
        } else if ((m = opt_value(argc, argv, &i, "--ranks", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, MAX_RANKS, &n) != 0)
                return usage_error("train", "--ranks: expected 1..%d", MAX_RANKS);
            o->ranks = (int)n;
        } else {
            return usage_error("train", "unknown argument '%s'", a);
        }
    }
    o->dir = c.dir;
    o->json = c.json;
    o->staging_bytes = c.staging_bytes;
    o->io = c.io;
    if (!o->dir)
        return usage_error("train", "--dir is required");
    if (!o->local_dir && (o->nodes || o->durable_every || o->replicas))
        return usage_error("train", "--nodes, --durable-every and --replicas need --local-dir");
    if (o->replicas && o->replicas >= (o->nodes ? o->nodes : 1))
        return usage_error("train", "--replicas %d needs more --nodes than that", o->replicas);
    if (o->local_dir && o->cuda)
        return usage_error("train", "--local-dir: the host loop only (no --device cuda)");
    if (o->nodes > 1 && o->ranks > 0 && o->ranks % o->nodes != 0)
        return usage_error("train", "--nodes %d must divide --ranks %d", o->nodes, o->ranks);
    if (o->cuda)
        return cuda_fit(o, steps_set, every_set, step_ms_set, tensors_set);
    if (o->keep_last >= 0)
        return usage_error("train", "--keep-last: only with --device cuda (the host loop keeps 2)");
    /* Checked again once the world's size is known (mpirun without --ranks). */
    if (o->ranks > 1 && o->busy_refuse && !o->busy_wait)
        return usage_error("train", "--busy refuse: several ranks only run busy=wait");
    if (o->state_bytes / (uint64_t)o->tensors < 64 * (uint64_t)(o->ranks > 1 ? o->ranks : 1))
        return usage_error("train", "--tensors: fewer tensors or a bigger --state");
    return 0;
}

/* The checks and defaults that depend on the number of ranks; usage errors
 * are printed by rank 0 and returned by every rank. */
static int train_fit(train_opts *o, const bench_world *bw)
{
    const char *why = NULL;
    if (bw->size > 1 && o->busy_refuse && !o->busy_wait)
        why = "--busy refuse: several ranks only run busy=wait";
    else if (o->state_bytes / (uint64_t)o->tensors < 64 * (uint64_t)bw->size)
        why = "--tensors: fewer tensors or a bigger --state";
    else if (o->local_dir && bw->size % (o->nodes ? o->nodes : 1) != 0)
        why = "--nodes must divide the number of ranks";
    if (why) {
        if (bw->rank == 0)
            usage_error("train", "%s", why);
        return 2;
    }
    if (bw->size > 1 && o->busy_refuse) {
        if (bw->rank == 0 && o->busy_set)
            fprintf(stderr, "%s train: %d ranks: running busy=wait only (busy=refuse needs the "
                            "ranks to agree on every save)\n",
                    prog, bw->size);
        o->busy_refuse = 0;
    }
    if (o->local_dir) {
        char name[32];
        o->ranks_per_node = bw->size / (o->nodes ? o->nodes : 1);
        o->node = bw->rank / o->ranks_per_node;
        snprintf(o->node_name, sizeof o->node_name, "node-%d", o->node);
        snprintf(name, sizeof name, "node-%d", o->node);
        if (ckpt__path_join(o->local_path, o->local_dir, name, NULL) != 0) {
            if (bw->rank == 0)
                usage_error("train", "--local-dir: the path is too long");
            return 2;
        }
    }
    /* Default: room for the rank's whole snapshot.  Packing tensors into
     * 4 MiB slabs at 4 KiB boundaries costs a few percent, hence the eighth. */
    uint64_t mine = o->state_bytes / (uint64_t)bw->size;
    if (!o->staging_bytes)
        o->staging_bytes = mine + mine / 8 < 8 * MIB ? 8 * MIB : mine + mine / 8;
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

/* The optimizer's memory part: writes every page of every tensor. */
static void touch(workload *w)
{
    for (size_t t = 0; t < w->n; t++)
        for (size_t off = 0; off < w->len[t]; off += PAGE)
            w->ptr[t][off]++;
}

/* The optimizer's arithmetic part: a dependent chain, one core. */
static void spin(workload *w, uint64_t spins)
{
    uint64_t x = w->sink | 1;
    for (uint64_t i = 0; i < spins; i++)
        x = x * 6364136223846793005ull + 1442695040888963407ull;
    w->sink += x;
}

static void optimizer(workload *w, uint64_t spins)
{
    touch(w);
    spin(w, spins);
}

/* Seconds per unit of fn's work, timed over at least 50 ms, so that a
 * machine with more processes than cores (several ranks) is sampled over
 * many time slices. */
static double per_unit(workload *w, void (*fn)(workload *, uint64_t))
{
    for (uint64_t n = 1u << 16;; n *= 2) {
        double t0 = now_s();
        fn(w, n);
        double dt = now_s() - t0;
        if (dt >= 0.05 || n >= (1ull << 40))
            return dt / (double)n;
    }
}

/* Sizes the work so that a step takes about step_ms without checkpoints.
 * Each part is timed on its own: subtracting one noisy time from another
 * can leave next to nothing, and a step of seconds. */
static void calibrate(workload *w, double step_ms)
{
    double per_line = per_unit(w, forward);
    double t0 = now_s();
    touch(w);
    double touch_s = now_s() - t0;
    double per_spin = per_unit(w, spin);
    double step = step_ms * 1e-3;
    w->fwd_lines = (uint64_t)(step * FWD_SHARE / per_line);
    double rest = step * (1 - FWD_SHARE) - touch_s;
    w->opt_spins = rest > 0 ? (uint64_t)(rest / per_spin) : 0;
}

/* ---- measurement helpers ------------------------------------------------------ */

double train_pct(const double *v, int n, double p)
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

/* Wall-clock time, comparable between the ranks of a job on one machine;
 * across machines the figures built on it need synchronized clocks. */
static double realtime_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
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
    double now = realtime_s();
    int64_t i = ev->step / r->every;
    int in = ev->step % r->every == 0 && i < r->nsaves;
    pthread_mutex_lock(&r->mu);
    if (ev->kind == CKPT_EVENT_DURABLE) {
        if (!r->tiered)
            r->durable_s[r->ndurable++] = ev->since_save_s;
        r->layout_ms[r->nlayout++] = ev->layout_cpu_s * 1e3;
        if (in)
            r->durable_rt[i] = now;
    } else if (ev->kind == CKPT_EVENT_COMMITTED) {
        r->committed_s[r->ncommitted++] = ev->since_save_s;
        if (r->tiered && (ev->tiers & (1u << CKPT_TIER_DURABLE)))
            r->durable_s[r->ndurable++] = ev->since_save_s;
        if (r->tiered && (ev->tiers & (1u << CKPT_TIER_LOCAL)))
            r->local_s[r->nlocal++] = ev->local_commit_s;
        if (ev->replicated_s > 0)
            r->repl_s[r->nrepl++] = ev->replicated_s;
        if (in)
            r->committed_rt[i] = now;
    }
    pthread_mutex_unlock(&r->mu);
}

static int run_init(run *r, const char *label, const train_opts *o)
{
    memset(r, 0, sizeof *r);
    r->label = label;
    r->steps = o->steps;
    r->every = o->every;
    r->nsaves = (o->steps + o->every - 1) / o->every;
    r->tiered = o->local_dir != NULL;
    pthread_mutex_init(&r->mu, NULL);
    size_t n = (size_t)o->steps + 1;
    r->step_ms = calloc(n, sizeof(double));
    r->call_us = calloc(n, sizeof(double));
    r->stall_ms = calloc(n, sizeof(double));
    r->durable_s = calloc(n, sizeof(double));
    r->committed_s = calloc(n, sizeof(double));
    r->local_s = calloc(n, sizeof(double));
    r->repl_s = calloc(n, sizeof(double));
    r->layout_ms = calloc(n, sizeof(double));
    r->accepted_rt = calloc((size_t)r->nsaves, sizeof(double));
    r->durable_rt = calloc((size_t)r->nsaves, sizeof(double));
    r->committed_rt = calloc((size_t)r->nsaves, sizeof(double));
    return r->step_ms && r->call_us && r->stall_ms && r->durable_s && r->committed_s &&
                   r->local_s && r->repl_s && r->layout_ms &&
                   r->accepted_rt && r->durable_rt && r->committed_rt
               ? 0
               : -1;
}

static void run_free(run *r)
{
    free(r->step_ms);
    free(r->call_us);
    free(r->stall_ms);
    free(r->durable_s);
    free(r->committed_s);
    free(r->local_s);
    free(r->repl_s);
    free(r->layout_ms);
    free(r->accepted_rt);
    free(r->durable_rt);
    free(r->committed_rt);
    pthread_mutex_destroy(&r->mu);
}

/* Collective: 0 when every rank's rc is 0, else this rank's rc (1 where
 * another rank failed), so that all ranks leave a phase together. */
static int agree(bench_world *bw, int rc)
{
    double bad = rc ? 1 : 0;
    bw->m->sum(bw, &bad, 1);
    return bad > 0 ? (rc ? rc : 1) : 0;
}

/* ---- one run -------------------------------------------------------------------- */

/* Collective (ckpt_open).  *out may be set even when registration failed,
 * so that the ranks close their contexts together after agree(). */
static int open_train_ctx(const train_opts *o, bench_world *bw, const state *st, const shard *sh,
                          ckpt_busy busy, run *r, ckpt_ctx **out)
{
    ckpt_config cfg;
    *out = NULL;
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
    if (o->local_dir) {
        cfg.local_dir = o->local_path;
        cfg.local_keep_last = 2;
        cfg.node_name = o->node_name;
        if (o->durable_every)
            cfg.durable_every = o->durable_every;
        cfg.replicas = o->replicas;
    }
    cfg.event_fn = r ? on_event : NULL;
    cfg.event_user = r;
    rc = ckpt_open(&cfg, bw->m->comm(bw), out);
    if (rc)
        return api_fail("ckpt_open", rc, NULL);
    for (size_t i = 0; i < st->n && !rc; i++) {
        const tensor *t = &st->v[i];
        if (bw->size == 1)
            rc = ckpt_register(*out, t->name, t->ptr, t->dtype, t->ndim, t->shape);
        else
            rc = ckpt_register_shard(*out, t->name, t->ptr, t->dtype, 1, &sh[i].global,
                                     &sh[i].start, t->shape);
        if (rc)
            api_fail(bw->size == 1 ? "ckpt_register" : "ckpt_register_shard", rc, *out);
    }
    return rc ? 1 : 0;
}

/* Runs the loop; ctx NULL is the baseline.  The ranks meet once per step
 * after forward/backward, where a data-parallel job all-reduces its
 * gradients, so a rank slowed by its checkpoint slows them all.  After a
 * failed call the rank stops checkpointing but keeps stepping, so that the
 * others do not wait for it at the next meeting; the failure is returned
 * at the end. */
static int loop(const train_opts *o, bench_world *bw, workload *w, ckpt_ctx *ctx, run *r)
{
    int failed = 0;
    double t_run = now_s();
    for (int s = 0; s < o->steps; s++) {
        double t0 = now_s();
        int due = ctx && !failed && s % o->every == 0;
        if (due) {
            double tc = now_s();
            int rc = ckpt_save(ctx, s, NULL, NULL);
            double te = now_s();
            r->call_us[r->ncalls++] = (te - tc) * 1e6;
            if (rc == 0)
                r->accepted_rt[s / o->every] = realtime_s();
            else if (rc == CKPT_EBUSY)
                r->refused++;
            else
                failed = api_fail("ckpt_save", rc, ctx);
        }
        forward(w, w->fwd_lines);
        bw->m->step_sync(bw);
        if (ctx && !failed) {
            double tf = now_s();
            int rc = ckpt_fence(ctx, NULL);
            if (rc)
                failed = api_fail("ckpt_fence", rc, ctx);
            else if (due)
                r->stall_ms[r->nstalls++] = (now_s() - tf) * 1e3;
        }
        optimizer(w, w->opt_spins);
        r->step_ms[s] = (now_s() - t0) * 1e3;
    }
    r->total_s = now_s() - t_run;
    return failed;
}

void train_clean_dir(const char *dir)
{
    int64_t *steps = NULL;
    size_t n = 0;
    ckpt__err e;
    if (ckpt__catalog_scan(dir, &steps, &n, &e) == 0)
        for (size_t i = 0; i < n; i++)
            ckpt__catalog_delete(dir, steps[i], &e);
    free(steps);
}

/* Removes every committed step of the bench's folder (rank 0 only: the
 * others would race it). */
static void clean_dir(const bench_world *bw, const char *dir)
{
    if (bw->rank == 0)
        train_clean_dir(dir);
}

/* The local folder moved aside for the restore from dir. */
static void aside_path(const train_opts *o, char *out, size_t n)
{
    snprintf(out, n, "%s.aside", o->local_path);
}

/* Where the last node's local folder goes for the replica restore. */
static void lost_path(const train_opts *o, char *out, size_t n)
{
    snprintf(out, n, "%s.lost", o->local_path);
}

/* Removes the replicas this node's ranks keep in local folder dir
 * (--replicas: LOCAL/replica-of-R). */
static void clean_replicas(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    uint32_t r;
    ckpt__err e;
    while ((de = readdir(d)) != NULL)
        if (ckpt__replica_dir_parse(de->d_name, &r))
            ckpt__remove_tree(dir, de->d_name, &e);
    closedir(d);
}

/* Removes every committed step and replica of this node's local folder and
 * of the one moved aside, and with rm the folders (the node's first rank
 * only: the node's other ranks would race it). */
static void clean_local(const train_opts *o, const bench_world *bw, int rm)
{
    if (!o->local_dir || bw->rank % o->ranks_per_node != 0)
        return;
    char aside[sizeof o->local_path + 8], lost[sizeof o->local_path + 8];
    aside_path(o, aside, sizeof aside);
    lost_path(o, lost, sizeof lost);
    train_clean_dir(o->local_path);
    train_clean_dir(aside);
    train_clean_dir(lost);
    clean_replicas(o->local_path);
    clean_replicas(aside);
    clean_replicas(lost);
    rmdir(aside);
    rmdir(lost);
    if (rm)
        rmdir(o->local_path);
}

/* Collective: closes ctx on every rank that has one. */
static int close_ctx(ckpt_ctx *ctx, int rc)
{
    if (!ctx)
        return rc;
    int c = ckpt_close(ctx); /* waits for the last commit */
    if (!rc && c)
        rc = api_fail("ckpt_close", c, NULL);
    return rc;
}

static const char *tier_name(ckpt_tier t)
{
    return t == CKPT_TIER_LOCAL     ? "local"
           : t == CKPT_TIER_DURABLE ? "durable"
           : t == CKPT_TIER_REPLICA ? "replica"
                                    : "no";
}

/* Collective: restores the newest checkpoint into the tensors on a new
 * context, timed; fails when this rank read another tier than want. */
static int restore_timed(const train_opts *o, bench_world *bw, state *st, const shard *sh,
                         ckpt_tier want, double *secs, int64_t *step)
{
    ckpt_ctx *ctx = NULL;
    int rc = agree(bw, open_train_ctx(o, bw, st, sh, CKPT_BUSY_WAIT, NULL, &ctx));
    bw->m->barrier(bw);
    if (!rc) {
        double t0 = now_s();
        int rr = ckpt_restore(ctx, CKPT_LATEST, NULL, step);
        *secs = now_s() - t0;
        ckpt_tier got = ckpt_restore_tier(ctx);
        if (rr) {
            rc = api_fail("ckpt_restore", rr, ctx);
        } else if (got != want) {
            errorf("ckpt_restore read the %s tier, expected the %s one", tier_name(got),
                   tier_name(want));
            rc = 1;
        }
    }
    ckpt_close(ctx);
    return agree(bw, rc);
}

static int checkpointed(const train_opts *o, bench_world *bw, state *st, const shard *sh,
                        workload *wl, ckpt_busy busy, run *r)
{
    bw->m->barrier(bw);
    clean_dir(bw, o->dir);
    clean_local(o, bw, 0);
    settle(o->dir);
    reset_peak_rss();
    ckpt_ctx *ctx = NULL;
    int rc = agree(bw, open_train_ctx(o, bw, st, sh, busy, r, &ctx));
    bw->m->barrier(bw); /* the ranks start the loop together */
    if (!rc)
        rc = loop(o, bw, wl, ctx, r);
    rc = close_ctx(ctx, rc);
    r->peak_rss_mib = peak_rss_mib();
    r->committed = r->ncommitted;
    rc = agree(bw, rc);
    /* Restore the newest checkpoint into the tensors: throughput; only
     * when every rank saw a commit, so that all of them take part.
     * Tiered: from the local tier, then from dir with the local folders
     * moved aside (a context opened then finds its local folder empty). */
    double have = r->ncommitted > 0 ? 1 : 0;
    bw->m->sum(bw, &have, 1);
    if (!rc && have == (double)bw->size) {
        rc = restore_timed(o, bw, st, sh, r->tiered ? CKPT_TIER_LOCAL : CKPT_TIER_DURABLE,
                           &r->restore_s, &r->restore_step);
        /* --replicas: the last node loses its folder (the replicas it
         * kept too); its ranks fetch theirs from their partners, which
         * re-creates the folder, and the others read their own. */
        if (!rc && r->tiered && o->replicas > 0) {
            char lost[sizeof o->local_path + 8];
            lost_path(o, lost, sizeof lost);
            int last = o->node == o->nodes - 1;
            if (last && bw->rank % o->ranks_per_node == 0 && rename(o->local_path, lost) != 0) {
                errorf("move %s aside: %s", o->local_path, strerror(errno));
                rc = 1;
            }
            rc = agree(bw, rc);
            if (!rc)
                rc = restore_timed(o, bw, st, sh, last ? CKPT_TIER_REPLICA : CKPT_TIER_LOCAL,
                                   &r->restore_replica_s, &r->restore_replica_step);
        }
        if (!rc && r->tiered) {
            char aside[sizeof o->local_path + 8];
            aside_path(o, aside, sizeof aside);
            if (bw->rank % o->ranks_per_node == 0 && rename(o->local_path, aside) != 0) {
                errorf("move %s aside: %s", o->local_path, strerror(errno));
                rc = 1;
            }
            rc = agree(bw, rc);
            if (!rc)
                rc = restore_timed(o, bw, st, sh, CKPT_TIER_DURABLE, &r->restore_durable_s,
                                   &r->restore_durable_step);
        }
    }
    bw->m->barrier(bw); /* every rank has stopped reading */
    clean_dir(bw, o->dir);
    clean_local(o, bw, 0);
    return rc;
}

/*
 * Collective: the storage limit the save throughput is compared with, in
 * the same run: every rank writes its share of the state (rounded up to
 * 4 KiB) sequentially with O_DIRECT to a file of its own in the folder,
 * one 4 MiB block in flight per rank, all starting together, then fsyncs.
 * Three rounds, the median kept: one round's figure swung by 1.8x between
 * runs on a cloud disk, and the ratio with it.
 */
#define RAW_ROUNDS 3
static int raw_limit(const train_opts *o, bench_world *bw, uint64_t bytes, double *secs,
                     uint64_t *raw_bytes, int *direct)
{
    char path[CKPT__PATH_MAX];
    raw_file_path(path, o->dir, bw->rank);
    *raw_bytes = (bytes + RAW_ALIGN - 1) / RAW_ALIGN * RAW_ALIGN;
    void *buf = NULL;
    int rc = posix_memalign(&buf, RAW_ALIGN, RAW_BLOCK) == 0 ? 0 : 1;
    if (rc)
        errorf("out of memory");
    else
        gen_bytes(buf, RAW_BLOCK, 0x7261770000000000ull + (uint64_t)bw->rank, 0);
    double round_s[RAW_ROUNDS] = {0};
    for (int k = 0; k < RAW_ROUNDS; k++) {
        settle(o->dir);
        bw->m->barrier(bw);
        if (!rc && raw_write(path, *raw_bytes, buf, 1, direct, &round_s[k]) != 0)
            rc = 1;
        if (unlink(path) != 0 && errno != ENOENT) {
            errorf("remove %s: %s", path, strerror(errno));
            rc = 1;
        }
    }
    *secs = stat3_of(round_s, RAW_ROUNDS).med;
    free(buf);
    return agree(bw, rc);
}

/* ---- the command ------------------------------------------------------------------ */

/* o->tensors f32 tensors of (nearly) equal size, filled with noise; this
 * rank holds rows [start, start + count) of each (all of them on one rank),
 * with the contents the whole tensor has there. */
static int make_state(const train_opts *o, const bench_world *bw, state *st, shard **shp,
                      workload *w)
{
    memset(st, 0, sizeof *st);
    size_t n = (size_t)o->tensors;
    uint64_t each = o->state_bytes / n / 4 * 4;
    st->v = calloc(n, sizeof *st->v);
    shard *sh = *shp = calloc(n, sizeof *sh);
    w->ptr = calloc(n, sizeof *w->ptr);
    w->len = calloc(n, sizeof *w->len);
    if (!st->v || !sh || !w->ptr || !w->len)
        return -1;
    for (size_t i = 0; i < n; i++) {
        tensor *t = &st->v[i];
        uint64_t bytes = i + 1 < n ? each : o->state_bytes - each * (n - 1) / 4 * 4;
        int64_t rows = (int64_t)(bytes / 4);
        sh[i].global = rows;
        sh[i].start = rows * bw->rank / bw->size;
        int64_t count = rows * (bw->rank + 1) / bw->size - sh[i].start;
        bytes = (uint64_t)count * 4;
        snprintf(t->name, sizeof t->name, "layers.%zu.weight", i);
        t->dtype = CKPT_F32;
        t->ndim = 1;
        t->shape[0] = count;
        t->nbytes = (size_t)bytes;
        t->ptr = malloc(bytes ? bytes : 1);
        if (!t->ptr)
            return -1;
        gen_bytes(t->ptr, bytes, i + 1, (uint64_t)sh[i].start * 4);
        st->n++;
        st->bytes += bytes;
        w->ptr[i] = t->ptr;
        w->len[i] = bytes ? bytes : 1;
    }
    w->n = n;
    return 0;
}

/* Collective: every rank sizes its step on its own core share, all at
 * once, then all take the mean, so each does the same work per step. */
static void calibrate_all(bench_world *bw, workload *w, double step_ms)
{
    bw->m->barrier(bw);
    calibrate(w, step_ms);
    double v[2] = {(double)w->fwd_lines, (double)w->opt_spins};
    bw->m->sum(bw, v, 2);
    w->fwd_lines = (uint64_t)(v[0] / bw->size);
    w->opt_spins = (uint64_t)(v[1] / bw->size);
}

/* Everything after the world is open; collective. */
static int train(train_opts *o, bench_world *bw)
{
    int rc = train_fit(o, bw);
    if (rc)
        return rc;
    FILE *out = o->json ? stderr : stdout;
    state st;
    shard *sh = NULL;
    workload w;
    memset(&w, 0, sizeof w);
    run base, runs[2];
    run_report reps[2];
    memset(reps, 0, sizeof reps);
    int nruns = 0;
    /* Each call runs (and initializes what is freed below) whatever the others did. */
    int bad = make_state(o, bw, &st, &sh, &w) != 0;
    bad |= run_init(&base, "baseline", o) != 0;
    bad |= run_init(&runs[0], "wait", o) != 0;
    bad |= run_init(&runs[1], "refuse", o) != 0;
    if (bad) {
        errorf("out of memory for a state of %" PRIu64 " bytes", o->state_bytes);
        rc = 1;
    }
    rc = agree(bw, rc);
    char writer[32] = "?";
    double raw_s = 0;
    uint64_t raw_bytes = 0;
    int direct = 0;
    if (!rc) {
        calibrate_all(bw, &w, o->step_ms);
        if (bw->rank == 0)
            fprintf(stderr, "%s train: %zu tensors, %" PRIu64 " bytes%s; %" PRIu64
                            " lines read and %" PRIu64 " spins per step\n",
                    prog, st.n, st.bytes, bw->size > 1 ? " on rank 0" : "", w.fwd_lines,
                    w.opt_spins);
        reset_peak_rss();
        bw->m->barrier(bw);
        rc = agree(bw, loop(o, bw, &w, NULL, &base));
        base.peak_rss_mib = peak_rss_mib();
    }
    if (!rc) {
        /* Also makes the folder for the raw baseline. */
        ckpt_ctx *probe = NULL;
        rc = agree(bw, open_train_ctx(o, bw, &st, sh, CKPT_BUSY_WAIT, NULL, &probe));
        if (probe)
            snprintf(writer, sizeof writer, "%s", ckpt_writer_name(probe));
        rc = close_ctx(probe, rc);
    }
    if (!rc)
        rc = raw_limit(o, bw, st.bytes, &raw_s, &raw_bytes, &direct);
    static const struct {
        const char *label;
        ckpt_busy busy;
    } policies[2] = {{"wait", CKPT_BUSY_WAIT}, {"refuse", CKPT_BUSY_REFUSE}};
    for (int p = 0; p < 2 && !rc; p++) {
        if (!(p == 0 ? o->busy_wait : o->busy_refuse))
            continue;
        run *r = &runs[nruns];
        r->label = policies[p].label;
        rc = checkpointed(o, bw, &st, sh, &w, policies[p].busy, r);
        if (!rc)
            rc = agree(bw, train_report(bw, &base, r, raw_s, raw_bytes, st.bytes, &reps[nruns]));
        nruns++;
    }
    if (!rc && bw->rank == 0) {
        train_shape shape = {(uint64_t)reps[0].agg.bytes, st.n, writer, direct};
        train_print_table(out, o, &shape, reps, nruns);
        if (o->json)
            train_print_json(stdout, o, &shape, &base, reps, nruns);
    }
    clean_local(o, bw, 1);
    bw->m->barrier(bw);
    if (bw->rank == 0 && o->dir)
        rmdir(o->dir); /* only when the bench left it empty */
    if (bw->rank == 0 && o->local_dir)
        rmdir(o->local_dir);
    for (int i = 0; i < nruns; i++)
        train_report_free(&reps[i]);
    run_free(&base);
    run_free(&runs[0]);
    run_free(&runs[1]);
    for (size_t i = 0; i < st.n; i++)
        free(st.v[i].ptr);
    free(st.v);
    free(sh);
    free(w.ptr);
    free(w.len);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    train_opts o;
    int rc = train_parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (o.cuda)
        return train_gpu(&o);
    bench_world bw;
    rc = bench_world_open("train", o.ranks, o.replicas > 0, argc, argv, &bw);
    if (rc)
        return rc;
    rc = train(&o, &bw);
    bw.m->close(&bw);
    return rc;
}
