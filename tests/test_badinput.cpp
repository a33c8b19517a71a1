// SPDX-License-Identifier: Apache-2.0
// Bad input of every kind: NULL arguments, invalid configurations and
// environment overrides, unusable folders, calls out of order, impossible
// shapes and dtypes, hostile names and metadata, restores that do not match,
// and checkpoint folders holding foreign or hostile files.  Each must give
// the documented error code and a message naming the culprit, never a
// crash, never a write outside DIR, and (for restores) never a changed
// tensor.  The cudasim build runs the same on the CUDA backend; the
// tensors that reach it (shapes, restores, calls while a save is in flight)
// are then device memory (tensor_mem.h).
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <future>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <xxhash.h>

#include "badinput_util.h"
#include "tensor_mem.h"
#include "test_util.h"

namespace {

using ckt::TempDir;
using ckt::TensorMem;
using namespace bad;

// A tensor holding these host values.
template <class T, size_t N> TensorMem tensor_of(const T (&vals)[N])
{
    TensorMem m(sizeof vals);
    m.write(vals);
    return m;
}

// The tensor's first value of type T.
template <class T> T first_of(const TensorMem &m)
{
    T v;
    memcpy(&v, m.read().data(), sizeof v);
    return v;
}

// A context on a fresh folder for tests that only need one.
struct Ctx {
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    ckpt_ctx *ctx = nullptr;
    explicit Ctx(void (*tweak)(ckpt_config *) = nullptr)
    {
        ckpt_config cfg = ckt::config(dir);
        if (tweak)
            tweak(&cfg);
        ctx = ckt::open_ctx(cfg);
    }
    ~Ctx() { ckpt_close(ctx); }
};

// ===========================================================================
// NULL arguments
// ===========================================================================

TEST(BadInputNull, ConfigInitNull)
{
    EXPECT_TRUE(fails(ckpt_config_init(nullptr), CKPT_EINVAL, nullptr, "cfg is NULL"));
}

TEST(BadInputNull, OpenWithNullConfigOrOut)
{
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    ckpt_config cfg = ckt::config(dir);
    ckpt_ctx *ctx = reinterpret_cast<ckpt_ctx *>(0x1);
    EXPECT_TRUE(fails(ckpt_open(nullptr, nullptr, &ctx), CKPT_EINVAL, nullptr, "cfg"));
    EXPECT_EQ(ctx, nullptr) << "*out must be NULL on failure";
    EXPECT_TRUE(fails(ckpt_open(&cfg, nullptr, nullptr), CKPT_EINVAL, nullptr, "out"));
    EXPECT_FALSE(ckt::exists(dir)) << "a refused open created the folder";
}

TEST(BadInputNull, EveryFunctionRefusesANullContext)
{
    int64_t shape[1] = {4};
    float data[4] = {0};
    size_t len = 0;
    ckpt_ticket t = 99;
    int64_t step = 5;
    ckpt_info info[2];
    EXPECT_TRUE(fails(ckpt_register(nullptr, "x", data, CKPT_F32, 1, shape), CKPT_EINVAL,
                      nullptr, "ckpt_register"));
    EXPECT_TRUE(fails(ckpt_unregister(nullptr, "x"), CKPT_EINVAL, nullptr, "ckpt_unregister"));
    EXPECT_TRUE(
        fails(ckpt_set_meta(nullptr, "k", data, 4), CKPT_EINVAL, nullptr, "ckpt_set_meta"));
    EXPECT_TRUE(fails(ckpt_get_meta(nullptr, "k", data, 4, &len), CKPT_EINVAL, nullptr,
                      "ckpt_get_meta"));
    EXPECT_TRUE(fails(ckpt_set_meta_fn(nullptr, "k", nullptr, nullptr), CKPT_EINVAL, nullptr,
                      "ckpt_set_meta_fn"));
    const char *names[] = {"x"};
    EXPECT_TRUE(fails(ckpt_restore_tensors(nullptr, names, 1, nullptr), CKPT_EINVAL, nullptr,
                      "ckpt_restore_tensors"));
    EXPECT_TRUE(fails(ckpt_save(nullptr, 1, nullptr, &t), CKPT_EINVAL, nullptr, "ckpt_save"));
    EXPECT_EQ(t, 0u) << "a refused save must clear the ticket";
    EXPECT_TRUE(fails(ckpt_fence(nullptr, nullptr), CKPT_EINVAL, nullptr, "ckpt_fence"));
    EXPECT_TRUE(fails(ckpt_poll(nullptr, 1), CKPT_EINVAL, nullptr, "ckpt_poll"));
    EXPECT_TRUE(fails(ckpt_wait(nullptr, 1, 0), CKPT_EINVAL, nullptr, "ckpt_wait"));
    EXPECT_TRUE(fails(ckpt_restore(nullptr, CKPT_LATEST, nullptr, &step), CKPT_EINVAL, nullptr,
                      "ckpt_restore"));
    EXPECT_TRUE(fails(ckpt_list(nullptr, info, 2, &len), CKPT_EINVAL, nullptr, "ckpt_list"));
    EXPECT_EQ(ckpt_close(nullptr), 0);
    EXPECT_NE(ckpt_last_error(nullptr), nullptr);
}

TEST(BadInputNull, StaticHelpersTakeAnyValue)
{
    for (int code : {-9999, -18, 2, 1000, INT32_MIN, INT32_MAX}) {
        ASSERT_NE(ckpt_strerror(code), nullptr) << code;
        ASSERT_NE(ckpt_err_name(code), nullptr) << code;
    }
    EXPECT_STREQ(ckpt_err_name(CKPT_EINVAL), "CKPT_EINVAL");
    EXPECT_STREQ(ckpt_err_name(CKPT_INPROGRESS), "CKPT_INPROGRESS");
    EXPECT_EQ(ckpt_dtype_size((ckpt_dtype)0), 0u);
    EXPECT_EQ(ckpt_dtype_size((ckpt_dtype)99), 0u);
    EXPECT_EQ(ckpt_dtype_name((ckpt_dtype)0), nullptr);
    EXPECT_EQ(ckpt_dtype_name((ckpt_dtype)-1), nullptr);
    EXPECT_STREQ(ckpt_dtype_name(CKPT_FP8_E4M3), "fp8_e4m3");
}

TEST(BadInputNull, NullArgumentsWithAContext)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    int64_t shape[2] = {2, 2};
    float data[4] = {1, 2, 3, 4};
    EXPECT_TRUE(fails(ckpt_register(c.ctx, nullptr, data, CKPT_F32, 2, shape), CKPT_EINVAL,
                      c.ctx, "tensor name is NULL"));
    EXPECT_TRUE(fails(ckpt_register(c.ctx, "t", data, CKPT_F32, 2, nullptr), CKPT_EINVAL, c.ctx,
                      "shape is NULL"));
    EXPECT_TRUE(fails(ckpt_register(c.ctx, "t", nullptr, CKPT_F32, 2, shape), CKPT_EINVAL,
                      c.ctx, "NULL data"));
    EXPECT_TRUE(fails(ckpt_register(c.ctx, "t", nullptr, CKPT_F32, 0, nullptr), CKPT_EINVAL,
                      c.ctx, "NULL data"))
        << "a scalar holds 4 bytes";
    EXPECT_TRUE(
        fails(ckpt_unregister(c.ctx, nullptr), CKPT_EINVAL, c.ctx, "tensor name is NULL"));
    EXPECT_TRUE(fails(ckpt_set_meta(c.ctx, nullptr, data, 4), CKPT_EINVAL, c.ctx,
                      "metadata key is NULL"));
    size_t len = 77;
    EXPECT_TRUE(fails(ckpt_get_meta(c.ctx, nullptr, data, 4, &len), CKPT_EINVAL, c.ctx,
                      "metadata key is NULL"));
    EXPECT_TRUE(
        fails(ckpt_list(c.ctx, nullptr, 0, nullptr), CKPT_EINVAL, c.ctx, "count is NULL"));
    EXPECT_TRUE(fails(ckpt_list(c.ctx, nullptr, 3, &len), CKPT_EINVAL, c.ctx, "out is NULL"));

    // NULL where the API allows it: a scalar's shape, step_out, ticket,
    // *len, and out with cap 0.
    double scalar = 2.5;
    ASSERT_EQ(ckpt_register(c.ctx, "scalar", &scalar, CKPT_F64, 0, nullptr), 0)
        << ckpt_last_error(c.ctx);
    EXPECT_TRUE(fails(ckpt_restore(c.ctx, CKPT_LATEST, nullptr, nullptr), CKPT_ENOTFOUND, c.ctx,
                      c.dir));
    ASSERT_EQ(ckpt_set_meta(c.ctx, "k", "abc", 3), 0);
    char buf[3];
    EXPECT_EQ(ckpt_get_meta(c.ctx, "k", buf, sizeof buf, nullptr), 0) << ckpt_last_error(c.ctx);
    EXPECT_EQ(memcmp(buf, "abc", 3), 0);
    ASSERT_EQ(ckpt_save(c.ctx, 3, nullptr, nullptr), 0) << ckpt_last_error(c.ctx);
    ASSERT_EQ(ckpt_fence(c.ctx, nullptr), 0);
    int rc = ckpt_close(c.ctx); // waits for the ticket-less save
    c.ctx = nullptr;
    EXPECT_EQ(rc, 0) << ckpt_last_error(nullptr);
    c.ctx = ckt::open_ctx(ckt::config(c.dir));
    ASSERT_NE(c.ctx, nullptr);
    len = 99;
    EXPECT_EQ(ckpt_list(c.ctx, nullptr, 0, &len), 0) << ckpt_last_error(c.ctx);
    EXPECT_EQ(len, 1u) << "the ticket-less save must have committed";
}

// ===========================================================================
// Configuration
// ===========================================================================

TEST(BadInputConfig, EveryBadFieldIsRefusedBeforeTouchingTheDisk)
{
    static std::string longdir;
    const BadConfig cases[] = {
        {"dir NULL", [](ckpt_config *c) { c->dir = nullptr; }, "dir"},
        {"dir empty", [](ckpt_config *c) { c->dir = ""; }, "dir"},
        {"dir 4000 bytes",
         [](ckpt_config *c) {
             longdir = std::string(c->dir) + "/" + std::string(4000, 'd');
             c->dir = longdir.c_str();
         },
         "dir"},
        {"chunk_bytes 0", [](ckpt_config *c) { c->chunk_bytes = 0; }, "chunk_bytes"},
        {"chunk_bytes 4 KiB + 1", [](ckpt_config *c) { c->chunk_bytes = 4097; }, "chunk_bytes"},
        {"chunk_bytes 1 MiB + 512",
         [](ckpt_config *c) { c->chunk_bytes = (1u << 20) + 512; }, "chunk_bytes"},
        {"chunk_bytes 4 KiB (too small)", [](ckpt_config *c) { c->chunk_bytes = 4096; },
         "chunk_bytes"},
        {"chunk_bytes 2 GiB", [](ckpt_config *c) { c->chunk_bytes = 2ull << 30; },
         "chunk_bytes"},
        {"chunk_bytes UINT64_MAX", [](ckpt_config *c) { c->chunk_bytes = UINT64_MAX; },
         "chunk_bytes"},
        {"staging smaller than a chunk",
         [](ckpt_config *c) { c->staging_bytes = c->chunk_bytes - 4096; }, "staging_bytes"},
        {"staging 0", [](ckpt_config *c) { c->staging_bytes = 0; }, "staging_bytes"},
        {"staging UINT64_MAX", [](ckpt_config *c) { c->staging_bytes = UINT64_MAX; },
         "staging_bytes"},
        {"staging 2^63", [](ckpt_config *c) { c->staging_bytes = 1ull << 63; },
         "staging_bytes"},
        {"durable_every 0", [](ckpt_config *c) { c->durable_every = 0; }, "durable_every"},
        {"durable_every -2", [](ckpt_config *c) { c->durable_every = -2; }, "durable_every"},
        {"local_keep_last -1", [](ckpt_config *c) { c->local_keep_last = -1; },
         "local_keep_last"},
        {"local_dir empty", [](ckpt_config *c) { c->local_dir = ""; }, "local_dir"},
        {"local_dir is dir", [](ckpt_config *c) { c->local_dir = c->dir; }, "same folder"},
        {"local_dir 4000 bytes",
         [](ckpt_config *c) {
             longdir = std::string(c->dir) + "/" + std::string(4000, 'l');
             c->local_dir = longdir.c_str();
         },
         "local_dir"},
        {"node_name empty", [](ckpt_config *c) { c->node_name = ""; }, "node_name"},
        {"node_name 64 bytes",
         [](ckpt_config *c) {
             static std::string n(64, 'n');
             c->node_name = n.c_str();
         },
         "node_name"},
        {"keep_last -1", [](ckpt_config *c) { c->keep_last = -1; }, "keep_last"},
        {"keep_last INT_MIN", [](ckpt_config *c) { c->keep_last = INT32_MIN; }, "keep_last"},
        {"keep_every -3", [](ckpt_config *c) { c->keep_every = -3; }, "keep_every"},
        {"max_age_hours NaN",
         [](ckpt_config *c) { c->max_age_hours = std::numeric_limits<double>::quiet_NaN(); },
         "max_age_hours"},
        {"max_age_hours +inf",
         [](ckpt_config *c) { c->max_age_hours = std::numeric_limits<double>::infinity(); },
         "max_age_hours"},
        {"max_age_hours -inf",
         [](ckpt_config *c) { c->max_age_hours = -std::numeric_limits<double>::infinity(); },
         "max_age_hours"},
        {"max_age_hours -1", [](ckpt_config *c) { c->max_age_hours = -1; }, "max_age_hours"},
        {"io 7", [](ckpt_config *c) { c->io = (ckpt_io)7; }, "io backend"},
        {"io -1", [](ckpt_config *c) { c->io = (ckpt_io)-1; }, "io backend"},
        {"device 9", [](ckpt_config *c) { c->device = (ckpt_device)9; }, "device"},
        {"busy 5", [](ckpt_config *c) { c->busy = (ckpt_busy)5; }, "busy"},
        {"log_level 99", [](ckpt_config *c) { c->log_level = (ckpt_log_level)99; },
         "log level"},
        {"log_level -1", [](ckpt_config *c) { c->log_level = (ckpt_log_level)-1; },
         "log level"},
        {"io_threads -1", [](ckpt_config *c) { c->io_threads = -1; }, "io_threads"},
        {"io_threads 65", [](ckpt_config *c) { c->io_threads = 65; }, "io_threads"},
        {"io_threads 1e6", [](ckpt_config *c) { c->io_threads = 1000000; }, "io_threads"},
        {"hash_threads -1", [](ckpt_config *c) { c->hash_threads = -1; }, "hash_threads"},
        {"hash_threads 65", [](ckpt_config *c) { c->hash_threads = 65; }, "hash_threads"},
        {"queue_depth 0", [](ckpt_config *c) { c->queue_depth = 0; }, "queue_depth"},
        {"queue_depth 5000", [](ckpt_config *c) { c->queue_depth = 5000; }, "queue_depth"},
        {"verify 2", [](ckpt_config *c) { c->verify = 2; }, "verify"},
        {"verify -1", [](ckpt_config *c) { c->verify = -1; }, "verify"},
        {"max_inflight 0", [](ckpt_config *c) { c->max_inflight = 0; }, "max_inflight"},
        {"max_inflight 65", [](ckpt_config *c) { c->max_inflight = 65; }, "max_inflight"},
        {"restore_unregistered 2",
         [](ckpt_config *c) { c->restore_unregistered = (ckpt_unregistered)2; },
         "restore_unregistered"},
        {"restore_unregistered -1",
         [](ckpt_config *c) { c->restore_unregistered = (ckpt_unregistered)-1; },
         "restore_unregistered"},
    };
    expect_configs_refused(cases);
}

TEST(BadInputConfig, ValuesAtTheLimitsAreAccepted)
{
    const OkConfig ok[] = {
        {"chunk 64 KiB, staging one chunk",
         [](ckpt_config *c) {
             c->chunk_bytes = 64 << 10;
             c->staging_bytes = 64 << 10;
         }},
        {"threads 64, depth 4096, inflight 64",
         [](ckpt_config *c) {
             c->io_threads = 64;
             c->hash_threads = 64;
             c->queue_depth = 4096;
             c->max_inflight = 64;
         }},
        {"max_age_hours tiny", [](ckpt_config *c) { c->max_age_hours = 1e-300; }},
        {"verify off, refuse when busy, keep 1000000",
         [](ckpt_config *c) {
             c->verify = 0;
             c->busy = CKPT_BUSY_REFUSE;
             c->keep_last = 1000000;
             c->keep_every = 1000000;
         }},
    };
    expect_configs_accepted(ok, [](ckpt_ctx *ctx) {
        float v[4] = {1, 2, 3, 4};
        int64_t shape[1] = {4};
        ASSERT_EQ(ckpt_register(ctx, "v", v, CKPT_F32, 1, shape), 0);
        EXPECT_EQ(ckt::save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
    });
}

TEST(BadInputConfig, OpenCopiesTheConfigAndItsStrings)
{
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    std::vector<char> dirbuf(dir.begin(), dir.end());
    dirbuf.push_back('\0');
    ckpt_config cfg = ckt::config(dir);
    cfg.dir = dirbuf.data();
    ckpt_ctx *ctx = ckt::open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    // Scribble over the caller's copies: the context must not care.
    std::fill(dirbuf.begin(), dirbuf.end() - 1, 'x');
    cfg.chunk_bytes = 1;
    cfg.dir = nullptr;
    float v[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    ASSERT_EQ(ckpt_register(ctx, "v", v, CKPT_F32, 1, shape), 0);
    EXPECT_EQ(ckt::save_wait(ctx, 2), 0) << ckpt_last_error(ctx);
    EXPECT_TRUE(ckt::exists(ckt::step_dir(dir, 2)));
    EXPECT_EQ(ckpt_close(ctx), 0);
}

// ===========================================================================
// Environment overrides
// ===========================================================================

TEST(BadInputEnv, UnparsableKeepLast)
{
    EnvGuard env;
    for (const char *bad : {"abc", "-1", "1000001", "3x", "99999999999999999999", "0x10"}) {
        SCOPED_TRACE(bad);
        setenv("CKPT_KEEP_LAST", bad, 1);
        ckpt_config cfg;
        memset(&cfg, 0x5A, sizeof cfg);
        EXPECT_TRUE(fails(ckpt_config_init(&cfg), CKPT_EINVAL, nullptr, "CKPT_KEEP_LAST"));
        EXPECT_EQ(cfg.keep_last, 0) << "the default must be kept";
        EXPECT_EQ(cfg.chunk_bytes, 4u << 20) << "the other defaults must be set";
        EXPECT_EQ(cfg.verify, 1);
        EXPECT_EQ(cfg.dir, nullptr);
    }
    setenv("CKPT_KEEP_LAST", "7", 1);
    ckpt_config cfg;
    EXPECT_EQ(ckpt_config_init(&cfg), 0) << ckpt_last_error(nullptr);
    EXPECT_EQ(cfg.keep_last, 7);
}

TEST(BadInputEnv, TierVariables)
{
    EnvGuard env;
    const struct {
        const char *var, *bad;
    } cases[] = {{"CKPT_DURABLE_EVERY", "0"},   {"CKPT_DURABLE_EVERY", "-1"},
                 {"CKPT_DURABLE_EVERY", "2x"},  {"CKPT_LOCAL_KEEP_LAST", "-1"},
                 {"CKPT_LOCAL_KEEP_LAST", "1000001"}, {"CKPT_LOCAL_KEEP_LAST", "two"},
                 {"CKPT_DRAIN_AT_CLOSE", "2"},  {"CKPT_DRAIN_AT_CLOSE", "no"},
                 {"CKPT_DRAIN_AT_CLOSE", "00"}};
    for (const auto &c : cases) {
        SCOPED_TRACE(std::string(c.var) + "=" + c.bad);
        setenv(c.var, c.bad, 1);
        ckpt_config cfg;
        EXPECT_TRUE(fails(ckpt_config_init(&cfg), CKPT_EINVAL, nullptr, c.var));
        EXPECT_EQ(cfg.durable_every, 1) << "the default must be kept";
        EXPECT_EQ(cfg.local_keep_last, 0);
        EXPECT_EQ(cfg.no_drain_at_close, 0);
        unsetenv(c.var);
    }
    setenv("CKPT_LOCAL_DIR", "/nvme/ck", 1);
    setenv("CKPT_DURABLE_EVERY", "5", 1);
    setenv("CKPT_LOCAL_KEEP_LAST", "3", 1);
    setenv("CKPT_DRAIN_AT_CLOSE", "0", 1);
    ckpt_config cfg;
    ASSERT_EQ(ckpt_config_init(&cfg), 0) << ckpt_last_error(nullptr);
    EXPECT_STREQ(cfg.local_dir, "/nvme/ck");
    EXPECT_EQ(cfg.durable_every, 5);
    EXPECT_EQ(cfg.local_keep_last, 3);
    EXPECT_EQ(cfg.no_drain_at_close, 1);
    unsetenv("CKPT_LOCAL_DIR");
    unsetenv("CKPT_DRAIN_AT_CLOSE");
    ASSERT_EQ(ckpt_config_init(&cfg), 0);
    EXPECT_EQ(cfg.local_dir, nullptr) << "no local tier by default";
    EXPECT_EQ(cfg.no_drain_at_close, 0) << "ckpt_close drains by default";
    EXPECT_EQ(cfg.node_name, nullptr);
}

TEST(BadInputEnv, UnknownIoBackend)
{
    EnvGuard env;
    for (const char *bad : {"bogus", "URING", "pwrite ", "io_uring"}) {
        SCOPED_TRACE(bad);
        setenv("CKPT_IO", bad, 1);
        ckpt_config cfg;
        EXPECT_TRUE(fails(ckpt_config_init(&cfg), CKPT_EINVAL, nullptr, "CKPT_IO"));
        EXPECT_EQ(cfg.io, CKPT_IO_AUTO);
    }
    setenv("CKPT_IO", "pwrite", 1);
    ckpt_config cfg;
    EXPECT_EQ(ckpt_config_init(&cfg), 0);
    EXPECT_EQ(cfg.io, CKPT_IO_PWRITE);
}

TEST(BadInputEnv, UnknownLogLevel)
{
    EnvGuard env;
    for (const char *bad : {"loud", "DEBUG", "5", "warning"}) {
        SCOPED_TRACE(bad);
        setenv("CKPT_LOG", bad, 1);
        ckpt_config cfg;
        EXPECT_TRUE(fails(ckpt_config_init(&cfg), CKPT_EINVAL, nullptr, "CKPT_LOG"));
        EXPECT_EQ(cfg.log_level, CKPT_LOG_WARN);
    }
    setenv("CKPT_LOG", "error", 1);
    ckpt_config cfg;
    EXPECT_EQ(ckpt_config_init(&cfg), 0);
    EXPECT_EQ(cfg.log_level, CKPT_LOG_ERROR);
}

TEST(BadInputEnv, GoodVariablesApplyNextToABadOne)
{
    EnvGuard env;
    setenv("CKPT_KEEP_LAST", "abc", 1);
    setenv("CKPT_IO", "pwrite", 1);
    setenv("CKPT_LOG", "off", 1);
    ckpt_config cfg;
    EXPECT_TRUE(fails(ckpt_config_init(&cfg), CKPT_EINVAL, nullptr, "CKPT_KEEP_LAST"));
    EXPECT_EQ(cfg.io, CKPT_IO_PWRITE);
    EXPECT_EQ(cfg.log_level, CKPT_LOG_OFF);
    // A later success clears the thread's message.
    unsetenv("CKPT_KEEP_LAST");
    EXPECT_EQ(ckpt_config_init(&cfg), 0);
    EXPECT_STREQ(ckpt_last_error(nullptr), "");
}

TEST(BadInputEnv, EveryBadVariableIsNamed)
{
    // Two bad variables: the message must name both, not only the last one.
    EnvGuard env;
    setenv("CKPT_KEEP_LAST", "abc", 1);
    setenv("CKPT_LOG", "loud", 1);
    ckpt_config cfg;
    EXPECT_TRUE(fails(ckpt_config_init(&cfg), CKPT_EINVAL, nullptr, "CKPT_KEEP_LAST"));
    EXPECT_TRUE(fails(ckpt_config_init(&cfg), CKPT_EINVAL, nullptr, "CKPT_LOG"));
}

TEST(BadInputEnv, DirFromTheEnvironment)
{
    EnvGuard env;
    TempDir tmp;
    std::string dir = tmp.sub("from-env");
    setenv("CKPT_DIR", dir.c_str(), 1);
    ckpt_config cfg;
    ASSERT_EQ(ckpt_config_init(&cfg), 0) << ckpt_last_error(nullptr);
    ASSERT_NE(cfg.dir, nullptr);
    EXPECT_EQ(std::string(cfg.dir), dir);
    cfg.io = CKPT_IO_PWRITE;
    cfg.staging_bytes = 16u << 20;
    cfg.chunk_bytes = 1u << 20;
    cfg.log_level = CKPT_LOG_OFF;
    ckpt_ctx *ctx = ckt::open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    int32_t v[3] = {1, 2, 3};
    int64_t shape[1] = {3};
    ASSERT_EQ(ckpt_register(ctx, "v", v, CKPT_I32, 1, shape), 0);
    EXPECT_EQ(ckt::save_wait(ctx, 4), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(ckpt_close(ctx), 0);
    EXPECT_TRUE(ckt::exists(ckt::step_dir(dir, 4)));

    // An empty CKPT_DIR is no folder at all.
    setenv("CKPT_DIR", "", 1);
    ASSERT_EQ(ckpt_config_init(&cfg), 0);
    EXPECT_EQ(cfg.dir, nullptr);
    cfg.log_level = CKPT_LOG_OFF;
    ckpt_ctx *bad = nullptr;
    EXPECT_TRUE(fails(ckpt_open(&cfg, nullptr, &bad), CKPT_EINVAL, nullptr, "dir"));
    EXPECT_EQ(bad, nullptr);
}

// ===========================================================================
// Folders that cannot be used
// ===========================================================================

TEST(BadInputOpen, PathIsARegularFile)
{
    TempDir tmp;
    std::string file = tmp.sub("plain-file");
    write_file(file, "not a folder\n");
    ckpt_config cfg = ckt::config(file);
    ckpt_ctx *ctx = reinterpret_cast<ckpt_ctx *>(0x1);
    EXPECT_TRUE(fails(ckpt_open(&cfg, nullptr, &ctx), CKPT_EINVAL, nullptr, file));
    EXPECT_EQ(ctx, nullptr);
    EXPECT_EQ(read_file(file), "not a folder\n");
}

TEST(BadInputOpen, PathThroughARegularFile)
{
    TempDir tmp;
    std::string file = tmp.sub("plain-file");
    write_file(file, "x");
    Snapshot before = snapshot(tmp.path());
    std::string dir = file + "/sub";
    ckpt_config cfg = ckt::config(dir);
    ckpt_ctx *ctx = reinterpret_cast<ckpt_ctx *>(0x1);
    // The same mistake as a file in place of the folder: CKPT_EINVAL, not
    // an I/O error.
    EXPECT_TRUE(fails(ckpt_open(&cfg, nullptr, &ctx), CKPT_EINVAL, nullptr, file));
    EXPECT_EQ(ctx, nullptr);
    EXPECT_EQ(join(changes(before, snapshot(tmp.path()))), "");
}

// Runs ckpt_open(dir) as an unprivileged user and returns its result and
// message; with euid 0 in a forked child that drops to nobody first.
struct OpenResult {
    int rc = 0;
    bool out_null = true;
    std::string msg;
    bool skipped = false;
    std::string why;
};

OpenResult open_unprivileged(const std::string &dir)
{
    OpenResult r;
    auto attempt = [&dir](OpenResult *res) {
        ckpt_config cfg = ckt::config(dir);
        ckpt_ctx *ctx = reinterpret_cast<ckpt_ctx *>(0x1);
        res->rc = ckpt_open(&cfg, nullptr, &ctx);
        res->out_null = ctx == nullptr;
        res->msg = ckpt_last_error(nullptr);
        if (ctx && ctx != reinterpret_cast<ckpt_ctx *>(0x1))
            ckpt_close(ctx);
    };
    if (geteuid() != 0) {
        attempt(&r);
        return r;
    }
    struct passwd *pw = getpwnam("nobody");
    uid_t uid = pw ? pw->pw_uid : 65534;
    gid_t gid = pw ? pw->pw_gid : 65534;
    int fds[2];
    if (pipe(fds) != 0) {
        r.skipped = true;
        r.why = "pipe failed";
        return r;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0 ||
            geteuid() == 0)
            _exit(77);
        OpenResult c;
        attempt(&c);
        std::string msg = std::to_string(c.rc) + "\n" + (c.out_null ? "1" : "0") + "\n" + c.msg;
        ssize_t w = write(fds[1], msg.data(), msg.size());
        (void)w;
        _exit(0);
    }
    close(fds[1]);
    std::string text;
    char buf[1024];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0)
        text.append(buf, (size_t)n);
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) == 77) {
        r.skipped = true;
        r.why = "running as root and could not drop to an unprivileged user";
        return r;
    }
    size_t a = text.find('\n'), b = text.find('\n', a + 1);
    r.rc = std::stoi(text.substr(0, a));
    r.out_null = text.substr(a + 1, b - a - 1) == "1";
    r.msg = text.substr(b + 1);
    return r;
}

TEST(BadInputOpen, NonWritableFolder)
{
    TempDir tmp;
    // The unprivileged user must be able to reach the folder.
    ASSERT_EQ(chmod(tmp.path().c_str(), 0755), 0);
    std::string ro = tmp.sub("read-only");
    ASSERT_EQ(mkdir(ro.c_str(), 0555), 0);
    ASSERT_EQ(chmod(ro.c_str(), 0555), 0);

    OpenResult r = open_unprivileged(ro);
    if (r.skipped)
        GTEST_SKIP() << r.why;
    EXPECT_EQ(r.rc, CKPT_EPERM) << ckpt_err_name(r.rc) << ": " << r.msg;
    EXPECT_TRUE(r.out_null);
    EXPECT_NE(r.msg.find(ro), npos) << r.msg;

    // A folder to create inside it.
    std::string sub = ro + "/sub";
    r = open_unprivileged(sub);
    ASSERT_FALSE(r.skipped) << r.why;
    EXPECT_EQ(r.rc, CKPT_EPERM) << ckpt_err_name(r.rc) << ": " << r.msg;
    EXPECT_TRUE(r.out_null);
    EXPECT_NE(r.msg.find(sub), npos) << r.msg;
    EXPECT_FALSE(ckt::exists(sub));
    EXPECT_TRUE(ckt::list_dir(ro).empty());
}

// ===========================================================================
// Calls out of order
// ===========================================================================

TEST(BadInputOrder, WaitTwiceOnOneTicket)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    float v[16];
    ckt::fill(v, sizeof v, 1);
    int64_t shape[1] = {16};
    ASSERT_EQ(ckpt_register(c.ctx, "v", v, CKPT_F32, 1, shape), 0);
    ckpt_ticket t = 0;
    ASSERT_EQ(ckpt_save(c.ctx, 1, nullptr, &t), 0) << ckpt_last_error(c.ctx);
    ASSERT_NE(t, 0u);
    ASSERT_EQ(ckpt_fence(c.ctx, nullptr), 0);
    ASSERT_EQ(ckpt_wait(c.ctx, t, -1), 0) << ckpt_last_error(c.ctx);
    EXPECT_TRUE(fails(ckpt_wait(c.ctx, t, -1), CKPT_ESTATE, c.ctx, "already"));
    EXPECT_TRUE(fails(ckpt_wait(c.ctx, t, 0), CKPT_ESTATE, c.ctx, std::to_string(t)));
    EXPECT_TRUE(fails(ckpt_poll(c.ctx, t), CKPT_ESTATE, c.ctx, "already"));
}

TEST(BadInputOrder, TicketsNeverIssued)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    EXPECT_TRUE(fails(ckpt_wait(c.ctx, 0, -1), CKPT_EINVAL, c.ctx, "never issued"));
    EXPECT_TRUE(fails(ckpt_poll(c.ctx, 0), CKPT_EINVAL, c.ctx, "never issued"));
    EXPECT_TRUE(fails(ckpt_wait(c.ctx, 12345, -1), CKPT_EINVAL, c.ctx, "12345"));
    EXPECT_TRUE(fails(ckpt_poll(c.ctx, UINT64_MAX), CKPT_EINVAL, c.ctx, "never issued"));
    float v[4] = {0};
    int64_t shape[1] = {4};
    ASSERT_EQ(ckpt_register(c.ctx, "v", v, CKPT_F32, 1, shape), 0);
    ckpt_ticket t = 0;
    ASSERT_EQ(ckpt_save(c.ctx, 1, nullptr, &t), 0);
    EXPECT_TRUE(fails(ckpt_wait(c.ctx, t + 1, -1), CKPT_EINVAL, c.ctx, "never issued"));
    EXPECT_TRUE(fails(ckpt_poll(c.ctx, t + 1), CKPT_EINVAL, c.ctx, "never issued"));
    EXPECT_EQ(ckpt_wait(c.ctx, t, -1), 0) << ckpt_last_error(c.ctx);
}

TEST(BadInputOrder, ChangesWhileASaveIsInFlight)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    // 64 MiB through a 16 MiB staging pool and fsync: the save is still
    // running microseconds after ckpt_save returns.
    const size_t n = 64u << 20;
    TensorMem big(n);
    big.set(0x5A);
    int64_t shape[1] = {(int64_t)n};
    ASSERT_EQ(ckpt_register(c.ctx, "big", big.data(), CKPT_U8, 1, shape), 0);
    float small[4] = {1, 2, 3, 4};
    int64_t sshape[1] = {4};
    ckpt_ticket t = 0;
    ASSERT_EQ(ckpt_save(c.ctx, 8, nullptr, &t), 0) << ckpt_last_error(c.ctx);
    int64_t step_out = 77;
    EXPECT_TRUE(
        fails(ckpt_restore(c.ctx, CKPT_LATEST, nullptr, &step_out), CKPT_ESTATE, c.ctx, "flight"));
    EXPECT_TRUE(fails(ckpt_register(c.ctx, "small", small, CKPT_F32, 1, sshape), CKPT_ESTATE,
                      c.ctx, "in flight"));
    EXPECT_TRUE(fails(ckpt_unregister(c.ctx, "big"), CKPT_ESTATE, c.ctx, "in flight"));
    // Metadata may change at any time.
    EXPECT_EQ(ckpt_set_meta(c.ctx, "k", "v", 1), 0) << ckpt_last_error(c.ctx);
    int rc = ckpt_wait(c.ctx, t, 0);
    if (rc == CKPT_ETIMEDOUT) {
        EXPECT_NE(std::string(ckpt_last_error(c.ctx)).find("still running"), npos);
        int p = ckpt_poll(c.ctx, t);
        EXPECT_TRUE(p == CKPT_INPROGRESS || p == 0) << ckpt_err_name(p);
        rc = ckpt_wait(c.ctx, t, -1);
    }
    ASSERT_EQ(rc, 0) << ckpt_last_error(c.ctx);
    // Once it is done, everything is allowed again.
    big.set(0);
    EXPECT_EQ(ckpt_restore(c.ctx, CKPT_LATEST, nullptr, &step_out), 0) << ckpt_last_error(c.ctx);
    EXPECT_EQ(step_out, 8);
    EXPECT_TRUE(big.all(0x5A));
    EXPECT_EQ(ckpt_register(c.ctx, "small", small, CKPT_F32, 1, sshape), 0);
}

TEST(BadInputOrder, RefusedWhenBusy)
{
    Ctx c([](ckpt_config *cfg) { cfg->busy = CKPT_BUSY_REFUSE; });
    ASSERT_NE(c.ctx, nullptr);
    const size_t n = 64u << 20;
    std::vector<uint8_t> big(n, 1);
    int64_t shape[1] = {(int64_t)n};
    ASSERT_EQ(ckpt_register(c.ctx, "big", big.data(), CKPT_U8, 1, shape), 0);
    ckpt_ticket t1 = 0, t2 = 42;
    ASSERT_EQ(ckpt_save(c.ctx, 1, nullptr, &t1), 0);
    EXPECT_TRUE(fails(ckpt_save(c.ctx, 2, nullptr, &t2), CKPT_EBUSY, c.ctx, "step 2"));
    EXPECT_EQ(t2, 0u);
    EXPECT_EQ(ckpt_wait(c.ctx, t1, -1), 0) << ckpt_last_error(c.ctx);
    EXPECT_FALSE(ckt::exists(ckt::step_dir(c.dir, 2)));
}

TEST(BadInputOrder, FenceAndCloseWithNothingToDo)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    EXPECT_EQ(ckpt_fence(c.ctx, nullptr), 0);
    EXPECT_EQ(ckpt_fence(c.ctx, nullptr), 0);
    // A save with nothing registered is still a checkpoint.
    EXPECT_EQ(ckt::save_wait(c.ctx, 0), 0) << ckpt_last_error(c.ctx);
    EXPECT_EQ(ckpt_close(c.ctx), 0);
    c.ctx = nullptr;
}

// ===========================================================================
// Shapes, dtypes and pointers
// ===========================================================================

TEST(BadInputShape, ZeroSizeTensorsRoundTrip)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    int64_t s0[1] = {0}, s1[3] = {4, 0, 3}, s2[2] = {0, 1ll << 40};
    const float vals[4] = {1, 2, 3, 4}, others[4] = {5, 6, 7, 8};
    TensorMem data = tensor_of(vals), other = tensor_of(others);
    ASSERT_EQ(ckpt_register(c.ctx, "empty-null", nullptr, CKPT_F32, 1, s0), 0)
        << ckpt_last_error(c.ctx);
    ASSERT_EQ(ckpt_register(c.ctx, "empty-3d", nullptr, CKPT_BF16, 3, s1), 0)
        << ckpt_last_error(c.ctx);
    ASSERT_EQ(ckpt_register(c.ctx, "empty-huge-other-dim", nullptr, CKPT_F64, 2, s2), 0)
        << ckpt_last_error(c.ctx);
    ASSERT_EQ(ckpt_register(c.ctx, "empty-with-ptr", other.data(), CKPT_I8, 1, s0), 0)
        << ckpt_last_error(c.ctx);
    int64_t s4[1] = {4};
    ASSERT_EQ(ckpt_register(c.ctx, "data", data.data(), CKPT_F32, 1, s4), 0);
    ASSERT_EQ(ckpt_set_meta(c.ctx, "empty", nullptr, 0), 0) << ckpt_last_error(c.ctx);
    ASSERT_EQ(ckt::save_wait(c.ctx, 5), 0) << ckpt_last_error(c.ctx);
    ckpt_info info[2];
    size_t count = 0;
    ASSERT_EQ(ckpt_list(c.ctx, info, 2, &count), 0);
    ASSERT_EQ(count, 1u);
    EXPECT_EQ(info[0].ntensors, 5);
    EXPECT_EQ(info[0].nbytes, 16u);
    data.set(99);
    int64_t step = -5;
    ASSERT_EQ(ckpt_restore(c.ctx, CKPT_LATEST, nullptr, &step), 0) << ckpt_last_error(c.ctx);
    EXPECT_EQ(step, 5);
    EXPECT_EQ(first_of<float>(data), 1.0f);
    EXPECT_EQ(first_of<float>(other), 5.0f) << "a zero-size tensor's memory must not be written";
    size_t len = 9;
    EXPECT_EQ(ckpt_get_meta(c.ctx, "empty", nullptr, 0, &len), 0) << ckpt_last_error(c.ctx);
    EXPECT_EQ(len, 0u);
    EXPECT_EQ(ckt::expect_h5dump_all(c.dir), 2);
}

TEST(BadInputShape, OverflowingShapes)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    char byte = 0;
    const struct {
        const char *name;
        ckpt_dtype dt;
        std::vector<int64_t> shape;
    } cases[] = {
        {"int64max-x2", CKPT_F32, {INT64_MAX, 2}},
        {"2^40-squared", CKPT_U8, {1ll << 40, 1ll << 40}},
        {"2^62-f64", CKPT_F64, {1ll << 62}},
        {"int64max-u8", CKPT_U8, {INT64_MAX}},
        {"eight-dims", CKPT_I16, {1 << 8, 1 << 8, 1 << 8, 1 << 8, 1 << 8, 1 << 8, 1 << 8, 1 << 8}},
        {"wrap-to-zero", CKPT_U8, {1ll << 32, 1ll << 32}},
        {"wrap-to-small", CKPT_F64, {(1ll << 61) + 1}},
    };
    for (const auto &cs : cases) {
        SCOPED_TRACE(cs.name);
        EXPECT_TRUE(fails(ckpt_register(c.ctx, cs.name, &byte, cs.dt, (int)cs.shape.size(),
                                        cs.shape.data()),
                          CKPT_EINVAL, c.ctx, cs.name));
        EXPECT_TRUE(fails(ckpt_unregister(c.ctx, cs.name), CKPT_ENOTFOUND, c.ctx, cs.name))
            << "a refused tensor must not stay registered";
    }
}

TEST(BadInputShape, NegativeDimsBadNdimAndDtype)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    float v[64] = {0};
    int64_t neg1[1] = {-1}, neg2[2] = {3, -2}, min1[1] = {INT64_MIN};
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, four[1] = {4};
    EXPECT_TRUE(fails(ckpt_register(c.ctx, "neg", v, CKPT_F32, 1, neg1), CKPT_EINVAL, c.ctx,
                      "dimension 0 is -1"));
    EXPECT_TRUE(fails(ckpt_register(c.ctx, "neg", v, CKPT_F32, 2, neg2), CKPT_EINVAL, c.ctx,
                      "dimension 1 is -2"));
    EXPECT_TRUE(fails(ckpt_register(c.ctx, "neg", v, CKPT_F32, 1, min1), CKPT_EINVAL, c.ctx,
                      "neg"));
    EXPECT_TRUE(fails(ckpt_register(c.ctx, "nd", v, CKPT_F32, 9, nine), CKPT_EINVAL, c.ctx,
                      "9 dimensions"));
    EXPECT_TRUE(fails(ckpt_register(c.ctx, "nd", v, CKPT_F32, -1, nine), CKPT_EINVAL, c.ctx,
                      "-1 dimensions"));
    EXPECT_TRUE(fails(ckpt_register(c.ctx, "nd", v, CKPT_F32, INT32_MIN, nine), CKPT_EINVAL,
                      c.ctx, "dimensions"));
    EXPECT_TRUE(fails(ckpt_register(c.ctx, "dt", v, (ckpt_dtype)0, 1, four), CKPT_EINVAL, c.ctx,
                      "unknown dtype 0"));
    EXPECT_TRUE(fails(ckpt_register(c.ctx, "dt", v, (ckpt_dtype)99, 1, four), CKPT_EINVAL,
                      c.ctx, "unknown dtype 99"));
    EXPECT_TRUE(fails(ckpt_register(c.ctx, "dt", v, (ckpt_dtype)-1, 1, four), CKPT_EINVAL,
                      c.ctx, "dtype"));
    EXPECT_TRUE(fails(ckpt_register(c.ctx, "null", nullptr, CKPT_F32, 1, four), CKPT_EINVAL,
                      c.ctx, "16 bytes"));
    // None of them is registered: each name is still free.
    for (const char *n : {"neg", "nd", "dt", "null"})
        EXPECT_EQ(ckpt_register(c.ctx, n, v, CKPT_F32, 1, four), 0) << n;
    // A scalar's shape pointer is not read.
    EXPECT_EQ(ckpt_register(c.ctx, "scalar", v, CKPT_F32, 0,
                            reinterpret_cast<const int64_t *>(0x10)),
              0)
        << ckpt_last_error(c.ctx);
}

TEST(BadInputShape, DuplicateAndUnknownNames)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    const float av[2] = {1, 2}, bv[3] = {3, 4, 5};
    TensorMem a = tensor_of(av), b = tensor_of(bv);
    int64_t s2[1] = {2}, s3[1] = {3};
    ASSERT_EQ(ckpt_register(c.ctx, "w", a.data(), CKPT_F32, 1, s2), 0);
    EXPECT_TRUE(
        fails(ckpt_register(c.ctx, "w", b.data(), CKPT_F32, 1, s3), CKPT_EEXIST, c.ctx, "'w'"));
    EXPECT_TRUE(
        fails(ckpt_register(c.ctx, "w", a.data(), CKPT_F32, 1, s2), CKPT_EEXIST, c.ctx, "'w'"));
    EXPECT_TRUE(fails(ckpt_unregister(c.ctx, "W"), CKPT_ENOTFOUND, c.ctx, "'W'"));
    EXPECT_TRUE(fails(ckpt_unregister(c.ctx, "w "), CKPT_ENOTFOUND, c.ctx, "'w '"));
    ASSERT_EQ(ckpt_unregister(c.ctx, "w"), 0);
    EXPECT_TRUE(fails(ckpt_unregister(c.ctx, "w"), CKPT_ENOTFOUND, c.ctx, "'w'"));
    ASSERT_EQ(ckpt_register(c.ctx, "w", b.data(), CKPT_F32, 1, s3), 0);
    // The duplicate attempt did not replace the first registration.
    ASSERT_EQ(ckt::save_wait(c.ctx, 1), 0) << ckpt_last_error(c.ctx);
    b.set(0);
    ASSERT_EQ(ckpt_restore(c.ctx, 1, nullptr, nullptr), 0) << ckpt_last_error(c.ctx);
    EXPECT_EQ(first_of<float>(b), 3.0f);
}

// ===========================================================================
// Names
// ===========================================================================

TEST(BadInputName, LengthLimits)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    uint8_t v = 7;
    int64_t s1[1] = {1};
    std::string n255(CKPT_MAX_NAME, 'n'), n256(CKPT_MAX_NAME + 1, 'n');
    EXPECT_EQ(ckpt_register(c.ctx, n255.c_str(), &v, CKPT_U8, 1, s1), 0) << ckpt_last_error(c.ctx);
    EXPECT_TRUE(fails(ckpt_register(c.ctx, n256.c_str(), &v, CKPT_U8, 1, s1), CKPT_EINVAL, c.ctx,
                      "256 bytes"));
    std::string huge(100000, 'h');
    EXPECT_TRUE(fails(ckpt_register(c.ctx, huge.c_str(), &v, CKPT_U8, 1, s1), CKPT_EINVAL, c.ctx,
                      "at most 255"));
    EXPECT_TRUE(fails(ckpt_register(c.ctx, "", &v, CKPT_U8, 1, s1), CKPT_EINVAL, c.ctx, "empty"));
    // 255 bytes whose last character is multi-byte.
    std::string u(CKPT_MAX_NAME - 3, 'u');
    u += "語";
    EXPECT_EQ(ckpt_register(c.ctx, u.c_str(), &v, CKPT_U8, 1, s1), 0) << ckpt_last_error(c.ctx);
    ASSERT_EQ(ckt::save_wait(c.ctx, 1), 0) << ckpt_last_error(c.ctx);
    EXPECT_EQ(ckt::expect_h5dump_all(c.dir), 2);
}

TEST(BadInputName, ControlCharactersAndInvalidUtf8)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    uint8_t v = 7;
    int64_t s1[1] = {1};
    const struct {
        const char *name;
        const char *says;
    } bad[] = {
        {"tab\there", "control character 0x09"},
        {"new\nline", "control character 0x0a"},
        {"cr\r", "control"},
        {"\x01start", "control"},
        {"esc\x1b[31m", "control"},
        {"del\x7f", "0x7f"},
        {"\xff\xfe", "UTF-8"},
        {"\xc0\xaf", "UTF-8"},
        {"\xed\xa0\x80", "UTF-8"},
        {"\xe0\x80\xaf", "UTF-8"},
        {"\xf4\x90\x80\x80", "UTF-8"},
        {"cut\xe6\x97", "UTF-8"},
        {"lone\x80", "UTF-8"},
    };
    for (const auto &b : bad) {
        SCOPED_TRACE(b.says);
        EXPECT_TRUE(fails(ckpt_register(c.ctx, b.name, &v, CKPT_U8, 1, s1), CKPT_EINVAL, c.ctx,
                          b.says));
        EXPECT_TRUE(fails(ckpt_set_meta(c.ctx, b.name, "x", 1), CKPT_EINVAL, c.ctx, b.says));
        EXPECT_TRUE(fails(ckpt_unregister(c.ctx, b.name), CKPT_EINVAL, c.ctx, b.says));
        size_t len;
        EXPECT_TRUE(fails(ckpt_get_meta(c.ctx, b.name, nullptr, 0, &len), CKPT_EINVAL, c.ctx,
                          b.says));
        // The message never echoes the raw bytes.
        std::string msg = ckpt_last_error(c.ctx);
        for (unsigned char ch : msg)
            EXPECT_FALSE(ch < 0x20 || ch == 0x7f) << "control byte in message: " << msg;
    }
}

// DIR sits four levels down in the temp folder, so a name that escaped it
// ("../../x") would still land inside the temp folder, where the snapshot
// sees it.
struct Nested {
    TempDir tmp;
    std::string dir = tmp.sub("a/b/c/ckpt");
    Nested() { EXPECT_EQ(ckt::run("mkdir -p " + ckt::quote(tmp.sub("a/b/c"))), 0); }
};

TEST(BadInputName, OddButValidNamesRoundTripAndStayInDir)
{
    Nested n;
    const std::vector<std::string> names = {
        "a/b",           "..",        ".",        "%",          "%2F",
        "a b",           "ünïcødé",   "日本語",   "/abs",       "../../etc/passwd",
        "a/../../b",     "../../../../../tmp/ckpt-escape", "./x", "x/.", "trailing/",
        "\xf0\x9f\x98\x80 emoji", "rank-00000.h5", "manifest.h5", "%2E%2E", "step-000000000001",
        std::string(CKPT_MAX_NAME, '/'),
    };
    Snapshot before = snapshot(n.tmp.path());
    struct stat passwd_before;
    bool have_passwd = stat("/etc/passwd", &passwd_before) == 0;
    std::string passwd = have_passwd ? read_file("/etc/passwd") : "";

    std::vector<std::vector<uint8_t>> data(names.size(), std::vector<uint8_t>(64));
    {
        ckpt_config cfg = ckt::config(n.dir);
        ckpt_ctx *ctx = ckt::open_ctx(cfg);
        ASSERT_NE(ctx, nullptr);
        int64_t shape[1] = {64};
        for (size_t i = 0; i < names.size(); i++) {
            ckt::fill(data[i].data(), 64, 100 + i);
            ASSERT_EQ(ckpt_register(ctx, names[i].c_str(), data[i].data(), CKPT_U8, 1, shape), 0)
                << names[i] << ": " << ckpt_last_error(ctx);
            ASSERT_EQ(ckpt_set_meta(ctx, names[i].c_str(), names[i].data(), names[i].size()), 0)
                << names[i] << ": " << ckpt_last_error(ctx);
        }
        ASSERT_EQ(ckt::save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
        ASSERT_EQ(ckpt_close(ctx), 0);
    }

    // Everything new lies inside DIR, and DIR holds only the checkpoint.
    std::vector<std::string> outside;
    for (const std::string &d : changes(before, snapshot(n.tmp.path()))) {
        if (d.rfind("+a/b/c/ckpt", 0) != 0 && d != "~a/b/c")
            outside.push_back(d);
    }
    EXPECT_EQ(join(outside), "") << "created or changed outside DIR";
    std::vector<std::string> top = ckt::list_dir(n.dir);
    EXPECT_EQ(top, std::vector<std::string>{"step-000000000001"});
    // Names never become paths: the step folder holds only the library's
    // own files (rank-*.h5, manifest.h5, done-*.rec).
    for (const std::string &f : ckt::list_dir(ckt::step_dir(n.dir, 1))) {
        bool known = f == "manifest.h5" || f == "rank-00000.h5" || f == "done-00000.rec";
        EXPECT_TRUE(known) << "unexpected file in the checkpoint: " << f;
    }
    EXPECT_TRUE(ckt::exists(ckt::step_dir(n.dir, 1) + "/rank-00000.h5"));
    EXPECT_TRUE(ckt::exists(ckt::step_dir(n.dir, 1) + "/manifest.h5"));
    if (have_passwd) {
        struct stat after;
        ASSERT_EQ(stat("/etc/passwd", &after), 0);
        EXPECT_EQ(after.st_mtim.tv_sec, passwd_before.st_mtim.tv_sec);
        EXPECT_EQ(read_file("/etc/passwd"), passwd);
    }
    EXPECT_EQ(ckt::expect_h5dump_all(n.dir), 2);

    // A new context finds every tensor and blob under its exact name.
    ckpt_ctx *ctx = ckt::open_ctx(ckt::config(n.dir));
    ASSERT_NE(ctx, nullptr);
    std::vector<std::vector<uint8_t>> back(names.size(), std::vector<uint8_t>(64, 0));
    int64_t shape[1] = {64};
    for (size_t i = 0; i < names.size(); i++)
        ASSERT_EQ(ckpt_register(ctx, names[i].c_str(), back[i].data(), CKPT_U8, 1, shape), 0);
    int64_t step = -1;
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &step), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(step, 1);
    for (size_t i = 0; i < names.size(); i++) {
        EXPECT_EQ(back[i], data[i]) << names[i];
        std::string got(300, '\0');
        size_t len = 0;
        ASSERT_EQ(ckpt_get_meta(ctx, names[i].c_str(), &got[0], got.size(), &len), 0)
            << names[i];
        EXPECT_EQ(got.substr(0, len), names[i]);
    }
    ckpt_info info[1];
    size_t count = 0;
    ASSERT_EQ(ckpt_list(ctx, info, 1, &count), 0);
    ASSERT_EQ(count, 1u);
    EXPECT_EQ(info[0].ntensors, (int32_t)names.size());
    EXPECT_EQ(ckpt_close(ctx), 0);
}

// ===========================================================================
// Metadata
// ===========================================================================

TEST(BadInputMeta, SetMetaLimits)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    std::string k256(CKPT_MAX_NAME + 1, 'k');
    EXPECT_TRUE(fails(ckpt_set_meta(c.ctx, k256.c_str(), "x", 1), CKPT_EINVAL, c.ctx,
                      "metadata key is 256 bytes"));
    EXPECT_TRUE(fails(ckpt_set_meta(c.ctx, "", "x", 1), CKPT_EINVAL, c.ctx, "empty"));
    EXPECT_TRUE(
        fails(ckpt_set_meta(c.ctx, "nul", nullptr, 5), CKPT_EINVAL, c.ctx, "NULL data for 5"));
    std::vector<uint8_t> big(CKPT_MAX_META + 1, 0xAB);
    EXPECT_TRUE(fails(ckpt_set_meta(c.ctx, "big", big.data(), big.size()), CKPT_EINVAL, c.ctx,
                      "'big'"));
    EXPECT_TRUE(fails(ckpt_set_meta(c.ctx, "huge", big.data(), SIZE_MAX), CKPT_EINVAL, c.ctx,
                      "'huge'"));
    size_t len = 0;
    EXPECT_TRUE(fails(ckpt_get_meta(c.ctx, "big", nullptr, 0, &len), CKPT_ENOTFOUND, c.ctx,
                      "'big'"));

    // The limits themselves are fine, and round-trip through a checkpoint.
    EXPECT_EQ(ckpt_set_meta(c.ctx, "big", big.data(), CKPT_MAX_META), 0) << ckpt_last_error(c.ctx);
    EXPECT_EQ(ckpt_set_meta(c.ctx, "zero", nullptr, 0), 0) << ckpt_last_error(c.ctx);
    EXPECT_EQ(ckpt_set_meta(c.ctx, "zero-ptr", "abc", 0), 0) << ckpt_last_error(c.ctx);
    std::string k255(CKPT_MAX_NAME, 'k');
    EXPECT_EQ(ckpt_set_meta(c.ctx, k255.c_str(), "v", 1), 0) << ckpt_last_error(c.ctx);
    ASSERT_EQ(ckt::save_wait(c.ctx, 3), 0) << ckpt_last_error(c.ctx);
    ASSERT_EQ(ckpt_set_meta(c.ctx, "big", "small", 5), 0);
    ASSERT_EQ(ckpt_set_meta(c.ctx, "zero", "now set", 7), 0);
    ASSERT_EQ(ckpt_restore(c.ctx, 3, nullptr, nullptr), 0) << ckpt_last_error(c.ctx);
    std::vector<uint8_t> got(CKPT_MAX_META);
    ASSERT_EQ(ckpt_get_meta(c.ctx, "big", got.data(), got.size(), &len), 0);
    EXPECT_EQ(len, (size_t)CKPT_MAX_META);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), big.begin()));
    ASSERT_EQ(ckpt_get_meta(c.ctx, "zero", got.data(), got.size(), &len), 0);
    EXPECT_EQ(len, 0u);
    ASSERT_EQ(ckpt_get_meta(c.ctx, k255.c_str(), got.data(), 1, &len), 0);
    EXPECT_EQ(got[0], 'v');
}

TEST(BadInputMeta, FailedSetKeepsTheOldValue)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    ASSERT_EQ(ckpt_set_meta(c.ctx, "k", "abc", 3), 0);
    EXPECT_EQ(ckpt_set_meta(c.ctx, "k", nullptr, 9), CKPT_EINVAL);
    std::vector<uint8_t> big(CKPT_MAX_META + 1, 1);
    EXPECT_EQ(ckpt_set_meta(c.ctx, "k", big.data(), big.size()), CKPT_EINVAL);
    char buf[8] = {0};
    size_t len = 0;
    ASSERT_EQ(ckpt_get_meta(c.ctx, "k", buf, sizeof buf, &len), 0);
    EXPECT_EQ(len, 3u);
    EXPECT_EQ(std::string(buf, len), "abc");
}

TEST(BadInputMeta, GetMetaBufferTooSmallOrKeyUnknown)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    ASSERT_EQ(ckpt_set_meta(c.ctx, "rng", "0123456789", 10), 0);
    char buf[16];
    memset(buf, '#', sizeof buf);
    size_t len = 0;
    EXPECT_TRUE(fails(ckpt_get_meta(c.ctx, "rng", buf, 9, &len), CKPT_ERANGE, c.ctx, "'rng'"));
    EXPECT_EQ(len, 10u) << "*len must report the size needed";
    for (char ch : buf)
        ASSERT_EQ(ch, '#') << "the buffer must be untouched";
    len = 0;
    EXPECT_TRUE(fails(ckpt_get_meta(c.ctx, "rng", nullptr, 0, &len), CKPT_ERANGE, c.ctx, "10 bytes"));
    EXPECT_EQ(len, 10u);
    len = 0;
    EXPECT_TRUE(fails(ckpt_get_meta(c.ctx, "rng", nullptr, 100, &len), CKPT_ERANGE, c.ctx, "rng"))
        << "a NULL buffer holds nothing, whatever cap says";
    EXPECT_EQ(len, 10u);
    len = 123;
    EXPECT_TRUE(
        fails(ckpt_get_meta(c.ctx, "nope", buf, sizeof buf, &len), CKPT_ENOTFOUND, c.ctx, "'nope'"));
    EXPECT_EQ(ckpt_get_meta(c.ctx, "rng", buf, 10, &len), 0);
    EXPECT_EQ(std::string(buf, 10), "0123456789");
}

// A provider that fails, or whose value does not fit: the save fails with
// a code and a message naming the key, and nothing is queued or written.
struct Provider {
    int rc = 0;
    size_t len = 8;
    static int fn(void *user, void *buf, size_t cap, size_t *len)
    {
        auto *p = static_cast<Provider *>(user);
        memset(buf, 0x33, std::min(p->len, cap));
        *len = p->len;
        return p->rc;
    }
};

TEST(BadInputMeta, AFailingProviderFailsTheSaveWithNothingWritten)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    float v[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    ASSERT_EQ(ckpt_register(c.ctx, "v", v, CKPT_F32, 1, shape), 0);
    Provider good, bad;
    EXPECT_TRUE(fails(ckpt_set_meta_fn(c.ctx, "", Provider::fn, &good), CKPT_EINVAL, c.ctx,
                      "empty"));
    EXPECT_TRUE(fails(ckpt_set_meta_fn(c.ctx, nullptr, Provider::fn, &good), CKPT_EINVAL, c.ctx,
                      "metadata key is NULL"));
    EXPECT_TRUE(fails(ckpt_set_meta_fn(c.ctx, "never", nullptr, nullptr), CKPT_ENOTFOUND, c.ctx,
                      "'never' has no provider"));
    ASSERT_EQ(ckpt_set_meta_fn(c.ctx, "first", Provider::fn, &good), 0);
    ASSERT_EQ(ckpt_set_meta_fn(c.ctx, "loader pos", Provider::fn, &bad), 0);
    bad.rc = 7;
    ckpt_ticket t = 5;
    EXPECT_TRUE(fails(ckpt_save(c.ctx, 1, nullptr, &t), CKPT_EINVAL, c.ctx, "'loader pos'"));
    EXPECT_NE(std::string(ckpt_last_error(c.ctx)).find("returned 7"), npos);
    EXPECT_NE(std::string(ckpt_last_error(c.ctx)).find("step 1"), npos);
    EXPECT_EQ(t, 0u);
    bad.rc = 0;
    bad.len = CKPT_MAX_META + 1;
    EXPECT_TRUE(fails(ckpt_save(c.ctx, 1, nullptr, &t), CKPT_ERANGE, c.ctx, "'loader pos'"));
    EXPECT_NE(std::string(ckpt_last_error(c.ctx)).find(std::to_string(CKPT_MAX_META + 1)), npos);
    bad.len = SIZE_MAX;
    EXPECT_TRUE(fails(ckpt_save(c.ctx, 1, nullptr, nullptr), CKPT_ERANGE, c.ctx, "'loader pos'"));
    EXPECT_TRUE(ckt::list_dir(c.dir).empty()) << "a failed provider left something in DIR";
    EXPECT_EQ(ckpt_fence(c.ctx, nullptr), 0) << "nothing was started, nothing failed later";
    // CKPT_MAX_META bytes is the limit, and fits.
    bad.len = CKPT_MAX_META;
    ASSERT_EQ(ckt::save_wait(c.ctx, 1), 0) << ckpt_last_error(c.ctx);
    ASSERT_EQ(ckpt_restore(c.ctx, 1, nullptr, nullptr), 0) << ckpt_last_error(c.ctx);
    std::vector<uint8_t> got(CKPT_MAX_META);
    size_t len = 0;
    ASSERT_EQ(ckpt_get_meta(c.ctx, "loader pos", got.data(), got.size(), &len), 0);
    EXPECT_EQ(len, (size_t)CKPT_MAX_META);
    EXPECT_EQ(got[CKPT_MAX_META - 1], 0x33);
    EXPECT_EQ(ckpt_close(c.ctx), 0);
    c.ctx = nullptr;
}

// ===========================================================================
// Restore
// ===========================================================================

// Registered buffers start as this pattern; a refused restore leaves it.
constexpr uint8_t kSentinel = 0xEE;

bool untouched(const TensorMem &m)
{
    return m.all(kSentinel);
}

// A tensor of n bytes of kSentinel.
TensorMem sentinel(size_t n)
{
    TensorMem m(n);
    m.set(kSentinel);
    return m;
}

// Saves "a" f32 {4, 4} (pattern 1), "b" i32 {8} (pattern 2) and metadata
// "k" = "saved" at `step`.
void save_ab(const std::string &dir, int64_t step)
{
    ckpt_ctx *ctx = ckt::open_ctx(ckt::config(dir));
    ASSERT_NE(ctx, nullptr);
    TensorMem a(16 * 4), b(8 * 4);
    a.fill(1);
    b.fill(2);
    int64_t sa[2] = {4, 4}, sb[1] = {8};
    ASSERT_EQ(ckpt_register(ctx, "a", a.data(), CKPT_F32, 2, sa), 0);
    ASSERT_EQ(ckpt_register(ctx, "b", b.data(), CKPT_I32, 1, sb), 0);
    ASSERT_EQ(ckpt_set_meta(ctx, "k", "saved", 5), 0);
    ASSERT_EQ(ckt::save_wait(ctx, step), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_close(ctx), 0);
}

TEST(BadInputRestore, EmptyFolderIsNotFound)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    TensorMem v = sentinel(32);
    int64_t shape[1] = {32};
    ASSERT_EQ(ckpt_register(c.ctx, "v", v.data(), CKPT_U8, 1, shape), 0);
    ASSERT_EQ(ckpt_set_meta(c.ctx, "k", "before", 6), 0);
    int64_t step = 55;
    EXPECT_TRUE(fails(ckpt_restore(c.ctx, CKPT_LATEST, nullptr, &step), CKPT_ENOTFOUND, c.ctx,
                      c.dir));
    EXPECT_EQ(step, -1);
    EXPECT_TRUE(untouched(v));
    EXPECT_TRUE(fails(ckpt_restore(c.ctx, 3, nullptr, &step), CKPT_ENOTFOUND, c.ctx, "step 3"));
    char buf[8];
    size_t len = 0;
    ASSERT_EQ(ckpt_get_meta(c.ctx, "k", buf, sizeof buf, &len), 0);
    EXPECT_EQ(std::string(buf, len), "before");
    size_t count = 9;
    EXPECT_EQ(ckpt_list(c.ctx, nullptr, 0, &count), 0);
    EXPECT_EQ(count, 0u);
}

TEST(BadInputRestore, StepsOutOfRange)
{
    Ctx c;
    ASSERT_NE(c.ctx, nullptr);
    TensorMem v(1);
    v.set(1);
    int64_t shape[1] = {1};
    ASSERT_EQ(ckpt_register(c.ctx, "v", v.data(), CKPT_U8, 1, shape), 0);
    for (int64_t bad : {(int64_t)-1, (int64_t)-2, INT64_MIN, (int64_t)1000000000000ll, INT64_MAX}) {
        SCOPED_TRACE(bad);
        ckpt_ticket t = 5;
        EXPECT_TRUE(fails(ckpt_save(c.ctx, bad, nullptr, &t), CKPT_EINVAL, c.ctx,
                          std::to_string(bad)));
        EXPECT_EQ(t, 0u);
        if (bad != CKPT_LATEST) {
            int64_t out = 5;
            EXPECT_TRUE(fails(ckpt_restore(c.ctx, bad, nullptr, &out), CKPT_EINVAL, c.ctx,
                              std::to_string(bad)));
        }
    }
    EXPECT_TRUE(ckt::list_dir(c.dir).empty()) << "a refused save left something in DIR";
    // The largest step is fine.
    ASSERT_EQ(ckt::save_wait(c.ctx, 999999999999ll), 0) << ckpt_last_error(c.ctx);
    EXPECT_TRUE(ckt::exists(c.dir + "/step-999999999999"));
    v.set(0);
    int64_t out = 0;
    ASSERT_EQ(ckpt_restore(c.ctx, CKPT_LATEST, nullptr, &out), 0) << ckpt_last_error(c.ctx);
    EXPECT_EQ(out, 999999999999ll);
    EXPECT_TRUE(v.all(1));
    EXPECT_TRUE(fails(ckpt_restore(c.ctx, 5, nullptr, &out), CKPT_ENOTFOUND, c.ctx, "step 5"));
}

struct MismatchCase {
    const char *what;
    ckpt_dtype da;
    std::vector<int64_t> sa;
    bool with_c;
    ckpt_dtype db;
    const char *names; // the tensor the message must name
    const char *says;  // and what it must say about it
};

TEST(BadInputRestore, MismatchOverwritesNothing)
{
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    save_ab(dir, 6);
    if (HasFatalFailure())
        return;
    const MismatchCase cases[] = {
        {"shape", CKPT_F32, {4, 5}, false, CKPT_I32, "'a'", "[4, 4]"},
        {"transposed-looking shape", CKPT_F32, {2, 8}, false, CKPT_I32, "'a'", "[2, 8]"},
        {"ndim", CKPT_F32, {16}, false, CKPT_I32, "'a'", "shape"},
        {"scalar", CKPT_F32, {}, false, CKPT_I32, "'a'", "shape"},
        {"dtype of a", CKPT_F16, {4, 4}, false, CKPT_I32, "'a'", "f32"},
        {"same-size dtype", CKPT_I32, {4, 4}, false, CKPT_I32, "'a'", "i32"},
        {"dtype of b", CKPT_F32, {4, 4}, false, CKPT_F32, "'b'", "i32"},
        {"missing tensor", CKPT_F32, {4, 4}, true, CKPT_I32, "'c'", "not in the checkpoint"},
    };
    for (const MismatchCase &mc : cases) {
        SCOPED_TRACE(mc.what);
        ckpt_ctx *ctx = ckt::open_ctx(ckt::config(dir));
        ASSERT_NE(ctx, nullptr);
        TensorMem a = sentinel(64 * 2), b = sentinel(64), cbuf = sentinel(64);
        int64_t sb[1] = {8}, sc[1] = {4};
        ASSERT_EQ(ckpt_register(ctx, "a", a.data(), mc.da, (int)mc.sa.size(),
                                mc.sa.empty() ? nullptr : mc.sa.data()),
                  0)
            << ckpt_last_error(ctx);
        ASSERT_EQ(ckpt_register(ctx, "b", b.data(), mc.db, 1, sb), 0);
        if (mc.with_c) {
            ASSERT_EQ(ckpt_register(ctx, "c", cbuf.data(), CKPT_F32, 1, sc), 0);
        }
        ASSERT_EQ(ckpt_set_meta(ctx, "k", "before", 6), 0);
        for (int64_t which : {CKPT_LATEST, (int64_t)6}) {
            int64_t step = 77;
            EXPECT_TRUE(fails(ckpt_restore(ctx, which, nullptr, &step), CKPT_EMISMATCH, ctx,
                              mc.names));
            EXPECT_NE(std::string(ckpt_last_error(ctx)).find(mc.says), npos)
                << ckpt_last_error(ctx);
            EXPECT_EQ(step, -1);
            EXPECT_TRUE(untouched(a)) << "tensor a was written";
            EXPECT_TRUE(untouched(b)) << "tensor b was written";
            EXPECT_TRUE(untouched(cbuf)) << "tensor c was written";
            char buf[16];
            size_t len = 0;
            ASSERT_EQ(ckpt_get_meta(ctx, "k", buf, sizeof buf, &len), 0);
            EXPECT_EQ(std::string(buf, len), "before") << "metadata was replaced";
        }
        EXPECT_EQ(ckpt_close(ctx), 0);
    }

    // A subset of the checkpoint's tensors restores.
    ckpt_ctx *ctx = ckt::open_ctx(ckt::config(dir));
    ASSERT_NE(ctx, nullptr);
    TensorMem a = sentinel(16 * 4);
    int64_t sa[2] = {4, 4};
    ASSERT_EQ(ckpt_register(ctx, "a", a.data(), CKPT_F32, 2, sa), 0);
    EXPECT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, nullptr), 0) << ckpt_last_error(ctx);
    EXPECT_TRUE(a.matches(1));
    EXPECT_EQ(ckpt_close(ctx), 0);
}

TEST(BadInputRestore, MismatchDoesNotFallBackToAnOlderStep)
{
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    {
        ckpt_ctx *ctx = ckt::open_ctx(ckt::config(dir));
        ASSERT_NE(ctx, nullptr);
        TensorMem a(16 * 4);
        a.set(0);
        int64_t s44[2] = {4, 4}, s22[2] = {2, 2};
        ASSERT_EQ(ckpt_register(ctx, "a", a.data(), CKPT_F32, 2, s44), 0);
        ASSERT_EQ(ckt::save_wait(ctx, 6), 0);
        ASSERT_EQ(ckpt_unregister(ctx, "a"), 0);
        ASSERT_EQ(ckpt_register(ctx, "a", a.data(), CKPT_F32, 2, s22), 0);
        ASSERT_EQ(ckt::save_wait(ctx, 7), 0);
        ASSERT_EQ(ckpt_close(ctx), 0);
    }
    ckpt_ctx *ctx = ckt::open_ctx(ckt::config(dir));
    ASSERT_NE(ctx, nullptr);
    TensorMem a = sentinel(16 * 4);
    int64_t s44[2] = {4, 4};
    ASSERT_EQ(ckpt_register(ctx, "a", a.data(), CKPT_F32, 2, s44), 0);
    int64_t step = 0;
    EXPECT_TRUE(fails(ckpt_restore(ctx, CKPT_LATEST, nullptr, &step), CKPT_EMISMATCH, ctx,
                      "step-000000000007"));
    EXPECT_EQ(step, -1);
    EXPECT_TRUE(untouched(a));
    // Asking for step 6 by name works.
    EXPECT_EQ(ckpt_restore(ctx, 6, nullptr, &step), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(step, 6);
    EXPECT_EQ(ckpt_close(ctx), 0);
}

// Restoring by name: refused before a restore, and for names that are not
// registered, not in the checkpoint, repeated or NULL, for a mismatch, while
// a save is in flight, and once the checkpoint was replaced or deleted;
// nothing is overwritten in any of these cases.
TEST(BadInputRestore, RestoreByNameRefusesWithNothingOverwritten)
{
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    save_ab(dir, 6);
    if (HasFatalFailure())
        return;
    ckt::EventGate gate;
    ckpt_config cfg = ckt::config(dir);
    gate.attach(&cfg);
    ckpt_ctx *ctx = ckt::open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    TensorMem a = sentinel(16 * 4);
    int64_t sa[2] = {4, 4}, sb[1] = {8};
    ASSERT_EQ(ckpt_register(ctx, "a", a.data(), CKPT_F32, 2, sa), 0);
    const char *just_a[] = {"a"};
    EXPECT_TRUE(fails(ckpt_restore_tensors(ctx, just_a, 1, nullptr), CKPT_ESTATE, ctx,
                      "ckpt_restore must succeed"));
    EXPECT_TRUE(untouched(a));
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, nullptr), 0) << ckpt_last_error(ctx);
    // b registered with the wrong dtype.
    TensorMem b = sentinel(32);
    ASSERT_EQ(ckpt_register(ctx, "b", b.data(), CKPT_F32, 1, sb), 0);
    const char *just_b[] = {"b"};
    EXPECT_TRUE(fails(ckpt_restore_tensors(ctx, just_b, 1, nullptr), CKPT_EMISMATCH, ctx, "'b'"));
    EXPECT_TRUE(untouched(b));
    TensorMem c4 = sentinel(4 * 4);
    int64_t sc[1] = {4};
    ASSERT_EQ(ckpt_register(ctx, "c", c4.data(), CKPT_F32, 1, sc), 0);
    a.set(kSentinel);
    const char *a_and_c[] = {"a", "c"};
    EXPECT_TRUE(fails(ckpt_restore_tensors(ctx, a_and_c, 2, nullptr), CKPT_ENOTFOUND, ctx,
                      "'c' is not in the checkpoint"));
    EXPECT_TRUE(untouched(a)) << "a was written before c was found missing";
    const char *unknown[] = {"a", "zzz"};
    EXPECT_TRUE(fails(ckpt_restore_tensors(ctx, unknown, 2, nullptr), CKPT_ENOTFOUND, ctx,
                      "'zzz' is not registered"));
    const char *twice[] = {"a", "a"};
    EXPECT_TRUE(fails(ckpt_restore_tensors(ctx, twice, 2, nullptr), CKPT_EINVAL, ctx, "twice"));
    const char *null_name[] = {"a", nullptr};
    EXPECT_TRUE(fails(ckpt_restore_tensors(ctx, null_name, 2, nullptr), CKPT_EINVAL, ctx,
                      "names[1] is NULL"));
    EXPECT_TRUE(fails(ckpt_restore_tensors(ctx, nullptr, 1, nullptr), CKPT_EINVAL, ctx,
                      "names is NULL"));
    EXPECT_TRUE(untouched(a));
    ASSERT_EQ(ckpt_unregister(ctx, "b"), 0);
    ASSERT_EQ(ckpt_unregister(ctx, "c"), 0);
    // While a save is in flight (held at its start).
    gate.hold_step = 6;
    ckpt_ticket t = 0;
    ASSERT_EQ(ckpt_save(ctx, 6, nullptr, &t), 0) << ckpt_last_error(ctx);
    EXPECT_TRUE(fails(ckpt_restore_tensors(ctx, just_a, 1, nullptr), CKPT_ESTATE, ctx,
                      "in flight"));
    gate.release();
    ASSERT_EQ(ckpt_fence(ctx, nullptr), 0);
    ASSERT_EQ(ckpt_wait(ctx, t, -1), 0) << ckpt_last_error(ctx);
    // That save replaced step 6: the checkpoint the restore read is gone.
    EXPECT_TRUE(fails(ckpt_restore_tensors(ctx, just_a, 1, nullptr), CKPT_ENOTFOUND, ctx,
                      "saved again"));
    EXPECT_TRUE(untouched(a));
    ASSERT_EQ(ckpt_restore(ctx, 6, nullptr, nullptr), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_restore_tensors(ctx, just_a, 1, nullptr), 0) << ckpt_last_error(ctx);
    TempDir::remove_all(ckt::step_dir(dir, 6));
    a.set(kSentinel);
    EXPECT_TRUE(fails(ckpt_restore_tensors(ctx, just_a, 1, nullptr), CKPT_ENOTFOUND, ctx,
                      "is gone"));
    // A restore that fails forgets the step of the one before.
    EXPECT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, nullptr), CKPT_ENOTFOUND);
    EXPECT_TRUE(fails(ckpt_restore_tensors(ctx, just_a, 1, nullptr), CKPT_ESTATE, ctx,
                      "ckpt_restore must succeed"));
    EXPECT_TRUE(untouched(a));
    EXPECT_EQ(ckpt_close(ctx), 0);
}

// Tensors of the checkpoint that nobody registered: a warning naming how
// many and the first five (default), or CKPT_EMISMATCH with nothing
// overwritten (CKPT_RESTORE_FAIL).
TEST(BadInputRestore, UnregisteredTensorsWarnOrFail)
{
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    std::vector<TensorMem> bufs;
    for (int i = 0; i < 8; i++)
        bufs.emplace_back(16);
    {
        ckpt_ctx *ctx = ckt::open_ctx(ckt::config(dir));
        ASSERT_NE(ctx, nullptr);
        int64_t shape[1] = {16};
        for (size_t i = 0; i < bufs.size(); i++) {
            bufs[i].fill(i);
            std::string name = i == 0 ? "kept" : "t" + std::to_string(i);
            ASSERT_EQ(ckpt_register(ctx, name.c_str(), bufs[i].data(), CKPT_U8, 1, shape), 0);
        }
        ASSERT_EQ(ckpt_set_meta(ctx, "k", "saved", 5), 0);
        ASSERT_EQ(ckt::save_wait(ctx, 3), 0) << ckpt_last_error(ctx);
        ASSERT_EQ(ckpt_close(ctx), 0);
    }
    for (ckpt_unregistered mode : {CKPT_RESTORE_WARN, CKPT_RESTORE_FAIL}) {
        SCOPED_TRACE(mode == CKPT_RESTORE_WARN ? "warn" : "fail");
        ckt::Logs logs;
        ckpt_config cfg = ckt::config(dir);
        logs.attach(&cfg);
        cfg.restore_unregistered = mode;
        ckpt_ctx *ctx = ckt::open_ctx(cfg);
        ASSERT_NE(ctx, nullptr);
        TensorMem kept = sentinel(16);
        int64_t shape[1] = {16};
        ASSERT_EQ(ckpt_register(ctx, "kept", kept.data(), CKPT_U8, 1, shape), 0);
        ASSERT_EQ(ckpt_set_meta(ctx, "k", "before", 6), 0);
        int64_t step = -1;
        int rc = ckpt_restore(ctx, CKPT_LATEST, nullptr, &step);
        if (mode == CKPT_RESTORE_WARN) {
            ASSERT_EQ(rc, 0) << ckpt_last_error(ctx);
            EXPECT_EQ(step, 3);
            EXPECT_TRUE(kept.matches(0));
            EXPECT_EQ(logs.count("not registered"), 1);
            EXPECT_TRUE(logs.has("7 tensor(s)", "'t1', 't2', 't3', 't4', 't5', ..."));
            EXPECT_FALSE(logs.has("'t6'")) << "more than the first five named";
            EXPECT_TRUE(logs.has("not registered", "ckpt_restore_tensors"));
            EXPECT_TRUE(logs.has("not registered", "CKPT_RESTORE_FAIL"));
        } else {
            EXPECT_TRUE(fails(rc, CKPT_EMISMATCH, ctx, "7 tensor(s)"));
            std::string msg = ckpt_last_error(ctx);
            EXPECT_NE(msg.find("'t1', 't2', 't3', 't4', 't5', ..."), npos) << msg;
            EXPECT_NE(msg.find("CKPT_RESTORE_FAIL"), npos) << msg;
            EXPECT_EQ(step, -1);
            EXPECT_TRUE(untouched(kept)) << "a refused restore wrote a tensor";
            char buf[16];
            size_t len = 0;
            ASSERT_EQ(ckpt_get_meta(ctx, "k", buf, sizeof buf, &len), 0);
            EXPECT_EQ(std::string(buf, len), "before") << "metadata was replaced";
            // Everything registered: the same mode restores without a word.
            std::vector<TensorMem> rest;
            for (int i = 0; i < 7; i++)
                rest.push_back(sentinel(16));
            for (size_t i = 0; i < rest.size(); i++) {
                std::string name = "t" + std::to_string(i + 1);
                ASSERT_EQ(ckpt_register(ctx, name.c_str(), rest[i].data(), CKPT_U8, 1, shape), 0);
            }
            ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &step), 0) << ckpt_last_error(ctx);
            EXPECT_TRUE(rest[6].matches(7));
            EXPECT_EQ(logs.count("not registered"), 0);
        }
        EXPECT_EQ(ckpt_close(ctx), 0);
    }
}

// ===========================================================================
// Folders holding foreign and hostile files
// ===========================================================================

constexpr int64_t kW = 256; // elements of tensor "w"

// A real checkpoint folder with steps `steps` of "w" (f32, pattern = step)
// and metadata "m" (the step as 8 bytes).
void make_source(const std::string &dir, const std::vector<int64_t> &steps)
{
    ckpt_ctx *ctx = ckt::open_ctx(ckt::config(dir));
    ASSERT_NE(ctx, nullptr);
    std::vector<float> w(kW);
    int64_t shape[1] = {kW};
    ASSERT_EQ(ckpt_register(ctx, "w", w.data(), CKPT_F32, 1, shape), 0);
    for (int64_t s : steps) {
        ckt::fill(w.data(), w.size() * 4, (uint64_t)s);
        ASSERT_EQ(ckpt_set_meta(ctx, "m", &s, sizeof s), 0);
        ASSERT_EQ(ckt::save_wait(ctx, s), 0) << ckpt_last_error(ctx);
    }
    ASSERT_EQ(ckpt_close(ctx), 0);
}

void sh(const std::string &cmd)
{
    std::string out;
    ASSERT_EQ(ckt::run(cmd, &out), 0) << cmd << "\n" << out;
}

const char kHexA[] = "0123456789abcdef0123456789abcdef";
const char kHexB[] = "fedcba9876543210fedcba9876543210";
const char kHexC[] = "00112233445566778899aabbccddeeff";
const char kHexD[] = "ffeeddccbbaa99887766554433221100";

struct Hostile {
    TempDir tmp;
    std::string src = tmp.sub("src"), outside = tmp.sub("outside"), dir = tmp.sub("dir");
    std::vector<std::string> leftovers; // names open must remove

    void build(bool with_valid)
    {
        make_source(src, {8, 10, 15});
        if (testing::Test::HasFatalFailure())
            return;
        std::string s8 = ckt::step_dir(src, 8), s10 = ckt::step_dir(src, 10),
                    s15 = ckt::step_dir(src, 15);
        sh("mkdir -p " + ckt::quote(outside + "/victim/deep") + " " +
           ckt::quote(outside + "/victim2") + " " + ckt::quote(dir));
        sh("cp -a " + ckt::quote(s10) + " " + ckt::quote(outside + "/ck10"));
        sh("cp " + ckt::quote(s15 + "/rank-00000.h5") + " " + ckt::quote(outside + "/rank15.h5"));
        write_file(outside + "/victim/keep.txt", "victim data");
        write_file(outside + "/victim/deep/keep2.txt", "deep victim data");
        write_file(outside + "/victim2/keep.txt", "victim2 data");

        const std::string d = dir + "/";
        write_file(d + "notes.txt", random_bytes(1000, 1));
        write_file(d + "manifest.h5", random_bytes(600, 2));
        write_file(d + "rank-00000.h5", random_bytes(600, 3));
        write_file(d + "step-", "");
        for (const char *f : {"step-00000000001", "step-0000000000099", "STEP-000000000005",
                              "step-abc", "step-000000000009", "step-000000000011.partial-zzz",
                              "step-000000000013", "step-000000000015", "step-000000000016",
                              "step-000000000020", "step-000000000021"})
            ASSERT_EQ(mkdir((d + f).c_str(), 0755), 0) << f;
        write_file(d + "step-00000000001/x", "eleven digits");
        write_file(d + "step-abc/manifest.h5", random_bytes(700, 4));
        write_file(d + "step-000000000009/manifest.h5", random_bytes(4096, 5));
        write_file(d + "step-000000000009/rank-00000.h5", random_bytes(8192, 6));
        ASSERT_EQ(symlink((outside + "/ck10").c_str(), (d + "step-000000000010").c_str()), 0);
        write_file(d + "step-000000000011.partial-zzz/data", "not hex: foreign");
        std::string upper = "step-000000000011.partial-" + std::string(kHexA);
        std::transform(upper.begin() + 26, upper.end(), upper.begin() + 26, ::toupper);
        ASSERT_EQ(mkdir((d + upper).c_str(), 0755), 0);
        write_file(d + upper + "/data", "upper-case hex: foreign");

        // Real leftovers of crashed saves and deletions.
        std::string p12 = "step-000000000012.partial-" + std::string(kHexA);
        std::string t12 = "step-000000000012.trash-" + std::string(kHexB);
        std::string p18 = "step-000000000018.partial-" + std::string(kHexC);
        std::string p19 = "step-000000000019.partial-" + std::string(kHexD);
        leftovers = {p12, t12, p18, p19};
        sh("mkdir -p " + ckt::quote(d + p12 + "/sub/sub2") + " " + ckt::quote(d + t12));
        write_file(d + p12 + "/rank-00000.h5", random_bytes(5000, 7));
        write_file(d + p12 + "/sub/sub2/f", "x");
        write_file(d + t12 + "/manifest.h5", random_bytes(100, 8));
        // A leftover name that is a symlink to a folder outside DIR, and one
        // that holds such a symlink: only the links may go.
        ASSERT_EQ(symlink((outside + "/victim").c_str(), (d + p18).c_str()), 0);
        ASSERT_EQ(mkdir((d + p19).c_str(), 0755), 0);
        ASSERT_EQ(symlink((outside + "/victim2").c_str(), (d + p19 + "/escape").c_str()), 0);
        ASSERT_EQ(symlink((outside + "/victim2/keep.txt").c_str(), (d + p19 + "/file").c_str()),
                  0);

        ASSERT_EQ(symlink("/etc/passwd", (d + "step-000000000013/manifest.h5").c_str()), 0);
        write_file(d + "step-000000000014", "a file with a committed name");
        sh("cp " + ckt::quote(s15 + "/manifest.h5") + " " + ckt::quote(d + "step-000000000015/"));
        ASSERT_EQ(symlink((outside + "/rank15.h5").c_str(),
                          (d + "step-000000000015/rank-00000.h5").c_str()),
                  0);
        // Passes the whole-file checksum, but is no HDF5 file.
        write_file(d + "step-000000000020/manifest.h5", sealed_manifest(random_bytes(3000, 9)));
        // Real HDF5 with a valid user block, but /index damaged.
        std::string m = read_file(s15 + "/manifest.h5");
        size_t at = m.find("CKPTIDX1");
        ASSERT_NE(at, npos) << "the index is not stored contiguously in manifest.h5";
        m[at + 90] ^= 0x40;
        write_file(d + "step-000000000021/manifest.h5", sealed_manifest(m.substr(512)));
        sh("cp " + ckt::quote(s15 + "/rank-00000.h5") + " " + ckt::quote(d + "step-000000000021/"));
        if (with_valid)
            sh("cp -a " + ckt::quote(s8) + " " + ckt::quote(d + "step-000000000008"));
    }
};

struct OutsideState {
    Snapshot outside, src;
    std::string passwd;
    struct stat passwd_st {};
};

OutsideState outside_state(const Hostile &h)
{
    OutsideState s;
    s.outside = snapshot(h.outside);
    s.src = snapshot(h.src);
    s.passwd = read_file("/etc/passwd");
    stat("/etc/passwd", &s.passwd_st);
    return s;
}

void expect_outside_unchanged(const OutsideState &before, const Hostile &h)
{
    OutsideState now = outside_state(h);
    EXPECT_EQ(join(changes(before.outside, now.outside)), "") << "changed outside DIR";
    EXPECT_EQ(join(changes(before.src, now.src)), "") << "changed outside DIR";
    EXPECT_EQ(now.passwd, before.passwd);
    EXPECT_EQ(now.passwd_st.st_mtim.tv_sec, before.passwd_st.st_mtim.tv_sec);
    EXPECT_EQ(now.passwd_st.st_mtim.tv_nsec, before.passwd_st.st_mtim.tv_nsec);
}

// DIR after open: exactly the leftovers are gone, nothing else changed.
void expect_only_leftovers_removed(const Snapshot &before, const Hostile &h)
{
    std::vector<std::string> unexpected;
    for (const std::string &d : changes(before, snapshot(h.dir))) {
        bool leftover = false;
        for (const std::string &l : h.leftovers)
            leftover |= d == "-" + l || d.rfind("-" + l + "/", 0) == 0;
        if (!leftover && d != "~.")
            unexpected.push_back(d);
    }
    EXPECT_EQ(join(unexpected), "") << "foreign files were touched";
    for (const std::string &l : h.leftovers)
        EXPECT_FALSE(ckt::exists(h.dir + "/" + l)) << l << " should have been removed";
}

std::vector<int64_t> listed_steps(ckpt_ctx *ctx)
{
    ckpt_info info[32];
    size_t count = 0;
    EXPECT_EQ(ckpt_list(ctx, info, 32, &count), 0) << ckpt_last_error(ctx);
    std::vector<int64_t> v;
    for (size_t i = 0; i < count && i < 32; i++)
        v.push_back(info[i].step);
    return v;
}

TEST(BadInputHostile, NoValidCheckpointAmongHostileFiles)
{
    Hostile h;
    h.build(false);
    if (HasFatalFailure())
        return;
    OutsideState before_out = outside_state(h);
    Snapshot before_dir = snapshot(h.dir);

    ckpt_ctx *ctx = ckt::open_ctx(ckt::config(h.dir));
    ASSERT_NE(ctx, nullptr) << "open must cope with foreign files";
    expect_only_leftovers_removed(before_dir, h);
    std::vector<float> w(kW);
    memset(w.data(), kSentinel, w.size() * 4);
    int64_t shape[1] = {kW};
    ASSERT_EQ(ckpt_register(ctx, "w", w.data(), CKPT_F32, 1, shape), 0);
    int64_t step = 0;
    EXPECT_TRUE(fails(ckpt_restore(ctx, CKPT_LATEST, nullptr, &step), CKPT_ECORRUPT, ctx,
                      "no valid checkpoint"));
    EXPECT_EQ(step, -1);
    EXPECT_NE(std::string(ckpt_last_error(ctx)).find(h.dir), npos) << ckpt_last_error(ctx);
    // Named steps: the symlinked one is no checkpoint, the others are damaged.
    EXPECT_TRUE(fails(ckpt_restore(ctx, 10, nullptr, &step), CKPT_ENOTFOUND, ctx, "step 10"));
    EXPECT_TRUE(fails(ckpt_restore(ctx, 14, nullptr, &step), CKPT_ENOTFOUND, ctx, "step 14"));
    for (int64_t s : {9, 13, 15, 16, 20, 21}) {
        int rc = ckpt_restore(ctx, s, nullptr, &step);
        EXPECT_NE(rc, 0) << "step " << s << " restored";
        EXPECT_NE(rc, CKPT_ENOTFOUND) << "step " << s;
        EXPECT_NE(std::string(ckpt_last_error(ctx)).find(ckt::step_dir(h.dir, s)), npos)
            << "step " << s << ": " << ckpt_last_error(ctx);
    }
    // Only step 15's manifest reads (its data does not verify; list does
    // not read data).
    EXPECT_EQ(listed_steps(ctx), std::vector<int64_t>{15});
    EXPECT_EQ(ckpt_close(ctx), 0);

    expect_only_leftovers_removed(before_dir, h);
    expect_outside_unchanged(before_out, h);
}

TEST(BadInputHostile, ValidCheckpointAmongHostileFilesIsRestored)
{
    Hostile h;
    h.build(true);
    if (HasFatalFailure())
        return;
    OutsideState before_out = outside_state(h);
    Snapshot before_dir = snapshot(h.dir);

    ckpt_ctx *ctx = ckt::open_ctx(ckt::config(h.dir));
    ASSERT_NE(ctx, nullptr);
    std::vector<float> w(kW);
    memset(w.data(), kSentinel, w.size() * 4);
    int64_t shape[1] = {kW};
    ASSERT_EQ(ckpt_register(ctx, "w", w.data(), CKPT_F32, 1, shape), 0);
    int64_t step = 0;
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &step), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(step, 8);
    EXPECT_TRUE(ckt::matches(w.data(), w.size() * 4, 8));
    int64_t m = 0;
    size_t len = 0;
    ASSERT_EQ(ckpt_get_meta(ctx, "m", &m, sizeof m, &len), 0);
    EXPECT_EQ(m, 8);
    EXPECT_EQ(listed_steps(ctx), (std::vector<int64_t>{15, 8}));
    expect_only_leftovers_removed(before_dir, h);
    expect_outside_unchanged(before_out, h);

    // Saving over the symlinked and the hostile step replaces the names
    // inside DIR and nothing they pointed at.
    for (int64_t s : {10, 13, 15}) {
        ckt::fill(w.data(), w.size() * 4, 1000 + s);
        ASSERT_EQ(ckt::save_wait(ctx, s), 0) << ckpt_last_error(ctx);
        struct stat st;
        ASSERT_EQ(lstat(ckt::step_dir(h.dir, s).c_str(), &st), 0);
        EXPECT_TRUE(S_ISDIR(st.st_mode)) << s;
    }
    expect_outside_unchanged(before_out, h);
    for (int64_t s : {10, 13, 15}) {
        memset(w.data(), kSentinel, w.size() * 4);
        ASSERT_EQ(ckpt_restore(ctx, s, nullptr, &step), 0) << ckpt_last_error(ctx);
        EXPECT_TRUE(ckt::matches(w.data(), w.size() * 4, 1000 + s)) << s;
    }
    EXPECT_EQ(ckpt_close(ctx), 0);
    EXPECT_TRUE(ckt::exists(h.dir + "/step-000000000011.partial-zzz/data"));
    EXPECT_TRUE(ckt::exists(h.dir + "/notes.txt"));
    EXPECT_GE(ckt::expect_h5dump_all(ckt::step_dir(h.dir, 10)), 2);
    expect_outside_unchanged(before_out, h);
}

TEST(BadInputHostile, ManifestOfAnotherStepIsNotTrusted)
{
    // step-000000000017 holds an intact copy of step 10: restoring it would
    // hand the caller step 10's tensors while reporting step 17.
    TempDir tmp;
    std::string src = tmp.sub("src"), dir = tmp.sub("dir");
    make_source(src, {10});
    if (HasFatalFailure())
        return;
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    sh("cp -a " + ckt::quote(ckt::step_dir(src, 10)) + " " + ckt::quote(ckt::step_dir(dir, 17)));
    ckpt_ctx *ctx = ckt::open_ctx(ckt::config(dir));
    ASSERT_NE(ctx, nullptr);
    std::vector<float> w(kW);
    memset(w.data(), kSentinel, w.size() * 4);
    int64_t shape[1] = {kW};
    ASSERT_EQ(ckpt_register(ctx, "w", w.data(), CKPT_F32, 1, shape), 0);
    int64_t step = 0;
    EXPECT_TRUE(fails(ckpt_restore(ctx, CKPT_LATEST, nullptr, &step), CKPT_ECORRUPT, ctx,
                      "step-000000000017"));
    EXPECT_NE(step, 17);
    EXPECT_TRUE(fails(ckpt_restore(ctx, 17, nullptr, &step), CKPT_ECORRUPT, ctx,
                      "step-000000000017"));
    EXPECT_EQ(listed_steps(ctx), std::vector<int64_t>{}) << "a folder listed under a step it is not";
    EXPECT_EQ(ckpt_close(ctx), 0);
}

TEST(BadInputHostile, NewerFormatIsRefusedWithoutFallingBack)
{
    TempDir tmp;
    std::string dir = tmp.sub("dir");
    make_source(dir, {8, 9});
    if (HasFatalFailure())
        return;
    std::string man = ckt::step_dir(dir, 9) + "/manifest.h5";
    const std::string orig = read_file(man);
    ASSERT_GT(orig.size(), 512u);
    std::string m = orig;
    m[8] = 2; // user block version 2, its header hash made to match: intact, newer
    hash_user_block(m);
    write_file(man, m);
    ckpt_ctx *ctx = ckt::open_ctx(ckt::config(dir));
    ASSERT_NE(ctx, nullptr);
    TensorMem w = sentinel(kW * 4);
    int64_t shape[1] = {kW};
    ASSERT_EQ(ckpt_register(ctx, "w", w.data(), CKPT_F32, 1, shape), 0);
    int64_t step = 0;
    EXPECT_TRUE(fails(ckpt_restore(ctx, CKPT_LATEST, nullptr, &step), CKPT_EFORMAT, ctx, man));
    EXPECT_TRUE(untouched(w));
    EXPECT_EQ(step, -1);

    // The same version byte without a matching header hash is damage: the
    // restore falls back to step 8 (issue 10: a flipped byte 8 stopped
    // every restore with CKPT_EFORMAT).
    for (bool hashed : {false, true}) {
        m = orig;
        if (!hashed) {
            m[12] = 0; // a 1.0 user block: no header hash
            memset(&m[32], 0, 8);
        }
        m[8] = (char)0xFE;
        write_file(man, m);
        step = 0;
        EXPECT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &step), 0) << ckpt_last_error(ctx);
        EXPECT_EQ(step, 8) << (hashed ? "1.1" : "1.0") << " user block";
        EXPECT_TRUE(w.matches(8));
        w.set(kSentinel);
    }

    // Index major version 2 inside an otherwise valid manifest.
    m = orig;
    size_t at = m.find("CKPTIDX1");
    ASSERT_NE(at, npos);
    // The index is stored contiguously; its length is the HDF5 dataset's,
    // which the index does not record: find its end by its own trailer.
    size_t end = npos;
    for (size_t e = at + 88; e + 8 <= m.size(); e++) {
        uint64_t h = XXH3_64bits(&m[at], e - at), t = 0;
        for (int k = 0; k < 8; k++)
            t |= (uint64_t)(uint8_t)m[e + k] << (8 * k);
        if (h == t) {
            end = e;
            break;
        }
    }
    ASSERT_NE(end, npos) << "index trailer not found";
    m[at + 8] = 2;
    uint64_t h = XXH3_64bits(&m[at], end - at);
    for (int k = 0; k < 8; k++)
        m[end + k] = (char)(h >> (8 * k));
    write_file(man, sealed_manifest(m.substr(512)));
    EXPECT_TRUE(fails(ckpt_restore(ctx, CKPT_LATEST, nullptr, &step), CKPT_EFORMAT, ctx,
                      "format version 2"));
    EXPECT_TRUE(untouched(w));
    // The older step is still there for whoever asks for it.
    EXPECT_EQ(ckpt_restore(ctx, 8, nullptr, &step), 0) << ckpt_last_error(ctx);
    EXPECT_TRUE(w.matches(8));
    EXPECT_EQ(ckpt_close(ctx), 0);
}

// Runs fn on another thread; if it has not returned after `secs`, opens the
// FIFO for writing (which releases a reader blocked in open) and reports
// the hang.
template <typename Fn> int no_hang(const std::string &fifo, int secs, Fn fn, bool *hung)
{
    std::future<int> f = std::async(std::launch::async, fn);
    *hung = f.wait_for(std::chrono::seconds(secs)) != std::future_status::ready;
    int wfd = -1;
    while (*hung && f.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
        if (wfd < 0)
            wfd = open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    }
    int rc = f.get();
    if (wfd >= 0)
        close(wfd);
    return rc;
}

TEST(BadInputHostile, ManifestThatIsAFifoDoesNotBlock)
{
    TempDir tmp;
    std::string dir = tmp.sub("dir");
    make_source(dir, {3});
    if (HasFatalFailure())
        return;
    ASSERT_EQ(mkdir(ckt::step_dir(dir, 5).c_str(), 0755), 0);
    std::string fifo = ckt::step_dir(dir, 5) + "/manifest.h5";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
    ckpt_ctx *ctx = ckt::open_ctx(ckt::config(dir));
    ASSERT_NE(ctx, nullptr);
    std::vector<float> w(kW);
    int64_t shape[1] = {kW};
    ASSERT_EQ(ckpt_register(ctx, "w", w.data(), CKPT_F32, 1, shape), 0);
    int64_t step = 0;
    bool hung = false;
    int rc = no_hang(fifo, 3, [&] { return ckpt_restore(ctx, CKPT_LATEST, nullptr, &step); },
                     &hung);
    EXPECT_FALSE(hung) << "ckpt_restore blocked opening a FIFO named manifest.h5";
    EXPECT_EQ(rc, 0) << ckpt_last_error(ctx);
    EXPECT_EQ(step, 3);
    EXPECT_TRUE(ckt::matches(w.data(), w.size() * 4, 3));
    std::vector<int64_t> steps;
    rc = no_hang(fifo, 3, [&] {
        steps = listed_steps(ctx);
        return 0;
    }, &hung);
    EXPECT_FALSE(hung) << "ckpt_list blocked opening a FIFO named manifest.h5";
    EXPECT_EQ(steps, std::vector<int64_t>{3});
    EXPECT_EQ(ckpt_close(ctx), 0);
}

TEST(BadInputHostile, LeftoverNestedTooDeepDoesNotBlockOpen)
{
    TempDir tmp;
    std::string dir = tmp.sub("dir"), outside = tmp.sub("outside");
    std::string p = "step-000000000001.partial-" + std::string(kHexA);
    std::string deep = dir + "/" + p;
    for (int i = 0; i < 12; i++)
        deep += "/d";
    sh("mkdir -p " + ckt::quote(deep) + " " + ckt::quote(outside));
    write_file(deep + "/f", "deep");
    write_file(outside + "/keep", "keep");
    ASSERT_EQ(symlink(outside.c_str(), (deep + "/link").c_str()), 0);
    Snapshot before = snapshot(outside);
    // A leftover the runtime cannot remove is worth a warning, not a
    // training job that cannot start; and nothing outside DIR may change.
    ckpt_config cfg = ckt::config(dir);
    ckpt_ctx *ctx = nullptr;
    EXPECT_EQ(ckpt_open(&cfg, nullptr, &ctx), 0) << ckpt_last_error(nullptr);
    ckpt_close(ctx);
    EXPECT_TRUE(ckt::exists(outside + "/keep"));
    EXPECT_EQ(join(changes(before, snapshot(outside))), "");
}

} // namespace
