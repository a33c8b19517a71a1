// SPDX-License-Identifier: Apache-2.0
// cfg.policy_mtbf_s (issue 13): ckpt_policy_due makes a step due by Young's
// interval T = sqrt(2 C MTBF), C being rank 0's measured cost of a save.
// The cost and the rule's clock are driven through the test hooks of
// runtime/fault_hooks.h, so every interval and every due step below is
// exact: the interval follows the formula, the median of the last five
// saves ignores one outlier, the log names the tier, C and T when T moves
// by more than 10% and stays quiet otherwise, the local tier's interval
// sets the pace and the durable one the cadence (durable_every becomes
// round(T_durable / T_local)), thread ranks agree on every call and send
// the same saves to DIR, a measured cost is at least the caller's stall,
// and bad values are refused, from the config and from the environment.
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "runtime/fault_hooks.h"
#include "shard_ranks.h"
#include "test_util.h"

namespace {

const uint64_t B = 1000000000000ull; // the test clock's origin, in ns
const ckpt_tier L = CKPT_TIER_LOCAL, D = CKPT_TIER_DURABLE;

double mono_s()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t at_s(double s)
{
    return B + (uint64_t)llround(s * 1e9);
}

using ckt::committed;
using ckt::step_name;

// One rank with one small tensor, the rule on, its clock at B.
struct One {
    ckt::TempDir tmp;
    std::string dir = tmp.sub("ckpt"), local = tmp.sub("local");
    ckt::Logs log;
    std::vector<float> w = std::vector<float>(4096, 1.0f);
    ckpt_ctx *ctx = nullptr;

    explicit One(double mtbf, bool with_local = false, int durable_every = 1)
    {
        ckpt_config cfg = ckt::config(dir);
        cfg.policy_mtbf_s = mtbf;
        cfg.log_level = CKPT_LOG_INFO;
        cfg.log_fn = ckt::Logs::fn;
        cfg.log_user = &log;
        if (with_local) {
            cfg.local_dir = local.c_str();
            cfg.durable_every = durable_every;
        }
        ctx = ckt::open_ctx(cfg);
        if (!ctx)
            return;
        int64_t shape[1] = {(int64_t)w.size()};
        EXPECT_EQ(ckpt_register(ctx, "w", w.data(), CKPT_F32, 1, shape), 0);
        ckpt__policy_test_clock(ctx, B);
    }
    ~One() { ckpt_close(ctx); }

    int due(int64_t step, double now_s)
    {
        ckpt__policy_test_clock(ctx, at_s(now_s));
        int rc = ckpt_policy_due(ctx, step);
        EXPECT_GE(rc, 0) << ckpt_last_error(ctx);
        return rc;
    }
    // Saves step (its cost taken by the next agreement point).
    void save(int64_t step)
    {
        ckpt_ticket t;
        ASSERT_EQ(ckpt_save(ctx, step, nullptr, &t), 0) << ckpt_last_error(ctx);
        ASSERT_EQ(ckpt_fence(ctx, nullptr), 0);
        ASSERT_EQ(ckpt_wait(ctx, t, -1), 0) << ckpt_last_error(ctx);
    }
};

} // namespace

TEST(PolicyMtbf, TheIntervalIsYoungsFormulaOfTheCost)
{
    One o(1000);
    ASSERT_NE(o.ctx, nullptr);
    ASSERT_EQ(ckpt__policy_test_cost(o.ctx, D, 0.5), 0);
    EXPECT_EQ(ckpt__policy_interval(o.ctx, D, nullptr), -1) << "nothing measured yet";
    // Start value: the first call is due (no save measured, none in flight).
    EXPECT_EQ(o.due(0, 0), 1);
    EXPECT_TRUE(o.log.has("save due at step 0", "no save measured yet"));
    o.save(0);
    const double T = sqrt(2 * 0.5 * 1000); // 31.62 s
    EXPECT_EQ(o.due(1, 0), 0);
    double c = 0;
    EXPECT_DOUBLE_EQ(ckpt__policy_interval(o.ctx, D, &c), T);
    EXPECT_DOUBLE_EQ(c, 0.5);
    EXPECT_EQ(o.due(2, T - 0.001), 0) << "just before T";
    EXPECT_EQ(o.due(3, T + 0.001), 1) << "just after T";
    EXPECT_TRUE(o.log.has("save due at step 3", "mtbf interval 31.62"));
    // The period restarts at the due step.
    EXPECT_EQ(o.due(4, T + 1), 0);
    EXPECT_EQ(o.due(5, 2 * T + 0.002), 1);
    EXPECT_TRUE(o.log.has("durable tier: save cost C 0.5 s", "T = sqrt(2 C MTBF) = 31.62 s"));
}

TEST(PolicyMtbf, OneOutlierDoesNotMoveTheIntervalAndChangesAreLogged)
{
    One o(1000);
    ASSERT_NE(o.ctx, nullptr);
    const char *line = "policy: durable tier: save cost";
    double now = 0;
    int64_t step = 0;
    auto save_with = [&](double cost) {
        ASSERT_EQ(ckpt__policy_test_cost(o.ctx, D, cost), 0);
        o.save(step++);
        now += 1000; // always past T: every call below is due
        EXPECT_EQ(o.due(step++, now), 1);
    };
    EXPECT_EQ(o.due(step++, now), 1);
    for (int i = 0; i < 3; i++)
        save_with(0.5);
    EXPECT_EQ(o.log.count(line), 1) << "logged once, then unchanged";
    save_with(50); // an outlier: the median of 0.5 0.5 0.5 50 stays 0.5
    EXPECT_DOUBLE_EQ(ckpt__policy_interval(o.ctx, D, nullptr), sqrt(1000.0));
    EXPECT_EQ(o.log.count(line), 1);
    save_with(0.52); // T moves by 2%: not logged
    save_with(0.52);
    EXPECT_DOUBLE_EQ(ckpt__policy_interval(o.ctx, D, nullptr), sqrt(2 * 0.52 * 1000));
    EXPECT_EQ(o.log.count(line), 1) << "a 2% change is not logged";
    for (int i = 0; i < 3; i++)
        save_with(2.0); // the window: 50 0.52 0.52 2 2 -> ... -> 2 2 2 0.52 0.52 ... median 2
    double c = 0;
    EXPECT_DOUBLE_EQ(ckpt__policy_interval(o.ctx, D, &c), sqrt(2 * 2.0 * 1000));
    EXPECT_DOUBLE_EQ(c, 2.0);
    EXPECT_EQ(o.log.count(line), 2) << "doubling T is logged";
    EXPECT_TRUE(o.log.has("save cost C 2 s", "= 63.25 s"));
}

TEST(PolicyMtbf, AMeasuredCostIsAtLeastTheCallersStall)
{
    One o(100);
    ASSERT_NE(o.ctx, nullptr);
    EXPECT_EQ(o.due(0, 0), 1);
    double t0 = mono_s();
    o.save(0);
    double blocked = mono_s() - t0;
    EXPECT_EQ(o.due(1, 0), 0);
    double c = 0, t = ckpt__policy_interval(o.ctx, D, &c);
    EXPECT_GT(c, 0);
    // The runtime's stall lies inside the test's window, CPU time adds to it.
    EXPECT_GE(c, 0.5 * blocked) << "blocked " << blocked << " s";
    EXPECT_DOUBLE_EQ(t, sqrt(2 * c * 100));
}

TEST(PolicyMtbf, TheLocalIntervalSetsThePaceAndTheRatioTheDurableCadence)
{
    One o(100, true, 2);
    ASSERT_NE(o.ctx, nullptr);
    ASSERT_EQ(ckpt__policy_test_cost(o.ctx, L, 0.02), 0); // T_local = 2 s
    ASSERT_EQ(ckpt__policy_test_cost(o.ctx, D, 0.5), 0);  // T_durable = 10 s
    EXPECT_EQ(ckpt__policy_durable_every(o.ctx), 2) << "durable_every is the start value";
    std::vector<int64_t> saved;
    for (int64_t step = 0; step < 40; step++) {
        if (o.due(step, (double)step) == 1) {
            o.save(step);
            saved.push_back(step);
        }
    }
    std::vector<int64_t> even;
    for (int64_t s = 0; s < 40; s += 2)
        even.push_back(s);
    EXPECT_EQ(saved, even) << "every T_local = 2 s";
    EXPECT_EQ(ckpt__policy_durable_every(o.ctx), 5);
    EXPECT_DOUBLE_EQ(ckpt__policy_interval(o.ctx, L, nullptr), 2.0);
    EXPECT_DOUBLE_EQ(ckpt__policy_interval(o.ctx, D, nullptr), 10.0);
    // Save 1 durable, then every 5th: saves 1, 6, 11, 16 = steps 0, 10, 20, 30.
    EXPECT_EQ(committed(o.dir), (std::vector<std::string>{step_name(0), step_name(10),
                                                           step_name(20), step_name(30)}));
    EXPECT_TRUE(o.log.has("policy: local tier: save cost C 0.02 s", "= 2 s"));
    EXPECT_TRUE(o.log.has("policy: durable tier: save cost C 0.5 s", "= 10 s"));
    EXPECT_TRUE(o.log.has("policy: durable every 5 saves (was 2)"));
}

TEST(PolicyMtbf, ThreadRanksAgreeOnEveryCallAndOnTheDurableCadence)
{
    const int N = 4;
    ckt::TempDir tmp;
    std::string dir = tmp.sub("durable"), local = tmp.sub("local");
    std::vector<std::string> ldirs, nodes;
    for (int r = 0; r < N; r++) {
        nodes.push_back(r < 2 ? "n0" : "n1");
        ldirs.push_back(local + "/" + nodes.back());
    }
    std::vector<std::vector<int>> got(N);
    std::vector<int> every(N);
    ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
        std::vector<ckm::Part> m;
        ckpt_ctx *ck = ckm::open_with_model(dir, comm, N, r, m, [&](ckpt_config &c) {
            c.policy_mtbf_s = 100;
            c.local_dir = ldirs[(size_t)r].c_str();
            c.node_name = nodes[(size_t)r].c_str();
            c.policy_sync_steps = 2;
        });
        ASSERT_NE(ck, nullptr);
        // Only rank 0 measures and decides; the others' hooks would not count.
        ckpt__policy_test_cost(ck, L, 0.08); // T_local = 4 s
        ckpt__policy_test_cost(ck, D, 2.0);  // T_durable = 20 s: every 5th
        for (int64_t step = 0; step < 80; step++) {
            if (r == 0)
                ckpt__policy_test_clock(ck, at_s((double)step));
            int due = ckpt_policy_due(ck, step);
            EXPECT_GE(due, 0) << ckpt_last_error(ck);
            got[(size_t)r].push_back(due);
            if (due == 1) {
                for (auto &p : m)
                    p.fill(step);
                ckpt_ticket t;
                ASSERT_EQ(ckpt_save(ck, step, nullptr, &t), 0) << ckpt_last_error(ck);
                ASSERT_EQ(ckpt_fence(ck, nullptr), 0);
                EXPECT_EQ(ckpt_wait(ck, t, -1), 0) << "rank " << r << ": " << ckpt_last_error(ck);
            }
        }
        every[(size_t)r] = ckpt__policy_durable_every(ck);
        EXPECT_EQ(ckpt_close(ck), 0);
    });
    for (int r = 1; r < N; r++)
        EXPECT_EQ(got[(size_t)r], got[0]) << "rank " << r << " diverged from rank 0";
    // Agreement points are the odd steps (every 2nd call); the first is due
    // (nothing measured), then every 4 s: steps 1, 5, 9, ...
    std::vector<int64_t> due;
    for (int64_t s = 0; s < 80; s++)
        if (got[0][(size_t)s] == 1)
            due.push_back(s);
    std::vector<int64_t> want;
    for (int64_t s = 1; s < 80; s += 4)
        want.push_back(s);
    EXPECT_EQ(due, want);
    EXPECT_EQ(every, std::vector<int>(N, 5));
    // Saves 1, 6, 11, 16 went to DIR: steps 1, 21, 41, 61; and the last
    // one (save 20, step 77, local-only), drained by ckpt_close.
    EXPECT_EQ(committed(dir), (std::vector<std::string>{step_name(1), step_name(21),
                                                         step_name(41), step_name(61),
                                                         step_name(77)}));
    ckm::restore_on(N, dir, 77);
}

TEST(PolicyMtbf, ADifferentValueOnOneRankIsRefusedOnEveryRank)
{
    const int N = 3;
    ckt::TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    std::vector<int> rc(N, 99);
    std::vector<std::string> msg(N);
    ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
        ckpt_config cfg = ckt::config(dir);
        cfg.policy_mtbf_s = r == 1 ? 7200 : 3600;
        ckpt_ctx *ck = nullptr;
        rc[(size_t)r] = ckpt_open(&cfg, comm, &ck);
        msg[(size_t)r] = ckpt_last_error(nullptr);
        EXPECT_EQ(ck, nullptr);
        ckpt_close(ck);
    });
    for (int r = 0; r < N; r++) {
        EXPECT_EQ(rc[(size_t)r], CKPT_EINVAL) << "rank " << r << ": " << msg[(size_t)r];
        EXPECT_NE(msg[(size_t)r].find("policy_mtbf_s (3600..7200) must be the same"),
                  std::string::npos)
            << msg[(size_t)r];
    }
}

TEST(PolicyMtbf, BadValuesAreRefused)
{
    const double bad[] = {-1, -1e-9, std::numeric_limits<double>::quiet_NaN(),
                          std::numeric_limits<double>::infinity(), 1e9 * 1.0000001, 2e9};
    for (double v : bad) {
        SCOPED_TRACE(v);
        ckt::TempDir tmp;
        std::string dir = tmp.sub("ckpt"); // cfg.dir points into it
        ckpt_config cfg = ckt::config(dir);
        cfg.policy_mtbf_s = v;
        ckpt_ctx *ctx = nullptr;
        EXPECT_EQ(ckpt_open(&cfg, nullptr, &ctx), CKPT_EINVAL);
        EXPECT_EQ(ctx, nullptr);
        EXPECT_NE(std::string(ckpt_last_error(nullptr)).find("policy_mtbf_s must be a number"),
                  std::string::npos)
            << ckpt_last_error(nullptr);
    }
    ckt::TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    ckpt_config cfg = ckt::config(dir);
    cfg.policy_mtbf_s = 1e9;
    ckpt_ctx *ctx = nullptr;
    EXPECT_EQ(ckpt_open(&cfg, nullptr, &ctx), 0) << "1e9 is the limit, accepted";
    EXPECT_EQ(ckpt_close(ctx), 0);
}

TEST(PolicyMtbf, EnvironmentOverride)
{
    ckpt_config cfg;
    setenv("CKPT_POLICY_MTBF_S", "3600.5", 1);
    EXPECT_EQ(ckpt_config_init(&cfg), 0);
    EXPECT_EQ(cfg.policy_mtbf_s, 3600.5);
    for (const char *v : {"abc", "-5", "1e10", "nan", "inf", "12s"}) {
        SCOPED_TRACE(v);
        setenv("CKPT_POLICY_MTBF_S", v, 1);
        EXPECT_EQ(ckpt_config_init(&cfg), CKPT_EINVAL);
        EXPECT_EQ(cfg.policy_mtbf_s, 0) << "the default is kept";
        EXPECT_NE(std::string(ckpt_last_error(nullptr)).find("CKPT_POLICY_MTBF_S"),
                  std::string::npos)
            << ckpt_last_error(nullptr);
    }
    unsetenv("CKPT_POLICY_MTBF_S");
    EXPECT_EQ(ckpt_config_init(&cfg), 0);
    EXPECT_EQ(cfg.policy_mtbf_s, 0) << "off by default";
}
