/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pwrite-pool writer: a FIFO of caller-owned requests served by a few
 * threads with pread/pwrite.  Each file has a buffered descriptor and, when
 * the file system accepts it, an O_DIRECT one; a request is split
 * (ckpt__io_split) into an unaligned head, a 4 KiB-aligned body (O_DIRECT)
 * and a tail, so a write never touches bytes outside its range.  Partial transfers are retried
 * until the request is complete, the device refuses (0 bytes written:
 * -ENOSPC for the request) or a read reaches end of file.
 *
 * Invariants: a request is on the queue or being served by exactly one
 * thread; cb runs exactly once per submitted request; close() only after
 * every callback has run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/writer.h"

#define MAX_THREADS 64

struct ckpt__writer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ckpt__ioreq *head, *tail;
    int stop;
    int nthreads;
    int direct;
    pthread_t threads[MAX_THREADS];
};

struct ckpt__wfile {
    int fd;
    int fd_direct; /* -1 when O_DIRECT is unavailable */
};

/* Transfers exactly n bytes unless the device stops; returns bytes or -errno. */
static int64_t xfer(int fd, int op, char *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = op == CKPT__IO_WRITE
                        ? pwrite(fd, buf + done, n - done, (off_t)(off + done))
                        : pread(fd, buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0) {
            /* A write that takes nothing: the device is full, whatever
             * part of the request it took before. */
            if (op == CKPT__IO_WRITE)
                return -ENOSPC;
            break; /* end of file */
        }
        done += (size_t)r;
    }
    return (int64_t)done;
}

/* Serves the parts of q in order; bytes transferred, or -errno. */
static int64_t serve(ckpt__ioreq *q)
{
    const ckpt__wfile *f = q->file;
    ckpt__io_split(q, f->fd_direct >= 0);
    int64_t total = 0;
    for (int i = 0; i < q->nparts; i++) {
        const struct ckpt__iopart *p = &q->part[i];
        char *buf = (char *)q->buf + (p->off - q->off);
        int64_t r = xfer(p->direct ? f->fd_direct : f->fd, q->op, buf, p->len, p->off);
        if (r < 0)
            return r;
        total += r;
        if ((uint64_t)r < p->len)
            break; /* end of file, or the device stopped taking bytes */
    }
    return total;
}

static void *worker(void *arg)
{
    ckpt__writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->head)
            break;
        ckpt__ioreq *q = w->head;
        w->head = q->next;
        if (!w->head)
            w->tail = NULL;
        pthread_mutex_unlock(&w->mu);
        q->next = NULL;
        q->res = serve(q);
        q->cb(q);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void pw_close(ckpt__writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static int pw_open(const ckpt__writer_config *cfg, ckpt__writer **out, ckpt__err *err)
{
    *out = NULL;
    if (cfg->threads < 1 || cfg->threads > MAX_THREADS)
        return ckpt__err_set(err, CKPT_EINVAL, "pwrite writer: %d threads (1..%d)",
                             cfg->threads, MAX_THREADS);
    ckpt__writer *w = calloc(1, sizeof *w);
    if (!w)
        return ckpt__err_set(err, CKPT_ENOMEM, "pwrite writer: out of memory");
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->direct = cfg->direct;
    for (int i = 0; i < cfg->threads; i++) {
        int rc = pthread_create(&w->threads[i], NULL, worker, w);
        if (rc) {
            pw_close(w);
            return ckpt__err_errno(err, rc, "pwrite writer: pthread_create");
        }
        w->nthreads++;
    }
    *out = w;
    return 0;
}

static int pw_file_open(ckpt__writer *w, const char *path, int mode, ckpt__wfile **out,
                        ckpt__err *err)
{
    *out = NULL;
    /* O_NONBLOCK only matters for a FIFO planted under the name: no hang. */
    int acc = mode == CKPT__WF_WRITE ? O_RDWR : O_RDONLY | O_NONBLOCK;
    int fd = open(path, acc | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return ckpt__err_errno(err, errno, "open %s", path);
    int fdd = -1;
    if (w->direct)
        fdd = open(path, acc | O_CLOEXEC | O_NOFOLLOW | O_DIRECT); /* EINVAL on tmpfs */
    ckpt__wfile *f = malloc(sizeof *f);
    if (!f) {
        close(fd);
        if (fdd >= 0)
            close(fdd);
        return ckpt__err_set(err, CKPT_ENOMEM, "open %s: out of memory", path);
    }
    f->fd = fd;
    f->fd_direct = fdd;
    *out = f;
    return 0;
}

static void pw_file_close(ckpt__writer *w, ckpt__wfile *f)
{
    (void)w;
    if (!f)
        return;
    close(f->fd);
    if (f->fd_direct >= 0)
        close(f->fd_direct);
    free(f);
}

static void pw_submit(ckpt__writer *w, ckpt__ioreq *req)
{
    req->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->tail)
        w->tail->next = req;
    else
        w->head = req;
    w->tail = req;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int pw_sync(ckpt__writer *w, ckpt__wfile *f, ckpt__err *err)
{
    (void)w;
    if (fsync(f->fd) != 0)
        return ckpt__err_errno(err, errno, "fsync");
    return 0;
}

static int pw_allocate(ckpt__writer *w, ckpt__wfile *f, uint64_t off, uint64_t len,
                       ckpt__err *err)
{
    (void)w;
    if (len == 0)
        return 0;
    if (fallocate(f->fd, 0, (off_t)off, (off_t)len) == 0)
        return 0;
    if (errno == EOPNOTSUPP || errno == ENOSYS)
        return 0;
    return ckpt__err_errno(err, errno, "reserve %llu bytes at %llu", (unsigned long long)len,
                           (unsigned long long)off);
}

/* pwrite and pread run everywhere. */
static int pw_probe(ckpt__err *err)
{
    (void)err;
    return 0;
}

static int pw_is_direct(const ckpt__wfile *f)
{
    return f->fd_direct >= 0;
}

const ckpt__writer_methods ckpt__writer_pwrite = {
    .version = CKPT__WRITER_VERSION,
    .name = "pwrite",
    .probe = pw_probe,
    .open = pw_open,
    .close = pw_close,
    .file_open = pw_file_open,
    .file_close = pw_file_close,
    .submit = pw_submit,
    .sync = pw_sync,
    .allocate = pw_allocate,
    .is_direct = pw_is_direct,
    .register_buffers = NULL,
};
