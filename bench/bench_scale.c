/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckpt-bench scale: N simulated ranks, threads of this process on the
 * loopback comm (bench/loopback.h), each saving a few small tensors of its
 * own into one folder, S times.  Per save it reports the file-system
 * metadata calls of all ranks and of rank 0 (bench/bench_fscount.h), the
 * commit latency (the rename to the committed name after the last
 * done-record's rename), the verdict latency (until the last rank's ticket
 * reported) and the save time (from the first ckpt_save to the last rank's
 * ticket reporting).
 *
 * So that thousands of contexts fit in one process, every context runs the
 * fewest threads the runtime allows (pwrite writer, io_threads 1,
 * hash_threads 1: with the coordinator, the janitor and the host copier,
 * five threads and the rank's own), a 64 KiB staging pool and 64 KiB
 * chunks, and every thread gets a small stack (SCALE_STACK).
 *
 * With --restore-ranks M the tensors are instead T tensors sharded over
 * the ranks (rank r holds their r-th 1 KiB slice), and the newest step is
 * restored on M ranks (a loopback comm of its own): where M differs from
 * N, every slice a rank registers differs from the saved ones, so the
 * restore takes the resharding read (runtime/reshard.h).
 *
 * Like every bench subcommand it removes only what it created: the step
 * folders its saves committed, and the folder when it made it.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench_fscount.h"
#include "bench/bench_scale.h"
#include "bench/bench_util.h"
#include "bench/loopback.h"
#include "io/paths.h"
#include "runtime/catalog.h"

#define SCALE_STACK (512 * KIB) /* per thread; HDF5 and the runtime need far less */
#define MAX_SAVES 100
#define TENSOR_FLOATS 256 /* 1 KiB each */

typedef struct scale_opts {
    const char *dir;
    int ranks, tensors, saves, restore, json;
    int restore_ranks; /* 0, or restore on this many ranks, resharded */
} scale_opts;

typedef struct scale_run {
    scale_opts o;
    ckpt_loopback *lb, *lb_restore; /* the ranks that save; --restore-ranks' */
    pthread_barrier_t bar; /* ranks + the main thread, around each save */
    pthread_barrier_t rbar; /* --restore-ranks: its ranks + the main thread */
    double *t_save, *t_done; /* [saves + 1][ranks]: the last row is the restore */
    double *t_rstart, *t_rdone; /* [restore_ranks] */
    int *failed;             /* per rank: a call failed */
} scale_run;

typedef struct rank_arg {
    scale_run *run;
    int rank;
} rank_arg;

static void scale_help(FILE *f)
{
    fprintf(f,
"usage: %s scale --dir D [--ranks N] [--tensors T] [--saves S] [--restore]\n"
"       [--restore-ranks M] [--json]\n"
"  N ranks (threads of this process, default 8, up to 8192) each save T\n"
"  tensors of 1 KiB (default 4) into D, S times (default 3, up to %d).\n"
"  Reports per save the file-system metadata calls (all ranks, rank 0),\n"
"  the commit latency after the last done-record, and the save time.\n"
"  --restore: then every rank restores the newest step and checks its\n"
"  bytes; the same figures for the restore.\n"
"  --restore-ranks M: the T tensors are sharded over the N ranks instead,\n"
"  and M ranks restore the newest step (resharded where M != N) and check\n"
"  their bytes; the same figures for that restore.\n",
            prog, MAX_SAVES);
}

static int scale_args(int argc, char **argv, scale_opts *o)
{
    *o = (scale_opts){.ranks = 8, .tensors = 4, .saves = 3};
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        long n;
        int m;
        if (strcmp(argv[i], "--json") == 0) {
            o->json = 1;
        } else if (strcmp(argv[i], "--restore") == 0) {
            o->restore = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            scale_help(stdout);
            exit(0);
        } else if ((m = opt_value(argc, argv, &i, "--dir", &v)) != 0) {
            if (m < 0 || !*v)
                return usage_error("scale", "--dir needs a folder");
            o->dir = v;
        } else if ((m = opt_value(argc, argv, &i, "--ranks", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, 8192, &n) != 0)
                return usage_error("scale", "--ranks: expected 1..8192");
            o->ranks = (int)n;
        } else if ((m = opt_value(argc, argv, &i, "--tensors", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, 100000, &n) != 0)
                return usage_error("scale", "--tensors: expected 1..100000");
            o->tensors = (int)n;
        } else if ((m = opt_value(argc, argv, &i, "--restore-ranks", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, 8192, &n) != 0)
                return usage_error("scale", "--restore-ranks: expected 1..8192");
            o->restore_ranks = (int)n;
        } else if ((m = opt_value(argc, argv, &i, "--saves", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, MAX_SAVES, &n) != 0)
                return usage_error("scale", "--saves: expected 1..%d", MAX_SAVES);
            o->saves = (int)n;
        } else {
            return usage_error("scale", "unknown option '%s'", argv[i]);
        }
    }
    if (!o->dir)
        return usage_error("scale", "--dir is required");
    if (o->restore && o->restore_ranks)
        return usage_error("scale", "--restore and --restore-ranks exclude each other");
    return 0;
}

/* What one rank holds: its context and its slices of the T tensors. */
typedef struct rank_state {
    ckpt_ctx *ck;
    float *data;  /* T slices of count floats */
    int64_t from; /* numbers the slices' elements for their values, as if
                     the saving ranks' slices were one tensor */
    int64_t count;
} rank_state;

/* On rank r's thread: counts for rank r, opens rank r of `world` ranks on
 * lb and registers its T tensors: its own, or (--restore-ranks) its slice
 * of the shared ones.  Reports what failed. */
static int open_rank(scale_run *run, ckpt_loopback *lb, int r, int world, rank_state *st)
{
    fscount_set_rank(r);
    ckpt_comm *comm = ckpt_loopback_comm(lb, r);
    int T = run->o.tensors, shared = run->o.restore_ranks > 0;
    int64_t g = shared ? (int64_t)run->o.ranks * TENSOR_FLOATS : TENSOR_FLOATS;
    int64_t start = shared ? g * r / world : 0;
    st->count = shared ? g * (r + 1) / world - start : TENSOR_FLOATS;
    st->from = shared ? start : (int64_t)r * TENSOR_FLOATS;
    ckpt_config cfg;
    ckpt_config_init(&cfg);
    cfg.dir = run->o.dir;
    cfg.keep_last = 0;
    cfg.keep_every = 0;
    cfg.max_age_hours = 0;
    cfg.staging_bytes = 64 * KIB;
    cfg.chunk_bytes = 64 * KIB;
    cfg.io = CKPT_IO_PWRITE;
    cfg.io_threads = 1;
    cfg.hash_threads = 1;
    cfg.direct_io = 0;
    cfg.commit_timeout_s = 1800;
    cfg.log_level = CKPT_LOG_ERROR;
    st->data = calloc((size_t)T * (size_t)(st->count ? st->count : 1), sizeof *st->data);
    st->ck = NULL;
    int rc = comm ? ckpt_open(&cfg, comm, &st->ck) : CKPT_ENOMEM;
    if (rc)
        errorf("rank %d: ckpt_open: %s", r, ckpt_last_error(NULL));
    for (int t = 0; !rc && t < T; t++) {
        char name[64];
        if (shared)
            snprintf(name, sizeof name, "t%d", t);
        else
            snprintf(name, sizeof name, "r%05d.t%d", r, t);
        /* A rank's own tensors are each the one slice of itself
         * (replicated tensors are the same on every rank). */
        float *at = st->data + (size_t)t * (size_t)st->count;
        rc = st->data ? ckpt_register_shard(st->ck, name, at, CKPT_F32, 1, &g, &start,
                                            &st->count)
                      : CKPT_ENOMEM;
        if (rc)
            errorf("rank %d: ckpt_register: %s", r, ckpt_last_error(st->ck));
    }
    return rc;
}

/* The value of element i of a slice (whose elements are numbered from
 * `from`) of every tensor after save s (1-based): s plus the number of the
 * rank that saved it. */
static float scale_value(int s, int64_t from, size_t i)
{
    return (float)s + (float)((from + (int64_t)i) / TENSOR_FLOATS);
}

/* Fills or checks (0: every element matches) a rank's slices. */
static int slices_are(scale_run *run, float *data, int64_t from, int64_t count, int s,
                      int set)
{
    for (size_t t = 0; data && t < (size_t)run->o.tensors; t++)
        for (size_t i = 0; i < (size_t)count; i++) {
            float *v = &data[t * (size_t)count + i];
            if (set)
                *v = scale_value(s, from, i);
            else if (*v != scale_value(s, from, i))
                return 1;
        }
    return 0;
}

/* Restores the newest step on rank r and checks its slices; [*t0, *t1]
 * is the restore.  0, or 1 after saying what failed. */
static int restore_check(scale_run *run, ckpt_ctx *ck, int r, float *data, int64_t from,
                         int64_t count, double *t0, double *t1)
{
    for (size_t i = 0; data && i < (size_t)run->o.tensors * (size_t)count; i++)
        data[i] = -1.0f;
    int64_t step = -1;
    *t0 = now_s();
    int rc = ckpt_restore(ck, CKPT_LATEST, NULL, &step);
    *t1 = now_s();
    if (rc)
        errorf("rank %d: restore: %s", r, ckpt_last_error(ck));
    else if (step != run->o.saves)
        errorf("rank %d: restored step %lld, not %d", r, (long long)step, run->o.saves);
    else if (slices_are(run, data, from, count, run->o.saves, 0))
        errorf("rank %d: restored bytes differ from the last save's", r);
    else
        return 0;
    return 1;
}

/* The end of a rank thread: close (a failed close fails the rank too),
 * record rc, free the rank's data. */
static void close_rank(scale_run *run, int r, rank_state *st, int rc)
{
    if (st->ck && ckpt_close(st->ck) != 0) {
        errorf("rank %d: ckpt_close: %s", r, ckpt_last_error(NULL));
        rc = 1;
    }
    run->failed[r] |= rc != 0;
    free(st->data);
}

/* One rank: open, register, then per save wait for the main thread, save,
 * wait for the ticket, wait again.  A rank whose call failed keeps meeting
 * the barriers (so nobody hangs) and says so in run->failed. */
static void *rank_main(void *p)
{
    rank_arg *a = p;
    scale_run *run = a->run;
    int r = a->rank;
    rank_state st;
    int rc = open_rank(run, run->lb, r, run->o.ranks, &st);
    ckpt_ctx *ck = st.ck;
    for (int s = 0; s < run->o.saves; s++) {
        pthread_barrier_wait(&run->bar);
        double *ts = &run->t_save[(size_t)s * (size_t)run->o.ranks + (size_t)r];
        double *td = &run->t_done[(size_t)s * (size_t)run->o.ranks + (size_t)r];
        slices_are(run, st.data, st.from, st.count, s + 1, 1);
        ckpt_ticket tk;
        *ts = now_s();
        if (!rc && (rc = ckpt_save(ck, s + 1, NULL, &tk)) == 0) {
            rc = ckpt_fence(ck, NULL);
            int w = ckpt_wait(ck, tk, -1);
            rc = rc ? rc : w;
        }
        *td = now_s();
        if (rc && !run->failed[r])
            errorf("rank %d: save %d: %s", r, s + 1, ckpt_last_error(ck));
        run->failed[r] |= rc != 0;
        pthread_barrier_wait(&run->bar);
    }
    if (run->o.restore) {
        pthread_barrier_wait(&run->bar);
        size_t row = (size_t)run->o.saves * (size_t)run->o.ranks + (size_t)r;
        int rrc = rc ? rc
                     : restore_check(run, ck, r, st.data, st.from, st.count, &run->t_save[row],
                                     &run->t_done[row]);
        run->failed[r] |= rrc != 0;
        pthread_barrier_wait(&run->bar);
    }
    close_rank(run, r, &st, rc);
    return NULL;
}

/* One rank of --restore-ranks: open, register its slices, wait for the
 * main thread, restore and check, meet it again, close. */
static void *restore_main(void *p)
{
    rank_arg *a = p;
    scale_run *run = a->run;
    int r = a->rank;
    rank_state st;
    int rc = open_rank(run, run->lb_restore, r, run->o.restore_ranks, &st);
    ckpt_ctx *ck = st.ck;
    pthread_barrier_wait(&run->rbar); /* every rank is open */
    pthread_barrier_wait(&run->rbar); /* counting */
    double *t0 = &run->t_rstart[r], *t1 = &run->t_rdone[r];
    *t0 = *t1 = now_s();
    if (!rc)
        rc = restore_check(run, ck, r, st.data, st.from, st.count, t0, t1);
    pthread_barrier_wait(&run->rbar); /* every rank restored */
    close_rank(run, r, &st, rc);
    return NULL;
}

static double min_of(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

static double max_of(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

typedef struct save_fig {
    fscount_totals c;
    double save_s, commit_ms, verdict_ms;
} save_fig;

/* Starts n rank threads running fn; exits when one cannot start (the
 * ranks that started wait in ckpt_open for the others, who never come;
 * nothing is saved yet, so the process just ends). */
static pthread_t *start_ranks(scale_run *run, int n, void *(*fn)(void *),
                              pthread_attr_t *attr, rank_arg **args_out)
{
    pthread_t *th = calloc((size_t)n, sizeof *th);
    rank_arg *args = calloc((size_t)n, sizeof *args);
    int started = 0;
    for (int r = 0; th && args && r < n; r++, started++) {
        args[r] = (rank_arg){run, r};
        int e = pthread_create(&th[r], attr, fn, &args[r]);
        if (e) {
            errorf("starting rank %d: %s (raise the thread or process limits, or use fewer "
                   "--ranks)",
                   r, strerror(e));
            break;
        }
    }
    if (started < n) {
        if (!th || !args)
            errorf("out of memory");
        exit(1);
    }
    *args_out = args;
    return th;
}

static void join_ranks(scale_run *run, int n, pthread_t *th, rank_arg *args, int *rc)
{
    for (int r = 0; r < n; r++) {
        pthread_join(th[r], NULL);
        *rc |= run->failed[r];
    }
    free(th);
    free(args);
}

/* --restore-ranks: M fresh ranks restore the newest step; f gets the
 * figures. */
static int run_restore_ranks(scale_run *run, save_fig *f, pthread_attr_t *attr)
{
    int M = run->o.restore_ranks, rc = 0;
    memset(run->failed, 0, (size_t)M * sizeof *run->failed);
    rank_arg *args;
    pthread_t *th = start_ranks(run, M, restore_main, attr, &args);
    pthread_barrier_wait(&run->rbar); /* every rank is open */
    fscount_start();
    pthread_barrier_wait(&run->rbar); /* ranks restore */
    pthread_barrier_wait(&run->rbar); /* every rank restored */
    fscount_stop();
    fscount_read(&f->c);
    f->save_s = max_of(run->t_rdone, M) - min_of(run->t_rstart, M);
    join_ranks(run, M, th, args, &rc);
    return rc;
}

static int run_scale(scale_run *run, save_fig *fig, int *threads_peak)
{
    int N = run->o.ranks, S = run->o.saves;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, SCALE_STACK);
    /* The runtime's threads get small stacks too. */
    if (pthread_setattr_default_np(&attr) != 0)
        errorf("could not make thread stacks small; running with the default");
    int rc = 0;
    rank_arg *args;
    pthread_t *th = start_ranks(run, N, rank_main, &attr, &args);
    for (int s = 0; s < S; s++) {
        fscount_start();
        pthread_barrier_wait(&run->bar); /* ranks save */
        pthread_barrier_wait(&run->bar); /* every ticket reported */
        fscount_stop();
        fscount_read(&fig[s].c);
        const double *ts = &run->t_save[(size_t)s * (size_t)N];
        const double *td = &run->t_done[(size_t)s * (size_t)N];
        double first = min_of(ts, N), last = max_of(td, N);
        fig[s].save_s = last - first;
        double done_s = (double)fig[s].c.last_done_ns * 1e-9;
        fig[s].commit_ms = fig[s].c.commit_ns && fig[s].c.last_done_ns
                               ? ((double)fig[s].c.commit_ns - (double)fig[s].c.last_done_ns) / 1e6
                               : -1;
        /* now_s and the counters read the same monotonic clock. */
        fig[s].verdict_ms = fig[s].c.last_done_ns ? (last - done_s) * 1e3 : -1;
    }
    if (run->o.restore) {
        save_fig *f = &fig[S];
        fscount_start();
        pthread_barrier_wait(&run->bar); /* ranks restore */
        pthread_barrier_wait(&run->bar); /* every rank restored */
        fscount_stop();
        fscount_read(&f->c);
        f->save_s = max_of(&run->t_done[(size_t)S * (size_t)N], N) -
                    min_of(&run->t_save[(size_t)S * (size_t)N], N);
    }
    join_ranks(run, N, th, args, &rc);
    if (!rc && run->o.restore_ranks)
        rc = run_restore_ranks(run, &fig[S], &attr);
    *threads_peak = fscount_threads_peak();
    pthread_attr_destroy(&attr);
    return rc;
}

static double p50(save_fig *f, int n, size_t off)
{
    double v[MAX_SAVES];
    for (int i = 0; i < n; i++)
        v[i] = *(const double *)((const char *)&f[i] + off);
    return stat3_of(v, n).med;
}

static double p50_u64(save_fig *f, int n, size_t off)
{
    double v[MAX_SAVES];
    for (int i = 0; i < n; i++)
        v[i] = (double)*(const uint64_t *)((const char *)&f[i] + off);
    return stat3_of(v, n).med;
}

static void report(const scale_opts *o, save_fig *f, int threads_peak)
{
    int S = o->saves;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double ops = p50_u64(f, S, offsetof(save_fig, c.total));
    double ops0 = p50_u64(f, S, offsetof(save_fig, c.rank0));
    double opsmax = p50_u64(f, S, offsetof(save_fig, c.max_rank));
    double commit = p50(f, S, offsetof(save_fig, commit_ms));
    double verdict = p50(f, S, offsetof(save_fig, verdict_ms));
    double save = p50(f, S, offsetof(save_fig, save_s));
    if (!o->json) {
        printf("scale: %d ranks x %d tensors of 1 KiB%s, %d saves\n", o->ranks, o->tensors,
               o->restore_ranks ? " (slices of shared tensors)" : "", S);
        printf("  metadata calls per save: %.0f in all (%.1f per rank), rank 0 %.0f, busiest "
               "rank %.0f\n",
               ops, ops / o->ranks, ops0, opsmax);
        printf("  commit latency after the last done-record: %.1f ms; every rank knows: "
               "%.1f ms\n",
               commit, verdict);
        printf("  save (first ckpt_save to the last ticket): %.3f s\n", save);
        for (int s = 0; s < S; s++) {
            printf("  save %d: %" PRIu64 " calls (rank 0 %" PRIu64 ":", s + 1, f[s].c.total,
                   f[s].c.rank0);
            for (int k = 0; k < FSC_NKINDS; k++)
                printf(" %s %" PRIu64, fscount_kind_name[k], f[s].c.kind[k]);
            printf("), commit %.1f ms, %.3f s\n", f[s].commit_ms, f[s].save_s);
        }
        if (o->restore || o->restore_ranks) {
            const save_fig *r = &f[S];
            int n = o->restore_ranks ? o->restore_ranks : o->ranks;
            printf("  restore of the newest step on %d ranks%s, bytes checked: %" PRIu64
                   " calls (%.1f per rank, rank 0 %" PRIu64 ", busiest rank %" PRIu64 ":",
                   n, n != o->ranks ? " (resharded)" : "", r->c.total, (double)r->c.total / n,
                   r->c.rank0, r->c.max_rank);
            for (int k = 0; k < FSC_NKINDS; k++)
                printf(" %s %" PRIu64, fscount_kind_name[k], r->c.kind[k]);
            printf("), %.3f s\n", r->save_s);
        }
        printf("  peak RSS %.0f MiB, peak threads %d\n", (double)ru.ru_maxrss / 1024.0,
               threads_peak + 1);
        return;
    }
    printf("{\"ranks\": %d, \"tensors\": %d, \"saves\": %d, \"meta_ops_per_save\": %.0f, "
           "\"meta_ops_rank0_per_save\": %.0f, \"meta_ops_max_rank_per_save\": %.0f, "
           "\"commit_latency_ms_p50\": %.3f, \"verdict_latency_ms_p50\": %.3f, "
           "\"save_s_p50\": %.4f, \"peak_rss_mib\": %.1f, \"threads_peak\": %d, \"per_save\": [",
           o->ranks, o->tensors, S, ops, ops0, opsmax, commit, verdict, save,
           (double)ru.ru_maxrss / 1024.0, threads_peak + 1);
    for (int s = 0; s < S; s++) {
        printf("%s{\"meta_ops\": %" PRIu64 ", \"meta_ops_rank0\": %" PRIu64, s ? ", " : "",
               f[s].c.total, f[s].c.rank0);
        for (int k = 0; k < FSC_NKINDS; k++)
            printf(", \"%s\": %" PRIu64, fscount_kind_name[k], f[s].c.kind[k]);
        printf(", \"commit_latency_ms\": %.3f, \"save_s\": %.4f}", f[s].commit_ms, f[s].save_s);
    }
    printf("]");
    if (o->restore_ranks)
        printf(", \"restore_ranks\": %d", o->restore_ranks);
    if (o->restore || o->restore_ranks)
        printf(", \"meta_ops_per_restore\": %" PRIu64 ", \"meta_ops_rank0_per_restore\": %" PRIu64
               ", \"meta_ops_max_rank_per_restore\": %" PRIu64 ", \"restore_s\": %.4f",
               f[S].c.total, f[S].c.rank0, f[S].c.max_rank, f[S].save_s);
    printf("}\n");
}

/* Removes the steps this run committed (1..saves), then the folder if the
 * run made it (rmdir: only when empty). */
static void clean_up(const scale_opts *o, int made)
{
    for (int s = 1; s <= o->saves; s++) {
        ckpt__err e;
        if (ckpt__catalog_delete(o->dir, s, &e) != 0 && e.code != CKPT_ENOTFOUND)
            errorf("removing step %d: %s", s, e.msg);
    }
    if (made)
        rmdir(o->dir);
}

int cmd_scale(int argc, char **argv)
{
    scale_run run;
    memset(&run, 0, sizeof run);
    int rc = scale_args(argc, argv, &run.o);
    if (rc)
        return rc;
    int N = run.o.ranks, S = run.o.saves;
    /* The steps it saves (1..S) must not exist already: it would replace
     * them, then remove them (bench invariant 1). */
    struct stat st;
    int made = mkdir(run.o.dir, 0755) == 0;
    if (!made && (stat(run.o.dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        errorf("%s: not a folder that can be created or used", run.o.dir);
        return 1;
    }
    for (int s = 1; !made && s <= S; s++) {
        char p[4200], name[32];
        ckpt__step_name(s, name);
        snprintf(p, sizeof p, "%s/%s", run.o.dir, name);
        if (lstat(p, &st) == 0) {
            errorf("%s exists: use an empty or new folder", p);
            return 1;
        }
    }
    save_fig *fig = calloc((size_t)S + 1, sizeof *fig); /* + the restore */
    run.t_save = calloc(((size_t)S + 1) * (size_t)N, sizeof(double));
    run.t_done = calloc(((size_t)S + 1) * (size_t)N, sizeof(double));
    int M = run.o.restore_ranks, most = M > N ? M : N;
    run.failed = calloc((size_t)most, sizeof(int));
    run.lb = ckpt_loopback_new(N);
    run.lb_restore = M ? ckpt_loopback_new(M) : NULL;
    run.t_rstart = calloc((size_t)(M ? M : 1), sizeof(double));
    run.t_rdone = calloc((size_t)(M ? M : 1), sizeof(double));
    int threads_peak = 0;
    if (!fig || !run.t_save || !run.t_done || !run.failed || !run.lb || (M && !run.lb_restore) ||
        !run.t_rstart || !run.t_rdone || fscount_init(most) != 0 ||
        pthread_barrier_init(&run.bar, NULL, (unsigned)N + 1) != 0 ||
        pthread_barrier_init(&run.rbar, NULL, (unsigned)(M ? M : 1) + 1) != 0) {
        errorf("out of memory");
        rc = 1;
    } else {
        rc = run_scale(&run, fig, &threads_peak);
        if (rc == 0)
            report(&run.o, fig, threads_peak);
        pthread_barrier_destroy(&run.bar);
        pthread_barrier_destroy(&run.rbar);
    }
    clean_up(&run.o, made);
    ckpt_loopback_free(run.lb);
    ckpt_loopback_free(run.lb_restore);
    free(fig);
    free(run.t_save);
    free(run.t_done);
    free(run.failed);
    free(run.t_rstart);
    free(run.t_rdone);
    return rc ? 1 : 0;
}
