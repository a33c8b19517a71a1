/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckpt-bench: measures the runtime against the limits of the machine it runs
 * on, in the same run and on the same file system (docs/ARCHITECTURE.md, Performance
 * model).  One subcommand per experiment:
 *
 *   io   a synthetic state of a requested size (tensors of mixed sizes and
 *        dtypes, filled from a counter-based PRNG) is saved and restored
 *        through the public API; a raw O_DIRECT sequential write and read of
 *        the same number of bytes next to it gives the storage limit, and
 *        each result is reported as a fraction of its limit.
 *   train  a synthetic training loop with and without checkpoints
 *        (bench_train.c; --device cuda: on the GPU, bench_train_gpu.c).
 *   d2h  the snapshot of device tensors against raw pinned cudaMemcpy
 *        (bench_d2h.c).
 *   scale  thousands of ranks as threads of this process saving into one
 *        folder: file-system metadata calls and commit latency per save
 *        (bench_scale.c, counting in bench_fscount.c).
 *
 * Invariants the bench keeps:
 *   1. It removes only what it created: its raw file, the step folders its
 *      own saves committed (never one that existed before), and the folder
 *      itself only when the bench made it and it is empty again.  It never
 *      runs retention (keep_last and friends are forced to 0), so nothing
 *      that was in DIR before is deleted by the runtime on its behalf.
 *   2. Every restore is checked byte for byte against contents regenerated
 *      from the PRNG; a difference fails the run (exit 1) and says where.
 *   3. Timed regions contain only the operation they name: filling,
 *      clobbering, cache dropping and verification happen outside them.
 *
 * Exit status: 0 success, 1 a failed API call, I/O error or verification
 * failure, 2 a usage error.
 *
 * The bench links the static library and uses two things the public API
 * does not expose: the writer probe (runtime/backend.h), and the catalog
 * helpers that list and delete step folders safely (runtime/catalog.h).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "io/paths.h"
#include "runtime/backend.h"
#include "runtime/catalog.h"

#include "bench/bench_gpu.h"
#include "bench/bench_train.h"
#include "bench/bench_util.h"
#include "bench/bench_state.h"
#include "bench/bench_raw.h"
#include "bench/bench_scale.h"

#define MAX_REPEAT 1000

/* ---- options ------------------------------------------------------------- */

typedef struct io_opts {
    const char *dir;
    uint64_t bytes;
    int json, keep;
    /* The writers to measure, in order (--writer all: three). */
    struct bench_writer {
        const char *label; /* uring, pwrite, buffered, auto */
        ckpt_io io;
        int direct;
    } w[3];
    int nw;
    uint64_t staging_bytes, chunk_bytes;
    int repeat;
    int io_threads, hash_threads;
    int raw_threads;
    uint64_t seed;
} io_opts;

static void io_help(FILE *f)
{
    fprintf(f,
"usage: %s io --dir D --bytes SIZE [options]\n"
"\n"
"Saves and restores a synthetic state of SIZE bytes in D through the public\n"
"API and compares each with a raw sequential O_DIRECT write / read of the same\n"
"number of bytes in 4 MiB blocks to a file in D (same run, same file system).\n"
"Every restore is verified byte for byte.  GB/s means 1e9 bytes per second.\n"
"\n"
"options:\n"
"  --dir D            checkpoint folder (created if missing; existing content\n"
"                     is left alone)\n"
"  --bytes SIZE       state size: N, NK, NM, NG (powers of 1024), >= 1M\n"
"  --json             print a JSON object on stdout (the table goes to stderr)\n"
"  --keep             leave the last checkpoint in D (for `ckpt verify`, h5dump)\n"
"  --writer W         uring | pwrite | buffered (pwrite without O_DIRECT) |\n"
"                     auto | all (the first three in turn; JSON: \"writers\": [...])\n"
"                     (default: auto, or CKPT_IO)\n"
"  --staging SIZE     staging pool bytes (default 256M)\n"
"  --chunk SIZE       hash and write unit, multiple of 4K (default 4M)\n"
"  --repeat N         save/restore N times, report the median (default 1)\n"
"  --io-threads N     writer threads (default: the runtime's choice)\n"
"  --hash-threads N   hashing threads (default: the runtime's choice)\n"
"  --raw-threads N    blocks in flight in the raw baseline (default 1: the\n"
"                     sequential baseline of docs/ARCHITECTURE.md; the\n"
"                     runtime's writer keeps several in flight)\n"
"  --seed N           seed of the sizes, dtypes and contents (default 1)\n"
"  -h, --help         this text\n"
"\n"
"Exit status: 0 ok, 1 a failed call or verification, 2 usage error.\n", prog);
}

/* Returns 0 to run, 2 on a usage error, -1 when help was printed. */
static int io_parse(int argc, char **argv, io_opts *o)
{
    memset(o, 0, sizeof *o);
    o->staging_bytes = 256 * MIB;
    o->chunk_bytes = 4 * MIB;
    o->repeat = 1;
    o->raw_threads = 1;
    o->seed = 1;
    o->w[0] = (struct bench_writer){"auto", CKPT_IO_AUTO, 1};
    o->nw = 1;
    int have_bytes = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int m;
        long n;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            io_help(stdout);
            return -1;
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if (strcmp(a, "--keep") == 0) {
            o->keep = 1;
        } else if ((m = opt_value(argc, argv, &i, "--dir", &v)) != 0) {
            if (m < 0 || !*v)
                return usage_error("io", "--dir needs a folder");
            o->dir = v;
        } else if ((m = opt_value(argc, argv, &i, "--bytes", &v)) != 0) {
            if (m < 0 || parse_size(v, &o->bytes) != 0)
                return usage_error("io", "--bytes: expected a size like 64M or 2G, got '%s'",
                                   m < 0 ? "" : v);
            have_bytes = 1;
        } else if ((m = opt_value(argc, argv, &i, "--writer", &v)) != 0) {
            static const struct bench_writer kinds[] = {{"uring", CKPT_IO_URING, 1},
                                                        {"pwrite", CKPT_IO_PWRITE, 1},
                                                        {"buffered", CKPT_IO_PWRITE, 0},
                                                        {"auto", CKPT_IO_AUTO, 1}};
            o->nw = 0;
            for (int k = 0; m > 0 && k < 4; k++)
                if (strcmp(v, kinds[k].label) == 0)
                    o->w[o->nw++] = kinds[k];
            if (m > 0 && strcmp(v, "all") == 0)
                for (int k = 0; k < 3; k++)
                    o->w[o->nw++] = kinds[k];
            if (o->nw == 0)
                return usage_error("io", "--writer: expected uring, pwrite, buffered, auto or all");
        } else if ((m = opt_value(argc, argv, &i, "--staging", &v)) != 0) {
            if (m < 0 || parse_size(v, &o->staging_bytes) != 0)
                return usage_error("io", "--staging: expected a size like 256M");
        } else if ((m = opt_value(argc, argv, &i, "--chunk", &v)) != 0) {
            if (m < 0 || parse_size(v, &o->chunk_bytes) != 0)
                return usage_error("io", "--chunk: expected a size like 4M");
        } else if ((m = opt_value(argc, argv, &i, "--repeat", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, MAX_REPEAT, &n) != 0)
                return usage_error("io", "--repeat: expected a number in 1..%d", MAX_REPEAT);
            o->repeat = (int)n;
        } else if ((m = opt_value(argc, argv, &i, "--io-threads", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, 64, &n) != 0)
                return usage_error("io", "--io-threads: expected a number in 1..64");
            o->io_threads = (int)n;
        } else if ((m = opt_value(argc, argv, &i, "--hash-threads", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, 64, &n) != 0)
                return usage_error("io", "--hash-threads: expected a number in 1..64");
            o->hash_threads = (int)n;
        } else if ((m = opt_value(argc, argv, &i, "--raw-threads", &v)) != 0) {
            if (m < 0 || parse_int(v, 1, RAW_MAX_THREADS, &n) != 0)
                return usage_error("io", "--raw-threads: expected a number in 1..%d",
                                   RAW_MAX_THREADS);
            o->raw_threads = (int)n;
        } else if ((m = opt_value(argc, argv, &i, "--seed", &v)) != 0) {
            if (m < 0 || parse_u64(v, &o->seed) != 0)
                return usage_error("io", "--seed: expected a number");
        } else {
            return usage_error("io", "unknown argument '%s'", a);
        }
    }
    if (!o->dir)
        return usage_error("io", "--dir is required");
    if (!have_bytes)
        return usage_error("io", "--bytes is required");
    if (o->bytes < MIB)
        return usage_error("io", "--bytes must be at least 1M");
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psz > 0 && o->bytes > (uint64_t)pages * (uint64_t)psz / 4 * 3)
        return usage_error("io", "--bytes %" PRIu64 " is more than 3/4 of this machine's memory",
                           o->bytes);
    if (o->chunk_bytes < 64 * KIB || o->chunk_bytes > GIB || o->chunk_bytes % 4096)
        return usage_error("io", "--chunk must be a multiple of 4K in 64K..1G");
    if (o->staging_bytes < o->chunk_bytes)
        return usage_error("io", "--staging must be at least --chunk");
    return 0;
}

/* ---- one run of the io experiment ---------------------------------------- */

typedef struct io_sample {
    double raw_write_s, raw_read_s;
    double save_s, save_call_us, save_call_cpu_us, fence_ms, restore_s;
    int64_t step;
} io_sample;

typedef struct io_bench {
    io_opts o;
    state st;
    char raw_path[CKPT__PATH_MAX];
    int raw_exists;
    int raw_direct;
    uint64_t raw_bytes;
    uint8_t *raw_bufs[RAW_MAX_THREADS]; /* [0] holds the data written */
    uint8_t *scratch;
    int dir_existed;
    ckpt_ctx *save_ctx;
    int wi;           /* which of o.w is measured now */
    char writer[32];
    int64_t *made; /* steps this run committed and has not removed */
    size_t nmade;
    io_sample *s;
} io_bench;

static int open_ctx(const io_bench *b, ckpt_ctx **out)
{
    ckpt_config cfg;
    int rc = ckpt_config_init(&cfg);
    if (rc)
        return api_fail("ckpt_config_init", rc, NULL);
    cfg.dir = b->o.dir;
    /* Inv. 1: the bench never asks the runtime to delete checkpoints. */
    cfg.keep_last = 0;
    cfg.keep_every = 0;
    cfg.max_age_hours = 0;
    /* "auto" keeps what ckpt_config_init chose (auto, or CKPT_IO). */
    if (b->o.w[b->wi].io != CKPT_IO_AUTO)
        cfg.io = b->o.w[b->wi].io;
    cfg.direct_io = b->o.w[b->wi].direct;
    cfg.staging_bytes = b->o.staging_bytes;
    cfg.chunk_bytes = b->o.chunk_bytes;
    cfg.io_threads = b->o.io_threads;
    cfg.hash_threads = b->o.hash_threads;
    cfg.device = CKPT_DEVICE_HOST;
    rc = ckpt_open(&cfg, NULL, out);
    if (rc)
        return api_fail("ckpt_open", rc, NULL);
    for (size_t i = 0; i < b->st.n; i++) {
        const tensor *t = &b->st.v[i];
        rc = ckpt_register(*out, t->name, t->ptr, t->dtype, t->ndim, t->shape);
        if (rc) {
            api_fail("ckpt_register", rc, *out);
            ckpt_close(*out);
            *out = NULL;
            return 1;
        }
    }
    return 0;
}

/* The step after the newest step folder already in D, so CKPT_LATEST finds ours. */
static int first_free_step(const io_bench *b, int64_t *step)
{
    int64_t *steps;
    size_t n;
    ckpt__err e;
    ckpt__err_clear(&e);
    if (ckpt__catalog_scan(b->o.dir, &steps, &n, &e) != 0) {
        errorf("scan %s: %s", b->o.dir, e.msg);
        return 1;
    }
    *step = n ? steps[0] + 1 : 1;
    free(steps);
    if (*step + MAX_REPEAT > CKPT__STEP_MAX) {
        errorf("%s already holds step %lld; no room for the bench's steps", b->o.dir,
               (long long)(*step - 1));
        return 1;
    }
    return 0;
}

static int remove_step(io_bench *b, int64_t step)
{
    ckpt__err e;
    ckpt__err_clear(&e);
    int rc = ckpt__catalog_delete(b->o.dir, step, &e);
    for (size_t i = 0; i < b->nmade; i++)
        if (b->made[i] == step)
            b->made[i] = b->made[--b->nmade];
    if (rc) {
        errorf("remove step %lld from %s: %s", (long long)step, b->o.dir, e.msg);
        return 1;
    }
    return 0;
}

/* Drops the page cache of the checkpoint's files, so a restore reads the
 * disk as the raw O_DIRECT read does (the small buffered writes would
 * otherwise still be cached). */
static void drop_step_cache(const io_bench *b, int64_t step)
{
    char path[CKPT__PATH_MAX];
    if (ckpt__path_step(path, b->o.dir, step, NULL, NULL) != 0)
        return;
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            continue;
        struct stat s;
        if (fstat(fd, &s) == 0 && S_ISREG(s.st_mode))
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    closedir(d);
}

static int run_raw(io_bench *b, io_sample *s)
{
    b->raw_exists = 1;
    settle(b->o.dir);
    int direct = 0;
    int rc = raw_write(b->raw_path, b->raw_bytes, b->raw_bufs[0], b->o.raw_threads, &direct,
                       &s->raw_write_s);
    b->raw_direct = direct;
    if (!rc)
        rc = raw_read(b->raw_path, b->raw_bytes, b->raw_bufs, b->o.raw_threads, direct,
                      &s->raw_read_s);
    if (unlink(b->raw_path) != 0 && errno != ENOENT) {
        errorf("remove %s: %s", b->raw_path, strerror(errno));
        rc = -1;
    } else {
        b->raw_exists = 0;
    }
    return rc ? 1 : 0;
}

static int run_save(io_bench *b, io_sample *s)
{
    ckpt_ticket ticket;
    settle(b->o.dir);
    double c0 = thread_cpu_s(), t0 = now_s();
    int rc = ckpt_save(b->save_ctx, s->step, NULL, &ticket);
    double t1 = now_s(), c1 = thread_cpu_s();
    if (rc)
        return api_fail("ckpt_save", rc, b->save_ctx);
    rc = ckpt_fence(b->save_ctx, NULL);
    double t2 = now_s();
    if (rc) {
        api_fail("ckpt_fence", rc, b->save_ctx);
        if (ckpt_wait(b->save_ctx, ticket, -1) == 0)
            b->made[b->nmade++] = s->step; /* committed all the same: clean it up */
        return 1;
    }
    rc = ckpt_wait(b->save_ctx, ticket, -1);
    double t3 = now_s();
    if (rc)
        return api_fail("ckpt_wait", rc, b->save_ctx);
    b->made[b->nmade++] = s->step;
    s->save_call_us = (t1 - t0) * 1e6;
    s->save_call_cpu_us = (c1 - c0) * 1e6;
    s->fence_ms = (t2 - t1) * 1e3;
    s->save_s = t3 - t0;
    return 0;
}

/* A fresh context, so nothing the save context holds can help the restore. */
static int run_restore(io_bench *b, io_sample *s)
{
    state_clobber(&b->st);
    ckpt_ctx *ctx;
    if (open_ctx(b, &ctx))
        return 1;
    settle(b->o.dir);
    drop_step_cache(b, s->step);
    int64_t got = -1;
    double t0 = now_s();
    int rc = ckpt_restore(ctx, CKPT_LATEST, NULL, &got);
    s->restore_s = now_s() - t0;
    if (rc) {
        api_fail("ckpt_restore", rc, ctx);
        ckpt_close(ctx);
        return 1;
    }
    rc = ckpt_close(ctx);
    if (rc)
        return api_fail("ckpt_close", rc, NULL);
    if (got != s->step) {
        errorf("ckpt_restore(CKPT_LATEST) restored step %lld, the bench saved %lld",
               (long long)got, (long long)s->step);
        return 1;
    }
    return state_verify(&b->st, b->scratch) ? 1 : 0;
}

/* ---- statistics and reports ---------------------------------------------- */

/* Median, min and max of field(sample) over the runs. */
static stat3 stats(const io_bench *b, double (*field)(const io_bench *, const io_sample *))
{
    double v[MAX_REPEAT];
    for (int i = 0; i < b->o.repeat; i++)
        v[i] = field(b, &b->s[i]);
    return stat3_of(v, b->o.repeat);
}

static double gbps(uint64_t bytes, double secs)
{
    return secs > 0 ? (double)bytes / secs / 1e9 : 0;
}

static double f_save(const io_bench *b, const io_sample *s)
{
    return gbps(b->st.bytes, s->save_s);
}
static double f_restore(const io_bench *b, const io_sample *s)
{
    return gbps(b->st.bytes, s->restore_s);
}
static double f_raw_w(const io_bench *b, const io_sample *s)
{
    return gbps(b->raw_bytes, s->raw_write_s);
}
static double f_raw_r(const io_bench *b, const io_sample *s)
{
    return gbps(b->raw_bytes, s->raw_read_s);
}
static double f_save_ratio(const io_bench *b, const io_sample *s)
{
    return f_raw_w(b, s) > 0 ? f_save(b, s) / f_raw_w(b, s) : 0;
}
static double f_restore_ratio(const io_bench *b, const io_sample *s)
{
    return f_raw_r(b, s) > 0 ? f_restore(b, s) / f_raw_r(b, s) : 0;
}
static double f_call(const io_bench *b, const io_sample *s)
{
    (void)b;
    return s->save_call_us;
}
static double f_call_cpu(const io_bench *b, const io_sample *s)
{
    (void)b;
    return s->save_call_cpu_us;
}
static double f_fence(const io_bench *b, const io_sample *s)
{
    (void)b;
    return s->fence_ms;
}

typedef struct io_report {
    stat3 save, restore, raw_w, raw_r, call, call_cpu, fence;
    double save_ratio, restore_ratio;  /* of the medians */
    stat3 save_ratio_run, restore_ratio_run; /* per run */
} io_report;

static io_report summarize(const io_bench *b)
{
    io_report r;
    r.save = stats(b, f_save);
    r.restore = stats(b, f_restore);
    r.raw_w = stats(b, f_raw_w);
    r.raw_r = stats(b, f_raw_r);
    r.call = stats(b, f_call);
    r.call_cpu = stats(b, f_call_cpu);
    r.fence = stats(b, f_fence);
    r.save_ratio_run = stats(b, f_save_ratio);
    r.restore_ratio_run = stats(b, f_restore_ratio);
    r.save_ratio = r.raw_w.med > 0 ? r.save.med / r.raw_w.med : 0;
    r.restore_ratio = r.raw_r.med > 0 ? r.restore.med / r.raw_r.med : 0;
    return r;
}

static void table_row(FILE *f, int multi, const char *what, stat3 v, const char *unit,
                      int prec, const char *ratio)
{
    fprintf(f, "  %-18s %10.*f", what, prec, v.med);
    if (multi)
        fprintf(f, " %10.*f %10.*f", prec, v.min, prec, v.max);
    fprintf(f, "  %-5s %s\n", unit, ratio ? ratio : "");
}

static void print_table(FILE *f, const io_bench *b, const io_report *r)
{
    char b1[32], b2[32], b3[32], rs[32], rr[32];
    const state *st = &b->st;
    int multi = b->o.repeat > 1;
    fprintf(f, "ckpt-bench io: %s (%" PRIu64 " bytes) in %zu tensors "
            "(%zu large, %zu medium, %zu small) in %s\n",
            fmt_bytes(st->bytes, b1, sizeof b1), st->bytes, st->n, st->per_class[CLASS_LARGE],
            st->per_class[CLASS_MEDIUM], st->per_class[CLASS_SMALL], b->o.dir);
    fprintf(f, "writer %s, staging %s, chunk %s, raw baseline %s with %d block%s in flight, "
            "%d run%s%s\n", b->writer, fmt_bytes(b->o.staging_bytes, b2, sizeof b2),
            fmt_bytes(b->o.chunk_bytes, b3, sizeof b3),
            b->raw_direct ? "O_DIRECT" : "buffered (no O_DIRECT here)", b->o.raw_threads,
            b->o.raw_threads > 1 ? "s" : "", b->o.repeat,
            multi ? "s" : "", multi ? " (median, min, max)" : "");
    fprintf(f, "GB/s = 1e9 bytes per second\n\n");
    fprintf(f, "  %-18s %10s", "", multi ? "median" : "value");
    if (multi)
        fprintf(f, " %10s %10s", "min", "max");
    fprintf(f, "  %-5s %s\n", "", "of limit");
    snprintf(rs, sizeof rs, "%.3f", r->save_ratio);
    snprintf(rr, sizeof rr, "%.3f", r->restore_ratio);
    table_row(f, multi, "raw write+fsync", r->raw_w, "GB/s", 3, NULL);
    table_row(f, multi, "save (durable)", r->save, "GB/s", 3, rs);
    table_row(f, multi, "raw read", r->raw_r, "GB/s", 3, NULL);
    table_row(f, multi, "restore+verify", r->restore, "GB/s", 3, rr);
    table_row(f, multi, "ckpt_save call", r->call, "us", 1, NULL);
    table_row(f, multi, "ckpt_fence", r->fence, "ms", 1, NULL);
    fprintf(f, "\nrestored bytes verified: ok\n");
}

static void json_stat(FILE *f, const char *key, stat3 v, int prec)
{
    fprintf(f, ",\n  \"%s\": %.*f, \"%s_min\": %.*f, \"%s_max\": %.*f", key, prec, v.med, key,
            prec, v.min, key, prec, v.max);
}

static void print_json(FILE *f, const io_bench *b, const io_report *r)
{
    const state *st = &b->st;
    fprintf(f, "{\n  \"bench\": \"io\",\n  \"dir\": ");
    json_str(f, b->o.dir);
    fprintf(f, ",\n  \"bytes\": %" PRIu64 ", \"tensors\": %zu, \"tensors_large\": %zu, "
            "\"tensors_medium\": %zu, \"tensors_small\": %zu",
            st->bytes, st->n, st->per_class[CLASS_LARGE], st->per_class[CLASS_MEDIUM],
            st->per_class[CLASS_SMALL]);
    fprintf(f, ",\n  \"writer\": ");
    json_str(f, b->writer);
    fprintf(f, ", \"device\": \"host\", \"raw_direct\": %s, \"raw_bytes\": %" PRIu64
            ", \"raw_threads\": %d", b->raw_direct ? "true" : "false", b->raw_bytes,
            b->o.raw_threads);
    fprintf(f, ",\n  \"staging_bytes\": %" PRIu64 ", \"chunk_bytes\": %" PRIu64
            ", \"io_threads\": %d, \"hash_threads\": %d, \"seed\": %" PRIu64 ", \"repeat\": %d",
            b->o.staging_bytes, b->o.chunk_bytes, b->o.io_threads, b->o.hash_threads,
            b->o.seed, b->o.repeat);
    json_stat(f, "save_gbps", r->save, 4);
    json_stat(f, "raw_write_gbps", r->raw_w, 4);
    fprintf(f, ",\n  \"save_ratio\": %.4f, \"save_ratio_min\": %.4f, \"save_ratio_max\": %.4f",
            r->save_ratio, r->save_ratio_run.min, r->save_ratio_run.max);
    json_stat(f, "restore_gbps", r->restore, 4);
    json_stat(f, "raw_read_gbps", r->raw_r, 4);
    fprintf(f, ",\n  \"restore_ratio\": %.4f, \"restore_ratio_min\": %.4f, "
            "\"restore_ratio_max\": %.4f", r->restore_ratio, r->restore_ratio_run.min,
            r->restore_ratio_run.max);
    json_stat(f, "save_call_us", r->call, 1);
    json_stat(f, "save_call_cpu_us", r->call_cpu, 1);
    json_stat(f, "fence_ms", r->fence, 3);
    fprintf(f, ",\n  \"verified\": true,\n  \"runs\": [");
    for (int i = 0; i < b->o.repeat; i++) {
        const io_sample *s = &b->s[i];
        fprintf(f, "%s\n    {\"step\": %lld, \"save_s\": %.6f, \"save_call_us\": %.1f, "
                "\"save_call_cpu_us\": %.1f, "
                "\"fence_ms\": %.3f, \"restore_s\": %.6f, \"raw_write_s\": %.6f, "
                "\"raw_read_s\": %.6f}",
                i ? "," : "", (long long)s->step, s->save_s, s->save_call_us,
                s->save_call_cpu_us, s->fence_ms,
                s->restore_s, s->raw_write_s, s->raw_read_s);
    }
    fprintf(f, "\n  ]\n}");
    if (b->o.nw == 1)
        fputc('\n', f);
}

/* ---- the io subcommand --------------------------------------------------- */

/* Inv. 1: removes the raw file and the steps this run made (all of them, or
 * all but `keep_step` with --keep), then the folder if the bench made it. */
static int io_cleanup(io_bench *b, int64_t keep_step)
{
    int rc = 0;
    if (b->raw_exists && unlink(b->raw_path) != 0 && errno != ENOENT) {
        errorf("remove %s: %s", b->raw_path, strerror(errno));
        rc = 1;
    }
    b->raw_exists = 0;
    if (b->save_ctx) {
        int c = ckpt_close(b->save_ctx);
        b->save_ctx = NULL;
        if (c)
            rc = api_fail("ckpt_close", c, NULL);
    }
    while (b->nmade > 0) {
        int64_t step = b->made[b->nmade - 1];
        if (step == keep_step) {
            b->nmade--;
            continue;
        }
        if (remove_step(b, step))
            rc = 1;
    }
    if (!b->dir_existed && keep_step < 0)
        rmdir(b->o.dir); /* only succeeds if nothing else is in it */
    return rc;
}

/* Buffers of the raw baseline and verification, per-run records. */
static int io_alloc(io_bench *b)
{
    b->s = calloc((size_t)b->o.repeat, sizeof *b->s);
    b->made = calloc((size_t)b->o.repeat, sizeof *b->made);
    void *p = NULL;
    if (!b->s || !b->made || posix_memalign(&p, RAW_ALIGN, VERIFY_PIECE) != 0) {
        errorf("out of memory");
        return 1;
    }
    b->scratch = p;
    for (int i = 0; i < b->o.raw_threads; i++) {
        if (posix_memalign(&p, RAW_ALIGN, RAW_BLOCK) != 0) {
            errorf("out of memory");
            return 1;
        }
        b->raw_bufs[i] = p;
    }
    gen_bytes(b->raw_bufs[0], RAW_BLOCK, b->o.seed ^ 0x7261770000000000ull, 0);
    return 0;
}

static void io_free(io_bench *b)
{
    state_free(&b->st);
    for (int i = 0; i < RAW_MAX_THREADS; i++)
        free(b->raw_bufs[i]);
    free(b->scratch);
    free(b->s);
    free(b->made);
}

/* Measures one writer (b->wi): raw limits, saves and restores, repeat times,
 * then prints its table (and JSON object). */
static int io_writer(io_bench *b)
{
    const io_opts *o = &b->o;
    FILE *out = o->json ? stderr : stdout;
    memset(b->s, 0, (size_t)o->repeat * sizeof *b->s);
    b->nmade = 0;
    /* The save context opens first: it creates D when missing. */
    int64_t step0 = 0;
    int rc = open_ctx(b, &b->save_ctx);
    if (!rc) {
        const char *label = o->w[b->wi].label;
        snprintf(b->writer, sizeof b->writer, "%s",
                 strcmp(label, "auto") == 0 ? ckpt_writer_name(b->save_ctx) : label);
        raw_file_path(b->raw_path, o->dir, -1);
        rc = first_free_step(b, &step0);
    }
    for (int i = 0; !rc && i < o->repeat; i++) {
        io_sample *s = &b->s[i];
        s->step = step0 + i;
        rc = run_raw(b, s);
        if (!rc)
            rc = run_save(b, s);
        if (!rc)
            rc = run_restore(b, s);
        if (!rc && i + 1 < o->repeat)
            rc = remove_step(b, s->step);
        if (!rc && o->repeat > 1)
            fprintf(stderr, "  %s run %d/%d: save %.3f GB/s (raw %.3f), restore %.3f GB/s "
                    "(raw %.3f)\n", b->writer, i + 1, o->repeat, f_save(b, s), f_raw_w(b, s),
                    f_restore(b, s), f_raw_r(b, s));
    }
    int64_t keep = !rc && o->keep ? step0 + o->repeat - 1 : -1;
    if (rc && o->keep && b->nmade)
        keep = b->made[b->nmade - 1]; /* leave the last checkpoint for inspection */
    int crc = io_cleanup(b, keep);
    if (!rc && crc)
        rc = crc;
    if (!rc) {
        io_report r = summarize(b);
        print_table(out, b, &r);
        if (o->json) {
            if (o->nw > 1 && b->wi == 0)
                fprintf(stdout, "{\"bench\": \"io\", \"writers\": [\n");
            print_json(stdout, b, &r);
        }
        char kept[CKPT__FNAME_MAX];
        if (keep >= 0) {
            ckpt__step_name(keep, kept);
            fprintf(out, "kept %s/%s\n", o->dir, kept);
        }
    }
    return rc;
}

static int cmd_io(int argc, char **argv)
{
    io_bench b;
    memset(&b, 0, sizeof b);
    int rc = io_parse(argc, argv, &b.o);
    if (rc)
        return rc < 0 ? 0 : rc;
    const io_opts *o = &b.o;

    struct stat sb;
    b.dir_existed = stat(o->dir, &sb) == 0;
    if (b.dir_existed && !S_ISDIR(sb.st_mode))
        return usage_error("io", "--dir %s exists and is not a folder", o->dir);
    b.raw_bytes = (o->bytes + RAW_ALIGN - 1) / RAW_ALIGN * RAW_ALIGN;
    if (io_alloc(&b)) {
        io_free(&b);
        return 1;
    }

    double t0 = now_s();
    rc = state_plan(&b.st, o->bytes, o->seed) || state_alloc(&b.st) ? 1 : 0;
    if (rc)
        errorf("out of memory for a state of %" PRIu64 " bytes", o->bytes);
    else
        fprintf(stderr, "%s io: %zu tensors, %" PRIu64 " bytes filled in %.2f s\n", prog,
                b.st.n, b.st.bytes, now_s() - t0);

    /* --writer all measures what this machine allows: io_uring may be refused. */
    ckpt__err why;
    if (!rc && o->nw > 1 && ckpt__writer_probe(&ckpt__writer_uring, &why) != 0) {
        fprintf(stderr, "%s io: skipping the uring writer: %s\n", prog, why.msg);
        memmove(&b.o.w[0], &b.o.w[1], (size_t)(o->nw - 1) * sizeof b.o.w[0]);
        b.o.nw--;
    }
    for (b.wi = 0; !rc && b.wi < o->nw; b.wi++) {
        rc = io_writer(&b);
        if (!rc && o->json)
            fprintf(stdout, "%s", b.wi + 1 < o->nw ? ",\n" : o->nw > 1 ? "]}\n" : "");
    }
    io_free(&b);
    return rc;
}

/* ---- main ---------------------------------------------------------------- */

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"io", cmd_io, "save/restore throughput against raw O_DIRECT write/read"},
    {"train", cmd_train, "checkpoint overhead on a synthetic training loop (--device cuda: "
                         "on the GPU)"},
    {"d2h", cmd_d2h, "device-to-host snapshot throughput against raw pinned cudaMemcpy"},
    {"scale", cmd_scale, "N ranks as threads saving into one folder: metadata calls and commit "
                         "latency per save"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void main_help(FILE *f)
{
    fprintf(f, "usage: %s COMMAND [options]   (%s COMMAND --help for its options)\n\n"
               "commands:\n", prog, prog);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        main_help(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        main_help(stdout);
        return 0;
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "%s: unknown command '%s'\n", prog, argv[1]);
    main_help(stderr);
    return 2;
}
