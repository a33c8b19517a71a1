/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every writer backend shares: how a request splits into a buffered
 * head, an O_DIRECT body and a buffered tail (writer.h).  O_DIRECT needs
 * the buffer address, the file offset and the length 4 KiB-aligned; a
 * request whose buffer and offset differ in phase goes buffered whole.
 * Invariant: the parts are disjoint, in order, and cover [off, off + n).
 * Also the file methods, which do not depend on how requests are served.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "io/writer.h"

int ckpt__wfile_open(const char *path, int mode, int direct, int fd, ckpt__wfile **out,
                     ckpt__err *err)
{
    *out = NULL;
    /* O_NONBLOCK only matters for a FIFO planted under the name: no hang. */
    int acc = mode == CKPT__WF_WRITE ? O_RDWR : O_RDONLY | O_NONBLOCK;
    if (fd < 0)
        fd = open(path, acc | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return ckpt__err_errno(err, errno, "open %s", path);
    int fdd = -1;
    if (direct)
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

void ckpt__wfile_close(ckpt__writer *w, ckpt__wfile *f)
{
    (void)w;
    if (!f)
        return;
    close(f->fd);
    if (f->fd_direct >= 0)
        close(f->fd_direct);
    free(f);
}

int ckpt__wfile_allocate(ckpt__writer *w, ckpt__wfile *f, uint64_t off, uint64_t len,
                         ckpt__err *err)
{
    (void)w;
    if (len == 0 || fallocate(f->fd, 0, (off_t)off, (off_t)len) == 0)
        return 0;
    if (errno == EOPNOTSUPP || errno == ENOSYS)
        return 0;
    return ckpt__err_errno(err, errno, "reserve %llu bytes at %llu", (unsigned long long)len,
                           (unsigned long long)off);
}

int ckpt__wfile_is_direct(const ckpt__wfile *f)
{
    return f->fd_direct >= 0;
}

void ckpt__io_split(ckpt__ioreq *q, int have_direct)
{
    const uint64_t a = CKPT__DIO_ALIGN;
    uint64_t off = q->off, n = q->n;
    q->nparts = 0;
    if (!have_direct || ((uintptr_t)q->buf % a) != (off % a) || n < a) {
        q->part[q->nparts++] = (struct ckpt__iopart){off, n, 0, 0};
        return;
    }
    uint64_t head = (a - off % a) % a;
    uint64_t body = (n - head) / a * a;
    uint64_t tail = n - head - body;
    if (head)
        q->part[q->nparts++] = (struct ckpt__iopart){off, head, 0, 0};
    if (body)
        q->part[q->nparts++] = (struct ckpt__iopart){off + head, body, 0, 1};
    if (tail)
        q->part[q->nparts++] = (struct ckpt__iopart){off + head + body, tail, 0, 0};
}
