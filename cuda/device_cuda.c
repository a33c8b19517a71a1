/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CUDA device backend: registered tensors may live in device, pinned,
 * managed or pageable host memory; every snapshot copy runs on a private
 * non-blocking copy stream, so the training stream never waits for it
 * unless the caller fences.  Plain C against the CUDA runtime API.
 *
 * A plugin (device.h): built as libckpt_cuda.so with the static CUDA
 * runtime and its own copy of the error helpers, it exports only
 * ckpt__device_plugin() and needs nothing from libckpt or from a CUDA
 * library folder; libckpt loads it at ckpt_open (device_plugin.c), so a
 * program that never asks for CUDA never loads it.
 *
 * Ordering, per context:
 *   - save_begin records `begin` on the caller's stream and makes the copy
 *     stream wait on it: the snapshot sees everything the caller queued
 *     before ckpt_save.
 *   - copy_out queues one request's copies, records that request's slot
 *     event (the staging slab is filled once it completes) and then `done`,
 *     so `done` always follows the last copy queued so far.
 *   - fence makes the caller's stream wait on `done`.  The core calls it
 *     only after every copy of the pending saves has been queued (device.h),
 *     so the wait covers the whole snapshot and the host never blocks.
 *   - one waiter thread synchronizes the slot events in submission order and
 *     runs each request's callback (callbacks never run inside CUDA host
 *     functions, which may not call CUDA).  A failure, whether queuing the
 *     copies or reported by the event (an asynchronous copy fault), reaches
 *     the callback as "<call>: <error name>: <error string>".
 *
 * Invariants: the slot ring grows (doubling, slots never move: the ring
 * holds pointers) until MAX_SLOTS requests are in flight, so copy_out
 * blocks for a free slot only past that: the staging pool, not the slot
 * count, bounds a snapshot's queued copies, and the fence (which the core
 * calls once every copy is queued) returns to the host as soon as the last
 * copy is queued, not when most have finished; each callback runs exactly
 * once, in submission order; every CUDA call's result is checked and
 * reported with the call's name.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "runtime/device.h"

/* Slots made at open, and the most the ring grows to (a 64 GiB pool in
 * 4 MiB batches fits). */
#define FIRST_SLOTS 64
#define MAX_SLOTS 16384
/* cudaHostRegister takes the staging pool in pieces no larger than this. */
#define PIN_PIECE ((size_t)64 << 30)

typedef struct slot {
    ckpt__copyreq *req;
    cudaEvent_t ev;
    ckpt__err err; /* code nonzero: this request failed (set by copy_out or the waiter) */
} slot;

struct ckpt__device {
    int dev; /* the caller's current device at open */
    cudaStream_t copy;
    cudaEvent_t begin; /* save_begin: the caller's stream position */
    cudaEvent_t done;  /* after the last queued snapshot copy; mu */
    cudaEvent_t in_ev; /* copy_in: the caller's stream position; in_mu */
    pthread_mutex_t mu, in_mu;
    pthread_cond_t cv;
    slot **ring;          /* cap slots, each allocated once; mu */
    unsigned cap;         /* mu; grown only by copy_out's thread */
    unsigned head, count; /* mu */
    int stop;             /* mu */
    int have_thread;
    pthread_t waiter;
    void *pinned; /* the staging pool registered with cudaHostRegister */
    size_t pinned_n;
};

/* The one formatter of CUDA failures: "cudaMemcpyAsync: <name>: <string>". */
static int fail(ckpt__err *err, cudaError_t e, const char *call)
{
    return ckpt__err_set(err, CKPT_EDEVICE, "%s: %s: %s", call, cudaGetErrorName(e),
                         cudaGetErrorString(e));
}

/* Makes the context's device current on the calling thread (the core calls
 * in from the caller's, the coordinator's and the waiter's threads). */
static int use(ckpt__device *d, ckpt__err *err)
{
    cudaError_t e = cudaSetDevice(d->dev);
    return e == cudaSuccess ? 0 : fail(err, e, "cudaSetDevice");
}

static int cuda_probe(ckpt__err *err)
{
    int count = 0; /* left unset when there is no driver */
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess)
        return fail(err, e, "cudaGetDeviceCount");
    if (count <= 0)
        return ckpt__err_set(err, CKPT_EDEVICE, "cudaGetDeviceCount: no CUDA device");
    return 0;
}

static void *waiter(void *arg)
{
    ckpt__device *d = arg;
    ckpt__err dev_err; /* the waiter could not make the device current */
    ckpt__err_clear(&dev_err);
    (void)use(d, &dev_err);
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->count && !d->stop)
            pthread_cond_wait(&d->cv, &d->mu);
        if (!d->count)
            break;
        slot *s = d->ring[d->head];
        pthread_mutex_unlock(&d->mu);
        ckpt__err_keep(&s->err, &dev_err);
        if (s->err.code) {
            /* Some copies may have been queued: let them land before the
             * core reuses the slab.  The first error is the one reported. */
            (void)cudaStreamSynchronize(d->copy);
        } else {
            cudaError_t e = cudaEventSynchronize(s->ev);
            if (e != cudaSuccess)
                fail(&s->err, e, "cudaEventSynchronize");
        }
        s->req->cb(s->req, s->err.code ? &s->err : NULL);
        pthread_mutex_lock(&d->mu);
        d->head = (d->head + 1) % d->cap;
        d->count--;
        pthread_cond_broadcast(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static void destroy(ckpt__device *d)
{
    if (d->have_thread) {
        pthread_mutex_lock(&d->mu);
        d->stop = 1;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->waiter, NULL);
    }
    /* Teardown is best effort: nothing can report its errors any more. */
    if (d->copy)
        (void)cudaStreamSynchronize(d->copy);
    for (size_t off = 0; d->pinned && off < d->pinned_n; off += PIN_PIECE)
        (void)cudaHostUnregister((char *)d->pinned + off);
    for (unsigned i = 0; i < d->cap; i++) {
        if (d->ring[i]->ev)
            (void)cudaEventDestroy(d->ring[i]->ev);
        free(d->ring[i]);
    }
    free(d->ring);
    if (d->begin)
        (void)cudaEventDestroy(d->begin);
    if (d->done)
        (void)cudaEventDestroy(d->done);
    if (d->in_ev)
        (void)cudaEventDestroy(d->in_ev);
    if (d->copy)
        (void)cudaStreamDestroy(d->copy);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->in_mu);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

static int event(cudaEvent_t *ev, ckpt__err *err)
{
    cudaError_t e = cudaEventCreateWithFlags(ev, cudaEventDisableTiming);
    return e == cudaSuccess ? 0 : fail(err, e, "cudaEventCreateWithFlags");
}

/* A ring of cap slots whose first `keep` entries are old[from..] in ring
 * order (old has keep entries); the rest are new slots with their events.
 * NULL when out of memory or an event cannot be made (err says which). */
static slot **ring_make(slot **old, unsigned keep, unsigned from, unsigned cap, ckpt__err *err)
{
    slot **r = calloc(cap, sizeof *r);
    if (!r) {
        ckpt__err_set(err, CKPT_ENOMEM, "cuda device: out of memory for %u copy slots", cap);
        return NULL;
    }
    for (unsigned i = 0; i < keep; i++)
        r[i] = old[(from + i) % keep];
    for (unsigned i = keep; i < cap; i++) {
        r[i] = calloc(1, sizeof *r[i]);
        if (!r[i]) {
            ckpt__err_set(err, CKPT_ENOMEM, "cuda device: out of memory for copy slots");
        } else if (event(&r[i]->ev, err) == 0) {
            continue;
        }
        for (unsigned j = keep; j <= i; j++) {
            if (r[j] && r[j]->ev)
                (void)cudaEventDestroy(r[j]->ev);
            free(r[j]);
        }
        free(r);
        return NULL;
    }
    return r;
}

static int cuda_open(ckpt__device **out, ckpt__err *err)
{
    *out = NULL;
    int rc = cuda_probe(err);
    if (rc)
        return rc;
    ckpt__device *d = calloc(1, sizeof *d);
    if (!d)
        return ckpt__err_set(err, CKPT_ENOMEM, "cuda device: out of memory");
    pthread_mutex_init(&d->mu, NULL);
    pthread_mutex_init(&d->in_mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    cudaError_t e = cudaGetDevice(&d->dev);
    if (e != cudaSuccess)
        rc = fail(err, e, "cudaGetDevice");
    if (!rc && (e = cudaStreamCreateWithFlags(&d->copy, cudaStreamNonBlocking)) != cudaSuccess)
        rc = fail(err, e, "cudaStreamCreateWithFlags");
    if (!rc)
        rc = event(&d->begin, err);
    if (!rc)
        rc = event(&d->done, err);
    if (!rc)
        rc = event(&d->in_ev, err);
    if (!rc) {
        d->ring = ring_make(NULL, 0, 0, FIRST_SLOTS, err);
        if (d->ring)
            d->cap = FIRST_SLOTS;
        else
            rc = err->code;
    }
    if (!rc) {
        int prc = pthread_create(&d->waiter, NULL, waiter, d);
        if (prc)
            rc = ckpt__err_errno(err, prc, "cuda device: pthread_create");
        else
            d->have_thread = 1;
    }
    if (rc) {
        destroy(d);
        return rc;
    }
    *out = d;
    return 0;
}

static void cuda_close(ckpt__device *d)
{
    if (d)
        destroy(d);
}

static int cuda_register_staging(ckpt__device *d, void *base, size_t n, ckpt__err *err)
{
    int rc = use(d, err);
    if (rc)
        return rc;
    for (size_t off = 0; off < n; off += PIN_PIECE) {
        size_t len = n - off < PIN_PIECE ? n - off : PIN_PIECE;
        cudaError_t e = cudaHostRegister((char *)base + off, len, cudaHostRegisterDefault);
        if (e != cudaSuccess) {
            for (size_t back = 0; back < off; back += PIN_PIECE)
                (void)cudaHostUnregister((char *)base + back);
            return fail(err, e, "cudaHostRegister");
        }
    }
    d->pinned = base;
    d->pinned_n = n;
    return 0;
}

/* Every kind of memory is accepted: device, pinned, managed and pageable
 * host memory (the last copies at pageable speed). */
static int cuda_check_tensor(ckpt__device *d, const void *ptr, size_t n, ckpt__err *err)
{
    if (n > 0 && !ptr)
        return ckpt__err_set(err, CKPT_EINVAL, "NULL data pointer for %zu bytes", n);
    if (n == 0)
        return 0;
    int rc = use(d, err);
    if (rc)
        return rc;
    struct cudaPointerAttributes a;
    memset(&a, 0, sizeof a);
    cudaError_t e = cudaPointerGetAttributes(&a, ptr);
    if (e == cudaErrorInvalidValue) {
        (void)cudaGetLastError(); /* older runtimes flag plain host memory so */
        return 0;
    }
    if (e != cudaSuccess)
        return fail(err, e, "cudaPointerGetAttributes");
    (void)a.type; /* device, managed, host (pinned) or unregistered: all copyable */
    return 0;
}

static int cuda_save_begin(ckpt__device *d, void *stream, ckpt__err *err)
{
    int rc = use(d, err);
    if (rc)
        return rc;
    cudaError_t e = cudaEventRecord(d->begin, (cudaStream_t)stream);
    if (e != cudaSuccess)
        return fail(err, e, "cudaEventRecord");
    e = cudaStreamWaitEvent(d->copy, d->begin, 0);
    if (e != cudaSuccess)
        return fail(err, e, "cudaStreamWaitEvent");
    return 0;
}

static void cuda_copy_out(ckpt__device *d, ckpt__copyreq *req)
{
    pthread_mutex_lock(&d->mu);
    if (d->count == d->cap && d->cap < MAX_SLOTS) {
        /* Slots are pointers: the one the waiter holds stays where it is.
         * If the ring cannot grow, waiting for a free slot still works. */
        ckpt__err ignore;
        slot **r = ring_make(d->ring, d->cap, d->head, d->cap * 2, &ignore);
        if (r) {
            free(d->ring);
            d->ring = r;
            d->head = 0;
            d->cap *= 2;
        }
    }
    while (d->count == d->cap)
        pthread_cond_wait(&d->cv, &d->mu);
    /* Only this thread adds slots, so the one found free stays free. */
    slot *s = d->ring[(d->head + d->count) % d->cap];
    pthread_mutex_unlock(&d->mu);

    /* The slot is this thread's until d->count covers it: its error (the
     * waiter hands it to req->cb) is filled in without the lock. */
    ckpt__err *why = &s->err;
    ckpt__err_clear(why);
    int rc = use(d, why);
    for (size_t i = 0; !rc && i < req->nops; i++) {
        const ckpt__copy *op = &req->ops[i];
        /* cudaMemcpyDefault: the pointer's kind (device, managed, pinned or
         * pageable host) picks the copy, in stream order. */
        cudaError_t e = cudaMemcpyAsync(op->dst, op->src, op->n, cudaMemcpyDefault, d->copy);
        if (e != cudaSuccess)
            rc = fail(why, e, "cudaMemcpyAsync");
    }
    pthread_mutex_lock(&d->mu);
    if (!rc) {
        cudaError_t e = cudaEventRecord(s->ev, d->copy);
        if (e == cudaSuccess)
            e = cudaEventRecord(d->done, d->copy);
        if (e != cudaSuccess)
            fail(why, e, "cudaEventRecord");
    }
    s->req = req;
    d->count++;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static int cuda_fence(ckpt__device *d, void *stream, ckpt__err *err)
{
    int rc = use(d, err);
    if (rc)
        return rc;
    pthread_mutex_lock(&d->mu);
    cudaError_t e = cudaStreamWaitEvent((cudaStream_t)stream, d->done, 0);
    pthread_mutex_unlock(&d->mu);
    if (e != cudaSuccess)
        return fail(err, e, "cudaStreamWaitEvent");
    return 0;
}

/* Restore is synchronous: returns once the tensors hold the bytes.  The copy
 * stream first waits for the caller's queued work on those tensors. */
static int cuda_copy_in(ckpt__device *d, const ckpt__copy *ops, size_t nops, void *stream,
                        ckpt__err *err)
{
    int rc = use(d, err);
    if (rc)
        return rc;
    pthread_mutex_lock(&d->in_mu);
    cudaError_t e = cudaEventRecord(d->in_ev, (cudaStream_t)stream);
    const char *call = "cudaEventRecord";
    if (e == cudaSuccess) {
        e = cudaStreamWaitEvent(d->copy, d->in_ev, 0);
        call = "cudaStreamWaitEvent";
    }
    for (size_t i = 0; e == cudaSuccess && i < nops; i++) {
        e = cudaMemcpyAsync(ops[i].dst, ops[i].src, ops[i].n, cudaMemcpyDefault, d->copy);
        call = "cudaMemcpyAsync";
    }
    if (e == cudaSuccess) {
        e = cudaStreamSynchronize(d->copy);
        call = "cudaStreamSynchronize";
    } else {
        (void)cudaStreamSynchronize(d->copy); /* let queued copies land */
    }
    pthread_mutex_unlock(&d->in_mu);
    return e == cudaSuccess ? 0 : fail(err, e, call);
}

static const ckpt__device_methods cuda_methods = {
    .version = CKPT__DEVICE_VERSION,
    .name = "cuda",
    .flags = 0, /* the fence completes on the device */
    .probe = cuda_probe,
    .open = cuda_open,
    .close = cuda_close,
    .register_staging = cuda_register_staging,
    .check_tensor = cuda_check_tensor,
    .save_begin = cuda_save_begin,
    .copy_out = cuda_copy_out,
    .fence = cuda_fence,
    .copy_in = cuda_copy_in,
};

/* The plugin's one exported symbol (CKPT__DEVICE_PLUGIN_ENTRY); declared
 * here because only dlsym ever calls it. */
__attribute__((visibility("default"))) const ckpt__device_methods *ckpt__device_plugin(void);

const ckpt__device_methods *ckpt__device_plugin(void)
{
    return &cuda_methods;
}
