// SPDX-License-Identifier: Apache-2.0
// The state the damage suites (test_corruption, test_rankmeta) save: a
// tensor "w" of w_elems floats, a bf16 "b" [333, 77], an i32 "tiny" [5] and
// a metadata blob "version", committed as steps 1 and 2, each step with its
// own bytes, so that a restore can tell exactly which step it got.  The
// tensors are device memory in the cudasim builds (tensor_mem.h).
#pragma once

#include "tensor_mem.h"
#include "test_util.h"

namespace ckt {

struct TwoSteps {
    TensorMem w, b = TensorMem(333 * 77 * 2), tiny = TensorMem(5 * 4);

    explicit TwoSteps(int64_t w_elems) : w((size_t)w_elems * 4) {}

    // Registers the tensors with ctx and commits steps 1 and 2.
    void save(ckpt_ctx *ctx)
    {
        const int64_t ws[] = {(int64_t)w.size() / 4}, bs[] = {333, 77}, ts[] = {5};
        ASSERT_EQ(ckpt_register(ctx, "w", w.data(), CKPT_F32, 1, ws), 0);
        ASSERT_EQ(ckpt_register(ctx, "b", b.data(), CKPT_BF16, 2, bs), 0);
        ASSERT_EQ(ckpt_register(ctx, "tiny", tiny.data(), CKPT_I32, 1, ts), 0);
        for (int64_t s : {1, 2}) {
            set((uint64_t)s);
            uint64_t v = (uint64_t)s;
            ASSERT_EQ(ckpt_set_meta(ctx, "version", &v, sizeof v), 0);
            ASSERT_EQ(save_wait(ctx, s), 0) << ckpt_last_error(ctx);
        }
    }
    // The tensors' bytes of step v (0: bytes of no step).
    void set(uint64_t v)
    {
        w.fill(v * 7 + 1);
        b.fill(v * 7 + 2);
        tiny.fill(v * 7 + 3);
    }
    bool is(uint64_t v) const
    {
        return w.matches(v * 7 + 1) && b.matches(v * 7 + 2) && tiny.matches(v * 7 + 3);
    }
};

} // namespace ckt
