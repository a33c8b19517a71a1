/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The backend wrappers (backend.h): every call the core makes into a
 * writer, device or comm table, and the fault sites that sit on them.
 * A wrapper adds nothing but its fault site: the backend's contract is
 * the wrapper's.
 */
#include <errno.h>

#include "runtime/backend.h"
#include "runtime/engine.h"

/* ---- writer ------------------------------------------------------------------ */

int ckpt__writer_probe(const ckpt__writer_methods *wm, ckpt__err *err)
{
    return wm->probe(err);
}

int ckpt__writer_open(ckpt__engine *eng, const ckpt__writer_config *cfg, ckpt__err *err)
{
    return eng->wm->open(cfg, &eng->w, err);
}

void ckpt__writer_close(ckpt__engine *eng)
{
    eng->wm->close(eng->w);
}

int ckpt__writer_file_open(ckpt__engine *eng, const char *path, int mode, int fd,
                           ckpt__wfile **out, ckpt__err *err)
{
    return eng->wm->file_open(eng->w, path, mode, fd, out, err);
}

void ckpt__writer_file_close(ckpt__engine *eng, ckpt__wfile *f)
{
    eng->wm->file_close(eng->w, f);
}

void ckpt__writer_submit(ckpt__engine *eng, ckpt__ioreq *req)
{
    int site = req->op == CKPT__IO_WRITE ? CKPT__FAULT_WRITE : CKPT__FAULT_READ;
    switch (ckpt__fault_hit(eng->fault, site)) {
    case CKPT__FAIL_EIO:
        req->res = -EIO;
        break;
    case CKPT__FAIL_ENOSPC:
        req->res = -ENOSPC;
        break;
    case CKPT__FAIL_SHORT:
        req->res = (int64_t)(req->n / 2);
        break;
    default:
        if (req->op != CKPT__IO_WRITE)
            atomic_fetch_add(&eng->read_bytes, (uint64_t)req->n);
        eng->wm->submit(eng->w, req);
        return;
    }
    req->cb(req);
}

int ckpt__writer_sync(ckpt__engine *eng, ckpt__wfile *f, ckpt__err *err)
{
    int rc = ckpt__fault_check(eng->fault, CKPT__FAULT_SYNC, "fsync rank file", err);
    return rc ? rc : eng->wm->sync(eng->w, f, err);
}

int ckpt__writer_allocate(ckpt__engine *eng, ckpt__wfile *f, uint64_t off, uint64_t len,
                          ckpt__err *err)
{
    return eng->wm->allocate(eng->w, f, off, len, err);
}

int ckpt__writer_is_direct(const ckpt__engine *eng, const ckpt__wfile *f)
{
    return eng->wm->is_direct(f);
}

int ckpt__writer_register_buffers(ckpt__engine *eng, void *base, size_t len, size_t unit,
                                  ckpt__err *err)
{
    if (!eng->wm->register_buffers)
        return 0;
    return eng->wm->register_buffers(eng->w, base, len, unit, err);
}

/* ---- device ------------------------------------------------------------------ */

int ckpt__device_probe(const ckpt__device_methods *dm, ckpt__err *err)
{
    return dm->probe(err);
}

int ckpt__device_open(ckpt__engine *eng, ckpt__err *err)
{
    return eng->dm->open(&eng->dev, err);
}

void ckpt__device_close(ckpt__engine *eng)
{
    eng->dm->close(eng->dev);
}

int ckpt__device_register_staging(ckpt__engine *eng, void *base, size_t n, ckpt__err *err)
{
    return eng->dm->register_staging(eng->dev, base, n, err);
}

int ckpt__device_check_tensor(ckpt__engine *eng, const void *ptr, size_t n, ckpt__err *err)
{
    return eng->dm->check_tensor(eng->dev, ptr, n, err);
}

int ckpt__device_save_begin(ckpt__engine *eng, void *stream, ckpt__err *err)
{
    return eng->dm->save_begin(eng->dev, stream, err);
}

void ckpt__device_copy_out(ckpt__engine *eng, ckpt__copyreq *req)
{
    if (ckpt__fault_hit(eng->fault, CKPT__FAULT_COPY) == CKPT__FAIL_NONE) {
        eng->dm->copy_out(eng->dev, req);
        return;
    }
    ckpt__err e;
    ckpt__err_set(&e, CKPT_EDEVICE, "%s copy_out of %zu copies: injected fault", eng->dm->name,
                  req->nops);
    req->cb(req, &e);
}

int ckpt__device_fence(ckpt__engine *eng, void *stream, ckpt__err *err)
{
    return eng->dm->fence(eng->dev, stream, err);
}

int ckpt__device_copy_in(ckpt__engine *eng, const ckpt__copy *ops, size_t nops, void *stream,
                         ckpt__err *err)
{
    return eng->dm->copy_in(eng->dev, ops, nops, stream, err);
}

/* ---- comm -------------------------------------------------------------------- */

/* A collective's fault site: CKPT_ECOMM the way a backend reports a failed
 * collective, whatever the armed action (a comm has no errno). */
static int comm_fault(ckpt_comm *c, ckpt__fault *f, int site, const char *what,
                      ckpt__err *err)
{
    if (ckpt__fault_hit(f, site) == CKPT__FAIL_NONE)
        return 0;
    return ckpt__err_set(err, CKPT_ECOMM, "%s %s: injected fault", c->m->name, what);
}

int ckpt__comm_rank(const ckpt_comm *c)
{
    return c->m->rank(c);
}

int ckpt__comm_size(const ckpt_comm *c)
{
    return c->m->size(c);
}

int ckpt__comm_barrier(ckpt_comm *c, ckpt__fault *f, ckpt__err *err)
{
    int rc = comm_fault(c, f, CKPT__FAULT_BARRIER, "barrier", err);
    return rc ? rc : c->m->barrier(c, err);
}

int ckpt__comm_bcast(ckpt_comm *c, ckpt__fault *f, void *buf, size_t n, int root,
                     ckpt__err *err)
{
    int rc = comm_fault(c, f, CKPT__FAULT_BCAST, "bcast", err);
    return rc ? rc : c->m->bcast(c, buf, n, root, err);
}

int ckpt__comm_allreduce(ckpt_comm *c, ckpt__fault *f, int64_t *vals, int n, int op,
                         ckpt__err *err)
{
    int rc = comm_fault(c, f, CKPT__FAULT_ALLREDUCE, "allreduce", err);
    return rc ? rc : c->m->allreduce_i64(c, vals, n, op, err);
}

int ckpt__comm_gather(ckpt_comm *c, ckpt__fault *f, const void *send, size_t n, void *recv,
                      int root, ckpt__err *err)
{
    int rc = comm_fault(c, f, CKPT__FAULT_GATHER, "gather", err);
    return rc ? rc : c->m->gather(c, send, n, recv, root, err);
}

void ckpt__comm_destroy(ckpt_comm *c)
{
    c->m->destroy(c);
}

int ckpt__comm_has_notes(const ckpt_comm *c)
{
    return c->m->note_send && c->m->note_recv;
}

int ckpt__comm_note_send(ckpt_comm *c, int to, const void *buf, ckpt__err *err)
{
    return c->m->note_send(c, to, buf, err);
}

int ckpt__comm_note_recv(ckpt_comm *c, ckpt__fault *f, void *buf, double timeout_s,
                         ckpt__err *err)
{
    int rc = comm_fault(c, f, CKPT__FAULT_NOTE, "note", err);
    return rc ? rc : c->m->note_recv(c, buf, timeout_s, err);
}

int ckpt__comm_has_exchange(const ckpt_comm *c)
{
    return c->m->exchange != NULL;
}

int ckpt__comm_exchange(ckpt_comm *c, ckpt__fault *f, const ckpt__msg *sends, int nsend,
                        ckpt__msg *recvs, int nrecv, double timeout_s, ckpt__err *err)
{
    if (!c->m->exchange)
        return ckpt__err_set(err, CKPT_EUNSUPPORTED, "the %s comm offers no exchange",
                             c->m->name);
    int rc = comm_fault(c, f, CKPT__FAULT_EXCHANGE, "exchange", err);
    return rc ? rc : c->m->exchange(c, sends, nsend, recvs, nrecv, timeout_s, err);
}
