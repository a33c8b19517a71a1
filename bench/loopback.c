/* SPDX-License-Identifier: Apache-2.0 */
/* The loopback comm (bench/loopback.h).  Every collective publishes into
 * the caller's slot, waits at the barrier, reads the slots it needs and
 * waits again, so no slot is overwritten while another rank reads it. */
#define _GNU_SOURCE /* pthread_barrier_t */
#include "bench/loopback.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct slot {
    void *p;
    size_t cap, len; /* len: what the last collective published (0: nothing) */
} slot;

/* A message of an exchange on its way: a copy of the sent bytes. */
typedef struct xmsg {
    struct xmsg *next;
    int from;
    size_t n;
    unsigned char data[];
} xmsg;

/* A rank's notes from rank 0, oldest first, and the exchange messages sent
 * to it, oldest first. */
typedef struct mailbox {
    unsigned char (*q)[CKPT__NOTE_BYTES];
    size_t head, len, cap; /* a ring of cap notes */
    pthread_cond_t cv;     /* CLOCK_MONOTONIC; a note or a message came */
    xmsg *xhead, **xtail;
} mailbox;

struct ckpt_loopback {
    int n;
    pthread_barrier_t bar;
    slot *slots; /* one per rank */
    int notes;   /* the comms made offer notes */
    pthread_mutex_t mu; /* guards boxes and received */
    mailbox *boxes;     /* one per rank */
    int nboxes;         /* with their cv made */
    unsigned long received;
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

static int lb_note_send(ckpt_comm *c, int to, const void *buf, ckpt__err *err)
{
    ckpt_loopback *lb = me(c)->lb;
    if (to < 0 || to >= lb->n)
        return ckpt__err_set(err, CKPT_EINVAL, "loopback comm: note to rank %d of %d", to, lb->n);
    pthread_mutex_lock(&lb->mu);
    mailbox *b = &lb->boxes[to];
    int rc = 0;
    if (b->len == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 4;
        unsigned char(*q)[CKPT__NOTE_BYTES] = malloc(cap * sizeof *q);
        if (!q) {
            rc = ckpt__err_set(err, CKPT_ENOMEM, "loopback comm: out of memory");
        } else {
            for (size_t i = 0; i < b->len; i++)
                memcpy(q[i], b->q[(b->head + i) % b->cap], CKPT__NOTE_BYTES);
            free(b->q);
            b->q = q;
            b->head = 0;
            b->cap = cap;
        }
    }
    if (!rc) {
        memcpy(b->q[(b->head + b->len) % b->cap], buf, CKPT__NOTE_BYTES);
        b->len++;
        pthread_cond_broadcast(&b->cv); /* a note or an exchange may wait */
    }
    pthread_mutex_unlock(&lb->mu);
    return rc;
}

static struct timespec deadline(double timeout_s)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    double s = timeout_s > 0 ? timeout_s : 0;
    if (s > 1e6)
        s = 1e6;
    until.tv_sec += (time_t)s;
    until.tv_nsec += (long)((s - (double)(time_t)s) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    return until;
}

static int lb_note_recv(ckpt_comm *c, void *buf, double timeout_s, ckpt__err *err)
{
    (void)err;
    ckpt_loopback *lb = me(c)->lb;
    mailbox *b = &lb->boxes[me(c)->rank];
    struct timespec until = deadline(timeout_s);
    pthread_mutex_lock(&lb->mu);
    while (b->len == 0 && pthread_cond_timedwait(&b->cv, &lb->mu, &until) == 0)
        ;
    int got = b->len > 0;
    if (got) {
        memcpy(buf, b->q[b->head], CKPT__NOTE_BYTES);
        b->head = (b->head + 1) % b->cap;
        b->len--;
        lb->received++;
    }
    pthread_mutex_unlock(&lb->mu);
    return got;
}

/* Sends complete at once (the bytes are copied into the peer's mailbox);
 * each receive takes the oldest message from its peer, waiting for it. */
static int lb_exchange(ckpt_comm *c, const ckpt__msg *sends, int nsend, ckpt__msg *recvs,
                       int nrecv, double timeout_s, ckpt__err *err)
{
    ckpt_loopback *lb = me(c)->lb;
    int rank = me(c)->rank;
    for (int i = 0; i < nsend; i++)
        if (sends[i].peer < 0 || sends[i].peer >= lb->n)
            return ckpt__err_set(err, CKPT_EINVAL, "loopback comm: send to rank %d of %d",
                                 sends[i].peer, lb->n);
    for (int i = 0; i < nrecv; i++)
        if (recvs[i].peer < 0 || recvs[i].peer >= lb->n)
            return ckpt__err_set(err, CKPT_EINVAL, "loopback comm: receive from rank %d of %d",
                                 recvs[i].peer, lb->n);
    for (int i = 0; i < nsend; i++) {
        xmsg *x = malloc(sizeof *x + sends[i].n);
        if (!x)
            return ckpt__err_set(err, CKPT_ENOMEM, "loopback comm: out of memory");
        x->next = NULL;
        x->from = rank;
        x->n = sends[i].n;
        if (x->n)
            memcpy(x->data, sends[i].buf, x->n);
        pthread_mutex_lock(&lb->mu);
        mailbox *b = &lb->boxes[sends[i].peer];
        *b->xtail = x;
        b->xtail = &x->next;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&lb->mu);
    }
    struct timespec until = deadline(timeout_s);
    mailbox *b = &lb->boxes[rank];
    int rc = 0;
    pthread_mutex_lock(&lb->mu);
    for (int i = 0; !rc && i < nrecv; i++) {
        for (;;) {
            xmsg **pp = &b->xhead;
            while (*pp && (*pp)->from != recvs[i].peer)
                pp = &(*pp)->next;
            xmsg *x = *pp;
            if (x) {
                *pp = x->next;
                if (!*pp)
                    b->xtail = pp;
                if (x->n != recvs[i].n)
                    rc = ckpt__err_set(err, CKPT_ECOMM,
                                       "loopback comm: rank %d sent %zu bytes, not %zu",
                                       recvs[i].peer, x->n, recvs[i].n);
                else if (x->n)
                    memcpy(recvs[i].buf, x->data, x->n);
                free(x);
                break;
            }
            if (pthread_cond_timedwait(&b->cv, &lb->mu, &until) != 0) {
                rc = ckpt__err_set(err, CKPT_ETIMEDOUT,
                                   "loopback comm: no message from rank %d in %.3g s",
                                   recvs[i].peer, timeout_s);
                break;
            }
        }
    }
    pthread_mutex_unlock(&lb->mu);
    return rc;
}

#define LB_METHODS                                                                          \
    .version = CKPT__COMM_VERSION, .name = "loopback", .rank = lb_rank, .size = lb_size,    \
    .barrier = lb_barrier, .bcast = lb_bcast, .allreduce_i64 = lb_allreduce,                \
    .gather = lb_gather, .destroy = lb_destroy, .exchange = lb_exchange

static const ckpt__comm_methods methods = {
    LB_METHODS,
    .note_send = lb_note_send,
    .note_recv = lb_note_recv,
};

static const ckpt__comm_methods methods_without_notes = {LB_METHODS};

ckpt_loopback *ckpt_loopback_new(int nranks)
{
    ckpt_loopback *lb = calloc(1, sizeof *lb);
    if (!lb || nranks < 1)
        return free(lb), NULL;
    lb->n = nranks;
    lb->notes = 1;
    lb->slots = calloc((size_t)nranks, sizeof *lb->slots);
    lb->boxes = calloc((size_t)nranks, sizeof *lb->boxes);
    pthread_condattr_t ca;
    int ok = lb->slots && lb->boxes && pthread_condattr_init(&ca) == 0;
    if (ok) {
        ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0;
        while (ok && lb->nboxes < nranks &&
               pthread_cond_init(&lb->boxes[lb->nboxes].cv, &ca) == 0) {
            lb->boxes[lb->nboxes].xtail = &lb->boxes[lb->nboxes].xhead;
            lb->nboxes++;
        }
        ok = ok && lb->nboxes == nranks;
        pthread_condattr_destroy(&ca);
    }
    int mu = ok && pthread_mutex_init(&lb->mu, NULL) == 0;
    if (!mu || pthread_barrier_init(&lb->bar, NULL, (unsigned)nranks) != 0) {
        if (mu)
            pthread_mutex_destroy(&lb->mu);
        for (int r = 0; r < lb->nboxes; r++)
            pthread_cond_destroy(&lb->boxes[r].cv);
        free(lb->slots);
        free(lb->boxes);
        free(lb);
        return NULL;
    }
    return lb;
}

void ckpt_loopback_set_notes(ckpt_loopback *lb, int on)
{
    lb->notes = on != 0;
}

unsigned long ckpt_loopback_notes_received(ckpt_loopback *lb)
{
    pthread_mutex_lock(&lb->mu);
    unsigned long n = lb->received;
    pthread_mutex_unlock(&lb->mu);
    return n;
}

void ckpt_loopback_free(ckpt_loopback *lb)
{
    if (!lb)
        return;
    pthread_barrier_destroy(&lb->bar);
    pthread_mutex_destroy(&lb->mu);
    for (int r = 0; r < lb->n; r++) {
        free(lb->slots[r].p);
        free(lb->boxes[r].q);
        for (xmsg *x = lb->boxes[r].xhead, *next; x; x = next) {
            next = x->next;
            free(x);
        }
        pthread_cond_destroy(&lb->boxes[r].cv);
    }
    free(lb->slots);
    free(lb->boxes);
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
    ckpt__comm_init(c, lb->notes ? &methods : &methods_without_notes, m);
    return c;
}
