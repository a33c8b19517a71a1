/* SPDX-License-Identifier: Apache-2.0 */
#ifndef CKPT_BENCH_FSCOUNT_H
#define CKPT_BENCH_FSCOUNT_H

/*
 * File-system metadata calls counted per simulated rank (`ckpt-bench
 * scale`).  bench_fscount.c defines the libc metadata calls in the bench
 * binary itself and forwards each to libc (dlsym RTLD_NEXT), so every call
 * the runtime makes, from any of its threads, passes through it: stat,
 * lstat, fstatat, statx, access, faccessat, readlink, open, openat, creat,
 * mkdir, mkdirat, rename, renameat, renameat2, unlink, unlinkat, rmdir,
 * opendir, the getdents calls under readdir, and fsync/fdatasync of a
 * folder.  A call counts for the rank of the calling thread: a thread
 * inherits the rank of the thread that created it (pthread_create is
 * wrapped too), so a context's coordinator, janitor, copier and pool
 * threads count for the rank whose thread opened it.  Calls inside libc
 * (opendir's own openat, fopen's open) are libc-internal and count once,
 * as the call the program made.  Counting is off until fscount_start.
 *
 * A getdents call is counted, without wrapping libc's internal one, from
 * the entries readdir returns: they lie in the DIR's buffer in increasing
 * order, so the first entry, an entry below the previous one (the buffer
 * was refilled) and the final NULL each mean one getdents.
 */

#include <stdint.h>

enum fscount_kind {
    FSC_STAT, FSC_OPEN, FSC_MKDIR, FSC_RENAME, FSC_UNLINK, FSC_READDIR, FSC_DIRSYNC,
    FSC_NKINDS
};
extern const char *const fscount_kind_name[FSC_NKINDS];

/* Counters for nranks ranks (plus one for threads of no rank); 0, or -1
 * when out of memory. */
int fscount_init(int nranks);
/* The calling thread (and the threads it creates) counts for rank. */
void fscount_set_rank(int rank);
/* Zeroes every counter and starts counting. */
void fscount_start(void);
void fscount_stop(void);

typedef struct fscount_totals {
    uint64_t total, rank0, max_rank;
    uint64_t kind[FSC_NKINDS];
    /* CLOCK_MONOTONIC ns of the last done-record rename and of the rename
     * to a committed step name since fscount_start (0: none). */
    uint64_t last_done_ns, commit_ns;
} fscount_totals;
void fscount_read(fscount_totals *out);
/* Threads alive now, and the most alive at once, created through
 * pthread_create since the program started (the main thread not counted). */
int fscount_threads_peak(void);

#endif
