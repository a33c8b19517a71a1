/* SPDX-License-Identifier: Apache-2.0 */
/* See bench_raw.h. */
#define _GNU_SOURCE
#include "bench/bench_raw.h"

static void raw_job_init(raw_job *j, int fd, int write, uint64_t bytes)
{
    j->fd = fd;
    j->write = write;
    j->bytes = bytes;
    atomic_init(&j->next, 0);
    atomic_init(&j->err, 0);
    atomic_init(&j->err_off, 0);
}

/* Moves exactly n bytes at off; 0, an errno, ENOSPC when a write makes no
 * progress or ENODATA when a read meets the end of the file. */
static int raw_block(int fd, int write, uint8_t *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = write ? pwrite(fd, buf + done, n - done, (off_t)(off + done))
                          : pread(fd, buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno;
        if (r == 0)
            return write ? ENOSPC : ENODATA;
        done += (size_t)r;
    }
    return 0;
}

static void *raw_worker(void *arg)
{
    raw_thread *t = arg;
    raw_job *j = t->job;
    while (atomic_load(&j->err) == 0) {
        uint64_t off = atomic_fetch_add(&j->next, 1) * RAW_BLOCK;
        if (off >= j->bytes)
            break;
        size_t n = j->bytes - off < RAW_BLOCK ? (size_t)(j->bytes - off) : RAW_BLOCK;
        int e = raw_block(j->fd, j->write, t->buf, n, off);
        int none = 0;
        if (e && atomic_compare_exchange_strong(&j->err, &none, e))
            atomic_store(&j->err_off, off);
    }
    return NULL;
}

/* Runs the job on nthreads threads (the caller's alone when 1), thread i
 * using bufs[i]; returns 0 or the first errno. */
static int raw_run(raw_job *j, uint8_t *const *bufs, int nthreads)
{
    raw_thread th[RAW_MAX_THREADS];
    int started = 0;
    for (int i = 0; i < nthreads; i++) {
        th[i].job = j;
        th[i].buf = bufs[i];
    }
    for (int i = 1; i < nthreads; i++) {
        int e = pthread_create(&th[i].tid, NULL, raw_worker, &th[i]);
        if (e) {
            int none = 0;
            atomic_compare_exchange_strong(&j->err, &none, e);
            break;
        }
        started++;
    }
    raw_worker(&th[0]);
    for (int i = 1; i <= started; i++)
        pthread_join(th[i].tid, NULL);
    return atomic_load(&j->err);
}

/*
 * Creates `path` (it must not exist) and writes `bytes` (a multiple of
 * 4 KiB) of buf, repeated, then fsyncs; *secs runs from the first write to
 * the end of the fsync.  *direct says whether O_DIRECT was used.
 */
int raw_write(const char *path, uint64_t bytes, uint8_t *buf, int nthreads, int *direct,
                     double *secs)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        errorf("create %s: %s", path, strerror(errno));
        return -1;
    }
    close(fd);
    /* Opened a second time so that a file system refusing O_DIRECT (EINVAL)
     * leaves no doubt about whether the file was created. */
    *direct = 1;
    fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_DIRECT);
    if (fd < 0 && errno == EINVAL) {
        *direct = 0;
        fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0) {
        errorf("open %s: %s", path, strerror(errno));
        return -1;
    }
    uint8_t *bufs[RAW_MAX_THREADS];
    for (int i = 0; i < nthreads; i++)
        bufs[i] = buf; /* writers only read it */
    raw_job j;
    raw_job_init(&j, fd, 1, bytes);
    double t0 = now_s();
    int e = raw_run(&j, bufs, nthreads);
    int rc = 0;
    if (e) {
        errorf("write %s at %" PRIu64 ": %s", path, (uint64_t)atomic_load(&j.err_off),
               strerror(e));
        rc = -1;
    } else if (fsync(fd) != 0) {
        errorf("fsync %s: %s", path, strerror(errno));
        rc = -1;
    }
    *secs = now_s() - t0;
    close(fd);
    return rc;
}

/* Reads the whole file back, thread i into bufs[i]; buffered mode drops
 * the file's cached pages first so the disk is read, not memory. */
int raw_read(const char *path, uint64_t bytes, uint8_t *const *bufs, int nthreads,
                    int direct, double *secs)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (direct ? O_DIRECT : 0));
    if (fd < 0) {
        errorf("open %s: %s", path, strerror(errno));
        return -1;
    }
    if (!direct)
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    raw_job j;
    raw_job_init(&j, fd, 0, bytes);
    double t0 = now_s();
    int e = raw_run(&j, bufs, nthreads);
    *secs = now_s() - t0;
    close(fd);
    if (e) {
        errorf("read %s at %" PRIu64 ": %s", path, (uint64_t)atomic_load(&j.err_off),
               e == ENODATA ? "early end of file" : strerror(e));
        return -1;
    }
    return 0;
}

/* Commits what earlier phases left to the file system (the journal, the
 * discards of blocks an unlink freed under -o discard, other files' dirty
 * pages), so that a timed phase's fsync pays only for its own writes. */
void settle(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    syncfs(fd);
    close(fd);
}

void raw_file_path(char *out, const char *dir, int rank)
{
    char name[CKPT__FNAME_MAX];
    if (rank >= 0)
        snprintf(name, sizeof name, "ckpt-bench-raw.%d.%ld.tmp", rank, (long)getpid());
    else
        snprintf(name, sizeof name, "ckpt-bench-raw.%ld.tmp", (long)getpid());
    ckpt__path_join(out, dir, name, NULL);
}
