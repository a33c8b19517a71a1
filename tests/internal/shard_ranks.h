// SPDX-License-Identifier: Apache-2.0
// The sharded test model (shard_model.h) saved and restored on any number
// of ranks as threads of this process (loopback_comm.h): the round trips
// the multi-rank suites share.  A Tweak changes every rank's config
// (ckm::config) before the open: a writer, a queue depth.
#pragma once

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "loopback_comm.h"
#include "shard_model.h"

namespace ckm {

using Tweak = std::function<void(ckpt_config &)>;
// A tweak that differs per rank (its first argument): a node name.
using RankTweak = std::function<void(int, ckpt_config &)>;

// Opens dir on this thread's rank and registers its part of the n-rank
// model into m; nullptr (with a test failure) when the open fails.
inline ckpt_ctx *open_with_model(const std::string &dir, ckpt_comm *comm, int n, int r,
                                 std::vector<Part> &m, const Tweak &tweak = nullptr)
{
    ckpt_config cfg = config(dir);
    if (tweak)
        tweak(cfg);
    ckpt_ctx *ck = nullptr;
    EXPECT_EQ(ckpt_open(&cfg, comm, &ck), 0) << ckpt_last_error(nullptr);
    m = model(n, r);
    for (auto &p : m) {
        if (ck) {
            EXPECT_EQ(register_part(ck, p), 0) << ckpt_last_error(ck);
        }
    }
    return ck;
}

// Saves the model on n ranks at each of steps, rank r's config tweaked by
// tweak(r, cfg).
inline void save_each(int n, const std::string &dir, std::vector<int64_t> steps,
                      const RankTweak &tweak)
{
    ckl::on_ranks(n, [&](int r, ckpt_comm *comm) {
        std::vector<Part> m;
        ckpt_ctx *ck = open_with_model(dir, comm, n, r, m, [&](ckpt_config &c) {
            if (tweak)
                tweak(r, c);
        });
        ASSERT_NE(ck, nullptr);
        for (int64_t s : steps) {
            for (auto &p : m)
                p.fill(s);
            ckpt_ticket t;
            ASSERT_EQ(ckpt_save(ck, s, nullptr, &t), 0) << ckpt_last_error(ck);
            ASSERT_EQ(ckpt_fence(ck, nullptr), 0);
            EXPECT_EQ(ckpt_wait(ck, t, -1), 0) << "rank " << r << ": " << ckpt_last_error(ck);
        }
        EXPECT_EQ(ckpt_close(ck), 0) << ckpt_last_error(nullptr);
    });
}

// Saves the model on n ranks at each of steps.
inline void save_on(int n, const std::string &dir, std::vector<int64_t> steps,
                    const Tweak &tweak = nullptr)
{
    save_each(n, dir, std::move(steps), [&](int, ckpt_config &c) {
        if (tweak)
            tweak(c);
    });
}

// Restores on n ranks; every rank must get `want`, bit-exact.
inline void restore_on(int n, const std::string &dir, int64_t want, const Tweak &tweak = nullptr)
{
    ckl::on_ranks(n, [&](int r, ckpt_comm *comm) {
        std::vector<Part> m;
        ckpt_ctx *ck = open_with_model(dir, comm, n, r, m, tweak);
        ASSERT_NE(ck, nullptr);
        for (auto &p : m)
            std::fill(p.data.begin(), p.data.end(), 0xDEADBEEFu);
        int64_t step = -1;
        EXPECT_EQ(ckpt_restore(ck, CKPT_LATEST, nullptr, &step), 0) << ckpt_last_error(ck);
        EXPECT_EQ(step, want) << "rank " << r << " of " << n;
        for (const auto &p : m)
            EXPECT_EQ(p.first_bad(want), -1) << "rank " << r << " of " << n << ": " << p.name;
        EXPECT_EQ(ckpt_close(ck), 0);
    });
}

} // namespace ckm
