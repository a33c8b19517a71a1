// SPDX-License-Identifier: Apache-2.0
// Crash consistency: a child process saves while the parent SIGKILLs it at
// a random instant of the save's lifecycle (snapshot, layout, writes,
// fsync, done-record, manifest, rename, retention).  After every kill a
// fresh context restores the latest checkpoint, which must be exactly the
// state of the previous commit or of the interrupted save, bit for bit,
// never a mixture.  Some rounds re-save the step already committed, so the
// atomic replacement of a step is killed too.
//
// CKPT_CRASH_KILLS (default 200, or CKPT_CRASH_DEFAULT_KILLS where the build
// sets it) and CKPT_CRASH_SEED (default: time) tune it; the seed is printed
// so a failure can be replayed.
//
// The cudasim build runs the same on the CUDA backend with the tensors in
// device memory (tensor_mem.h).  CUDA does not survive fork (a child of a
// process that used it gets cudaErrorInitializationError, and the stand-in
// does the same), so there the parent never touches CUDA: it restores in a
// child of its own too.
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <random>

#include "tensor_mem.h"
#include "test_util.h"

#ifndef CKPT_CRASH_DEFAULT_KILLS
#define CKPT_CRASH_DEFAULT_KILLS 200
#endif

using namespace ckt;

namespace {

struct State {
    std::vector<TensorMem> bufs;
    std::vector<std::string> names;
    std::vector<std::vector<int64_t>> shapes;
    std::vector<ckpt_dtype> dtypes;

    State()
    {
        add("embed.weight", CKPT_F32, {512, 1024}); // 2 MiB: two chunks
        add("block.0/attn w", CKPT_BF16, {700, 301});
        add("adam.m", CKPT_F32, {1 << 18});
        add("adam.step", CKPT_I64, {});
        add("small", CKPT_U8, {4097});
    }
    void add(const char *n, ckpt_dtype dt, std::vector<int64_t> shape)
    {
        size_t bytes = ckpt_dtype_size(dt);
        for (auto d : shape)
            bytes *= (size_t)d;
        names.push_back(n);
        dtypes.push_back(dt);
        shapes.push_back(shape);
        bufs.emplace_back(bytes);
    }
    // Content version v: every tensor filled from (v, tensor index).
    void set(uint64_t v)
    {
        for (size_t i = 0; i < bufs.size(); i++)
            bufs[i].fill(v * 131 + i);
    }
    bool is(uint64_t v) const
    {
        for (size_t i = 0; i < bufs.size(); i++)
            if (!bufs[i].matches(v * 131 + i))
                return false;
        return true;
    }
    int register_all(ckpt_ctx *ctx)
    {
        for (size_t i = 0; i < bufs.size(); i++) {
            int rc = ckpt_register(ctx, names[i].c_str(), bufs[i].data(), dtypes[i],
                                   (int)shapes[i].size(), shapes[i].data());
            if (rc)
                return rc;
        }
        return 0;
    }
};

double now_s()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

ckpt_io g_writer = CKPT_IO_PWRITE; // the writer of the running instance

ckpt_config crash_config(const std::string &dir)
{
    ckpt_config cfg = config(dir, g_writer);
    cfg.keep_last = 2; // retention runs inside the kill window too
    cfg.staging_bytes = 2u << 20;
    return cfg;
}

// The child: save content version v at step, then exit 0.  Reports "ready"
// through the pipe once the context is open, so the kill lands in the save,
// and then how long the save took until committed (a double), so the parent
// can aim its kills at the whole lifecycle.
[[noreturn]] void child(const std::string &dir, int64_t step, uint64_t v, int fd)
{
    State s;
    s.set(v);
    ckpt_config cfg = crash_config(dir);
    ckpt_ctx *ctx = nullptr;
    if (ckpt_open(&cfg, nullptr, &ctx) != 0 || s.register_all(ctx) != 0)
        _exit(10);
    if (ckpt_set_meta(ctx, "version", &v, sizeof v) != 0)
        _exit(11);
    char c = 'r';
    if (write(fd, &c, 1) != 1)
        _exit(12);
    double t0 = now_s();
    if (save_wait(ctx, step) != 0)
        _exit(13);
    double dt = now_s() - t0;
    if (write(fd, &dt, sizeof dt) != (ssize_t)sizeof dt)
        _exit(15);
    _exit(ckpt_close(ctx) == 0 ? 0 : 14);
}

// Runs one child to completion or until killed after delay_s (< 0: never);
// returns its exit code or -SIGKILL, and in *save_s the save's duration
// when it committed before the kill (else 0).
int run_child(const std::string &dir, int64_t step, uint64_t v, double delay_s, double *save_s)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1000;
    fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        child(dir, step, v, fds[1]);
    }
    close(fds[1]);
    char c;
    ssize_t r = read(fds[0], &c, 1);
    if (r == 1 && delay_s >= 0) {
        struct timespec ts = {(time_t)delay_s, (long)((delay_s - (double)(time_t)delay_s) * 1e9)};
        nanosleep(&ts, nullptr);
        kill(pid, SIGKILL);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    double dt = 0;
    if (read(fds[0], &dt, sizeof dt) != (ssize_t)sizeof dt)
        dt = 0;
    close(fds[0]);
    if (save_s)
        *save_s = dt;
    if (WIFSIGNALED(st))
        return -WTERMSIG(st);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1000;
}

// Restores into a fresh context; returns the restored content version, or
// -1 (no checkpoint) or -2 (mixture / failure, with details in *why).
int64_t restore_here(const std::string &dir, int64_t *step, std::string *why)
{
    State s;
    ckpt_config cfg = crash_config(dir);
    ckpt_ctx *ctx = nullptr;
    if (ckpt_open(&cfg, nullptr, &ctx) != 0) {
        *why = std::string("open: ") + ckpt_last_error(nullptr);
        return -2;
    }
    s.register_all(ctx);
    int rc = ckpt_restore(ctx, CKPT_LATEST, nullptr, step);
    int64_t v = -2;
    if (rc == CKPT_ENOTFOUND) {
        v = -1;
    } else if (rc != 0) {
        *why = std::string("restore: ") + ckpt_last_error(ctx);
    } else {
        uint64_t meta = 0;
        size_t len = 0;
        if (ckpt_get_meta(ctx, "version", &meta, sizeof meta, &len) != 0 || len != sizeof meta)
            *why = "metadata 'version' missing";
        else if (!s.is(meta))
            *why = "tensors do not match the restored version (a mixture)";
        else
            v = (int64_t)meta;
    }
    ckpt_close(ctx);
    return v;
}

// restore_here, in a child process where the tensors are device memory, so
// that the parent's next fork finds CUDA untouched.
int64_t restore_version(const std::string &dir, int64_t *step, std::string *why)
{
    if (!kDeviceTensors)
        return restore_here(dir, step, why);
    int fds[2];
    if (pipe(fds) != 0) {
        *why = "pipe failed";
        return -2;
    }
    fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        int64_t res[2] = {-2, -1};
        std::string w;
        res[0] = restore_here(dir, &res[1], &w);
        bool ok = write(fds[1], res, sizeof res) == (ssize_t)sizeof res &&
                  write(fds[1], w.data(), w.size()) == (ssize_t)w.size();
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    int64_t res[2] = {-2, -1};
    bool got = read(fds[0], res, sizeof res) == (ssize_t)sizeof res;
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0)
        why->append(buf, (size_t)n);
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!got || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        *why = "the restoring child failed (status " + std::to_string(st) + "): " + *why;
        return -2;
    }
    *step = res[1];
    return res[0];
}

class Crash : public WriterTest {};

TEST_P(Crash, SigkillAtRandomInstantsRestoresOldOrNewNeverAMixture)
{
    g_writer = GetParam();
    const char *ks = getenv("CKPT_CRASH_KILLS"), *ss = getenv("CKPT_CRASH_SEED");
    const int kills = ks ? atoi(ks) : CKPT_CRASH_DEFAULT_KILLS;
    const uint64_t seed = ss ? strtoull(ss, nullptr, 10) : (uint64_t)time(nullptr);
    printf("crash test: seed %llu, %d kills (CKPT_CRASH_SEED=%llu to replay)\n",
           (unsigned long long)seed, kills, (unsigned long long)seed);
    std::mt19937_64 rng(seed);
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");

    // Calibrate: how long does a whole save take here, uninterrupted?  The
    // estimate follows every save that commits before its kill.
    std::vector<double> seen;
    for (int i = 0; i < 3; i++) {
        double t = 0;
        ASSERT_EQ(run_child(dir, 1, 1, -1, &t), 0);
        seen.push_back(t);
    }
    auto window = [&seen] {
        std::vector<double> v(seen.end() - (long)std::min<size_t>(seen.size(), 15), seen.end());
        std::sort(v.begin(), v.end());
        return v[v.size() / 2] * 1.15;
    };
    printf("crash test: a save takes %.1f ms\n", window() / 1.15 * 1e3);

    int64_t committed_step = 1;
    uint64_t committed_v = 1;
    int killed = 0, got_old = 0, got_new = 0, finished = 0, rounds = 0;
    // Saves that got slower than the estimate (a loaded machine) are only
    // ever killed, so the estimate would never learn of it: after ten old
    // states in a row a round runs uninterrupted to measure again, and
    // counts as neither outcome.
    int old_in_a_row = 0, remeasured = 0;
    for (; killed < kills && rounds < 3 * kills; rounds++) {
        const int i = rounds;
        uint64_t v = 100 + (uint64_t)i;
        // One round in ten re-saves the committed step: kills hit the replacement.
        int64_t step = i % 10 == 9 ? committed_step : committed_step + 1;
        const bool remeasure = old_in_a_row >= 10;
        double delay = remeasure ? -1 : std::uniform_real_distribution<double>(0, window())(rng);
        double took = 0;
        int rc = run_child(dir, step, v, delay, &took);
        ASSERT_TRUE(rc == -SIGKILL || rc == 0) << "child failed with " << rc << " in round " << i;
        if (took > 0)
            seen.push_back(took);
        killed += rc == -SIGKILL;
        finished += rc == 0 && !remeasure;
        remeasured += remeasure;

        std::string why;
        int64_t got_step = -1;
        int64_t got = restore_version(dir, &got_step, &why);
        ASSERT_GE(got, 0) << "round " << i << " (seed " << seed << ", delay " << delay * 1e3
                          << " ms): " << why;
        if (rc == 0 || took > 0) {
            ASSERT_EQ((uint64_t)got, v) << "a committed save must be restored, round " << i;
        } else {
            ASSERT_TRUE((uint64_t)got == v || (uint64_t)got == committed_v)
                << "round " << i << ": restored version " << got << ", expected "
                << committed_v << " or " << v;
        }
        if ((uint64_t)got == v) {
            got_new += !remeasure;
            old_in_a_row = 0;
            ASSERT_EQ(got_step, step);
        } else {
            got_old++;
            old_in_a_row++;
            ASSERT_EQ(got_step, committed_step);
        }
        committed_v = (uint64_t)got;
        committed_step = got_step;
        // At most the leftovers of one save remain, and open removes them.
        for (const auto &n : list_dir(dir))
            ASSERT_EQ(n.find(".partial-"), std::string::npos) << n << " survived an open";
    }
    printf("crash test: %d killed, %d finished before the kill; restored old %d, new %d; "
           "%d saves measured again\n",
           killed, finished, got_old, got_new, remeasured);
    EXPECT_EQ(killed, kills);
    // The window must straddle the commit point: both outcomes must occur.
    EXPECT_GT(got_old, 0);
    EXPECT_GT(got_new, 0);
    expect_h5dump_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Writers, Crash, ::testing::ValuesIn(writers()),
                         [](const ::testing::TestParamInfo<ckpt_io> &i) {
                             return std::string(writer_name(i.param));
                         });

} // namespace
