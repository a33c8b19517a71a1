// SPDX-License-Identifier: Apache-2.0
// Device backend selection: device=cuda opens only with a GPU and names the
// CUDA error otherwise; device=auto falls back to the host backend and
// still round-trips.  Each test asserts what this machine should do.
#include <cstring>
#include <mutex>
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
#if CKPT_HAVE_CUDA
    EXPECT_EQ(rc, CKPT_EDEVICE) << msg;
    EXPECT_NE(msg.find("cuda"), std::string::npos) << msg;
    std::string name = gpu_error_name();
    if (!name.empty()) {
        EXPECT_NE(msg.find(name), std::string::npos) << msg;
    }
#else
    EXPECT_EQ(rc, CKPT_EUNSUPPORTED) << msg;
    EXPECT_NE(msg.find("cuda"), std::string::npos) << msg;
#endif
}

TEST_F(DeviceSelect, AutoPicksCudaOrFallsBackToHost)
{
    struct Logs {
        std::mutex mu; // the runtime logs from its own threads too
        std::vector<std::string> lines;
    } logs;
    ckpt_config cfg = config(dir);
    cfg.device = CKPT_DEVICE_AUTO;
    cfg.log_level = CKPT_LOG_INFO;
    cfg.log_user = &logs;
    cfg.log_fn = [](void *user, ckpt_log_level, const char *m) {
        auto *l = static_cast<Logs *>(user);
        std::lock_guard<std::mutex> g(l->mu);
        l->lines.push_back(m);
    };
    ckpt_ctx *ctx = open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    std::string why = gpu_unavailable();
    EXPECT_STREQ(ckpt_device_name(ctx), why.empty() ? "cuda" : "host");
    bool logged = false;
    {
        std::lock_guard<std::mutex> g(logs.mu);
        for (const auto &m : logs.lines)
            logged |= why.empty() ? m.find("device: cuda (auto)") != std::string::npos
                                  : m.find("device: host (auto: ") != std::string::npos &&
                                        m.find(gpu_error_name()) != std::string::npos;
    }
    EXPECT_TRUE(logged) << "no device choice in the log";

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
// effects (a real one needs a GPU: tests/internal/test_nccl_gpu.cpp).
TEST(NcclComm, NullCommIsEinval)
{
    EXPECT_EQ(ckpt_comm_nccl(nullptr, nullptr), nullptr);
    EXPECT_NE(std::string(ckpt_last_error(nullptr)).find("comm is NULL"), std::string::npos)
        << ckpt_last_error(nullptr);
}
#endif

} // namespace
