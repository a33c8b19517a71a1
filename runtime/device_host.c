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
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/device.h"

struct ckpt__device {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ckpt__copyreq *head, *tail;
    int stop;
    pthread_t thread;
};

static void *copier(void *arg)
{
    ckpt__device *d = arg;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->head && !d->stop)
            pthread_cond_wait(&d->cv, &d->mu);
        if (!d->head)
            break;
        ckpt__copyreq *r = d->head;
        d->head = r->next;
        if (!d->head)
            d->tail = NULL;
        pthread_mutex_unlock(&d->mu);
        for (size_t i = 0; i < r->nops; i++)
            memcpy(r->ops[i].dst, r->ops[i].src, r->ops[i].n);
        r->cb(r, NULL); /* memcpy cannot fail */
        pthread_mutex_lock(&d->mu);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static int host_open(ckpt__device **out, ckpt__err *err)
{
    *out = NULL;
    ckpt__device *d = calloc(1, sizeof *d);
    if (!d)
        return ckpt__err_set(err, CKPT_ENOMEM, "host device: out of memory");
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    int rc = pthread_create(&d->thread, NULL, copier, d);
    if (rc) {
        pthread_cond_destroy(&d->cv);
        pthread_mutex_destroy(&d->mu);
        free(d);
        return ckpt__err_errno(err, rc, "host device: pthread_create");
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
    pthread_mutex_lock(&d->mu);
    d->stop = 1;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
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
    req->next = NULL;
    pthread_mutex_lock(&d->mu);
    if (d->tail)
        d->tail->next = req;
    else
        d->head = req;
    d->tail = req;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
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
