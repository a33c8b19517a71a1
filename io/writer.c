/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every writer backend shares: how a request splits into a buffered
 * head, an O_DIRECT body and a buffered tail (writer.h).  O_DIRECT needs
 * the buffer address, the file offset and the length 4 KiB-aligned; a
 * request whose buffer and offset differ in phase goes buffered whole.
 * Invariant: the parts are disjoint, in order, and cover [off, off + n).
 */
#include "io/writer.h"

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
