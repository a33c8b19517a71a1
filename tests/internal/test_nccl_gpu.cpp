// SPDX-License-Identifier: Apache-2.0
// The NCCL comm backend on a real GPU, one rank (ctest label `gpu`; NCCL
// refuses two ranks on one GPU, and the multi-rank logic above the comm is
// shared with the MPI backend, tested in tests/mpi).  The collectives are
// called directly, with payloads larger than the backend's device buffer so
// they go in pieces, and a whole open/save/restore/policy cycle runs over
// the comm.  Without a GPU every test skips with the reason.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cuda_util.h"
#include "test_util.h"

#if CKPT_HAVE_NCCL
#include <ckpt/ckpt_nccl.h>

#include "runtime/comm.h"
#endif

namespace {

using namespace ckt;

class Nccl : public ::testing::Test {
  protected:
    void SetUp() override
    {
#if !CKPT_HAVE_NCCL
        GTEST_SKIP() << "built without NCCL";
#else
        std::string why = gpu_unavailable();
        if (!why.empty())
            GTEST_SKIP() << "no usable GPU: " << why;
        ncclUniqueId id;
        ASSERT_EQ(ncclGetUniqueId(&id), ncclSuccess);
        ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
        ASSERT_EQ(ncclCommInitRank(&app, 1, id, 0), ncclSuccess);
#endif
    }
    void TearDown() override
    {
#if CKPT_HAVE_NCCL
        if (app)
            ncclCommDestroy(app);
#endif
    }
    TempDir tmp;
    std::string dir = tmp.sub("ck");
#if CKPT_HAVE_NCCL
    ncclComm_t app = nullptr;
#endif
};

#if CKPT_HAVE_NCCL

TEST_F(Nccl, CollectivesInPieces)
{
    for (int own_stream = 0; own_stream < 2; own_stream++) {
        cudaStream_t s = nullptr;
        if (!own_stream) {
            ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
        }
        ckpt_comm *c = ckpt_comm_nccl(app, s);
        ASSERT_NE(c, nullptr) << ckpt_last_error(nullptr);
        EXPECT_STREQ(c->m->name, "nccl");
        EXPECT_EQ(c->m->rank(c), 0);
        EXPECT_EQ(c->m->size(c), 1);
        ckpt__err err = {};
        EXPECT_EQ(c->m->barrier(c, &err), 0) << err.msg;

        int64_t v[3] = {5, -7, 9};
        EXPECT_EQ(c->m->allreduce_i64(c, v, 3, CKPT__MIN, &err), 0) << err.msg;
        EXPECT_EQ(v[1], -7);
        EXPECT_EQ(c->m->allreduce_i64(c, v, 0, CKPT__MIN, &err), CKPT_EINVAL);

        // 3 MiB + 5: four pieces through the 1 MiB device buffer.
        std::vector<uint8_t> b((3u << 20) + 5);
        for (size_t i = 0; i < b.size(); i++)
            b[i] = (uint8_t)(i * 37u >> 2);
        std::vector<uint8_t> want = b;
        EXPECT_EQ(c->m->bcast(c, b.data(), b.size(), 0, &err), 0) << err.msg;
        EXPECT_EQ(b, want);
        EXPECT_EQ(c->m->bcast(c, b.data(), b.size(), 1, &err), CKPT_EINVAL);

        // A gather larger than its slot (half the buffer with one rank).
        std::vector<uint8_t> got(b.size(), 0);
        EXPECT_EQ(c->m->gather(c, want.data(), want.size(), got.data(), 0, &err), 0) << err.msg;
        EXPECT_EQ(got, want);
        c->m->destroy(c);
        if (s)
            cudaStreamDestroy(s);
    }
}

TEST_F(Nccl, KeepsTheCallersDeviceAndRoundTripsAContext)
{
    ckpt_comm *c = ckpt_comm_nccl(app, nullptr);
    ASSERT_NE(c, nullptr) << ckpt_last_error(nullptr);
    int dev = -1;
    ASSERT_EQ(cudaGetDevice(&dev), cudaSuccess);
    EXPECT_EQ(dev, 0);

    ckpt_config cfg = config(dir);
    cfg.device = CKPT_DEVICE_CUDA;
    cfg.policy_every_steps = 2;
    cfg.policy_every_s = 3600; // a time rule: every call agrees through the comm
    ckpt_ctx *ctx = nullptr;
    ASSERT_EQ(ckpt_open(&cfg, c, &ctx), 0) << ckpt_last_error(nullptr);

    const size_t n = (5u << 20) + 3;
    void *d = nullptr;
    ASSERT_EQ(cudaMalloc(&d, n), cudaSuccess);
    std::vector<uint8_t> want(n);
    for (size_t i = 0; i < n; i++)
        want[i] = (uint8_t)(i * 131u >> 3);
    ASSERT_EQ(cudaMemcpy(d, want.data(), n, cudaMemcpyHostToDevice), cudaSuccess);
    int64_t shape[] = {(int64_t)n};
    ASSERT_EQ(ckpt_register(ctx, "w", d, CKPT_U8, 1, shape), 0) << ckpt_last_error(ctx);

    cudaStream_t s;
    ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
    for (int64_t step = 1; step <= 4; step++) {
        int due = ckpt_policy_due(ctx, step);
        ASSERT_GE(due, 0) << ckpt_last_error(ctx);
        EXPECT_EQ(due, step % 2 == 0) << "step " << step;
    }
    ckpt_ticket t = 0;
    ASSERT_EQ(ckpt_save(ctx, 4, s, &t), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_fence(ctx, s), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(cudaMemsetAsync(d, 0x5A, n, s), cudaSuccess);
    ASSERT_EQ(ckpt_wait(ctx, t, -1), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);

    int64_t got = -1;
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, s, &got), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(got, 4);
    std::vector<uint8_t> back(n);
    ASSERT_EQ(cudaMemcpy(back.data(), d, n, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(back, want);
    EXPECT_EQ(ckpt_close(ctx), 0);
    cudaFree(d);
    cudaStreamDestroy(s);
}

#endif

} // namespace
