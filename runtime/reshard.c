/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The resharding read (reshard.h for the contract and the invariants it
 * keeps).
 *
 * Chunks are read in the order the parts consume them (part by part,
 * each part's chunks in increasing order).  One read fills one buffer
 * (slot) of up to a chunk's bytes: one chunk, or several that lie next to
 * each other in the file (small entries are packed tightly, so the slices
 * of many small tensors come in one read, as the pipeline writes them).
 * Reads are numbered in order; read `seq` uses slot seq % nslots.  Two
 * walks of each part (io/assemble.h) run in step: the lister says which
 * chunk to read next, the copier which pieces of a completed chunk go
 * where.  The sequence numbers split like this:
 *
 *     [0, released)          done: their buffers may be read into again
 *     [released, consumed)   copied, but a copy-in from them may be pending
 *     [consumed, submitted)  read in flight, or completed and waiting
 *
 * so submitted - released <= nslots bounds both the reads in flight and
 * the memory.  Copy-ins are batched (up to OPS_MAX pieces); consumed
 * buffers are held until a batch goes out, at most half the ring, so the
 * other half keeps reading meanwhile.
 *
 * Concurrency: the caller's thread owns everything here; a backend thread
 * only completes a request (the backend sets req->res) and posts the
 * slot's event, and the caller reads the buffer and req->res only after
 * taking that event from the mailbox.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "io/assemble.h"
#include "runtime/backend.h"
#include "runtime/reshard.h"

#define OPS_MAX 256  /* pieces per device copy-in */
#define ITEMS_MAX 64 /* chunks per read */

typedef struct reader reader;

/* A chunk of a read: chunk `chunk` of part `part`, n bytes at `at` of the
 * slot's buffer. */
typedef struct item {
    uint32_t part, chunk;
    uint64_t at, n;
} item;

/* One chunk buffer and its read. */
typedef struct slot {
    ckpt__ioreq req;
    ckpt__event ev;
    reader *r;
    item items[ITEMS_MAX];
    uint32_t nitems;
    int done; /* its completion was taken from the mailbox */
} slot;

struct reader {
    ckpt__engine *eng;
    const ckpt__index *idx;
    const ckpt__reshard_part *parts;
    uint32_t nparts;
    ckpt__wfile *wf;
    const char *path;
    void *stream;
    ckpt__mbox mbox;
    slot *slots;
    uint32_t nslots;
    uint64_t slot_bytes;
    uint8_t *mem;
    /* The lister: the part it walks (lopen: its walk is set up), and the
     * chunk it listed but no read took yet (have_next). */
    uint32_t lpart;
    int lopen;
    ckpt__overlap lwalk;
    int have_next;
    uint32_t next_part, next_chunk;
    uint64_t submitted, completed, released;
    ckpt__copy ops[OPS_MAX];
    size_t nops;
};

/* On a backend thread (or the caller's, for an injected fault). */
static void on_read(ckpt__ioreq *req)
{
    slot *s = req->user;
    ckpt__mbox_post(&s->r->mbox, &s->ev, 1);
}

/* Takes one completion from the mailbox. */
static void take_one(reader *r)
{
    ckpt__event *ev = ckpt__mbox_wait(&r->mbox);
    slot *s = (slot *)(void *)((char *)ev - offsetof(slot, ev));
    s->done = 1;
    r->completed++;
}

/* The next chunk to read: 1 with its part and chunk, 0 when every part's
 * chunks have been listed (Inv. 1). */
static int list_next(reader *r, uint32_t *part, uint32_t *c)
{
    while (r->lpart < r->nparts) {
        const ckpt__reshard_part *p = &r->parts[r->lpart];
        if (!r->lopen)
            r->lopen = ckpt__overlap_init(&r->lwalk, r->idx, p->e, &p->box);
        if (r->lopen && ckpt__overlap_next_chunk(&r->lwalk, c)) {
            *part = r->lpart;
            return 1;
        }
        r->lpart++;
        r->lopen = 0;
    }
    return 0;
}

/* The next chunk to read, without taking it: 1 with its part and chunk,
 * 0 when none is left. */
static int peek(reader *r, uint32_t *part, uint32_t *c)
{
    if (!r->have_next)
        r->have_next = list_next(r, &r->next_part, &r->next_chunk);
    *part = r->next_part;
    *c = r->next_chunk;
    return r->have_next;
}

/* Submits the next read into the next slot: the next chunk and those
 * after it that continue it in the file and fit the buffer.  0 when no
 * chunk is left. */
static int submit_next(reader *r)
{
    uint32_t part, c;
    if (!peek(r, &part, &c))
        return 0;
    uint64_t k = r->submitted++ % r->nslots;
    slot *s = &r->slots[k];
    uint64_t off = 0, len = 0;
    s->nitems = 0;
    do {
        const ckpt__entry *e = r->parts[part].e;
        uint64_t n = ckpt__chunk_len(r->idx, e, c);
        uint64_t at = e->file_off + (uint64_t)c * r->idx->chunk_bytes;
        if (s->nitems &&
            (at != off + len || len + n > r->slot_bytes || s->nitems == ITEMS_MAX))
            break;
        if (!s->nitems)
            off = at;
        s->items[s->nitems++] = (item){part, c, len, n};
        len += n;
        r->have_next = 0;
    } while (peek(r, &part, &c));
    memset(&s->req, 0, sizeof s->req);
    s->req.file = r->wf;
    s->req.op = CKPT__IO_READ;
    s->req.buf = r->mem + k * r->slot_bytes;
    s->req.n = (size_t)len;
    s->req.off = off;
    s->req.cb = on_read;
    s->req.user = s;
    s->r = r;
    s->done = 0;
    ckpt__writer_submit(r->eng, &s->req);
    return 1;
}

/* What the read of slot s gave item it: its bytes, fewer when the file
 * ended inside it, or the read's -errno. */
static int64_t item_res(const slot *s, const item *it)
{
    int64_t res = s->req.res;
    if (res < 0 || (uint64_t)res >= it->at + it->n)
        return res < 0 ? res : (int64_t)it->n;
    return (uint64_t)res > it->at ? res - (int64_t)it->at : 0;
}

/* Hands the pending pieces to the device; when it returns, the buffers of
 * chunks before `upto` may be read into again (Inv. 3). */
static int flush(reader *r, uint64_t upto, ckpt__err *err)
{
    int rc = r->nops ? ckpt__device_copy_in(r->eng, r->ops, r->nops, r->stream, err) : 0;
    r->nops = 0;
    r->released = upto;
    return rc;
}

/* Copies the pieces of the chunks of slot s (read seq), each verified
 * first (Inv. 2). */
static int consume(reader *r, slot *s, uint64_t seq, int verify, uint32_t *cpart,
                   ckpt__overlap *cwalk, ckpt__err *err)
{
    const uint8_t *base = s->req.buf;
    int rc = 0;
    for (uint32_t i = 0; !rc && i < s->nitems; i++) {
        const item *it = &s->items[i];
        const ckpt__reshard_part *p = &r->parts[it->part];
        const uint8_t *buf = base + it->at;
        rc = ckpt__chunk_check(r->idx, p->e, it->chunk, verify, buf, item_res(s, it), r->path,
                               err);
        if (!rc && it->part != *cpart) {
            *cpart = it->part;
            ckpt__overlap_init(cwalk, r->idx, p->e, &p->box);
        }
        uint64_t in, dof, len;
        while (!rc && ckpt__overlap_next_piece(cwalk, it->chunk, &in, &dof, &len)) {
            r->ops[r->nops++] = (ckpt__copy){(uint8_t *)p->dst + dof, buf + in, (size_t)len};
            if (r->nops == OPS_MAX)
                rc = flush(r, seq, err); /* this slot's buffer is still in use */
        }
    }
    return rc;
}

static int run(reader *r, int verify, ckpt__err *err)
{
    const uint64_t hold = (r->nslots + 1) / 2;
    uint64_t seq = 0; /* the next read to consume */
    uint32_t cpart = UINT32_MAX;
    ckpt__overlap cwalk; /* the copier's walk of part cpart */
    int listed = 0, rc = 0;
    memset(&cwalk, 0, sizeof cwalk);
    while (!rc) {
        while (!listed && r->submitted - r->released < r->nslots)
            listed = !submit_next(r);
        if (seq == r->submitted)
            break;
        slot *s = &r->slots[seq % r->nslots];
        while (!s->done)
            take_one(r);
        rc = consume(r, s, seq, verify, &cpart, &cwalk, err);
        seq++;
        if (!rc && r->nops == 0)
            r->released = seq;
        else if (!rc && seq - r->released >= hold)
            rc = flush(r, seq, err);
    }
    if (!rc)
        rc = flush(r, seq, err);
    /* Inv. 4, also after a failure. */
    while (r->completed < r->submitted)
        take_one(r);
    return rc;
}

int ckpt__reshard_read(ckpt__engine *eng, const ckpt__index *idx, ckpt__wfile *wf,
                       const ckpt__reshard_part *parts, uint32_t n, int depth, int verify,
                       const char *path, void *stream, ckpt__err *err)
{
    reader *r = calloc(1, sizeof *r);
    if (!r)
        return ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", path);
    r->eng = eng;
    r->idx = idx;
    r->parts = parts;
    r->nparts = n;
    r->wf = wf;
    r->path = path;
    r->stream = stream;
    /* Buffers 4 KiB-aligned, so a chunk of a big entry (4 KiB-aligned in
     * the file) can be read with O_DIRECT. */
    r->slot_bytes = (idx->chunk_bytes + CKPT__STAGE_ALIGN - 1) / CKPT__STAGE_ALIGN *
                    CKPT__STAGE_ALIGN;
    uint64_t fit = eng->staging.bytes / r->slot_bytes;
    uint64_t want = depth > 1 ? (uint64_t)depth : 1;
    r->nslots = (uint32_t)(fit < want ? fit : want);
    r->mem = eng->staging.base;
    uint8_t *own = NULL;
    if (r->nslots == 0) {
        /* The checkpoint's chunks are bigger than this context's staging
         * pool: one buffer of its own, one read at a time. */
        r->nslots = 1;
        r->mem = own = aligned_alloc(CKPT__STAGE_ALIGN, (size_t)r->slot_bytes);
    }
    r->slots = calloc(r->nslots, sizeof *r->slots);
    int rc;
    if (!r->mem || !r->slots) {
        rc = ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", path);
    } else {
        ckpt__mbox_init(&r->mbox);
        rc = run(r, verify, err);
        ckpt__mbox_destroy(&r->mbox);
    }
    free(own);
    free(r->slots);
    free(r);
    return rc;
}
