// SPDX-License-Identifier: Apache-2.0
// Crash consistency: a child process saves while the parent SIGKILLs it at
// a random instant of the save's lifecycle (snapshot, layout, writes,
// fsync, done-record, manifest, rename, retention).  After every kill a
// fresh context restores the latest checkpoint, which must be exactly the
// state of the previous commit or of the interrupted save, bit for bit,
// never a mixture.  Some rounds re-save the step already committed, so the
// atomic replacement of a step is killed too.
//
// With the local tier (cfg.local_dir, durable_every 2; issue 13) each
// child saves twice, a durable save then a local-only one, and some rounds
// lose the local folder before the restore, which must then read DIR: every
// restore is exactly one committed save, from whichever tier holds it.
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
std::string g_local;               // the local tier's folder, empty: none

ckpt_config crash_config(const std::string &dir)
{
    ckpt_config cfg = config(dir, g_writer);
    cfg.keep_last = 2; // retention runs inside the kill window too
    cfg.staging_bytes = 2u << 20;
    if (!g_local.empty()) {
        cfg.local_dir = g_local.c_str();
        cfg.durable_every = 2; // save 1 of a context durable, save 2 local only
        cfg.local_keep_last = 3;
    }
    return cfg;
}

// The child: save content version v at step (with the local tier, then
// v + 1 at step + 1, a local-only save), then exit 0.  Reports "ready"
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
    if (!g_local.empty()) {
        s.set(v + 1);
        uint64_t v1 = v + 1;
        if (ckpt_set_meta(ctx, "version", &v1, sizeof v1) != 0 || save_wait(ctx, step + 1) != 0)
            _exit(13);
    }
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
// -1 (no checkpoint) or -2 (mixture / failure, with details in *why);
// *tier (may be NULL) gets the tier it read.
int64_t restore_here(const std::string &dir, int64_t *step, std::string *why,
                     ckpt_tier *tier = nullptr)
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
    if (tier)
        *tier = ckpt_restore_tier(ctx);
    ckpt_close(ctx);
    return v;
}

// restore_here, in a child process where the tensors are device memory, so
// that the parent's next fork finds CUDA untouched.
int64_t restore_version(const std::string &dir, int64_t *step, std::string *why,
                        ckpt_tier *tier = nullptr)
{
    if (!kDeviceTensors)
        return restore_here(dir, step, why, tier);
    int fds[2];
    if (pipe(fds) != 0) {
        *why = "pipe failed";
        return -2;
    }
    fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        int64_t res[3] = {-2, -1, CKPT_TIER_NONE};
        std::string w;
        ckpt_tier t = CKPT_TIER_NONE;
        res[0] = restore_here(dir, &res[1], &w, &t);
        res[2] = t;
        bool ok = write(fds[1], res, sizeof res) == (ssize_t)sizeof res &&
                  write(fds[1], w.data(), w.size()) == (ssize_t)w.size();
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    int64_t res[3] = {-2, -1, CKPT_TIER_NONE};
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
    if (tier)
        *tier = (ckpt_tier)res[2];
    return res[0];
}

// How long a whole save takes here, uninterrupted, as the kills aim at
// it: 1.15 x the median of the last 15 saves that committed before their
// kill, so the estimate follows a machine that gets slower or faster.
struct Window {
    std::vector<double> seen;
    double operator()() const
    {
        std::vector<double> v(seen.end() - (long)std::min<size_t>(seen.size(), 15), seen.end());
        std::sort(v.begin(), v.end());
        return v[v.size() / 2] * 1.15;
    }
};

// The number of kills (CKPT_CRASH_KILLS) and the seed (CKPT_CRASH_SEED,
// else the time), printed so that a failure can be replayed.
void kills_and_seed(const char *what, int *kills, uint64_t *seed)
{
    const char *ks = getenv("CKPT_CRASH_KILLS"), *ss = getenv("CKPT_CRASH_SEED");
    *kills = ks ? atoi(ks) : CKPT_CRASH_DEFAULT_KILLS;
    *seed = ss ? strtoull(ss, nullptr, 10) : (uint64_t)time(nullptr);
    printf("%s: seed %llu, %d kills (CKPT_CRASH_SEED=%llu to replay)\n", what,
           (unsigned long long)*seed, *kills, (unsigned long long)*seed);
}

class Crash : public WriterTest {};

TEST_P(Crash, SigkillAtRandomInstantsRestoresOldOrNewNeverAMixture)
{
    g_writer = GetParam();
    int kills;
    uint64_t seed;
    kills_and_seed("crash test", &kills, &seed);
    std::mt19937_64 rng(seed);
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");

    // Calibrate: how long does a whole save take here, uninterrupted?  The
    // estimate follows every save that commits before its kill.
    Window window;
    std::vector<double> &seen = window.seen;
    for (int i = 0; i < 3; i++) {
        double t = 0;
        ASSERT_EQ(run_child(dir, 1, 1, -1, &t), 0);
        seen.push_back(t);
    }
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

// The local tier: each round's child saves (step, v) durably and (step + 1,
// v + 1) locally (which its ckpt_close drains into DIR), killed at a random
// instant of the two; one round in four
// loses the local folder first, so the restore reads DIR.  Every restore
// must be one save that may have committed, bit-exact, never a mixture,
// and never older than a save known to have committed in that tier.
TEST(CrashTiers, SigkillWithTheLocalTierRestoresOneCommittedSaveFromEitherTier)
{
    g_writer = CKPT_IO_PWRITE;
    int kills;
    uint64_t seed;
    kills_and_seed("crash tiers", &kills, &seed);
    std::mt19937_64 rng(seed);
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    g_local = tmp.sub("local");
    struct Reset {
        ~Reset() { g_local.clear(); }
    } reset;

    Window window;
    std::vector<double> &seen = window.seen;
    for (int i = 0; i < 3; i++) {
        double t = 0;
        ASSERT_EQ(run_child(dir, 1 + 2 * i, 1 + 2 * (uint64_t)i, -1, &t), 0);
        seen.push_back(t);
    }
    printf("crash tiers: two saves take %.1f ms\n", window() / 1.15 * 1e3);
    // What the last restore returned, and the versions DIR may hold newest:
    // the one it last showed (or surely holds) and every durable save since.
    int64_t cur_step = 6;
    uint64_t cur_v = 6;
    std::vector<std::pair<int64_t, uint64_t>> durable = {{6, 6}}; // drained at close
    int killed = 0, rounds = 0, from_local = 0, from_durable = 0, old_in_a_row = 0;
    for (; killed < kills && rounds < 3 * kills; rounds++) {
        uint64_t v = 1000 + 2 * (uint64_t)rounds;
        int64_t step = cur_step + 1;
        const bool remeasure = old_in_a_row >= 10;
        double delay = remeasure ? -1 : std::uniform_real_distribution<double>(0, window())(rng);
        double took = 0;
        int rc = run_child(dir, step, v, delay, &took);
        ASSERT_TRUE(rc == -SIGKILL || rc == 0) << "child failed with " << rc << " in round "
                                               << rounds;
        if (took > 0)
            seen.push_back(took);
        killed += rc == -SIGKILL;
        const bool done = rc == 0 || took > 0;
        if (done)
            durable.clear(); // (step, v) is surely in DIR: nothing older is newest
        durable.push_back({step, v});
        // After both saves ckpt_close drains the local-only one into DIR:
        // maybe when killed in it, surely when it returned.
        if (took > 0)
            durable.push_back({step + 1, v + 1});
        if (rc == 0)
            durable = {{step + 1, v + 1}};
        const bool lose_local = rng() % 4 == 0;
        if (lose_local)
            TempDir::remove_all(g_local);

        std::string why;
        int64_t got_step = -1;
        ckpt_tier tier = CKPT_TIER_NONE;
        int64_t got = restore_version(dir, &got_step, &why, &tier);
        SCOPED_TRACE("round " + std::to_string(rounds) + " (seed " + std::to_string(seed) +
                     ", delay " + std::to_string(delay * 1e3) + " ms" +
                     (lose_local ? ", local folder lost" : "") + ")");
        ASSERT_GE(got, 0) << why;
        std::vector<std::pair<int64_t, uint64_t>> may;
        if (lose_local) {
            ASSERT_EQ(tier, CKPT_TIER_DURABLE);
            may = durable;
        } else if (done) {
            may = {{step + 1, v + 1}};
        } else {
            may = {{cur_step, cur_v}, {step, v}, {step + 1, v + 1}};
        }
        auto hit = std::find(may.begin(), may.end(), std::make_pair(got_step, (uint64_t)got));
        ASSERT_NE(hit, may.end()) << "restored step " << got_step << " version " << got
                                  << ", not a save that may have committed";
        if (got_step == step + 1 && !lose_local) {
            ASSERT_EQ(tier, CKPT_TIER_LOCAL) << "the local copy of the newest save comes first";
        }
        from_local += tier == CKPT_TIER_LOCAL;
        from_durable += tier == CKPT_TIER_DURABLE;
        if (tier == CKPT_TIER_DURABLE)
            durable = {{got_step, (uint64_t)got}};
        old_in_a_row = got_step == cur_step ? old_in_a_row + 1 : 0;
        cur_step = got_step;
        cur_v = (uint64_t)got;
        // At most one save's leftovers per tier, and open removed them.
        for (const std::string &d : {dir, g_local})
            for (const auto &n : list_dir(d))
                ASSERT_EQ(n.find(".partial-"), std::string::npos) << d << "/" << n;
    }
    printf("crash tiers: %d killed in %d rounds; restored %d from the local tier, %d from "
           "DIR\n",
           killed, rounds, from_local, from_durable);
    EXPECT_EQ(killed, kills);
    EXPECT_GT(from_local, 0);
    EXPECT_GT(from_durable, 0);
}

INSTANTIATE_TEST_SUITE_P(Writers, Crash, ::testing::ValuesIn(writers()),
                         [](const ::testing::TestParamInfo<ckpt_io> &i) {
                             return std::string(writer_name(i.param));
                         });

} // namespace
