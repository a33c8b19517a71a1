// SPDX-License-Identifier: Apache-2.0
// Device backend selection: device=cuda opens only with a GPU and names the
// CUDA error otherwise; device=auto falls back to the host backend and
// still round-trips.  Each test asserts what this machine should do.  The
// CUDA backend is the plugin in build/lib (libckpt_cuda.so.N), found from
// this program's folder as any program of the static libckpt finds it; its
// lookup failures are in test_device_plugin.cpp.
#include <cstring>
#include <string>
#include <vector>

#include "cuda_util.h"
#include "test_util.h"

#if CKPT_HAVE_NCCL
#include <ckpt/ckpt_nccl.h>
#endif

namespace {

using namespace ckt;

class DeviceSelect : public ::testing::Test {
  protected:
    TempDir tmp;
    std::string dir = tmp.sub("ck");
};

TEST_F(DeviceSelect, CudaOpensOnlyWithAGpu)
{
    ckpt_config cfg = config(dir);
    cfg.device = CKPT_DEVICE_CUDA;
    ckpt_ctx *ctx = nullptr;
    int rc = ckpt_open(&cfg, nullptr, &ctx);
    std::string why = gpu_unavailable();
    if (why.empty()) {
        ASSERT_EQ(rc, 0) << ckpt_last_error(nullptr);
        EXPECT_STREQ(ckpt_device_name(ctx), "cuda");
        EXPECT_EQ(ckpt_close(ctx), 0);
        return;
    }
    EXPECT_EQ(ctx, nullptr);
    std::string msg = ckpt_last_error(nullptr);
    EXPECT_EQ(rc, CKPT_EDEVICE) << msg;
    EXPECT_NE(msg.find("device=cuda"), std::string::npos) << msg;
#if CKPT_HAVE_CUDA
    // The plugin was found and loaded: the reason is CUDA's own.
    std::string name = gpu_error_name();
    if (!name.empty()) {
        EXPECT_NE(msg.find(name), std::string::npos) << msg;
    }
#else
    EXPECT_NE(msg.find("libckpt_cuda.so"), std::string::npos) << msg;
#endif
}

TEST_F(DeviceSelect, AutoPicksCudaOrFallsBackToHost)
{
    Logs logs;
    ckpt_config cfg = config(dir);
    cfg.device = CKPT_DEVICE_AUTO;
    logs.attach(&cfg, CKPT_LOG_INFO);
    ckpt_ctx *ctx = open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    std::string why = gpu_unavailable();
    EXPECT_STREQ(ckpt_device_name(ctx), why.empty() ? "cuda" : "host");
    if (why.empty()) {
        EXPECT_NE(logs.find("device: cuda (auto), backend "), "") << "no device choice logged";
    } else {
        std::string line = logs.find("device: host (auto: ");
#if CKPT_HAVE_CUDA
        // The plugin was loaded (found next to this program): the reason is
        // its CUDA probe's, with CUDA's error name.
        EXPECT_NE(line.find("cudaGetDeviceCount"), std::string::npos) << "log: " << line;
        EXPECT_NE(line.find(gpu_error_name()), std::string::npos) << "log: " << line;
#else
        EXPECT_NE(line.find("libckpt_cuda.so"), std::string::npos) << "log: " << line;
#endif
    }

    // Host memory round-trips with either backend.
    std::vector<float> w(300000), m(4096);
    for (size_t i = 0; i < w.size(); i++)
        w[i] = (float)i * 0.5f;
    for (size_t i = 0; i < m.size(); i++)
        m[i] = -(float)i;
    int64_t wshape[] = {(int64_t)w.size()}, mshape[] = {64, 64};
    ASSERT_EQ(ckpt_register(ctx, "w", w.data(), CKPT_F32, 1, wshape), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_register(ctx, "m", m.data(), CKPT_F32, 2, mshape), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(save_wait(ctx, 7), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_fence(ctx, nullptr), 0) << ckpt_last_error(ctx);
    std::vector<float> w0 = w, m0 = m;
    std::fill(w.begin(), w.end(), 1.0f);
    std::fill(m.begin(), m.end(), 2.0f);
    int64_t got = -1;
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(got, 7);
    EXPECT_EQ(std::memcmp(w.data(), w0.data(), w.size() * sizeof w[0]), 0);
    EXPECT_EQ(std::memcmp(m.data(), m0.data(), m.size() * sizeof m[0]), 0);
    EXPECT_EQ(ckpt_close(ctx), 0);
}

#if CKPT_HAVE_NCCL
// The NCCL comm refuses a missing communicator with a message and no side
// effects (a real one needs a GPU: tests/internal/test_nccl_gpu.cpp): the
// factory returns a failed comm, and ckpt_open refuses it.
TEST_F(DeviceSelect, NcclNullCommIsRefusedByOpen)
{
    ckpt_comm *c = ckpt_comm_nccl(nullptr, nullptr);
    ASSERT_NE(c, nullptr) << "a factory never returns NULL";
    ckpt_config cfg = config(dir);
    ckpt_ctx *ctx = nullptr;
    EXPECT_EQ(ckpt_open(&cfg, c, &ctx), CKPT_EINVAL);
    EXPECT_EQ(ctx, nullptr);
    std::string msg = ckpt_last_error(nullptr);
    EXPECT_NE(msg.find("ckpt_comm_nccl: comm is NULL"), std::string::npos) << msg;
}
#endif

} // namespace
