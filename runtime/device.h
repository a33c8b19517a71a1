/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device interface: where registered tensors live and how their bytes
 * reach the host staging pool and come back.  Backends: device_host.c
 * (tensors in host memory, a copy thread; in libckpt) and
 * cuda/device_cuda.c (tensors anywhere CUDA can copy from, a private copy
 * stream), which is a plugin of its own: libckpt_cuda.so.SOVERSION, loaded
 * at open by device_plugin.c.  A plugin exports one function,
 * CKPT__DEVICE_PLUGIN_ENTRY, returning its table; the core refuses a table
 * of another CKPT__DEVICE_VERSION.  A plugin needs no symbol of libckpt (a
 * static libckpt exports none): it compiles in its own hidden copy of the
 * pure error helpers (error.c).
 *
 * Contract:
 *   - save_begin(stream) runs on the caller's thread inside ckpt_save and
 *     orders the snapshot after the caller's queued work (a CUDA event);
 *     it must not block.
 *   - copy_out(req) queues an asynchronous copy of req->ops into staging;
 *     requests complete in submission order and req->cb runs exactly once
 *     on a backend thread.  Called from one thread at a time.  A failed
 *     copy hands req->cb the error with its message (the backend call that
 *     failed and the backend's own error text), so the save's ticket can
 *     say what went wrong, not only that something did.
 *   - fence(stream) runs on the caller's thread once every copy of the
 *     pending saves has been queued (and, for a backend with
 *     CKPT__DEV_FENCE_ON_HOST, completed): it makes `stream` wait for them.
 *   - copy_in(ops) copies staging back into tensors and returns when done.
 *   - probe() says, before open and without side effects the caller must
 *     undo, whether the backend can run here (a driver, a device).
 */
#ifndef CKPT_RUNTIME_DEVICE_H
#define CKPT_RUNTIME_DEVICE_H

#include <stddef.h>

#include "base/err.h"
#include "base/workers.h"

/* 2: copy callbacks receive the error message, not only its code.
 * 3: a probe method; backends other than host are plugins. */
#define CKPT__DEVICE_VERSION 3
/* The fence completes on the host: the core waits for the copies to finish. */
#define CKPT__DEV_FENCE_ON_HOST 1u

typedef struct ckpt__device ckpt__device;

typedef struct ckpt__copy {
    void *dst;
    const void *src;
    size_t n;
} ckpt__copy;

typedef struct ckpt__copyreq ckpt__copyreq;
struct ckpt__copyreq {
    const ckpt__copy *ops;
    size_t nops;
    /* err: NULL when every copy landed; else a CKPT_E* code and a message
     * naming the failing call.  Borrowed: valid only during the call. */
    void (*cb)(ckpt__copyreq *req, const ckpt__err *err);
    void *user;
    ckpt__task task; /* backend's use while queued */
};

typedef struct ckpt__device_methods {
    int version;
    const char *name;
    unsigned flags;
    /* 0 when the backend can run on this machine, else why not. */
    int (*probe)(ckpt__err *err);
    int (*open)(ckpt__device **out, ckpt__err *err);
    void (*close)(ckpt__device *dev);
    /* Prepares the staging pool for fast copies (pins it). */
    int (*register_staging)(ckpt__device *dev, void *base, size_t n, ckpt__err *err);
    /* Checks that [ptr, ptr + n) is memory this backend can copy. */
    int (*check_tensor)(ckpt__device *dev, const void *ptr, size_t n, ckpt__err *err);
    int (*save_begin)(ckpt__device *dev, void *stream, ckpt__err *err);
    void (*copy_out)(ckpt__device *dev, ckpt__copyreq *req);
    int (*fence)(ckpt__device *dev, void *stream, ckpt__err *err);
    int (*copy_in)(ckpt__device *dev, const ckpt__copy *ops, size_t nops, void *stream,
                   ckpt__err *err);
} ckpt__device_methods;

extern const ckpt__device_methods ckpt__device_host;

/* What a device plugin exports (the only symbol it exports): its table,
 * static, valid while the plugin is loaded. */
#define CKPT__DEVICE_PLUGIN_ENTRY "ckpt__device_plugin"
typedef const ckpt__device_methods *(*ckpt__device_plugin_fn)(void);

#endif
