/* SPDX-License-Identifier: Apache-2.0 */
/* The loopback comm (bench/loopback.h).  Every collective publishes into
 * the caller's slot, waits at the barrier, reads the slots it needs and
 * waits again, so no slot is overwritten while another rank reads it. */
#define _GNU_SOURCE /* pthread_barrier_t */
#include "bench/loopback.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    void *p;
    size_t cap, len; /* len: what the last collective published (0: nothing) */
} slot;

struct ckpt_loopback {
    int n;
    pthread_barrier_t bar;
    slot *slots; /* one per rank */
};

typedef struct lb_impl {
    ckpt_loopback *lb;
    int rank;
} lb_impl;

static lb_impl *me(const ckpt_comm *c)
{
    return c->impl;
}

static void wait_all(const lb_impl *m)
{
    pthread_barrier_wait(&m->lb->bar);
}

/* Copies n bytes into this rank's slot, growing it. */
static int publish(lb_impl *m, const void *src, size_t n, ckpt__err *err)
{
    slot *s = &m->lb->slots[m->rank];
    s->len = 0;
    if (n > s->cap) {
        void *p = realloc(s->p, n);
        if (!p)
            return ckpt__err_set(err, CKPT_ENOMEM, "loopback comm: out of memory");
        s->p = p;
        s->cap = n;
    }
    if (n)
        memcpy(s->p, src, n);
    s->len = n;
    return 0;
}

static int lb_rank(const ckpt_comm *c)
{
    return me(c)->rank;
}

static int lb_size(const ckpt_comm *c)
{
    return me(c)->lb->n;
}

static int lb_barrier(ckpt_comm *c, ckpt__err *err)
{
    (void)err;
    wait_all(me(c));
    return 0;
}

/* A rank that cannot publish still reaches both barriers, so no other rank
 * is left waiting; it returns the error afterwards. */
static int lb_bcast(ckpt_comm *c, void *buf, size_t n, int root, ckpt__err *err)
{
    lb_impl *m = me(c);
    int rc = m->rank == root ? publish(m, buf, n, err) : 0;
    wait_all(m);
    if (m->rank != root && n && m->lb->slots[root].len == n)
        memcpy(buf, m->lb->slots[root].p, n);
    else if (m->rank != root && n)
        rc = ckpt__err_set(err, CKPT_ECOMM, "loopback comm: rank %d sent nothing", root);
    wait_all(m);
    return rc;
}

static int lb_allreduce(ckpt_comm *c, int64_t *vals, int n, int op, ckpt__err *err)
{
    lb_impl *m = me(c);
    int rc = publish(m, vals, (size_t)n * sizeof *vals, err);
    wait_all(m);
    for (int r = 0; r < m->lb->n; r++) {
        const int64_t *o = m->lb->slots[r].p;
        if (m->lb->slots[r].len != (size_t)n * sizeof *vals)
            continue; /* that rank failed to publish and reports it */
        for (int i = 0; i < n; i++)
            vals[i] = op == CKPT__MIN ? (o[i] < vals[i] ? o[i] : vals[i])
                                      : (o[i] > vals[i] ? o[i] : vals[i]);
    }
    wait_all(m);
    return rc;
}

static int lb_gather(ckpt_comm *c, const void *send, size_t n, void *recv, int root,
                     ckpt__err *err)
{
    lb_impl *m = me(c);
    int rc = publish(m, send, n, err);
    wait_all(m);
    for (int r = 0; m->rank == root && n && r < m->lb->n; r++) {
        if (m->lb->slots[r].len == n)
            memcpy((char *)recv + (size_t)r * n, m->lb->slots[r].p, n);
        else
            memset((char *)recv + (size_t)r * n, 0, n);
    }
    wait_all(m);
    return rc;
}

static void lb_destroy(ckpt_comm *c)
{
    free(c->impl);
    free(c);
}

static const ckpt__comm_methods methods = {
    CKPT__COMM_VERSION, "loopback",   lb_rank,   lb_size,   lb_barrier,
    lb_bcast,           lb_allreduce, lb_gather, lb_destroy,
};

ckpt_loopback *ckpt_loopback_new(int nranks)
{
    ckpt_loopback *lb = calloc(1, sizeof *lb);
    if (!lb || nranks < 1)
        return free(lb), NULL;
    lb->n = nranks;
    lb->slots = calloc((size_t)nranks, sizeof *lb->slots);
    if (!lb->slots || pthread_barrier_init(&lb->bar, NULL, (unsigned)nranks) != 0) {
        free(lb->slots);
        free(lb);
        return NULL;
    }
    return lb;
}

void ckpt_loopback_free(ckpt_loopback *lb)
{
    if (!lb)
        return;
    pthread_barrier_destroy(&lb->bar);
    for (int r = 0; r < lb->n; r++)
        free(lb->slots[r].p);
    free(lb->slots);
    free(lb);
}

ckpt_comm *ckpt_loopback_comm(ckpt_loopback *lb, int rank)
{
    ckpt_comm *c = malloc(sizeof *c);
    lb_impl *m = malloc(sizeof *m);
    if (!c || !m) {
        free(c);
        free(m);
        return NULL;
    }
    m->lb = lb;
    m->rank = rank;
    ckpt__comm_init(c, &methods, m);
    return c;
}
