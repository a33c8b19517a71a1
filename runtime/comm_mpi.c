/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The MPI comm backend: the runtime's few collectives over a duplicate of
 * the caller's communicator.
 *
 * Built as libckpt_mpi, which needs no symbol of libckpt (comm.h): a
 * failure of ckpt_comm_mpi travels on the failed comm it returns.
 *
 * Invariants: the duplicate returns errors instead of aborting the job
 * (MPI_ERRORS_RETURN), so a failed collective becomes CKPT_ECOMM with
 * MPI's message; every collective comes from the caller's thread
 * (comm.h); byte counts above INT_MAX are sent in pieces.
 *
 * Notes (comm.h) only when every rank's MPI runs MPI_THREAD_MULTIPLE: on a
 * second duplicate of their own, so they never match a collective, from
 * the coordinator threads.  Rank 0 keeps at most one note in flight per
 * rank (its buffer lives until MPI completes it); another rank keeps one
 * receive posted and tests it, sleeping between tests, until its timeout.
 *
 * The exchange (comm.h) under the same condition, on a third duplicate:
 * every message posted at once as pieces of at most 1 GiB (MPI's counts
 * are int), then tested, sleeping between tests, until all completed or
 * the timeout; a timed-out exchange cancels its receives, lets its sends
 * go (their buffers stay the caller's, unfreed) and breaks the channel.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep, clock_gettime */
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ckpt/ckpt_mpi.h>

#include "runtime/comm.h"

#define NOTE_TAG 7
#define XCH_TAG 9
#define XCH_PIECE ((size_t)1 << 30)

typedef struct mpi_comm {
    MPI_Comm comm;
    int rank, size;
    MPI_Comm notes;        /* MPI_COMM_NULL: no notes */
    MPI_Request *sreq;     /* rank 0: [size], the note in flight to each rank */
    unsigned char *sbuf;   /* rank 0: [size][CKPT__NOTE_BYTES] */
    MPI_Request rreq;      /* the other ranks: the posted receive */
    unsigned char rbuf[CKPT__NOTE_BYTES];
    MPI_Comm xch; /* MPI_COMM_NULL: no exchange */
    int xbroken;  /* an exchange timed out: no more */
} mpi_comm;

static mpi_comm *impl(const ckpt_comm *c)
{
    return c->impl;
}

static int fail(ckpt__err *err, int mrc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(mrc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "MPI error %d", mrc);
    return ckpt__err_set(err, CKPT_ECOMM, "%s: %s", what, msg);
}

static int mpi_rank(const ckpt_comm *c)
{
    return impl(c)->rank;
}

static int mpi_size(const ckpt_comm *c)
{
    return impl(c)->size;
}

static int mpi_barrier(ckpt_comm *c, ckpt__err *err)
{
    int mrc = MPI_Barrier(impl(c)->comm);
    return mrc == MPI_SUCCESS ? 0 : fail(err, mrc, "MPI_Barrier");
}

static int mpi_bcast(ckpt_comm *c, void *buf, size_t n, int root, ckpt__err *err)
{
    if (root < 0 || root >= impl(c)->size)
        return ckpt__err_set(err, CKPT_EINVAL, "bcast from rank %d of %d", root,
                             impl(c)->size);
    for (size_t off = 0; off < n;) {
        size_t piece = n - off > INT_MAX ? INT_MAX : n - off;
        int mrc = MPI_Bcast((char *)buf + off, (int)piece, MPI_BYTE, root, impl(c)->comm);
        if (mrc != MPI_SUCCESS)
            return fail(err, mrc, "MPI_Bcast");
        off += piece;
    }
    return 0;
}

static int mpi_allreduce(ckpt_comm *c, int64_t *vals, int n, int op, ckpt__err *err)
{
    if (n <= 0 || (op != CKPT__MIN && op != CKPT__MAX))
        return ckpt__err_set(err, CKPT_EINVAL, "allreduce of %d values, op %d", n, op);
    int mrc = MPI_Allreduce(MPI_IN_PLACE, vals, n, MPI_INT64_T, op == CKPT__MIN ? MPI_MIN : MPI_MAX,
                            impl(c)->comm);
    return mrc == MPI_SUCCESS ? 0 : fail(err, mrc, "MPI_Allreduce");
}

static int mpi_gather(ckpt_comm *c, const void *send, size_t n, void *recv, int root,
                      ckpt__err *err)
{
    if (root < 0 || root >= impl(c)->size || n > INT_MAX)
        return ckpt__err_set(err, CKPT_EINVAL, "gather of %zu bytes to rank %d of %d", n, root,
                             impl(c)->size);
    int mrc = MPI_Gather(send, (int)n, MPI_BYTE, recv, (int)n, MPI_BYTE, root, impl(c)->comm);
    return mrc == MPI_SUCCESS ? 0 : fail(err, mrc, "MPI_Gather");
}

static int mpi_note_send(ckpt_comm *c, int to, const void *buf, ckpt__err *err)
{
    mpi_comm *m = impl(c);
    if (m->rank != 0 || to <= 0 || to >= m->size)
        return ckpt__err_set(err, CKPT_EINVAL, "note from rank %d to rank %d of %d", m->rank,
                             to, m->size);
    int done = 1;
    if (m->sreq[to] != MPI_REQUEST_NULL) {
        int mrc = MPI_Test(&m->sreq[to], &done, MPI_STATUS_IGNORE);
        if (mrc != MPI_SUCCESS)
            return fail(err, mrc, "MPI_Test (note)");
    }
    if (!done)
        return ckpt__err_set(err, CKPT_EBUSY, "the last note to rank %d is still in flight", to);
    unsigned char *b = m->sbuf + (size_t)to * CKPT__NOTE_BYTES;
    memcpy(b, buf, CKPT__NOTE_BYTES);
    int mrc = MPI_Isend(b, CKPT__NOTE_BYTES, MPI_BYTE, to, NOTE_TAG, m->notes, &m->sreq[to]);
    return mrc == MPI_SUCCESS ? 0 : fail(err, mrc, "MPI_Isend (note)");
}

static int mpi_note_recv(ckpt_comm *c, void *buf, double timeout_s, ckpt__err *err)
{
    mpi_comm *m = impl(c);
    if (m->rank == 0)
        return ckpt__err_set(err, CKPT_EINVAL, "rank 0 receives no notes");
    int mrc = MPI_SUCCESS;
    if (m->rreq == MPI_REQUEST_NULL)
        mrc = MPI_Irecv(m->rbuf, CKPT__NOTE_BYTES, MPI_BYTE, 0, NOTE_TAG, m->notes, &m->rreq);
    if (mrc != MPI_SUCCESS)
        return fail(err, mrc, "MPI_Irecv (note)");
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long ns = 20000;
    for (;;) {
        int flag = 0;
        mrc = MPI_Test(&m->rreq, &flag, MPI_STATUS_IGNORE);
        if (mrc != MPI_SUCCESS)
            return fail(err, mrc, "MPI_Test (note)");
        if (flag) {
            memcpy(buf, m->rbuf, CKPT__NOTE_BYTES);
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        double el = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) * 1e-9;
        if (el >= timeout_s)
            return 0;
        struct timespec ts = {0, ns};
        nanosleep(&ts, NULL);
        ns = ns * 2 > 2000000 ? 2000000 : ns * 2;
    }
}

static size_t xch_pieces(size_t n)
{
    return n ? (n + XCH_PIECE - 1) / XCH_PIECE : 1;
}

static int mpi_exchange(ckpt_comm *c, const ckpt__msg *sends, int nsend, ckpt__msg *recvs,
                        int nrecv, double timeout_s, ckpt__err *err)
{
    mpi_comm *m = impl(c);
    if (m->xch == MPI_COMM_NULL || m->xbroken)
        return ckpt__err_set(err, CKPT_ECOMM, "exchange: %s",
                             m->xbroken ? "an earlier exchange timed out" : "none offered");
    size_t nreq = 0, nrreq = 0;
    for (int i = 0; i < nsend + nrecv; i++) {
        const ckpt__msg *x = i < nsend ? &sends[i] : &recvs[i - nsend];
        if (x->peer < 0 || x->peer >= m->size)
            return ckpt__err_set(err, CKPT_EINVAL, "exchange with rank %d of %d", x->peer,
                                 m->size);
        nreq += xch_pieces(x->n);
        if (i == nsend - 1)
            nrreq = nreq; /* the sends' pieces come first */
    }
    if (nsend == 0)
        nrreq = 0;
    if (nreq == 0)
        return 0;
    MPI_Request *req = malloc(nreq * sizeof *req);
    size_t *want = malloc(nreq * sizeof *want);
    if (!req || !want) {
        free(req);
        free(want);
        return ckpt__err_set(err, CKPT_ENOMEM, "exchange: out of memory");
    }
    int rc = 0;
    size_t k = 0;
    for (int i = 0; i < nsend + nrecv; i++) {
        const ckpt__msg *x = i < nsend ? &sends[i] : &recvs[i - nsend];
        for (size_t off = 0, np = xch_pieces(x->n); np--;) {
            size_t piece = x->n - off > XCH_PIECE ? XCH_PIECE : x->n - off;
            char *b = (char *)x->buf + off;
            int mrc = i < nsend ? MPI_Isend(b, (int)piece, MPI_BYTE, x->peer, XCH_TAG, m->xch,
                                            &req[k])
                                : MPI_Irecv(b, (int)piece, MPI_BYTE, x->peer, XCH_TAG, m->xch,
                                            &req[k]);
            if (mrc != MPI_SUCCESS) {
                rc = fail(err, mrc, i < nsend ? "MPI_Isend (exchange)" : "MPI_Irecv (exchange)");
                break;
            }
            want[k++] = piece;
            off += piece;
        }
        if (rc)
            break;
    }
    /* MPI moves a large message only inside MPI calls (shared memory
     * without single-copy goes in fragments, one per call): sleeping
     * between tests held the data at 25-40 MB/s.  So the wait yields the
     * core between tests while pieces complete, and sleeps 50 us between
     * tests only after 100 ms without a completion (a peer not there
     * yet), at most 20,000 tests a second. */
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double last = 0; /* seconds from t0 to the last completion */
    size_t done = 0;
    while (!rc && done < k) {
        int flag = 0;
        MPI_Status st;
        int mrc = MPI_Test(&req[done], &flag, &st);
        if (mrc != MPI_SUCCESS) {
            rc = fail(err, mrc, "MPI_Test (exchange)");
            break;
        }
        if (flag) {
            int got = 0;
            if (done >= nrreq && (MPI_Get_count(&st, MPI_BYTE, &got) != MPI_SUCCESS ||
                                  (size_t)got != want[done]))
                rc = ckpt__err_set(err, CKPT_ECOMM,
                                   "exchange: rank %d sent %d bytes, not the %zu expected",
                                   st.MPI_SOURCE, got, want[done]);
            done++;
            clock_gettime(CLOCK_MONOTONIC, &now);
            last = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) * 1e-9;
            continue;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        double el = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) * 1e-9;
        if (el > timeout_s) {
            rc = ckpt__err_set(err, CKPT_ETIMEDOUT,
                               "exchange: %zu of %zu message piece(s) not done in %.3g s",
                               k - done, k, timeout_s);
            break;
        }
        if (el - last < 0.1) {
            sched_yield();
        } else {
            struct timespec d = {0, 50000};
            nanosleep(&d, NULL);
        }
    }
    if (done < k) {
        /* Failed or timed out: receives cancelled, sends let go. */
        for (size_t j = done; j < k; j++) {
            if (req[j] == MPI_REQUEST_NULL)
                continue;
            if (j >= nrreq) {
                MPI_Cancel(&req[j]);
                MPI_Wait(&req[j], MPI_STATUS_IGNORE);
            } else {
                MPI_Request_free(&req[j]);
            }
        }
        m->xbroken = 1;
    }
    free(req);
    free(want);
    return rc;
}

/* Ends what notes left: a posted receive is cancelled; a send MPI has not
 * completed (its receiver never looked) is let go, its buffer kept. */
static void notes_end(mpi_comm *m)
{
    if (m->notes == MPI_COMM_NULL)
        return;
    if (m->rreq != MPI_REQUEST_NULL) {
        MPI_Cancel(&m->rreq);
        MPI_Wait(&m->rreq, MPI_STATUS_IGNORE);
    }
    int all = 1;
    for (int r = 0; m->sreq && r < m->size; r++) {
        int done = 1;
        if (m->sreq[r] != MPI_REQUEST_NULL && MPI_Test(&m->sreq[r], &done, MPI_STATUS_IGNORE) ==
                                                  MPI_SUCCESS && !done) {
            MPI_Request_free(&m->sreq[r]);
            all = 0;
        }
    }
    if (all)
        free(m->sbuf);
    free(m->sreq);
    MPI_Comm_free(&m->notes);
    if (m->xch != MPI_COMM_NULL)
        MPI_Comm_free(&m->xch);
}

static void mpi_destroy(ckpt_comm *c)
{
    if (!c)
        return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) {
        notes_end(impl(c));
        MPI_Comm_free(&impl(c)->comm);
    }
    free(c->impl);
    free(c);
}

#define MPI_METHODS                                                                         \
    .version = CKPT__COMM_VERSION, .name = "mpi", .rank = mpi_rank, .size = mpi_size,       \
    .barrier = mpi_barrier, .bcast = mpi_bcast, .allreduce_i64 = mpi_allreduce,             \
    .gather = mpi_gather, .destroy = mpi_destroy

static const ckpt__comm_methods mpi_methods = {MPI_METHODS};
static const ckpt__comm_methods mpi_methods_notes = {
    MPI_METHODS,
    .note_send = mpi_note_send,
    .note_recv = mpi_note_recv,
    .exchange = mpi_exchange,
};

/* Notes when every rank runs MPI_THREAD_MULTIPLE (agreed, so that every
 * rank makes the duplicate or none does): 1, 0 without, or a CKPT_E code. */
static int notes_begin(mpi_comm *m, ckpt__err *err)
{
    int level = MPI_THREAD_SINGLE;
    MPI_Query_thread(&level);
    int multiple = level == MPI_THREAD_MULTIPLE, all = 0;
    int mrc = MPI_Allreduce(&multiple, &all, 1, MPI_INT, MPI_MIN, m->comm);
    if (mrc != MPI_SUCCESS)
        return fail(err, mrc, "ckpt_comm_mpi: MPI_Allreduce");
    if (!all)
        return 0;
    mrc = MPI_Comm_dup(m->comm, &m->notes);
    if (mrc != MPI_SUCCESS)
        return fail(err, mrc, "ckpt_comm_mpi: MPI_Comm_dup");
    MPI_Comm_set_errhandler(m->notes, MPI_ERRORS_RETURN);
    mrc = MPI_Comm_dup(m->comm, &m->xch);
    if (mrc != MPI_SUCCESS) {
        MPI_Comm_free(&m->notes);
        return fail(err, mrc, "ckpt_comm_mpi: MPI_Comm_dup");
    }
    MPI_Comm_set_errhandler(m->xch, MPI_ERRORS_RETURN);
    if (m->rank == 0) {
        m->sreq = malloc((size_t)m->size * sizeof *m->sreq);
        m->sbuf = malloc((size_t)m->size * CKPT__NOTE_BYTES);
        if (!m->sreq || !m->sbuf) {
            free(m->sreq);
            free(m->sbuf);
            m->sreq = NULL;
            MPI_Comm_free(&m->notes);
            MPI_Comm_free(&m->xch);
            return ckpt__err_set(err, CKPT_ENOMEM, "ckpt_comm_mpi: out of memory");
        }
        for (int r = 0; r < m->size; r++)
            m->sreq[r] = MPI_REQUEST_NULL;
    }
    return 1;
}

ckpt_comm *ckpt_comm_mpi(MPI_Comm comm)
{
    ckpt__err err;
    ckpt__err_clear(&err);
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin) {
        ckpt__err_set(&err, CKPT_ESTATE, "ckpt_comm_mpi: MPI is %s",
                      fin ? "finalized" : "not initialized");
        return ckpt__comm_failed(&err);
    }
    if (comm == MPI_COMM_NULL) {
        ckpt__err_set(&err, CKPT_EINVAL, "ckpt_comm_mpi: comm is MPI_COMM_NULL");
        return ckpt__comm_failed(&err);
    }
    ckpt_comm *c = calloc(1, sizeof *c);
    mpi_comm *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c);
        free(m);
        return ckpt__comm_oom();
    }
    int mrc = MPI_Comm_dup(comm, &m->comm);
    if (mrc != MPI_SUCCESS) {
        fail(&err, mrc, "ckpt_comm_mpi: MPI_Comm_dup");
        free(c);
        free(m);
        return ckpt__comm_failed(&err);
    }
    MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(m->comm, &m->rank);
    MPI_Comm_size(m->comm, &m->size);
    m->notes = MPI_COMM_NULL;
    m->xch = MPI_COMM_NULL;
    m->rreq = MPI_REQUEST_NULL;
    int notes = m->size > 1 ? notes_begin(m, &err) : 0;
    if (notes < 0) {
        MPI_Comm_free(&m->comm);
        free(c);
        free(m);
        return ckpt__comm_failed(&err);
    }
    ckpt__comm_init(c, notes ? &mpi_methods_notes : &mpi_methods, m);
    return c;
}
