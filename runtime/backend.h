/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The thin wrappers through which the core calls its backends: one per
 * method of the writer table (io/writer.h), the device table
 * (runtime/device.h) and the comm table (runtime/comm.h).  Nothing else
 * calls through a table: the wrappers are where the numbered fault sites
 * of the backends sit (fault_hooks.h), so a test can fail any backend call
 * the runtime makes, and where a later tier or tracing hook would go.
 *
 * The writer and device wrappers act on an engine's backend (engine.h);
 * the comm wrappers take the comm and the fault table (NULL: no faults)
 * of its context.  Each wrapper has its method's contract; a fault site
 * fails the call without reaching the backend, the way the backend would
 * report the failure (an errno for I/O, CKPT_EDEVICE for a copy,
 * CKPT_ECOMM for a collective), with "(injected fault)" in the message.
 * C++-safe, so tests/internal can call the comm wrappers.
 */
#ifndef CKPT_RUNTIME_BACKEND_H
#define CKPT_RUNTIME_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "io/writer.h"
#include "runtime/comm.h"
#include "runtime/device.h"
#include "base/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ckpt__engine ckpt__engine;
struct ckpt__fault;

/* ---- writer (eng->wm on eng->w) ------------------------------------------- */

/* Whether the backend can run here, before any open. */
int ckpt__writer_probe(const ckpt__writer_methods *wm, ckpt__err *err);
int ckpt__writer_open(ckpt__engine *eng, const ckpt__writer_config *cfg, ckpt__err *err);
void ckpt__writer_close(ckpt__engine *eng);
/* fd: as the method's (io/writer.h), -1 to open path. */
int ckpt__writer_file_open(ckpt__engine *eng, const char *path, int mode, int fd,
                           ckpt__wfile **out, ckpt__err *err);
void ckpt__writer_file_close(ckpt__engine *eng, ckpt__wfile *f);
/* Sites CKPT__FAULT_WRITE and CKPT__FAULT_READ: the request completes at
 * once, on the calling thread, with the injected result. */
void ckpt__writer_submit(ckpt__engine *eng, ckpt__ioreq *req);
/* Site CKPT__FAULT_SYNC. */
int ckpt__writer_sync(ckpt__engine *eng, ckpt__wfile *f, ckpt__err *err);
int ckpt__writer_allocate(ckpt__engine *eng, ckpt__wfile *f, uint64_t off, uint64_t len,
                          ckpt__err *err);
int ckpt__writer_is_direct(const ckpt__engine *eng, const ckpt__wfile *f);
/* 0 when the backend has no such method (it then works unregistered). */
int ckpt__writer_register_buffers(ckpt__engine *eng, void *base, size_t len, size_t unit,
                                  ckpt__err *err);

/* ---- device (eng->dm on eng->dev) ----------------------------------------- */

int ckpt__device_probe(const ckpt__device_methods *dm, ckpt__err *err);
int ckpt__device_open(ckpt__engine *eng, ckpt__err *err);
void ckpt__device_close(ckpt__engine *eng);
int ckpt__device_register_staging(ckpt__engine *eng, void *base, size_t n, ckpt__err *err);
int ckpt__device_check_tensor(ckpt__engine *eng, const void *ptr, size_t n, ckpt__err *err);
int ckpt__device_save_begin(ckpt__engine *eng, void *stream, ckpt__err *err);
/* Site CKPT__FAULT_COPY: the request fails at once, on the calling thread,
 * with CKPT_EDEVICE and a message the way a backend reports a failed copy.
 * It may so complete ahead of requests queued before it; the pipeline does
 * not depend on the order of a failed request's completion. */
void ckpt__device_copy_out(ckpt__engine *eng, ckpt__copyreq *req);
int ckpt__device_fence(ckpt__engine *eng, void *stream, ckpt__err *err);
int ckpt__device_copy_in(ckpt__engine *eng, const ckpt__copy *ops, size_t nops, void *stream,
                         ckpt__err *err);

/* ---- comm (c->m on c) ------------------------------------------------------ */

/* A collective's fault site fails it on this rank only, without reaching
 * the backend: a test arms it on every rank (ranks as threads) or the
 * other ranks wait for the missing one, as they would for a rank whose
 * communicator broke. */

int ckpt__comm_rank(const ckpt_comm *c);
int ckpt__comm_size(const ckpt_comm *c);
/* Site CKPT__FAULT_BARRIER. */
int ckpt__comm_barrier(ckpt_comm *c, struct ckpt__fault *f, ckpt__err *err);
/* Site CKPT__FAULT_BCAST. */
int ckpt__comm_bcast(ckpt_comm *c, struct ckpt__fault *f, void *buf, size_t n, int root,
                     ckpt__err *err);
/* Site CKPT__FAULT_ALLREDUCE. */
int ckpt__comm_allreduce(ckpt_comm *c, struct ckpt__fault *f, int64_t *vals, int n, int op,
                         ckpt__err *err);
/* Site CKPT__FAULT_GATHER. */
int ckpt__comm_gather(ckpt_comm *c, struct ckpt__fault *f, const void *send, size_t n,
                      void *recv, int root, ckpt__err *err);
void ckpt__comm_destroy(ckpt_comm *c);
/* Notes (comm.h): 1 when c offers them. */
int ckpt__comm_has_notes(const ckpt_comm *c);
int ckpt__comm_note_send(ckpt_comm *c, int to, const void *buf, ckpt__err *err);
/* Site CKPT__FAULT_NOTE. */
int ckpt__comm_note_recv(ckpt_comm *c, struct ckpt__fault *f, void *buf, double timeout_s,
                         ckpt__err *err);
/* The exchange (comm.h): 1 when c offers it. */
int ckpt__comm_has_exchange(const ckpt_comm *c);
/* Site CKPT__FAULT_EXCHANGE: fails on this rank before anything is
 * posted, so its peers time out. */
int ckpt__comm_exchange(ckpt_comm *c, struct ckpt__fault *f, const ckpt__msg *sends, int nsend,
                        ckpt__msg *recvs, int nrecv, double timeout_s, ckpt__err *err);

#ifdef __cplusplus
}
#endif
#endif
