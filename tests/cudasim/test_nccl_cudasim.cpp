// SPDX-License-Identifier: Apache-2.0
// The NCCL comm backend (cuda/comm_nccl.c, as libckpt_nccl_sim) on 2 and 4
// thread-ranks over the NCCL stand-in: its collectives called directly in
// pieces, a whole open/policy/save/commit/restore cycle with the CUDA
// device backend and device-memory tensors, fallback when one rank's shard
// of the newest checkpoint is corrupt, resharding to another rank count, a
// rank whose collective fails and a rank that stops participating (neither
// may hang the others).  The model suites in internal/test_ranks.cpp run
// over the same comm as internal_test_ranks_nccl.
#include <cuda_runtime_api.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <ckpt/ckpt_nccl.h>

#include "cudasim.h"
#include "loopback_comm.h"
#include "runtime/comm.h"
#include "shard_model.h"
#include "test_util.h"

namespace {

using namespace ckt;

using ckl::on_ranks;

// Opens dir on rank r of n with the model registered into m; nullptr
// (with a test failure) when the open fails.
ckpt_ctx *open_model(const std::string &dir, ckpt_comm *comm, int n, int r,
                     std::vector<ckm::Part> &m, ckpt_device device = CKPT_DEVICE_AUTO)
{
    ckpt_config cfg = ckm::config(dir);
    cfg.device = device;
    ckpt_ctx *ck = nullptr;
    EXPECT_EQ(ckpt_open(&cfg, comm, &ck), 0) << ckpt_last_error(nullptr);
    m = ckm::model(n, r);
    if (ck)
        ckm::register_model(ck, m);
    return ck;
}

class NcclRanks : public ::testing::TestWithParam<int> {
  protected:
    TempDir tmp;
    std::string dir = tmp.sub("ck");
    void TearDown() override { cudasim_reset(); }
};

TEST_P(NcclRanks, CollectivesInPieces)
{
    const int n = GetParam();
    on_ranks(n, [&](int r, ckpt_comm *c) {
        ASSERT_NE(c, nullptr);
        ckpt__err err = {};
        EXPECT_STREQ(c->m->name, "nccl");
        EXPECT_EQ(c->m->rank(c), r);
        EXPECT_EQ(c->m->size(c), n);
        EXPECT_EQ(c->m->barrier(c, &err), 0) << err.msg;
        int64_t v[3] = {r, -r, 100 + r};
        EXPECT_EQ(c->m->allreduce_i64(c, v, 3, CKPT__MIN, &err), 0) << err.msg;
        EXPECT_EQ(v[0], 0);
        EXPECT_EQ(v[1], -(n - 1));
        EXPECT_EQ(v[2], 100);
        int64_t w[2] = {r, -r};
        EXPECT_EQ(c->m->allreduce_i64(c, w, 2, CKPT__MAX, &err), 0) << err.msg;
        EXPECT_EQ(w[0], n - 1);
        EXPECT_EQ(w[1], 0);
        // 3 MiB + 5 from the last rank: four pieces through the 1 MiB buffer.
        std::vector<uint8_t> b((3u << 20) + 5), want(b.size());
        for (size_t i = 0; i < b.size(); i++)
            want[i] = (uint8_t)(i * 37u >> 2);
        if (r == n - 1)
            b = want;
        EXPECT_EQ(c->m->bcast(c, b.data(), b.size(), n - 1, &err), 0) << err.msg;
        EXPECT_EQ(b, want);
        // A gather larger than its slot: each rank sends its own bytes.
        std::vector<uint8_t> mine(700001);
        for (size_t i = 0; i < mine.size(); i++)
            mine[i] = (uint8_t)(i * 13u + (unsigned)r * 101u);
        std::vector<uint8_t> all(r == 0 ? mine.size() * (size_t)n : 0);
        EXPECT_EQ(c->m->gather(c, mine.data(), mine.size(), r == 0 ? all.data() : nullptr, 0,
                               &err),
                  0)
            << err.msg;
        for (int k = 0; r == 0 && k < n; k++)
            for (size_t i = 0; i < mine.size(); i += 997)
                ASSERT_EQ(all[(size_t)k * mine.size() + i], (uint8_t)(i * 13u + (unsigned)k * 101u))
                    << "rank " << k << " byte " << i;
        c->m->destroy(c);
    });
}

// Saves the model on n ranks at each of steps (device=cuda, host tensors).
void save_on(int n, const std::string &dir, std::vector<int64_t> steps)
{
    on_ranks(n, [&](int r, ckpt_comm *comm) {
        std::vector<ckm::Part> m;
        ckpt_ctx *ck = open_model(dir, comm, n, r, m, CKPT_DEVICE_CUDA);
        ASSERT_NE(ck, nullptr);
        for (int64_t s : steps) {
            for (auto &p : m)
                p.fill(s);
            EXPECT_EQ(save_wait(ck, s), 0) << "rank " << r << ": " << ckpt_last_error(ck);
        }
        EXPECT_EQ(ckpt_close(ck), 0);
    });
}

// Restores on n ranks: every rank must agree on `want`, bit-exact.
void restore_on(int n, const std::string &dir, int64_t want)
{
    on_ranks(n, [&](int r, ckpt_comm *comm) {
        std::vector<ckm::Part> m;
        ckpt_ctx *ck = open_model(dir, comm, n, r, m);
        ASSERT_NE(ck, nullptr);
        int64_t step = -1;
        EXPECT_EQ(ckpt_restore(ck, CKPT_LATEST, nullptr, &step), 0) << ckpt_last_error(ck);
        EXPECT_EQ(step, want) << "rank " << r << " of " << n;
        for (const auto &p : m)
            EXPECT_EQ(p.first_bad(want), -1) << "rank " << r << ": " << p.name;
        EXPECT_EQ(ckpt_close(ck), 0);
    });
}

// Open agreement, the save policy, commit and restore agreement, with
// device-memory tensors on the CUDA backend and the training stream fenced.
TEST_P(NcclRanks, DeviceTensorsSavePolicyCommitRestore)
{
    const int n = GetParam();
    on_ranks(n, [&](int r, ckpt_comm *comm) {
        ckpt_config cfg = ckm::config(dir);
        cfg.device = CKPT_DEVICE_CUDA;
        cfg.policy_every_steps = 2;
        cfg.policy_every_s = 3600; // a time rule: every call agrees through the comm
        ckpt_ctx *ck = nullptr;
        ASSERT_EQ(ckpt_open(&cfg, comm, &ck), 0) << ckpt_last_error(nullptr);
        EXPECT_STREQ(ckpt_device_name(ck), "cuda");
        const size_t nb = 300001;
        std::vector<uint8_t> want(nb);
        for (size_t i = 0; i < nb; i++)
            want[i] = (uint8_t)(i * 7u + (unsigned)r);
        void *d = nullptr;
        ASSERT_EQ(cudaMalloc(&d, nb), cudaSuccess);
        ASSERT_EQ(cudaMemcpy(d, want.data(), nb, cudaMemcpyHostToDevice), cudaSuccess);
        int64_t g[] = {(int64_t)nb * n}, start[] = {(int64_t)nb * r}, cnt[] = {(int64_t)nb};
        ASSERT_EQ(ckpt_register_shard(ck, "w", d, CKPT_U8, 1, g, start, cnt), 0)
            << ckpt_last_error(ck);
        cudaStream_t s;
        ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
        for (int64_t step = 1; step <= 4; step++) {
            int due = ckpt_policy_due(ck, step);
            ASSERT_GE(due, 0) << ckpt_last_error(ck);
            EXPECT_EQ(due, step % 2 == 0) << "step " << step;
        }
        ckpt_ticket t = 0;
        ASSERT_EQ(ckpt_save(ck, 4, s, &t), 0) << ckpt_last_error(ck);
        ASSERT_EQ(ckpt_fence(ck, s), 0) << ckpt_last_error(ck);
        ASSERT_EQ(cudaMemsetAsync(d, 0x5A, nb, s), cudaSuccess);
        EXPECT_EQ(ckpt_wait(ck, t, -1), 0) << "rank " << r << ": " << ckpt_last_error(ck);
        ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
        int64_t got = -1;
        ASSERT_EQ(ckpt_restore(ck, CKPT_LATEST, s, &got), 0) << ckpt_last_error(ck);
        EXPECT_EQ(got, 4);
        std::vector<uint8_t> back(nb);
        ASSERT_EQ(cudaMemcpy(back.data(), d, nb, cudaMemcpyDeviceToHost), cudaSuccess);
        EXPECT_EQ(back, want) << "rank " << r;
        EXPECT_EQ(ckpt_close(ck), 0);
        EXPECT_EQ(cudaFree(d), cudaSuccess);
        EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
    });
}

// One rank's shard of the newest checkpoint is damaged: every rank falls
// back to the previous step together.  Then the same files on another
// rank count (resharding).
TEST_P(NcclRanks, CorruptShardFallsBackOnEveryRankAndReshards)
{
    const int n = GetParam();
    save_on(n, dir, {1, 2});
    std::string victim = step_dir(dir, 2) + "/rank-0000" + std::to_string(n - 1) + ".h5";
    std::string bytes = read_file(victim);
    ASSERT_GT(bytes.size(), 10000u);
    for (size_t i = bytes.size() / 4; i < bytes.size() * 3 / 4; i += 512)
        bytes[i] = (char)(bytes[i] ^ 0x5A);
    write_file(victim, bytes);
    restore_on(n, dir, 1);
    restore_on(n == 2 ? 4 : 2, dir, 1);
}

// A rank whose collective fails (the restore's agreement; saves commit
// through files, not collectives): every rank's restore fails with the
// comm's error and nobody hangs; fresh communicators restore the step.
TEST_P(NcclRanks, ARankWhoseCollectiveFails)
{
    const int n = GetParam();
    save_on(n, dir, {1});
    std::atomic<int> failed{0};
    on_ranks(n, [&](int r, ckpt_comm *comm) {
        std::vector<ckm::Part> m;
        ckpt_ctx *ck = open_model(dir, comm, n, r, m);
        ASSERT_NE(ck, nullptr);
        if (r == n - 1) // before this rank's first collective of the restore
            cudasim_nccl_fail_collective(n - 1, 1);
        int64_t step = -1;
        int rc = ckpt_restore(ck, CKPT_LATEST, nullptr, &step);
        std::string msg = ckpt_last_error(ck);
        if (rc == CKPT_ECOMM)
            failed++;
        EXPECT_EQ(rc, CKPT_ECOMM) << "rank " << r << ": " << msg;
        EXPECT_NE(msg.find("nccl"), std::string::npos) << "rank " << r << ": " << msg;
        (void)ckpt_close(ck);
    });
    EXPECT_EQ(failed.load(), n);
    cudasim_nccl_fail_collective(0, 0);
    restore_on(n, dir, 1);
}

INSTANTIATE_TEST_SUITE_P(Ranks, NcclRanks, ::testing::Values(2, 4),
                         [](const ::testing::TestParamInfo<int> &i) {
                             return std::to_string(i.param) + "ranks";
                         });

// A rank that stops participating: its peers' collectives time out with
// an error instead of hanging, and the comm fails at once afterwards.
TEST(NcclStopped, APeerThatStopsMakesTheOthersFailNotHang)
{
    std::promise<void> finished;
    setenv("CUDASIM_NCCL_TIMEOUT_MS", "300", 1);
    // A hang is this test's failure: a watchdog ends the process with one.
    std::thread watchdog([done = finished.get_future()]() mutable {
        if (done.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
            fprintf(stderr, "NcclStopped: rank 0 still blocked after 30 s (a hang)\n");
            _exit(1);
        }
    });
    on_ranks(2, [&](int r, ckpt_comm *c) {
        ASSERT_NE(c, nullptr);
        ckpt__err err = {};
        EXPECT_EQ(c->m->barrier(c, &err), 0) << err.msg;
        if (r == 0) {
            int64_t v = 1;
            ckpt__err_clear(&err);
            EXPECT_EQ(c->m->allreduce_i64(c, &v, 1, CKPT__MAX, &err), CKPT_ECOMM);
            EXPECT_NE(std::string(err.msg).find("ncclCommGetAsyncError"), std::string::npos)
                << err.msg;
            ckpt__err_clear(&err);
            EXPECT_EQ(c->m->barrier(c, &err), CKPT_ECOMM); // aborted: fails at once
        }
        c->m->destroy(c);
    });
    finished.set_value();
    watchdog.join();
    unsetenv("CUDASIM_NCCL_TIMEOUT_MS");
}

} // namespace
