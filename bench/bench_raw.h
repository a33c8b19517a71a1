/* SPDX-License-Identifier: Apache-2.0 */
#ifndef CKPT_BENCH_BENCH_RAW_H
#define CKPT_BENCH_BENCH_RAW_H

/*
 * The raw storage baseline of ckpt-bench: a sequential write of N bytes in
 * 4 MiB blocks from 4 KiB-aligned buffers with O_DIRECT, then fsync, and a
 * sequential read of the file back; the limit each checkpoint operation is
 * compared with.  By default one block is in flight at a time (the docs/ARCHITECTURE.md
 * baseline); with nthreads > 1 that many threads take the next block in
 * turn, so the file is still written front to back but with several blocks
 * in flight, as the runtime's writer pool does.  Where the file system
 * refuses O_DIRECT (tmpfs) the baseline is buffered and says so.
 *
 * The baseline's file is DIR/ckpt-bench-raw[.RANK].PID.tmp (raw_file_path),
 * a name the runtime treats as foreign.
 *
 * Also here: settle(), which commits what earlier phases left to the file
 * system before a timed phase starts.  Used by `io` (ckpt_bench.c) and
 * by `train` (bench_train.c: every rank's share at once).
 */

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "io/paths.h"

#define RAW_BLOCK (4 * MIB)
#define RAW_ALIGN 4096u
#define RAW_MAX_THREADS 64

typedef struct raw_job {
    int fd;
    int write;
    uint64_t bytes;
    atomic_uint_fast64_t next; /* next block to take */
    atomic_int err;            /* first errno seen; 0 while none */
    atomic_uint_fast64_t err_off;
} raw_job;

typedef struct raw_thread {
    raw_job *job;
    uint8_t *buf;
    pthread_t tid;
} raw_thread;
int raw_write(const char *path, uint64_t bytes, uint8_t *buf, int nthreads, int *direct, double *secs);
int raw_read(const char *path, uint64_t bytes, uint8_t *const *bufs, int nthreads, int direct, double *secs);
void settle(const char *dir);
/* out[CKPT__PATH_MAX] = the raw file of this process in dir, with the
 * rank in its name when rank >= 0 (several ranks share dir); "" when dir
 * is too long (the open then fails). */
void raw_file_path(char *out, const char *dir, int rank);

#endif
