/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The resharding read (reshard.h for the contract and the invariants it
 * keeps).
 *
 * Chunks are numbered in the order the parts consume them (part by part,
 * each part's chunks in increasing order); chunk `seq` uses buffer
 * seq % nslots.  Two walks of each part (io/assemble.h) run in step: the
 * lister says which chunk to read next, the copier which pieces of a
 * completed chunk go where.  The sequence numbers split like this:
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

#define OPS_MAX 256 /* pieces per device copy-in */

typedef struct reader reader;

/* One chunk buffer and its read. */
typedef struct slot {
    ckpt__ioreq req;
    ckpt__event ev;
    reader *r;
    uint32_t part, chunk;
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
    /* The lister: the part it walks (lopen: its walk is set up). */
    uint32_t lpart;
    int lopen;
    ckpt__overlap lwalk;
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

static void submit(reader *r, uint32_t part, uint32_t c)
{
    uint64_t k = r->submitted++ % r->nslots;
    slot *s = &r->slots[k];
    const ckpt__entry *e = r->parts[part].e;
    memset(&s->req, 0, sizeof s->req);
    s->req.file = r->wf;
    s->req.op = CKPT__IO_READ;
    s->req.buf = r->mem + k * r->slot_bytes;
    s->req.n = (size_t)ckpt__chunk_len(r->idx, e, c);
    s->req.off = e->file_off + (uint64_t)c * r->idx->chunk_bytes;
    s->req.cb = on_read;
    s->req.user = s;
    s->r = r;
    s->part = part;
    s->chunk = c;
    s->done = 0;
    ckpt__writer_submit(r->eng, &s->req);
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

static int run(reader *r, int verify, ckpt__err *err)
{
    const uint64_t hold = (r->nslots + 1) / 2;
    uint64_t seq = 0;        /* the next chunk to consume */
    uint32_t cpart = UINT32_MAX, part, c;
    ckpt__overlap cwalk;     /* the copier's walk of part cpart */
    int listed = 0, rc = 0;
    memset(&cwalk, 0, sizeof cwalk);
    while (!rc) {
        while (!listed && r->submitted - r->released < r->nslots) {
            if (list_next(r, &part, &c))
                submit(r, part, c);
            else
                listed = 1;
        }
        if (seq == r->submitted)
            break;
        slot *s = &r->slots[seq % r->nslots];
        while (!s->done)
            take_one(r);
        const ckpt__reshard_part *p = &r->parts[s->part];
        const uint8_t *buf = s->req.buf;
        /* Inv. 2: verified before any byte of it is copied. */
        rc = ckpt__chunk_check(r->idx, p->e, s->chunk, verify, buf, s->req.res, r->path, err);
        if (!rc && s->part != cpart) {
            cpart = s->part;
            ckpt__overlap_init(&cwalk, r->idx, p->e, &p->box);
        }
        uint64_t in, dof, len;
        while (!rc && ckpt__overlap_next_piece(&cwalk, s->chunk, &in, &dof, &len)) {
            r->ops[r->nops++] = (ckpt__copy){(uint8_t *)p->dst + dof, buf + in, (size_t)len};
            if (r->nops == OPS_MAX)
                rc = flush(r, seq, err); /* this chunk's buffer is still in use */
        }
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
