/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Worker pool and mailbox (see workers.h).  Invariant: a queued task or
 * event is reachable from exactly one list; the pool's threads exit only
 * after the queue is empty and stop is set.
 */
#include <stdlib.h>

#include "base/workers.h"

#define MAX_WORKERS 64

struct ckpt__workers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ckpt__task *head, *tail;
    int stop;
    int n;
    pthread_t threads[MAX_WORKERS];
};

static void *run(void *arg)
{
    ckpt__workers *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->head)
            break;
        ckpt__task *t = w->head;
        w->head = t->next;
        if (!w->head)
            w->tail = NULL;
        pthread_mutex_unlock(&w->mu);
        t->next = NULL;
        t->fn(t);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

void ckpt__workers_close(ckpt__workers *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->n; i++)
        pthread_join(w->threads[i], NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

int ckpt__workers_open(int nthreads, ckpt__workers **out, ckpt__err *err)
{
    *out = NULL;
    if (nthreads < 1 || nthreads > MAX_WORKERS)
        return ckpt__err_set(err, CKPT_EINVAL, "%d worker threads (1..%d)", nthreads,
                             MAX_WORKERS);
    ckpt__workers *w = calloc(1, sizeof *w);
    if (!w)
        return ckpt__err_set(err, CKPT_ENOMEM, "worker pool: out of memory");
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    for (int i = 0; i < nthreads; i++) {
        int rc = pthread_create(&w->threads[i], NULL, run, w);
        if (rc) {
            ckpt__workers_close(w);
            return ckpt__err_errno(err, rc, "worker pool: pthread_create");
        }
        w->n++;
    }
    *out = w;
    return 0;
}

void ckpt__workers_submit(ckpt__workers *w, ckpt__task *t)
{
    t->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->tail)
        w->tail->next = t;
    else
        w->head = t;
    w->tail = t;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void ckpt__mbox_init(ckpt__mbox *m)
{
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    m->head = m->tail = NULL;
}

void ckpt__mbox_destroy(ckpt__mbox *m)
{
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
}

void ckpt__mbox_post(ckpt__mbox *m, ckpt__event *ev, int type)
{
    ev->type = type;
    ev->next = NULL;
    pthread_mutex_lock(&m->mu);
    if (m->tail)
        m->tail->next = ev;
    else
        m->head = ev;
    m->tail = ev;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

ckpt__event *ckpt__mbox_wait(ckpt__mbox *m)
{
    pthread_mutex_lock(&m->mu);
    while (!m->head)
        pthread_cond_wait(&m->cv, &m->mu);
    ckpt__event *ev = m->head;
    m->head = ev->next;
    if (!m->head)
        m->tail = NULL;
    pthread_mutex_unlock(&m->mu);
    return ev;
}
