// SPDX-License-Identifier: Apache-2.0
// A comm backend for ranks that are threads of one process: the same
// collectives as the MPI backend (runtime/comm.h) over a barrier and shared
// buffers, so multi-rank saves and restores run under ThreadSanitizer and
// LeakSanitizer, which Open MPI does not allow.  Test code only.
#pragma once

#include <pthread.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "runtime/comm.h"

#if CKPT_LOOPBACK_NCCL
#include <ckpt/ckpt_nccl.h>
#endif

namespace ckl {

struct Shared {
    explicit Shared(int nranks) : n(nranks), slots((size_t)nranks)
    {
        pthread_barrier_init(&bar, nullptr, (unsigned)nranks);
    }
    ~Shared() { pthread_barrier_destroy(&bar); }
    int n;
    pthread_barrier_t bar;
    std::vector<std::vector<uint8_t>> slots; // one per rank
#if CKPT_LOOPBACK_NCCL
    ncclUniqueId id{};
    bool have_id = false;
#endif
};

struct Impl {
    Shared *sh;
    int rank;
};

inline Impl *me(const ckpt_comm *c)
{
    return static_cast<Impl *>(c->impl);
}

inline void wait_all(Impl *m)
{
    pthread_barrier_wait(&m->sh->bar);
}

inline int lb_rank(const ckpt_comm *c)
{
    return me(c)->rank;
}

inline int lb_size(const ckpt_comm *c)
{
    return me(c)->sh->n;
}

inline int lb_barrier(ckpt_comm *c, ckpt__err *)
{
    wait_all(me(c));
    return 0;
}

// Every collective: publish into this rank's slot, wait, read, wait.
inline int lb_bcast(ckpt_comm *c, void *buf, size_t n, int root, ckpt__err *)
{
    Impl *m = me(c);
    if (m->rank == root)
        m->sh->slots[(size_t)root].assign((uint8_t *)buf, (uint8_t *)buf + n);
    wait_all(m);
    if (m->rank != root)
        memcpy(buf, m->sh->slots[(size_t)root].data(), n);
    wait_all(m);
    return 0;
}

inline int lb_allreduce(ckpt_comm *c, int64_t *vals, int n, int op, ckpt__err *)
{
    Impl *m = me(c);
    auto &mine = m->sh->slots[(size_t)m->rank];
    mine.assign((uint8_t *)vals, (uint8_t *)(vals + n));
    wait_all(m);
    for (int r = 0; r < m->sh->n; r++) {
        const int64_t *o = reinterpret_cast<const int64_t *>(m->sh->slots[(size_t)r].data());
        for (int i = 0; i < n; i++)
            vals[i] = op == CKPT__MIN ? std::min(vals[i], o[i]) : std::max(vals[i], o[i]);
    }
    wait_all(m);
    return 0;
}

inline int lb_gather(ckpt_comm *c, const void *send, size_t n, void *recv, int root, ckpt__err *)
{
    Impl *m = me(c);
    m->sh->slots[(size_t)m->rank].assign((const uint8_t *)send, (const uint8_t *)send + n);
    wait_all(m);
    if (m->rank == root)
        for (int r = 0; r < m->sh->n; r++)
            memcpy((uint8_t *)recv + (size_t)r * n, m->sh->slots[(size_t)r].data(), n);
    wait_all(m);
    return 0;
}

inline void lb_destroy(ckpt_comm *c)
{
    delete me(c);
    delete c;
}

inline const ckpt__comm_methods methods = {
    CKPT__COMM_VERSION, "loopback", lb_rank,      lb_size,   lb_barrier,
    lb_bcast,           lb_allreduce, lb_gather, lb_destroy,
};

#if CKPT_LOOPBACK_NCCL
// Built for the NCCL stand-in (tests/cudasim): every rank's comm is
// ckpt_comm_nccl over a communicator of thread ranks, one device each, so
// the same suites run the NCCL comm backend.
inline ckpt_comm *make(Shared *sh, int rank)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu); // the first rank here makes the id for all
    if (!sh->have_id && ncclGetUniqueId(&sh->id) == ncclSuccess)
        sh->have_id = true;
    pthread_mutex_unlock(&mu);
    ncclComm_t app = nullptr;
    if (cudaSetDevice(rank) != cudaSuccess ||
        ncclCommInitRank(&app, sh->n, sh->id, rank) != ncclSuccess) {
        // A null comm would open a single-rank context and hide this.
        fprintf(stderr, "loopback_comm: no NCCL communicator for rank %d\n", rank);
        abort();
    }
    ckpt_comm *c = ckpt_comm_nccl(app, nullptr);
    ncclCommDestroy(app); // the backend keeps its own split communicator
    return c;
}
#else
// A comm for `rank` of the threads sharing `sh`; ckpt_open takes it over.
inline ckpt_comm *make(Shared *sh, int rank)
{
    ckpt_comm *c = new ckpt_comm;
    ckpt__comm_init(c, &methods, new Impl{sh, rank});
    return c;
}
#endif

// Runs body(rank, comm) on n threads sharing one loopback comm.
inline void on_ranks(int n, const std::function<void(int, ckpt_comm *)> &body)
{
    Shared sh(n);
    std::vector<std::thread> ts;
    for (int r = 0; r < n; r++)
        ts.emplace_back([&, r] { body(r, make(&sh, r)); });
    for (auto &t : ts)
        t.join();
}

} // namespace ckl
