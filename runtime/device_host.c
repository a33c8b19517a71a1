/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host device backend: tensors live in ordinary host memory and one
 * copy thread per context takes the snapshot into staging, so ckpt_save
 * returns at once and the caller keeps computing (reading its tensors)
 * while the copy runs.  The fence completes on the host: the core waits
 * until every queued copy has finished.
 *
 * Invariants: requests are served strictly in submission order by the one
 * copy thread; each request's callback runs exactly once.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/device.h"

/* The copies wait in a worker pool (base/workers.h) of one thread, which
 * serves them in submission order. */
struct ckpt__device {
    ckpt__workers *copier;
};

static void copy_task(ckpt__task *t)
{
    ckpt__copyreq *r = (ckpt__copyreq *)((char *)t - offsetof(ckpt__copyreq, task));
    for (size_t i = 0; i < r->nops; i++)
        memcpy(r->ops[i].dst, r->ops[i].src, r->ops[i].n);
    r->cb(r, NULL); /* memcpy cannot fail */
}

static int host_open(ckpt__device **out, ckpt__err *err)
{
    *out = NULL;
    ckpt__device *d = calloc(1, sizeof *d);
    if (!d)
        return ckpt__err_set(err, CKPT_ENOMEM, "host device: out of memory");
    if (ckpt__workers_open(1, &d->copier, err)) {
        free(d);
        return ckpt__err_prefix(err, "host device");
    }
    *out = d;
    return 0;
}

static int host_probe(ckpt__err *err)
{
    (void)err; /* host memory is always there */
    return 0;
}

static void host_close(ckpt__device *d)
{
    if (!d)
        return;
    ckpt__workers_close(d->copier);
    free(d);
}

static int host_register_staging(ckpt__device *d, void *base, size_t n, ckpt__err *err)
{
    (void)d, (void)base, (void)n, (void)err;
    return 0;
}

static int host_check_tensor(ckpt__device *d, const void *ptr, size_t n, ckpt__err *err)
{
    (void)d;
    if (n > 0 && !ptr)
        return ckpt__err_set(err, CKPT_EINVAL, "NULL data pointer for %zu bytes", n);
    return 0;
}

static int host_save_begin(ckpt__device *d, void *stream, ckpt__err *err)
{
    (void)d, (void)stream, (void)err;
    return 0;
}

static void host_copy_out(ckpt__device *d, ckpt__copyreq *req)
{
    req->task.fn = copy_task;
    ckpt__workers_submit(d->copier, &req->task);
}

static int host_fence(ckpt__device *d, void *stream, ckpt__err *err)
{
    (void)d, (void)stream, (void)err;
    return 0;
}

static int host_copy_in(ckpt__device *d, const ckpt__copy *ops, size_t nops, void *stream,
                        ckpt__err *err)
{
    (void)d, (void)stream, (void)err;
    for (size_t i = 0; i < nops; i++)
        memcpy(ops[i].dst, ops[i].src, ops[i].n);
    return 0;
}

const ckpt__device_methods ckpt__device_host = {
    .version = CKPT__DEVICE_VERSION,
    .name = "host",
    .flags = CKPT__DEV_FENCE_ON_HOST,
    .probe = host_probe,
    .open = host_open,
    .close = host_close,
    .register_staging = host_register_staging,
    .check_tensor = host_check_tensor,
    .save_begin = host_save_begin,
    .copy_out = host_copy_out,
    .fence = host_fence,
    .copy_in = host_copy_in,
};
