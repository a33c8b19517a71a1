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
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/writer.h"

#define MAX_THREADS 64

/* The requests wait in the one worker pool (base/workers.h), whose
 * threads serve them; the pool keeps the FIFO and the shutdown rule. */
struct ckpt__writer {
    ckpt__workers *pool;
    int direct;
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

static void serve_task(ckpt__task *t)
{
    ckpt__ioreq *q = (ckpt__ioreq *)((char *)t - offsetof(ckpt__ioreq, task));
    q->res = serve(q);
    q->cb(q);
}

static void pw_close(ckpt__writer *w)
{
    if (!w)
        return;
    ckpt__workers_close(w->pool);
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
    w->direct = cfg->direct;
    if (ckpt__workers_open(cfg->threads, &w->pool, err)) {
        free(w);
        return ckpt__err_prefix(err, "pwrite writer");
    }
    *out = w;
    return 0;
}

static int pw_file_open(ckpt__writer *w, const char *path, int mode, int fd,
                        ckpt__wfile **out, ckpt__err *err)
{
    return ckpt__wfile_open(path, mode, w->direct, fd, out, err);
}

static void pw_submit(ckpt__writer *w, ckpt__ioreq *req)
{
    req->task.fn = serve_task;
    ckpt__workers_submit(w->pool, &req->task);
}

static int pw_sync(ckpt__writer *w, ckpt__wfile *f, ckpt__err *err)
{
    (void)w;
    if (fsync(f->fd) != 0)
        return ckpt__err_errno(err, errno, "fsync");
    return 0;
}

/* pwrite and pread run everywhere. */
static int pw_probe(ckpt__err *err)
{
    (void)err;
    return 0;
}

const ckpt__writer_methods ckpt__writer_pwrite = {
    .version = CKPT__WRITER_VERSION,
    .name = "pwrite",
    .probe = pw_probe,
    .open = pw_open,
    .close = pw_close,
    .file_open = pw_file_open,
    .file_close = ckpt__wfile_close,
    .submit = pw_submit,
    .sync = pw_sync,
    .allocate = ckpt__wfile_allocate,
    .is_direct = ckpt__wfile_is_direct,
    .register_buffers = NULL,
};
