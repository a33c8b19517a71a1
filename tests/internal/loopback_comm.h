// SPDX-License-Identifier: Apache-2.0
// Ranks as threads of one process for the tests: the loopback comm of
// bench/loopback.h (shared with `ckpt-bench scale`), held by a C++ owner,
// so multi-rank saves and restores run under ThreadSanitizer and
// LeakSanitizer, which Open MPI does not allow.  Built for the NCCL
// stand-in (tests/cudasim, CKPT_LOOPBACK_NCCL), every rank's comm is
// ckpt_comm_nccl over a communicator of thread ranks instead.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <new>
#include <stdexcept>
#include <thread>
#include <vector>

#include <pthread.h>

#include "bench/loopback.h"

#if CKPT_LOOPBACK_NCCL
#include <ckpt/ckpt_nccl.h>
#endif

namespace ckl {

struct Shared {
    explicit Shared(int nranks) : n(nranks), lb(ckpt_loopback_new(nranks))
    {
        if (!lb)
            throw std::bad_alloc();
    }
    ~Shared() { ckpt_loopback_free(lb); }
    Shared(const Shared &) = delete;
    Shared &operator=(const Shared &) = delete;
    int n;
    ckpt_loopback *lb;
#if CKPT_LOOPBACK_NCCL
    ncclUniqueId id{};
    bool have_id = false;
#endif
};

#if CKPT_LOOPBACK_NCCL
// One device per thread rank, one NCCL communicator over them.
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
    ckpt_comm *c = ckpt_loopback_comm(sh->lb, rank);
    if (!c)
        throw std::bad_alloc();
    return c;
}
#endif

// Runs body(rank, comm) on the threads sharing sh, one per rank.
inline void on_ranks(Shared &sh, const std::function<void(int, ckpt_comm *)> &body)
{
    std::vector<std::thread> ts;
    for (int r = 0; r < sh.n; r++)
        ts.emplace_back([&, r] { body(r, make(&sh, r)); });
    for (auto &t : ts)
        t.join();
}

// Runs body(rank, comm) on n threads sharing one loopback comm.
inline void on_ranks(int n, const std::function<void(int, ckpt_comm *)> &body)
{
    Shared sh(n);
    on_ranks(sh, body);
}

} // namespace ckl
