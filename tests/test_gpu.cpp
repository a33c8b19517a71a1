// SPDX-License-Identifier: Apache-2.0
// The CUDA backend on a real GPU (ctest label `gpu`): tensors in device
// memory are saved, the training stream fences, mutates them with
// cudaMemset, and a restore brings the saved bytes back.  Without a GPU
// every test skips with the reason.
#include <cstdint>
#include <string>
#include <vector>

#include "cuda_util.h"
#include "test_util.h"

namespace {

using namespace ckt;

class Gpu : public ::testing::Test {
  protected:
    void SetUp() override
    {
        std::string why = gpu_unavailable();
        if (!why.empty())
            GTEST_SKIP() << "no usable GPU: " << why;
    }
    TempDir tmp;
    std::string dir = tmp.sub("ck");
};

#if CKPT_HAVE_CUDA

#define CUDA_OK(call)                                                                       \
    do {                                                                                    \
        cudaError_t e_ = (call);                                                            \
        ASSERT_EQ(e_, cudaSuccess) << #call << ": " << cudaGetErrorString(e_);              \
    } while (0)

// Fills n bytes of a pattern that depends on seed and position.
static std::vector<uint8_t> pattern(size_t n, unsigned seed)
{
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; i++)
        v[i] = (uint8_t)((i * 131u + seed * 7u) >> 3);
    return v;
}

TEST_F(Gpu, SaveFenceMutateRestore)
{
    ckpt_config cfg = config(dir);
    cfg.device = CKPT_DEVICE_CUDA;
    cfg.staging_bytes = 8u << 20; // smaller than the state: slabs are reused
    ckpt_ctx *ctx = open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    EXPECT_STREQ(ckpt_device_name(ctx), "cuda");

    const size_t sizes[] = {12u << 20, 3u << 20, 4096 + 17};
    std::vector<void *> dev;
    std::vector<std::vector<uint8_t>> want;
    cudaStream_t stream;
    CUDA_OK(cudaStreamCreate(&stream));
    for (size_t i = 0; i < 3; i++) {
        void *p = nullptr;
        CUDA_OK(cudaMalloc(&p, sizes[i]));
        dev.push_back(p);
        want.push_back(pattern(sizes[i], (unsigned)i + 1));
        CUDA_OK(cudaMemcpy(p, want[i].data(), sizes[i], cudaMemcpyHostToDevice));
        int64_t shape[] = {(int64_t)sizes[i]};
        std::string name = "t" + std::to_string(i);
        ASSERT_EQ(ckpt_register(ctx, name.c_str(), p, CKPT_U8, 1, shape), 0)
            << ckpt_last_error(ctx);
    }

    ckpt_ticket t = 0;
    ASSERT_EQ(ckpt_save(ctx, 3, stream, &t), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_fence(ctx, stream), 0) << ckpt_last_error(ctx);
    // The optimizer step: queued after the fence on the same stream.
    for (size_t i = 0; i < 3; i++)
        CUDA_OK(cudaMemsetAsync(dev[i], 0xA5, sizes[i], stream));
    ASSERT_EQ(ckpt_wait(ctx, t, -1), 0) << ckpt_last_error(ctx);
    CUDA_OK(cudaStreamSynchronize(stream));

    int64_t got = -1;
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, stream, &got), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(got, 3);
    for (size_t i = 0; i < 3; i++) {
        std::vector<uint8_t> back(sizes[i]);
        CUDA_OK(cudaMemcpy(back.data(), dev[i], sizes[i], cudaMemcpyDeviceToHost));
        EXPECT_EQ(back, want[i]) << "tensor t" << i;
        CUDA_OK(cudaFree(dev[i]));
    }
    CUDA_OK(cudaStreamDestroy(stream));
    EXPECT_EQ(ckpt_close(ctx), 0);
}

TEST_F(Gpu, PinnedManagedAndPageableTensorsRoundTrip)
{
    ckpt_config cfg = config(dir);
    cfg.device = CKPT_DEVICE_CUDA;
    ckpt_ctx *ctx = open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    const size_t n = (1u << 20) + 333;
    void *pinned = nullptr, *managed = nullptr;
    CUDA_OK(cudaMallocHost(&pinned, n));
    CUDA_OK(cudaMallocManaged(&managed, n, cudaMemAttachGlobal));
    std::vector<uint8_t> pageable = pattern(n, 9);
    std::vector<uint8_t> a = pattern(n, 4), b = pattern(n, 5);
    memcpy(pinned, a.data(), n);
    memcpy(managed, b.data(), n);
    int64_t shape[] = {(int64_t)n};
    ASSERT_EQ(ckpt_register(ctx, "pinned", pinned, CKPT_U8, 1, shape), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_register(ctx, "managed", managed, CKPT_U8, 1, shape), 0)
        << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_register(ctx, "pageable", pageable.data(), CKPT_U8, 1, shape), 0)
        << ckpt_last_error(ctx);
    ASSERT_EQ(save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_fence(ctx, nullptr), 0) << ckpt_last_error(ctx);
    CUDA_OK(cudaDeviceSynchronize());
    memset(pinned, 0, n);
    memset(managed, 0, n);
    std::vector<uint8_t> want = pageable;
    std::fill(pageable.begin(), pageable.end(), 0);
    ASSERT_EQ(ckpt_restore(ctx, 1, nullptr, nullptr), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(memcmp(pinned, a.data(), n), 0);
    EXPECT_EQ(memcmp(managed, b.data(), n), 0);
    EXPECT_EQ(pageable, want);
    EXPECT_EQ(ckpt_close(ctx), 0);
    CUDA_OK(cudaFreeHost(pinned));
    CUDA_OK(cudaFree(managed));
}

#else

TEST_F(Gpu, SaveFenceMutateRestore) {}

#endif

} // namespace
