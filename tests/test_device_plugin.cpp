// SPDX-License-Identifier: Apache-2.0
// Where libckpt looks for its CUDA backend and what it says when the
// plugin is not usable (runtime/device_plugin.h): CKPT_CUDA_BACKEND names
// the one file to load; a missing file sends device=auto to the host
// backend with the reason logged and fails device=cuda with CKPT_EDEVICE
// naming the file; a library that is not a plugin, or a plugin of another
// interface version, is refused with the reason and never called.
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using namespace ckt;

// Sets CKPT_CUDA_BACKEND for one test.
class BackendEnv {
  public:
    explicit BackendEnv(const std::string &path)
    {
        setenv("CKPT_CUDA_BACKEND", path.c_str(), 1);
    }
    ~BackendEnv() { unsetenv("CKPT_CUDA_BACKEND"); }
};

class DevicePlugin : public ::testing::Test {
  protected:
    Logs logs;
    TempDir tmp;
    std::string dir = tmp.sub("ck");

    ckpt_config cfg_for(ckpt_device device)
    {
        ckpt_config cfg = config(dir);
        cfg.device = device;
        logs.attach(&cfg, CKPT_LOG_INFO);
        return cfg;
    }

    // device=cuda fails with CKPT_EDEVICE; the message must hold `want`.
    void expect_cuda_refused(const std::string &want)
    {
        ckpt_config cfg = cfg_for(CKPT_DEVICE_CUDA);
        ckpt_ctx *ctx = nullptr;
        EXPECT_EQ(ckpt_open(&cfg, nullptr, &ctx), CKPT_EDEVICE);
        EXPECT_EQ(ctx, nullptr);
        std::string msg = ckpt_last_error(nullptr);
        EXPECT_NE(msg.find("device=cuda"), std::string::npos) << msg;
        EXPECT_NE(msg.find(want), std::string::npos) << msg;
    }

    // device=auto opens on the host backend and logs why, holding `want`.
    ckpt_ctx *open_auto_on_host(const std::string &want)
    {
        ckpt_config cfg = cfg_for(CKPT_DEVICE_AUTO);
        ckpt_ctx *ctx = nullptr;
        EXPECT_EQ(ckpt_open(&cfg, nullptr, &ctx), 0) << ckpt_last_error(nullptr);
        if (!ctx)
            return nullptr;
        EXPECT_STREQ(ckpt_device_name(ctx), "host");
        std::string line = logs.find("device: host (auto: ");
        EXPECT_NE(line.find(want), std::string::npos) << "log: " << line;
        return ctx;
    }
};

TEST_F(DevicePlugin, MissingFileMeansHostForAutoAndAnErrorForCuda)
{
    std::string missing = tmp.sub("nowhere/libckpt_cuda.so.0");
    BackendEnv env(missing);
    expect_cuda_refused(missing);
    expect_cuda_refused("CKPT_CUDA_BACKEND");

    ckpt_ctx *ctx = open_auto_on_host(missing);
    ASSERT_NE(ctx, nullptr);
    // And the host backend works: bytes saved and restored.
    std::vector<uint8_t> t(10000);
    for (size_t i = 0; i < t.size(); i++)
        t[i] = pattern_byte(3, i);
    std::vector<uint8_t> want = t;
    int64_t shape[] = {(int64_t)t.size()};
    ASSERT_EQ(ckpt_register(ctx, "t", t.data(), CKPT_U8, 1, shape), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(save_wait(ctx, 4), 0) << ckpt_last_error(ctx);
    std::fill(t.begin(), t.end(), 0);
    int64_t got = -1;
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(got, 4);
    EXPECT_EQ(t, want);
    EXPECT_EQ(ckpt_close(ctx), 0);
}

TEST_F(DevicePlugin, ALibraryThatIsNotAPluginIsRefused)
{
    BackendEnv env(CKPT_CORE_SHARED); // libckpt.so itself: no entry point
    expect_cuda_refused("no symbol ckpt__device_plugin");
}

TEST_F(DevicePlugin, APluginOfAnotherInterfaceVersionIsRefused)
{
    BackendEnv env(CKPT_FAKE_PLUGIN);
    expect_cuda_refused("device interface version");

    EXPECT_EQ(ckpt_close(open_auto_on_host("of another build")), 0);
}

} // namespace
