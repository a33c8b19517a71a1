/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The comm interface: the few collectives the runtime needs to agree across
 * ranks.  Backends: comm_single.c (one rank), comm_mpi.c (MPI) and
 * cuda/comm_nccl.c (NCCL).
 *
 * Rule (docs/ARCHITECTURE.md, threads): collectives run only on the caller's thread, at points
 * every rank reaches in the same order (open, restore, close, an explicit
 * barrier); never from a background thread.  The one exception is the
 * notes (below): point-to-point messages from rank 0 to each other rank,
 * which the coordinator threads exchange, on a channel of their own that
 * a backend offers only where that is safe beside the caller's collectives.
 *
 * The MPI and NCCL backends are libraries of their own (libckpt_mpi,
 * libckpt_nccl) that must not need any symbol of libckpt: a static libckpt
 * exports none.  So a factory (ckpt_comm_mpi, ckpt_comm_nccl) reports its
 * failure on what it returns, not in libckpt's per-thread buffer: it never
 * returns NULL, but a comm whose sticky `err` holds the code and message
 * (comm_failed.c, which each comm library compiles in), and ckpt_open
 * refuses such a comm with them.  Every comm carries the interface version
 * it was built for, as its first member, so ckpt_open can refuse a comm of
 * a different build before it reads anything else of it.
 */
#ifndef CKPT_RUNTIME_COMM_H
#define CKPT_RUNTIME_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2: struct ckpt_comm starts with its version and carries a sticky error.
 * 3: the optional notes.  4: the optional exchange. */
#define CKPT__COMM_VERSION 4

/* Bytes of one note, always exactly this many. */
#define CKPT__NOTE_BYTES 256

enum ckpt__reduce { CKPT__MIN = 1, CKPT__MAX = 2 };

/* One message of an exchange: n bytes to (a send) or from (a receive)
 * rank peer. */
typedef struct ckpt__msg {
    int peer;
    void *buf;
    size_t n;
} ckpt__msg;

typedef struct ckpt__comm_methods {
    int version;
    const char *name;
    int (*rank)(const ckpt_comm *c);
    int (*size)(const ckpt_comm *c);
    int (*barrier)(ckpt_comm *c, ckpt__err *err);
    int (*bcast)(ckpt_comm *c, void *buf, size_t n, int root, ckpt__err *err);
    int (*allreduce_i64)(ckpt_comm *c, int64_t *vals, int n, int op, ckpt__err *err);
    /* recv (root only) gets size() * n bytes, rank order. */
    int (*gather)(ckpt_comm *c, const void *send, size_t n, void *recv, int root,
                  ckpt__err *err);
    void (*destroy)(ckpt_comm *c);
    /* Optional (both NULL where a backend has none): notes, messages of
     * CKPT__NOTE_BYTES from rank 0 to one other rank, sent and received by
     * the coordinator threads while the callers' threads may be in
     * collectives.  note_send (rank 0) never blocks and never waits for the
     * receiver.  note_recv waits at most timeout_s for the next note from
     * rank 0: 1 when one came (into buf), 0 when none came in time, a
     * CKPT_E code (negative) on error (then notes are not used any more).
     * Notes from rank 0 to a rank arrive in the order sent; a note nobody
     * receives is dropped when the comm is destroyed. */
    int (*note_send)(ckpt_comm *c, int to, const void *buf, ckpt__err *err);
    int (*note_recv)(ckpt_comm *c, void *buf, double timeout_s, ckpt__err *err);
    /* Optional (NULL where a backend has none): an exchange of
     * point-to-point messages between any ranks (the replicas of
     * docs/ARCHITECTURE.md, "Tiers"), on a channel of its own that never
     * matches a collective or a note, offered only where that is safe
     * beside the callers' collectives (MPI: MPI_THREAD_MULTIPLE).  A rank
     * posts all its sends and receives at once and waits for them all, so
     * no order of the ranks' calls deadlocks; ranks that exchange nothing
     * with it need not call.  The messages from one rank to another
     * arrive in the order posted, within and across exchanges; a
     * receive's n must be the matching send's (else CKPT_ECOMM).  One
     * thread at a time per comm: the coordinator thread in a save, the
     * caller's thread in a restore (no save in flight then).  Waits at
     * most timeout_s: then CKPT_ETIMEDOUT, the backend may refuse every
     * later exchange (CKPT_ECOMM) and may still read the sends' buffers,
     * which the caller must then leave allocated and unchanged. */
    int (*exchange)(ckpt_comm *c, const ckpt__msg *sends, int nsend, ckpt__msg *recvs,
                    int nrecv, double timeout_s, ckpt__err *err);
} ckpt__comm_methods;

struct ckpt_comm {
    int version; /* CKPT__COMM_VERSION of the code that made it: first, always */
    const ckpt__comm_methods *m;
    void *impl;
    /* code nonzero: the factory failed and this comm only carries why;
     * ckpt_open refuses it (then destroys it through m). */
    ckpt__err err;
};

/* Sets up a working comm: version, methods, impl, no error. */
static inline void ckpt__comm_init(ckpt_comm *c, const ckpt__comm_methods *m, void *impl)
{
    c->version = CKPT__COMM_VERSION;
    c->m = m;
    c->impl = impl;
    c->err.code = 0;
    c->err.msg[0] = '\0';
}

/* A heap-allocated single-rank comm; NULL when out of memory. */
ckpt_comm *ckpt__comm_single(void);

/* comm_failed.c, compiled into every comm library: a comm that carries
 * *err (err->code nonzero) and nothing else.  Never NULL: when even that
 * cannot be allocated, the library's one static "out of memory" comm,
 * which destroy leaves alone (it is immortal, so any number of failed
 * factories may return it at once). */
ckpt_comm *ckpt__comm_failed(const ckpt__err *err);
/* That static out-of-memory comm (CKPT_ENOMEM). */
ckpt_comm *ckpt__comm_oom(void);

#ifdef __cplusplus
}
#endif
#endif
