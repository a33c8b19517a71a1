// SPDX-License-Identifier: Apache-2.0
// Choosing the writer backend: `auto` probes io_uring and falls back to the
// pwrite pool when the kernel refuses it, logging why; CKPT_IO and the
// config force one; forcing io_uring where it is refused is a clear error.
// The refusal is simulated with CKPT_TEST_URING_PROBE (what Docker's
// seccomp profile or kernel.io_uring_disabled would do).
#include "test_util.h"

using namespace ckt;

namespace {

struct Logs {
    std::vector<std::string> lines;
    static void fn(void *user, ckpt_log_level, const char *msg)
    {
        static_cast<Logs *>(user)->lines.push_back(msg);
    }
    bool has(const std::string &a, const std::string &b) const
    {
        for (const auto &l : lines)
            if (l.find(a) != std::string::npos && l.find(b) != std::string::npos)
                return true;
        return false;
    }
};

// Sets an environment variable for the scope of one test.
struct Env {
    std::string name;
    Env(const char *n, const char *v) : name(n) { setenv(n, v, 1); }
    ~Env() { unsetenv(name.c_str()); }
};

// Saves and restores one tensor through ctx.
void round_trip(ckpt_ctx *ctx)
{
    std::vector<uint8_t> w(3 << 20);
    int64_t shape[1] = {(int64_t)w.size()};
    fill(w.data(), w.size(), 77);
    ASSERT_EQ(ckpt_register(ctx, "w", w.data(), CKPT_U8, 1, shape), 0);
    ASSERT_EQ(save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
    std::fill(w.begin(), w.end(), 0);
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, nullptr), 0) << ckpt_last_error(ctx);
    EXPECT_TRUE(matches(w.data(), w.size(), 77));
}

TEST(Writers, AutoFallsBackToPwriteWhenIoUringIsRefused)
{
    for (const char *why : {"EPERM", "ENOSYS", "ENOMEM"}) {
        Env env("CKPT_TEST_URING_PROBE", why);
        TempDir tmp;
        Logs logs;
        std::string dir = tmp.sub("ckpt");
        ckpt_config cfg = config(dir, CKPT_IO_AUTO);
        cfg.log_level = CKPT_LOG_INFO;
        cfg.log_fn = Logs::fn;
        cfg.log_user = &logs;
        ckpt_ctx *ctx = open_ctx(cfg);
        ASSERT_NE(ctx, nullptr);
        EXPECT_STREQ(ckpt_writer_name(ctx), "pwrite") << why;
        EXPECT_TRUE(logs.has("pwrite (auto", "io_uring refused")) << why;
        round_trip(ctx);
        EXPECT_EQ(ckpt_close(ctx), 0);
    }
}

TEST(Writers, ForcingIoUringWhereRefusedIsAClearError)
{
    Env env("CKPT_TEST_URING_PROBE", "EPERM");
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    ckpt_config cfg = config(dir, CKPT_IO_URING);
    ckpt_ctx *ctx = nullptr;
    EXPECT_EQ(ckpt_open(&cfg, nullptr, &ctx), CKPT_EUNSUPPORTED);
    EXPECT_EQ(ctx, nullptr);
    std::string msg = ckpt_last_error(nullptr);
    EXPECT_NE(msg.find("io=uring"), std::string::npos) << msg;
    EXPECT_NE(msg.find("Operation not permitted"), std::string::npos) << msg;
}

TEST(Writers, EnvironmentForcesTheWriter)
{
    {
        Env env("CKPT_IO", "pwrite");
        TempDir tmp;
        ckpt_config cfg;
        ASSERT_EQ(ckpt_config_init(&cfg), 0);
        EXPECT_EQ(cfg.io, CKPT_IO_PWRITE);
        std::string dir = tmp.sub("ckpt");
        cfg.dir = dir.c_str();
        cfg.log_level = CKPT_LOG_OFF;
        ckpt_ctx *ctx = open_ctx(cfg);
        ASSERT_NE(ctx, nullptr);
        EXPECT_STREQ(ckpt_writer_name(ctx), "pwrite");
        EXPECT_EQ(ckpt_close(ctx), 0);
    }
    Env env("CKPT_IO", "uring");
    ckpt_config cfg;
    ASSERT_EQ(ckpt_config_init(&cfg), 0);
    EXPECT_EQ(cfg.io, CKPT_IO_URING);
}

TEST(Writers, AutoPicksIoUringWhereTheKernelAllowsIt)
{
    std::string why = writer_unavailable(CKPT_IO_URING);
    if (!why.empty())
        GTEST_SKIP() << "io_uring unavailable here: " << why;
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    ckpt_ctx *ctx = open_ctx(config(dir, CKPT_IO_AUTO));
    ASSERT_NE(ctx, nullptr);
    EXPECT_STREQ(ckpt_writer_name(ctx), "uring");
    EXPECT_STREQ(ckpt_device_name(ctx), "host");
    round_trip(ctx);
    EXPECT_EQ(ckpt_close(ctx), 0);
}

TEST(Writers, ShallowQueueStillCompletesEveryRequest)
{
    // Depth 1 is raised to the 3 pieces one request may need; a small pool
    // and many chunks keep the queue full the whole time.
    for (ckpt_io io : writers()) {
        if (!writer_unavailable(io).empty())
            continue;
        TempDir tmp;
        std::string dir = tmp.sub("ckpt");
        ckpt_config cfg = config(dir, io);
        cfg.queue_depth = 1;
        cfg.io_threads = 1;
        ckpt_ctx *ctx = open_ctx(cfg);
        ASSERT_NE(ctx, nullptr);
        round_trip(ctx);
        EXPECT_EQ(ckpt_close(ctx), 0);
    }
}

} // namespace
