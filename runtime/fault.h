/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Numbered fault sites for deterministic fault injection (tests only; armed
 * through ckpt__fault_arm, which no public header declares).  The thin
 * wrappers of the pipeline and the commit protocol consult them, so each
 * test can fail exactly the Nth write or snapshot copy of a save, an fsync,
 * the manifest, or crash the process right before the commit rename.
 *
 * Counting: every site counts its hits from 0; ckpt__fault_arm resets the
 * count of its site.  A site fires once, at hit number `nth`.
 */
#ifndef CKPT_RUNTIME_FAULT_H
#define CKPT_RUNTIME_FAULT_H

#include <stdatomic.h>
#include <stdint.h>

#include "io/writer.h"
#include "runtime/device.h"
#include "runtime/fault_hooks.h"
#include "base/err.h"

typedef struct ckpt__fault {
    _Atomic int64_t nth[CKPT__FAULT_NSITES]; /* -1: disarmed */
    _Atomic int64_t hits[CKPT__FAULT_NSITES];
    _Atomic int action[CKPT__FAULT_NSITES];
    _Atomic int fired[CKPT__FAULT_NSITES];
} ckpt__fault;

void ckpt__fault_init(ckpt__fault *f);
void ckpt__fault_set(ckpt__fault *f, int site, int64_t nth, int action);
/* Counts a hit; returns the action to take now (CKPT__FAIL_NONE mostly).
 * f may be NULL. */
int ckpt__fault_hit(ckpt__fault *f, int site);
/* For a non-I/O site: 0, or the injected error stored in err. */
int ckpt__fault_check(ckpt__fault *f, int site, const char *what, ckpt__err *err);
/* Submits an I/O request through the writer, unless a fault fires: then the
 * request completes at once with the injected result. */
void ckpt__fault_submit(ckpt__fault *f, const ckpt__writer_methods *wm, ckpt__writer *w,
                        ckpt__ioreq *req);
/* Hands a snapshot copy request to the device, unless a fault fires: then
 * the request fails at once, on the calling thread, with CKPT_EDEVICE and a
 * message the way a backend reports a failed copy.  It may so complete
 * ahead of requests queued before it; the pipeline does not depend on the
 * order of a failed request's completion. */
void ckpt__fault_copy_out(ckpt__fault *f, const ckpt__device_methods *dm, ckpt__device *dev,
                          ckpt__copyreq *req);

#endif
