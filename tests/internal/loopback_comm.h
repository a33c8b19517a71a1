// SPDX-License-Identifier: Apache-2.0
// Ranks as threads of one process for the tests: the loopback comm of
// bench/loopback.h (shared with `ckpt-bench scale`), held by a C++ owner.
#pragma once

#include <new>
#include <stdexcept>

#include "bench/loopback.h"

namespace ckl {

struct Shared {
    explicit Shared(int nranks) : lb(ckpt_loopback_new(nranks))
    {
        if (!lb)
            throw std::bad_alloc();
    }
    ~Shared() { ckpt_loopback_free(lb); }
    Shared(const Shared &) = delete;
    Shared &operator=(const Shared &) = delete;
    ckpt_loopback *lb;
};

// A comm for `rank` of the threads sharing `sh`; ckpt_open takes it over.
inline ckpt_comm *make(Shared *sh, int rank)
{
    ckpt_comm *c = ckpt_loopback_comm(sh->lb, rank);
    if (!c)
        throw std::bad_alloc();
    return c;
}

} // namespace ckl
