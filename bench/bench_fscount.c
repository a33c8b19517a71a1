/* SPDX-License-Identifier: Apache-2.0 */
/* Counting file-system metadata calls per simulated rank (bench_fscount.h). */
#undef _FORTIFY_SOURCE /* fcntl.h would define open() inline */
#define _GNU_SOURCE
#include "bench/bench_fscount.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h> /* rename, renameat, renameat2 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *const fscount_kind_name[FSC_NKINDS] = {"stat",   "open",    "mkdir",  "rename",
                                                   "unlink", "getdents", "dirsync"};

static atomic_int counting;
static int nslots;                         /* ranks + 1 (no rank) */
static _Atomic uint64_t *per_rank;         /* [nslots] */
static _Atomic uint64_t per_kind[FSC_NKINDS];
static _Atomic uint64_t last_done_ns, commit_ns;
static atomic_int threads_now, threads_peak;
static __thread int my_rank = -1;
static __thread const void *last_dir, *last_ent; /* getdents detection */

int fscount_init(int nranks)
{
    per_rank = calloc((size_t)nranks + 1, sizeof *per_rank);
    nslots = per_rank ? nranks + 1 : 0;
    return per_rank ? 0 : -1;
}

void fscount_set_rank(int rank)
{
    my_rank = rank;
}

void fscount_start(void)
{
    for (int i = 0; i < nslots; i++)
        atomic_store(&per_rank[i], 0);
    for (int k = 0; k < FSC_NKINDS; k++)
        atomic_store(&per_kind[k], 0);
    atomic_store(&last_done_ns, 0);
    atomic_store(&commit_ns, 0);
    atomic_store(&counting, 1);
}

void fscount_stop(void)
{
    atomic_store(&counting, 0);
}

void fscount_read(fscount_totals *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < nslots; i++) {
        uint64_t v = atomic_load(&per_rank[i]);
        out->total += v;
        if (i < nslots - 1 && v > out->max_rank)
            out->max_rank = v;
    }
    out->rank0 = nslots > 1 ? atomic_load(&per_rank[0]) : 0;
    for (int k = 0; k < FSC_NKINDS; k++)
        out->kind[k] = atomic_load(&per_kind[k]);
    out->last_done_ns = atomic_load(&last_done_ns);
    out->commit_ns = atomic_load(&commit_ns);
}

int fscount_threads_peak(void)
{
    return atomic_load(&threads_peak);
}

static void count(enum fscount_kind k)
{
    if (!atomic_load_explicit(&counting, memory_order_relaxed))
        return;
    int slot = my_rank >= 0 && my_rank < nslots - 1 ? my_rank : nslots - 1;
    atomic_fetch_add_explicit(&per_rank[slot], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&per_kind[k], 1, memory_order_relaxed);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A rename to a done-record's final name, or to a committed step name
 * (step-N, no suffix): the two instants the commit latency lies between. */
static void note_rename(const char *to)
{
    if (!atomic_load_explicit(&counting, memory_order_relaxed) || !to)
        return;
    const char *b = strrchr(to, '/');
    b = b ? b + 1 : to;
    size_t n = strlen(b);
    uint64_t t = mono_ns();
    if (strncmp(b, "done-", 5) == 0 && n > 4 && strcmp(b + n - 4, ".rec") == 0) {
        uint64_t cur = atomic_load(&last_done_ns);
        while (cur < t && !atomic_compare_exchange_weak(&last_done_ns, &cur, t))
            ;
    } else if (strncmp(b, "step-", 5) == 0 && !strchr(b, '.')) {
        atomic_store(&commit_ns, t);
    }
}

/* real_NAME: libc's NAME (the next definition after this binary's),
 * looked up once; threads may race to store the same value. */
#define REAL(name)                                                            \
    static _Atomic(__typeof__(&name)) next_##name;                                         \
    __typeof__(&name) real_##name = atomic_load_explicit(&next_##name, memory_order_relaxed); \
    if (!real_##name) {                                                                    \
        void *sym = dlsym(RTLD_NEXT, #name);                                               \
        memcpy(&real_##name, &sym, sizeof sym);                                            \
        atomic_store_explicit(&next_##name, real_##name, memory_order_relaxed);            \
    }

/* ---- the wrapped calls ------------------------------------------------------ */

#define STATLIKE(name, stype)                                                              \
    int name(const char *restrict p, struct stype *restrict st)                            \
    {                                                                                      \
        REAL(name);                            \
        count(FSC_STAT);                                                                   \
        return real_##name(p, st);                                                         \
    }
STATLIKE(stat, stat)
STATLIKE(lstat, stat)
STATLIKE(stat64, stat64)
STATLIKE(lstat64, stat64)

int fstatat(int dfd, const char *restrict p, struct stat *restrict st, int fl)
{
    REAL(fstatat);
    if (*p) /* fstatat(fd, "", AT_EMPTY_PATH) is an fstat */
        count(FSC_STAT);
    return real_fstatat(dfd, p, st, fl);
}

int fstatat64(int dfd, const char *restrict p, struct stat64 *restrict st, int fl)
{
    REAL(fstatat64);
    if (*p)
        count(FSC_STAT);
    return real_fstatat64(dfd, p, st, fl);
}

int statx(int dfd, const char *restrict p, int fl, unsigned mask, struct statx *restrict st)
{
    REAL(statx);
    if (*p)
        count(FSC_STAT);
    return real_statx(dfd, p, fl, mask, st);
}

int access(const char *p, int mode)
{
    REAL(access);
    count(FSC_STAT);
    return real_access(p, mode);
}

int faccessat(int dfd, const char *p, int mode, int fl)
{
    REAL(faccessat);
    count(FSC_STAT);
    return real_faccessat(dfd, p, mode, fl);
}

ssize_t readlink(const char *restrict p, char *restrict buf, size_t n)
{
    REAL(readlink);
    count(FSC_STAT);
    return real_readlink(p, buf, n);
}

static mode_t mode_arg(int fl, va_list ap)
{
    return (fl & O_CREAT) || (fl & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

/* mode_t m: open's optional third argument, after fl. */
#define TAKE_MODE(fl, m)                                                                   \
    va_list ap;                                                                            \
    va_start(ap, fl);                                                                      \
    mode_t m = mode_arg(fl, ap);                                                           \
    va_end(ap)

#define OPENLIKE(name)                                                                     \
    int name(const char *p, int fl, ...)                                                   \
    {                                                                                      \
        REAL(name);                               \
        TAKE_MODE(fl, m);                                                                  \
        count(FSC_OPEN);                                                                   \
        return real_##name(p, fl, m);                                                      \
    }
OPENLIKE(open)
OPENLIKE(open64)

#define OPENATLIKE(name)                                                                   \
    int name(int dfd, const char *p, int fl, ...)                                          \
    {                                                                                      \
        REAL(name);                               \
        TAKE_MODE(fl, m);                                                                  \
        count(FSC_OPEN);                                                                   \
        return real_##name(dfd, p, fl, m);                                                 \
    }
OPENATLIKE(openat)
OPENATLIKE(openat64)

int creat(const char *p, mode_t m)
{
    REAL(creat);
    count(FSC_OPEN);
    return real_creat(p, m);
}

int mkdir(const char *p, mode_t m)
{
    REAL(mkdir);
    count(FSC_MKDIR);
    return real_mkdir(p, m);
}

int mkdirat(int dfd, const char *p, mode_t m)
{
    REAL(mkdirat);
    count(FSC_MKDIR);
    return real_mkdirat(dfd, p, m);
}

int rename(const char *a, const char *b)
{
    REAL(rename);
    count(FSC_RENAME);
    int rc = real_rename(a, b);
    if (rc == 0)
        note_rename(b);
    return rc;
}

int renameat(int da, const char *a, int db, const char *b)
{
    REAL(renameat);
    count(FSC_RENAME);
    int rc = real_renameat(da, a, db, b);
    if (rc == 0)
        note_rename(b);
    return rc;
}

int renameat2(int da, const char *a, int db, const char *b, unsigned fl)
{
    REAL(renameat2);
    count(FSC_RENAME);
    int rc = real_renameat2(da, a, db, b, fl);
    if (rc == 0)
        note_rename(b);
    return rc;
}

int unlink(const char *p)
{
    REAL(unlink);
    count(FSC_UNLINK);
    return real_unlink(p);
}

int unlinkat(int dfd, const char *p, int fl)
{
    REAL(unlinkat);
    count(FSC_UNLINK);
    return real_unlinkat(dfd, p, fl);
}

int rmdir(const char *p)
{
    REAL(rmdir);
    count(FSC_UNLINK);
    return real_rmdir(p);
}

DIR *opendir(const char *p)
{
    REAL(opendir);
    count(FSC_OPEN);
    return real_opendir(p);
}

/* One getdents per first entry, per refill of the buffer, and for the end. */
static void note_entry(const void *dir, const void *ent)
{
    if (!ent || dir != last_dir || (const char *)ent <= (const char *)last_ent)
        count(FSC_READDIR);
    last_dir = ent ? dir : NULL;
    last_ent = ent;
}

struct dirent *readdir(DIR *d)
{
    REAL(readdir);
    struct dirent *e = real_readdir(d);
    note_entry(d, e);
    return e;
}

struct dirent64 *readdir64(DIR *d)
{
    REAL(readdir64);
    struct dirent64 *e = real_readdir64(d);
    note_entry(d, e);
    return e;
}

/* fsync of a folder is a metadata operation; of a file, a data one. */
static void note_sync(int fd)
{
    struct stat st;
    if (atomic_load_explicit(&counting, memory_order_relaxed) && fstat(fd, &st) == 0 &&
        S_ISDIR(st.st_mode))
        count(FSC_DIRSYNC);
}

int fsync(int fd)
{
    REAL(fsync);
    note_sync(fd);
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    REAL(fdatasync);
    note_sync(fd);
    return real_fdatasync(fd);
}

/* ---- threads inherit their creator's rank ----------------------------------- */

typedef struct start {
    void *(*fn)(void *);
    void *arg;
    int rank;
} start;

static void *trampoline(void *p)
{
    start s = *(start *)p;
    free(p);
    my_rank = s.rank;
    int now = atomic_fetch_add(&threads_now, 1) + 1, peak = atomic_load(&threads_peak);
    while (now > peak && !atomic_compare_exchange_weak(&threads_peak, &peak, now))
        ;
    void *r = s.fn(s.arg);
    atomic_fetch_sub(&threads_now, 1);
    return r;
}

int pthread_create(pthread_t *restrict t, const pthread_attr_t *restrict attr,
                   void *(*fn)(void *), void *restrict arg)
{
    REAL(pthread_create);
    start *s = malloc(sizeof *s);
    if (!s)
        return real_pthread_create(t, attr, fn, arg);
    *s = (start){fn, arg, my_rank};
    int rc = real_pthread_create(t, attr, trampoline, s);
    if (rc)
        free(s);
    return rc;
}
