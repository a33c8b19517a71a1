/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The io_uring writer.  Requests split into parts (ckpt__io_split: buffered
 * head and tail, O_DIRECT body); each part is one SQE, fixed-buffer when
 * the staging pool could be registered.  One reaper thread consumes the
 * completion queue, resubmits short transfers, and runs a request's
 * callback when its last part is done.  Durability (fsync) goes through
 * the ring too.
 *
 * Concurrency: the submission queue is shared by the submitting thread
 * (one at a time, writer.h) and the reaper (resubmissions), so both take
 * sq_mu around get_sqe/submit; the completion queue belongs to the reaper
 * alone.  Invariants:
 *   1. inflight counts parts owned by the kernel; it never exceeds depth,
 *      so the CQ (twice the SQ) cannot overflow.  A short part is
 *      resubmitted in the slot it already holds, so the reaper never waits
 *      for room.
 *   2. A request's callback runs once, after its last part completed.
 *   3. close() only after every request completed: it posts a NOP the
 *      reaper recognises as "stop".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <liburing.h>

#include "io/writer.h"

#define MAX_PIECES 64
#define PIECE_MAX (1ull << 30) /* io_uring registers at most 1 GiB a buffer */

/* user_data: 0 stops the reaper; otherwise a pointer (8-byte aligned)
 * with its low two bits saying what it is: 0..2 part index of a request,
 * 3 a sync_wait. */
#define UD_SYNC 3u
#define UD_MASK 3u

struct ckpt__writer {
    struct io_uring ring;
    pthread_mutex_t sq_mu;
    pthread_cond_t room;
    unsigned depth, inflight;
    int direct;
    pthread_t reaper;
    int reaper_running;
    /* Registered buffers: piece i covers [base + i * piece, ...). */
    uint8_t *reg_base;
    size_t reg_len, piece;
    int npieces;
};

/* A durability request waited for by the caller of sync(). */
typedef struct sync_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, res;
} sync_wait;

static int ur_probe(ckpt__err *err)
{
    const char *fake = getenv("CKPT_TEST_URING_PROBE");
    if (fake && *fake) {
        int e = strcmp(fake, "ENOSYS") == 0 ? ENOSYS : strcmp(fake, "ENOMEM") == 0 ? ENOMEM
                                                                                   : EPERM;
        return ckpt__err_set(err, CKPT_EUNSUPPORTED,
                             "io_uring refused: %s (simulated by CKPT_TEST_URING_PROBE)",
                             strerror(e));
    }
    struct io_uring r;
    int rc = io_uring_queue_init(2, &r, 0);
    if (rc < 0)
        return ckpt__err_set(err, CKPT_EUNSUPPORTED, "io_uring refused: %s%s", strerror(-rc),
                             rc == -EPERM ? " (seccomp or kernel.io_uring_disabled)" : "");
    io_uring_queue_exit(&r);
    return 0;
}

/* Index of the registered piece holding [buf, buf + n), or -1. */
static int piece_of(const ckpt__writer *w, const void *buf, uint64_t n)
{
    const uint8_t *p = buf;
    if (!w->npieces || p < w->reg_base || p + n > w->reg_base + w->reg_len)
        return -1;
    size_t i = (size_t)(p - w->reg_base) / w->piece;
    if (p + n > w->reg_base + (i + 1) * w->piece)
        return -1;
    return (int)i;
}

/* Queues part i of q (its remaining bytes); sq_mu held, a slot reserved. */
static void prep_part(ckpt__writer *w, ckpt__ioreq *q, int i)
{
    struct ckpt__iopart *p = &q->part[i];
    /* Never NULL: the SQ has depth entries and inflight <= depth. */
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
    uint8_t *buf = (uint8_t *)q->buf + (p->off - q->off) + p->done;
    unsigned n = (unsigned)(p->len - p->done);
    uint64_t off = p->off + p->done;
    int fd = p->direct ? q->file->fd_direct : q->file->fd;
    int k = piece_of(w, buf, n);
    if (q->op == CKPT__IO_WRITE) {
        if (k >= 0)
            io_uring_prep_write_fixed(sqe, fd, buf, n, off, k);
        else
            io_uring_prep_write(sqe, fd, buf, n, off);
    } else {
        if (k >= 0)
            io_uring_prep_read_fixed(sqe, fd, buf, n, off, k);
        else
            io_uring_prep_read(sqe, fd, buf, n, off);
    }
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)q | (uint64_t)i);
}

/* Submits what was prepared; returns 0 or -errno (sq_mu held). */
static int flush_sq(ckpt__writer *w)
{
    for (;;) {
        int r = io_uring_submit(&w->ring);
        if (r >= 0 || (r != -EINTR && r != -EAGAIN))
            return r < 0 ? r : 0;
    }
}

static void finish(ckpt__ioreq *q)
{
    int64_t total = 0;
    for (int i = 0; i < q->nparts; i++)
        total += (int64_t)q->part[i].done;
    q->res = q->err ? -(int64_t)q->err : total;
    q->cb(q);
}

/* One part completed with res; returns 1 when its slot is free again. */
static int complete_part(ckpt__writer *w, ckpt__ioreq *q, int i, int res)
{
    struct ckpt__iopart *p = &q->part[i];
    int again = 0;
    if (res == -EINTR || res == -EAGAIN) {
        again = 1;
    } else if (res < 0) {
        if (!q->err)
            q->err = -res;
    } else if (res == 0) {
        /* Writes: the device takes no more; reads: end of file. */
        if (q->op == CKPT__IO_WRITE && !q->err)
            q->err = ENOSPC;
    } else {
        p->done += (uint64_t)res;
        again = p->done < p->len; /* short transfer: ask for the rest */
    }
    if (again) {
        pthread_mutex_lock(&w->sq_mu);
        prep_part(w, q, i);
        int r = flush_sq(w);
        pthread_mutex_unlock(&w->sq_mu);
        if (r == 0)
            return 0;
        if (!q->err)
            q->err = -r;
    }
    if (--q->parts_left == 0)
        finish(q);
    return 1;
}

static void *reap(void *arg)
{
    ckpt__writer *w = arg;
    for (;;) {
        struct io_uring_cqe *cqe;
        int r = io_uring_wait_cqe(&w->ring, &cqe);
        if (r == -EINTR)
            continue;
        if (r < 0)
            break; /* the ring is broken: nothing more will complete */
        uint64_t ud = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&w->ring, cqe);
        if (ud == 0)
            break;
        /* The submitter filled the request under sq_mu before the kernel saw
         * it; taking the lock once makes that ordering visible to tools
         * (TSan cannot see through the ring). */
        pthread_mutex_lock(&w->sq_mu);
        pthread_mutex_unlock(&w->sq_mu);
        int freed = 1;
        if ((ud & UD_MASK) == UD_SYNC) {
            sync_wait *s = (sync_wait *)(uintptr_t)(ud & ~(uint64_t)UD_MASK);
            pthread_mutex_lock(&s->mu);
            s->res = res;
            s->done = 1;
            pthread_cond_signal(&s->cv);
            pthread_mutex_unlock(&s->mu);
        } else {
            ckpt__ioreq *q = (ckpt__ioreq *)(uintptr_t)(ud & ~(uint64_t)UD_MASK);
            freed = complete_part(w, q, (int)(ud & UD_MASK), res);
        }
        if (freed) {
            pthread_mutex_lock(&w->sq_mu);
            w->inflight--;
            pthread_cond_broadcast(&w->room);
            pthread_mutex_unlock(&w->sq_mu);
        }
    }
    return NULL;
}

/* Reserves n slots; sq_mu held on return. */
static void reserve(ckpt__writer *w, unsigned n)
{
    pthread_mutex_lock(&w->sq_mu);
    while (w->inflight + n > w->depth)
        pthread_cond_wait(&w->room, &w->sq_mu);
    w->inflight += n;
}

static void ur_submit(ckpt__writer *w, ckpt__ioreq *q)
{
    ckpt__io_split(q, q->file->fd_direct >= 0);
    q->parts_left = q->nparts;
    q->err = 0;
    reserve(w, (unsigned)q->nparts); /* takes sq_mu: see reap() */
    for (int i = 0; i < q->nparts; i++)
        prep_part(w, q, i);
    int r = flush_sq(w);
    pthread_mutex_unlock(&w->sq_mu);
    if (r < 0) {
        /* Nothing reached the kernel: complete the request here. */
        pthread_mutex_lock(&w->sq_mu);
        w->inflight -= (unsigned)q->nparts;
        pthread_cond_broadcast(&w->room);
        pthread_mutex_unlock(&w->sq_mu);
        q->res = r;
        q->cb(q);
    }
}

static int ur_sync(ckpt__writer *w, ckpt__wfile *f, ckpt__err *err)
{
    sync_wait s = {.done = 0, .res = 0};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    reserve(w, 1);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
    io_uring_prep_fsync(sqe, f->fd, 0);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)&s | UD_SYNC);
    int r = flush_sq(w);
    if (r < 0) {
        w->inflight--;
        pthread_mutex_unlock(&w->sq_mu);
        s.res = r;
    } else {
        pthread_mutex_unlock(&w->sq_mu);
        pthread_mutex_lock(&s.mu);
        while (!s.done)
            pthread_cond_wait(&s.cv, &s.mu);
        pthread_mutex_unlock(&s.mu);
    }
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    if (s.res < 0)
        return ckpt__err_errno(err, -s.res, "fsync (io_uring)");
    return 0;
}

static void ur_close(ckpt__writer *w)
{
    if (!w)
        return;
    if (w->reaper_running) {
        reserve(w, 1);
        struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, 0);
        flush_sq(w);
        pthread_mutex_unlock(&w->sq_mu);
        pthread_join(w->reaper, NULL);
    }
    if (w->npieces)
        io_uring_unregister_buffers(&w->ring);
    io_uring_queue_exit(&w->ring);
    pthread_cond_destroy(&w->room);
    pthread_mutex_destroy(&w->sq_mu);
    free(w);
}

static int ur_open(const ckpt__writer_config *cfg, ckpt__writer **out, ckpt__err *err)
{
    *out = NULL;
    if (cfg->queue_depth < 1 || cfg->queue_depth > 4096)
        return ckpt__err_set(err, CKPT_EINVAL, "io_uring writer: queue depth %d (1..4096)",
                             cfg->queue_depth);
    int rc = ur_probe(err);
    if (rc)
        return rc;
    ckpt__writer *w = calloc(1, sizeof *w);
    if (!w)
        return ckpt__err_set(err, CKPT_ENOMEM, "io_uring writer: out of memory");
    /* A request can need three slots at once (head, body, tail). */
    w->depth = cfg->queue_depth < 4 ? 4u : (unsigned)cfg->queue_depth;
    w->direct = cfg->direct;
    unsigned depth = w->depth;
    int r = io_uring_queue_init(depth, &w->ring, 0);
    if (r < 0) {
        free(w);
        return ckpt__err_set(err, CKPT_EUNSUPPORTED, "io_uring_queue_init(%u): %s", depth,
                             strerror(-r));
    }
    pthread_mutex_init(&w->sq_mu, NULL);
    pthread_cond_init(&w->room, NULL);
    r = pthread_create(&w->reaper, NULL, reap, w);
    if (r) {
        ur_close(w);
        return ckpt__err_errno(err, r, "io_uring writer: pthread_create");
    }
    w->reaper_running = 1;
    *out = w;
    return 0;
}

static int ur_register(ckpt__writer *w, void *base, size_t len, size_t unit, ckpt__err *err)
{
    if (unit == 0 || unit > PIECE_MAX)
        return ckpt__err_set(err, CKPT_EINVAL, "io_uring: register unit %zu", unit);
    size_t piece = (size_t)(PIECE_MAX / unit) * unit;
    size_t n = (len + piece - 1) / piece;
    if (n > MAX_PIECES)
        return ckpt__err_set(err, CKPT_EUNSUPPORTED,
                             "io_uring: %zu bytes need %zu pieces (at most %d): unregistered",
                             len, n, MAX_PIECES);
    struct iovec iov[MAX_PIECES];
    for (size_t i = 0; i < n; i++) {
        iov[i].iov_base = (uint8_t *)base + i * piece;
        iov[i].iov_len = i + 1 < n ? piece : len - i * piece;
    }
    int r = io_uring_register_buffers(&w->ring, iov, (unsigned)n);
    if (r < 0) {
        struct rlimit rl;
        getrlimit(RLIMIT_MEMLOCK, &rl);
        return ckpt__err_set(err, CKPT_EUNSUPPORTED,
                             "io_uring: registering %zu bytes of staging failed (%s; "
                             "RLIMIT_MEMLOCK %llu bytes): writes go unregistered",
                             len, strerror(-r), (unsigned long long)rl.rlim_cur);
    }
    w->reg_base = base;
    w->reg_len = len;
    w->piece = piece;
    w->npieces = (int)n;
    return 0;
}

static int ur_file_open(ckpt__writer *w, const char *path, int mode, int fd,
                        ckpt__wfile **out, ckpt__err *err)
{
    return ckpt__wfile_open(path, mode, w->direct, fd, out, err);
}

const ckpt__writer_methods ckpt__writer_uring = {
    .version = CKPT__WRITER_VERSION,
    .name = "uring",
    .probe = ur_probe,
    .open = ur_open,
    .close = ur_close,
    .file_open = ur_file_open,
    .file_close = ckpt__wfile_close,
    .submit = ur_submit,
    .sync = ur_sync,
    .allocate = ckpt__wfile_allocate,
    .is_direct = ckpt__wfile_is_direct,
    .register_buffers = ur_register,
};
