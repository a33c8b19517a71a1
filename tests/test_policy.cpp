// SPDX-License-Identifier: Apache-2.0
// The save policy, ckpt_policy_due: every N steps (exact steps), every T
// seconds (checked against the test's own clock, asserting only what the
// clock makes certain), both at once, a signal, a request file in the
// checkpoint folder (and nothing outside it), the agreement cadence
// policy_sync_steps, several contexts sharing one signal, the signal's
// previous disposition coming back at close, bad configurations, the
// environment overrides and bad calls.  Several ranks are covered by
// tests/internal/test_policy_ranks.cpp.
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "badinput_util.h"
#include "test_util.h"

namespace {

using bad::fails;
using ckt::TempDir;

double mono_s()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); // the runtime's clock too
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void sleep_s(double s)
{
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

// Log lines, collected from whichever runtime thread logs.
using Logs = ckt::Logs;

// One context on a fresh folder, with the policy set by `tweak`.
struct Policy {
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    ckpt_config cfg = ckt::config(dir);
    ckpt_ctx *ctx = nullptr;
    Logs logs;
    double open_lo = 0, open_hi = 0; // when ckpt_open started and returned

    template <class F> explicit Policy(F tweak)
    {
        cfg.log_level = CKPT_LOG_INFO;
        cfg.log_fn = Logs::fn;
        cfg.log_user = &logs;
        tweak(&cfg);
        open_lo = mono_s();
        ctx = ckt::open_ctx(cfg);
        open_hi = mono_s();
    }
    ~Policy() { ckpt_close(ctx); }

    // The steps among [from, to) that were due, one call per step.
    std::vector<int64_t> due_steps(int64_t from, int64_t to)
    {
        std::vector<int64_t> v;
        for (int64_t s = from; s < to; s++) {
            int rc = ckpt_policy_due(ctx, s);
            EXPECT_GE(rc, 0) << ckpt_last_error(ctx);
            if (rc == 1)
                v.push_back(s);
        }
        return v;
    }
    int due(int64_t step)
    {
        int rc = ckpt_policy_due(ctx, step);
        EXPECT_GE(rc, 0) << ckpt_last_error(ctx);
        return rc;
    }
};

// Checks every-T results against the test's clock.  The period starts
// somewhere inside the call that last returned due (or inside ckpt_open)
// and is tested somewhere inside the current call, so two cases are
// certain: due when even the shortest possible wait reached T, not due
// when even the longest possible one did not (unless the step rule fired).
struct TimeCheck {
    double T;
    double base_lo, base_hi;
    int certain_due = 0, certain_not = 0;

    TimeCheck(double t, double lo, double hi) : T(t), base_lo(lo), base_hi(hi) {}

    int call(ckpt_ctx *ctx, int64_t step, bool step_rule)
    {
        double a = mono_s();
        int rc = ckpt_policy_due(ctx, step);
        double b = mono_s();
        EXPECT_GE(rc, 0) << ckpt_last_error(ctx);
        if (a - base_hi >= T + 1e-6) {
            certain_due++;
            EXPECT_EQ(rc, 1) << "step " << step << ": " << a - base_hi
                             << " s had surely passed, T = " << T;
        }
        if (b - base_lo < T - 1e-6 && !step_rule) {
            certain_not++;
            EXPECT_EQ(rc, 0) << "step " << step << ": at most " << b - base_lo
                             << " s had passed, T = " << T;
        }
        if (rc == 1) {
            base_lo = a;
            base_hi = b;
        }
        return rc;
    }
};

// ===========================================================================
// Every N steps, every T seconds, both
// ===========================================================================

TEST(PolicySteps, OffByDefaultNothingIsEverDue)
{
    Policy p([](ckpt_config *) {});
    ASSERT_NE(p.ctx, nullptr);
    EXPECT_EQ(p.cfg.policy_every_steps, 0);
    EXPECT_EQ(p.cfg.policy_every_s, 0.0);
    EXPECT_EQ(p.cfg.policy_signal, 0);
    EXPECT_EQ(p.cfg.policy_request_file, nullptr);
    EXPECT_EQ(p.cfg.policy_sync_steps, 1);
    EXPECT_TRUE(p.due_steps(0, 1000).empty());
}

TEST(PolicySteps, EveryNStepsIsExact)
{
    Policy p([](ckpt_config *c) { c->policy_every_steps = 5; });
    ASSERT_NE(p.ctx, nullptr);
    EXPECT_EQ(p.due_steps(0, 23), (std::vector<int64_t>{0, 5, 10, 15, 20}));
    // Steps need not be consecutive, and a repeated step is due again.
    EXPECT_EQ(p.due(995), 1);
    EXPECT_EQ(p.due(995), 1);
    EXPECT_EQ(p.due(996), 0);
    EXPECT_EQ(p.due(999999999995LL), 1);
    EXPECT_EQ(p.due(999999999999LL), 0);
    EXPECT_FALSE(p.logs.has("policy: save due")) << "the step rule logs at debug only";
}

TEST(PolicySteps, EveryStepWithNOne)
{
    Policy p([](ckpt_config *c) { c->policy_every_steps = 1; });
    ASSERT_NE(p.ctx, nullptr);
    EXPECT_EQ(p.due_steps(0, 7).size(), 7u);
}

TEST(PolicyTime, NotDueRightAfterOpen)
{
    Policy p([](ckpt_config *c) { c->policy_every_s = 10; });
    ASSERT_NE(p.ctx, nullptr);
    TimeCheck tc(10, p.open_lo, p.open_hi);
    for (int64_t s = 0; s < 200; s++)
        EXPECT_EQ(tc.call(p.ctx, s, false), 0) << "step " << s;
    EXPECT_GT(tc.certain_not, 0);
}

TEST(PolicyTime, DueOncePastTAndThePeriodRestarts)
{
    const double T = 0.05;
    Policy p([&](ckpt_config *c) { c->policy_every_s = T; });
    ASSERT_NE(p.ctx, nullptr);
    TimeCheck tc(T, p.open_lo, p.open_hi);
    int due = 0;
    int64_t step = 0;
    // Sleep past T, then call twice in a row: the first is surely due; the
    // second is surely not unless the machine stalled for T in between.
    for (int round = 0; round < 4; round++) {
        sleep_s(T * 1.2);
        EXPECT_EQ(tc.call(p.ctx, step++, false), 1) << "round " << round;
        due++;
        tc.call(p.ctx, step++, false);
    }
    // Short sleeps: whatever is due, the clock must agree.
    double end = mono_s() + 6 * T;
    while (mono_s() < end) {
        due += tc.call(p.ctx, step++, false);
        sleep_s(T / 10);
    }
    EXPECT_GE(tc.certain_due, 4);
    EXPECT_GT(tc.certain_not, 0) << "no call was certainly early: the test proved nothing";
    EXPECT_GE(due, 4);
    EXPECT_TRUE(p.logs.has("(every 0.05 s)")) << "the reason is logged at info";
}

TEST(PolicyTime, TinyPeriodIsDueAtEveryCall)
{
    Policy p([](ckpt_config *c) { c->policy_every_s = 1e-300; });
    ASSERT_NE(p.ctx, nullptr);
    EXPECT_EQ(p.due_steps(0, 50).size(), 50u);
}

TEST(PolicyBoth, WhicheverComesFirst)
{
    const double T = 1.0;
    Policy p([&](ckpt_config *c) {
        c->policy_every_steps = 100;
        c->policy_every_s = T;
    });
    ASSERT_NE(p.ctx, nullptr);
    TimeCheck tc(T, p.open_lo, p.open_hi);
    EXPECT_EQ(tc.call(p.ctx, 0, true), 1) << "step 0 is a multiple of 100";
    for (int64_t s = 1; s < 100; s++)
        tc.call(p.ctx, s, false);
    EXPECT_EQ(tc.call(p.ctx, 100, true), 1) << "the step rule fires before T";
    // The time rule fires before step 200.
    sleep_s(T * 1.1);
    EXPECT_EQ(tc.call(p.ctx, 101, false), 1);
    // A due step of the step rule restarts the period: 0.7 s before and
    // 0.5 s after step 200 make 1.2 s since the last time-due step, but
    // only 0.5 s since the last due step, so the call after it is not due
    // (TimeCheck asserts it).  A stall of 0.5 s would leave that call
    // unproven; then the experiment runs again.
    bool proven = false;
    for (int64_t k = 2; k <= 4 && !proven; k++) {
        sleep_s(0.7);
        EXPECT_EQ(tc.call(p.ctx, k * 100, true), 1);
        sleep_s(0.5);
        int before = tc.certain_not;
        tc.call(p.ctx, k * 100 + 1, false);
        proven = tc.certain_not > before;
        sleep_s(T * 1.1); // the next step-rule call then also ends a period
        EXPECT_EQ(tc.call(p.ctx, k * 100 + 2, false), 1);
    }
    EXPECT_TRUE(proven) << "three 0.5 s stalls in a row: the reset went unobserved";
    EXPECT_GE(tc.certain_due, 2);
}

// ===========================================================================
// Signal
// ===========================================================================

std::atomic<int> g_test_handler_hits{0};
void test_handler(int)
{
    g_test_handler_hits++;
}

struct sigaction disposition(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    EXPECT_EQ(sigaction(sig, nullptr, &sa), 0);
    return sa;
}

TEST(PolicySignal, NextCallDueThenNot)
{
    struct sigaction before = disposition(SIGUSR1);
    {
        Policy p([](ckpt_config *c) { c->policy_signal = SIGUSR1; });
        ASSERT_NE(p.ctx, nullptr);
        EXPECT_EQ(p.due(1), 0);
        EXPECT_EQ(p.due(2), 0);
        ASSERT_EQ(raise(SIGUSR1), 0);
        EXPECT_EQ(p.due(3), 1);
        EXPECT_EQ(p.due(4), 0);
        EXPECT_TRUE(p.logs.has("policy: save due at step 3 (SIGUSR1)"));
        // Several deliveries before one call are one request.
        raise(SIGUSR1);
        raise(SIGUSR1);
        raise(SIGUSR1);
        EXPECT_EQ(p.due(5), 1);
        EXPECT_EQ(p.due(6), 0);
    }
    struct sigaction after = disposition(SIGUSR1);
    EXPECT_EQ(after.sa_handler, before.sa_handler) << "close must give the signal back";
    EXPECT_EQ(after.sa_flags & SA_SIGINFO, before.sa_flags & SA_SIGINFO);
}

TEST(PolicySignal, TwoContextsBothSeeOneSignal)
{
    struct sigaction before = disposition(SIGUSR2);
    auto use_usr2 = [](ckpt_config *c) { c->policy_signal = SIGUSR2; };
    auto *a = new Policy(use_usr2);
    {
        Policy b(use_usr2);
        ASSERT_NE(a->ctx, nullptr);
        ASSERT_NE(b.ctx, nullptr);
        EXPECT_EQ(a->due(1), 0);
        EXPECT_EQ(b.due(1), 0);
        raise(SIGUSR2);
        EXPECT_EQ(a->due(2), 1);
        EXPECT_EQ(a->due(3), 0);
        EXPECT_EQ(b.due(2), 1) << "a took the request; b must still see it";
        EXPECT_EQ(b.due(3), 0);
    }
    // b closed first: a still holds the handler, and the signal still
    // must not kill the process.
    raise(SIGUSR2);
    EXPECT_EQ(a->due(4), 1);
    delete a;
    EXPECT_EQ(disposition(SIGUSR2).sa_handler, before.sa_handler);
}

TEST(PolicySignal, PreviousHandlerComesBackAtClose)
{
    struct sigaction mine, old;
    memset(&mine, 0, sizeof mine);
    mine.sa_handler = test_handler;
    sigemptyset(&mine.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR1, &mine, &old), 0);
    g_test_handler_hits = 0;
    {
        Policy p([](ckpt_config *c) { c->policy_signal = SIGUSR1; });
        ASSERT_NE(p.ctx, nullptr);
        EXPECT_TRUE(p.logs.has("had a handler")) << "replacing a handler is worth a warning";
        raise(SIGUSR1);
        EXPECT_EQ(p.due(1), 1);
        EXPECT_EQ(g_test_handler_hits.load(), 0) << "the runtime's handler owns the signal";
    }
    raise(SIGUSR1);
    EXPECT_EQ(g_test_handler_hits.load(), 1) << "the previous handler must be back";
    sigaction(SIGUSR1, &old, nullptr);
}

TEST(PolicySignal, AHandlerSetWhileOpenIsLeftAlone)
{
    struct sigaction old = disposition(SIGUSR1);
    g_test_handler_hits = 0;
    {
        Policy p([](ckpt_config *c) { c->policy_signal = SIGUSR1; });
        ASSERT_NE(p.ctx, nullptr);
        struct sigaction mine;
        memset(&mine, 0, sizeof mine);
        mine.sa_handler = test_handler;
        sigemptyset(&mine.sa_mask);
        ASSERT_EQ(sigaction(SIGUSR1, &mine, nullptr), 0);
    }
    EXPECT_EQ(disposition(SIGUSR1).sa_handler, test_handler)
        << "close must not undo what the application set after open";
    sigaction(SIGUSR1, &old, nullptr);
}

TEST(PolicySignal, RealTimeSignal)
{
    const int sig = SIGRTMIN + 2;
    Policy p([&](ckpt_config *c) { c->policy_signal = sig; });
    ASSERT_NE(p.ctx, nullptr);
    EXPECT_EQ(p.due(0), 0);
    raise(sig);
    EXPECT_EQ(p.due(1), 1);
    EXPECT_TRUE(p.logs.has("(SIGRTMIN+2)"));
}

// ===========================================================================
// Request file
// ===========================================================================

TEST(PolicyFile, AppearingFileIsDueAndRemoved)
{
    Policy p([](ckpt_config *c) { c->policy_request_file = "SAVE_NOW"; });
    ASSERT_NE(p.ctx, nullptr);
    std::string req = p.dir + "/SAVE_NOW";
    EXPECT_EQ(p.due(1), 0);
    bad::write_file(req, "please");
    EXPECT_EQ(p.due(2), 1);
    EXPECT_FALSE(ckt::exists(req)) << "rank 0 removes the file when it takes the request";
    EXPECT_EQ(p.due(3), 0);
    EXPECT_TRUE(p.logs.has("policy: save due at step 2 (request file SAVE_NOW)"));
    // An empty folder of that name is a request too.
    ASSERT_EQ(mkdir(req.c_str(), 0755), 0);
    EXPECT_EQ(p.due(4), 1);
    EXPECT_FALSE(ckt::exists(req));
    EXPECT_EQ(p.due(5), 0);
}

TEST(PolicyFile, SymlinkCountsButOnlyTheLinkGoes)
{
    Policy p([](ckpt_config *c) { c->policy_request_file = "SAVE_NOW"; });
    ASSERT_NE(p.ctx, nullptr);
    // The same name outside the folder: never a request, never touched.
    std::string outside = p.tmp.sub("SAVE_NOW");
    bad::write_file(outside, "keep me");
    EXPECT_EQ(p.due(1), 0);
    EXPECT_EQ(bad::read_file(outside), "keep me");
    // A link in the folder to it: a request; the link goes, the target stays.
    std::string link = p.dir + "/SAVE_NOW";
    ASSERT_EQ(symlink(outside.c_str(), link.c_str()), 0);
    EXPECT_EQ(p.due(2), 1);
    EXPECT_FALSE(ckt::exists(link));
    EXPECT_EQ(bad::read_file(outside), "keep me");
    // A dangling link counts as well.
    ASSERT_EQ(symlink("/nonexistent/target", link.c_str()), 0);
    EXPECT_EQ(p.due(3), 1);
    EXPECT_FALSE(ckt::exists(link));
    EXPECT_EQ(p.due(4), 0);
}

TEST(PolicyFile, AnEntryThatCannotBeRemovedCountsOnce)
{
    Policy p([](ckpt_config *c) { c->policy_request_file = "SAVE_NOW"; });
    ASSERT_NE(p.ctx, nullptr);
    std::string req = p.dir + "/SAVE_NOW";
    ASSERT_EQ(mkdir(req.c_str(), 0755), 0);
    bad::write_file(req + "/inside", "x");
    EXPECT_EQ(p.due(1), 1);
    EXPECT_TRUE(p.logs.has("cannot remove request file"));
    EXPECT_EQ(p.due(2), 0) << "a stuck request must not make every step due";
    EXPECT_EQ(p.due(3), 0);
    EXPECT_EQ(bad::read_file(req + "/inside"), "x") << "never removed recursively";
    // Once it is gone, a new request counts again.
    ckt::TempDir::remove_all(req);
    EXPECT_EQ(p.due(4), 0);
    bad::write_file(req, "");
    EXPECT_EQ(p.due(5), 1);
}

TEST(PolicyFile, OpenCopiesTheName)
{
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    char name[] = "SAVE_NOW";
    ckpt_config cfg = ckt::config(dir);
    cfg.policy_request_file = name;
    ckpt_ctx *ctx = ckt::open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    memcpy(name, "XXXXXXXX", 8);
    bad::write_file(dir + "/XXXXXXXX", "");
    EXPECT_EQ(ckpt_policy_due(ctx, 1), 0);
    bad::write_file(dir + "/SAVE_NOW", "");
    EXPECT_EQ(ckpt_policy_due(ctx, 2), 1);
    EXPECT_TRUE(ckt::exists(dir + "/XXXXXXXX"));
    EXPECT_EQ(ckpt_close(ctx), 0);
}

// ===========================================================================
// Agreement cadence
// ===========================================================================

TEST(PolicySync, RequestsWaitForTheNextAgreementPoint)
{
    Policy p([](ckpt_config *c) {
        c->policy_signal = SIGUSR1;
        c->policy_request_file = "SAVE_NOW";
        c->policy_sync_steps = 4;
    });
    ASSERT_NE(p.ctx, nullptr);
    raise(SIGUSR1);
    // Calls 1..3 are no agreement points; call 4 is.
    EXPECT_EQ(p.due(10), 0);
    EXPECT_EQ(p.due(11), 0);
    EXPECT_EQ(p.due(12), 0);
    EXPECT_EQ(p.due(13), 1);
    EXPECT_EQ(p.due_steps(14, 22), (std::vector<int64_t>{})) << "calls 5..12";
    bad::write_file(p.dir + "/SAVE_NOW", "");
    EXPECT_EQ(p.due_steps(22, 30), (std::vector<int64_t>{25})) << "call 16";
    EXPECT_FALSE(ckt::exists(p.dir + "/SAVE_NOW"));
}

TEST(PolicySync, TimeIsLookedAtOnlyOnAgreementPoints)
{
    Policy p([](ckpt_config *c) {
        c->policy_every_s = 1e-9;
        c->policy_sync_steps = 3;
    });
    ASSERT_NE(p.ctx, nullptr);
    EXPECT_EQ(p.due_steps(100, 112), (std::vector<int64_t>{102, 105, 108, 111}));
}

TEST(PolicySync, StepRuleIsNotDelayed)
{
    Policy p([](ckpt_config *c) {
        c->policy_every_steps = 2;
        c->policy_signal = SIGUSR1;
        c->policy_sync_steps = 4;
    });
    ASSERT_NE(p.ctx, nullptr);
    raise(SIGUSR1);
    EXPECT_EQ(p.due(1), 0); // call 1
    EXPECT_EQ(p.due(2), 1); // call 2: step rule; the save serves the signal
    EXPECT_EQ(p.due(3), 0); // call 3
    EXPECT_EQ(p.due(5), 0) << "call 4: the signal was served by step 2";
    raise(SIGUSR1);
    EXPECT_EQ(p.due(7), 0); // call 5
    EXPECT_EQ(p.due(9), 0); // call 6
    EXPECT_EQ(p.due(11), 0); // call 7
    EXPECT_EQ(p.due(13), 1) << "call 8: agreement point";
}

TEST(PolicySync, RefusedCallsDoNotCount)
{
    Policy p([](ckpt_config *c) {
        c->policy_every_s = 1e-9;
        c->policy_sync_steps = 2;
    });
    ASSERT_NE(p.ctx, nullptr);
    EXPECT_EQ(p.due(0), 0); // call 1
    EXPECT_TRUE(fails(ckpt_policy_due(p.ctx, -1), CKPT_EINVAL, p.ctx, "step -1"));
    EXPECT_TRUE(fails(ckpt_policy_due(p.ctx, 1000000000000LL), CKPT_EINVAL, p.ctx, "step"));
    EXPECT_EQ(p.due(1), 1); // call 2
    EXPECT_EQ(p.due(2), 0); // call 3
}

// ===========================================================================
// With saves: the loop of docs/ARCHITECTURE.md
// ===========================================================================

TEST(PolicyLoop, SavesExactlyTheDueSteps)
{
    Policy p([](ckpt_config *c) {
        c->policy_every_steps = 3;
        c->policy_request_file = "SAVE_NOW";
    });
    ASSERT_NE(p.ctx, nullptr);
    float w[16] = {0};
    int64_t shape[1] = {16};
    ASSERT_EQ(ckpt_register(p.ctx, "w", w, CKPT_F32, 1, shape), 0);
    for (int64_t step = 0; step < 8; step++) {
        if (step == 4)
            bad::write_file(p.dir + "/SAVE_NOW", "");
        int rc = ckpt_policy_due(p.ctx, step);
        ASSERT_GE(rc, 0) << ckpt_last_error(p.ctx);
        if (rc) {
            ASSERT_EQ(ckt::save_wait(p.ctx, step), 0) << ckpt_last_error(p.ctx);
        }
        ASSERT_EQ(ckpt_fence(p.ctx, nullptr), 0);
        w[step % 16] += 1;
    }
    ckpt_info info[8];
    size_t n = 0;
    ASSERT_EQ(ckpt_list(p.ctx, info, 8, &n), 0);
    std::set<int64_t> saved;
    for (size_t i = 0; i < n; i++)
        saved.insert(info[i].step);
    EXPECT_EQ(saved, (std::set<int64_t>{0, 3, 4, 6}));
}

// ===========================================================================
// Bad configurations, environment, bad calls
// ===========================================================================

TEST(PolicyConfig, BadValuesAreRefusedWithTheFieldNamed)
{
    static const double nan = std::numeric_limits<double>::quiet_NaN();
    static const double inf = std::numeric_limits<double>::infinity();
    static std::string longname(256, 'n');
    const bad::BadConfig cases[] = {
        {"every_steps -1", [](ckpt_config *c) { c->policy_every_steps = -1; },
         "policy_every_steps"},
        {"every_steps INT_MIN", [](ckpt_config *c) { c->policy_every_steps = INT32_MIN; },
         "policy_every_steps"},
        {"every_s -1", [](ckpt_config *c) { c->policy_every_s = -1; }, "policy_every_s"},
        {"every_s -0.001", [](ckpt_config *c) { c->policy_every_s = -0.001; }, "policy_every_s"},
        {"every_s NaN", [](ckpt_config *c) { c->policy_every_s = nan; }, "policy_every_s"},
        {"every_s +inf", [](ckpt_config *c) { c->policy_every_s = inf; }, "policy_every_s"},
        {"every_s -inf", [](ckpt_config *c) { c->policy_every_s = -inf; }, "policy_every_s"},
        {"every_s 2e9", [](ckpt_config *c) { c->policy_every_s = 2e9; }, "policy_every_s"},
        {"sync_steps 0", [](ckpt_config *c) { c->policy_sync_steps = 0; }, "policy_sync_steps"},
        {"sync_steps -4", [](ckpt_config *c) { c->policy_sync_steps = -4; },
         "policy_sync_steps"},
        {"signal -1", [](ckpt_config *c) { c->policy_signal = -1; }, "policy_signal"},
        {"signal 9999", [](ckpt_config *c) { c->policy_signal = 9999; }, "policy_signal"},
        {"signal NSIG", [](ckpt_config *c) { c->policy_signal = NSIG; }, "policy_signal"},
        {"signal SIGKILL", [](ckpt_config *c) { c->policy_signal = SIGKILL; }, "policy_signal"},
        {"signal SIGSTOP", [](ckpt_config *c) { c->policy_signal = SIGSTOP; }, "policy_signal"},
        {"signal SIGSEGV", [](ckpt_config *c) { c->policy_signal = SIGSEGV; }, "policy_signal"},
        {"signal SIGFPE", [](ckpt_config *c) { c->policy_signal = SIGFPE; }, "policy_signal"},
        {"signal SIGABRT", [](ckpt_config *c) { c->policy_signal = SIGABRT; }, "policy_signal"},
        {"file empty", [](ckpt_config *c) { c->policy_request_file = ""; },
         "policy_request_file"},
        {"file with /", [](ckpt_config *c) { c->policy_request_file = "sub/STOP"; },
         "policy_request_file"},
        {"file absolute", [](ckpt_config *c) { c->policy_request_file = "/tmp/STOP"; },
         "policy_request_file"},
        {"file ..", [](ckpt_config *c) { c->policy_request_file = ".."; },
         "policy_request_file"},
        {"file .", [](ckpt_config *c) { c->policy_request_file = "."; }, "policy_request_file"},
        {"file ../STOP", [](ckpt_config *c) { c->policy_request_file = "../STOP"; },
         "policy_request_file"},
        {"file step-000000000001",
         [](ckpt_config *c) { c->policy_request_file = "step-000000000001"; }, "step-"},
        {"file step-x", [](ckpt_config *c) { c->policy_request_file = "step-x"; }, "step-"},
        {"file newline", [](ckpt_config *c) { c->policy_request_file = "SAVE\nNOW"; },
         "control character"},
        {"file 256 bytes", [](ckpt_config *c) { c->policy_request_file = longname.c_str(); },
         "policy_request_file"},
    };
    bad::expect_configs_refused(cases);
    EXPECT_EQ(disposition(SIGUSR1).sa_handler, SIG_DFL) << "a refused open installed nothing";
}

TEST(PolicyConfig, ValuesAtTheLimitsAreAccepted)
{
    static std::string name255(255, 'n');
    const bad::OkConfig ok[] = {
        {"every_s 1e9, steps INT_MAX, sync INT_MAX",
         [](ckpt_config *c) {
             c->policy_every_s = 1e9;
             c->policy_every_steps = INT32_MAX;
             c->policy_sync_steps = INT32_MAX;
         }},
        {"file ..STOP", [](ckpt_config *c) { c->policy_request_file = "..STOP"; }},
        {"file .stop", [](ckpt_config *c) { c->policy_request_file = ".stop"; }},
        {"file 255 bytes", [](ckpt_config *c) { c->policy_request_file = name255.c_str(); }},
        {"file step (no dash)", [](ckpt_config *c) { c->policy_request_file = "step"; }},
        {"signal SIGTERM", [](ckpt_config *c) { c->policy_signal = SIGTERM; }},
    };
    bad::expect_configs_accepted(ok, [](ckpt_ctx *ctx) {
        EXPECT_EQ(ckpt_policy_due(ctx, 1), 0) << ckpt_last_error(ctx);
    });
}

TEST(PolicyConfig, EnvironmentOverrides)
{
    bad::EnvGuard env;
    setenv("CKPT_POLICY_EVERY_STEPS", "250", 1);
    setenv("CKPT_POLICY_EVERY_S", "1800.5", 1);
    ckpt_config cfg;
    ASSERT_EQ(ckpt_config_init(&cfg), 0) << ckpt_last_error(nullptr);
    EXPECT_EQ(cfg.policy_every_steps, 250);
    EXPECT_EQ(cfg.policy_every_s, 1800.5);
    for (const char *badv : {"-1", "x", "1e3", "2147483648", "5 "}) {
        SCOPED_TRACE(badv);
        setenv("CKPT_POLICY_EVERY_STEPS", badv, 1);
        EXPECT_TRUE(
            fails(ckpt_config_init(&cfg), CKPT_EINVAL, nullptr, "CKPT_POLICY_EVERY_STEPS"));
        EXPECT_EQ(cfg.policy_every_steps, 0) << "the default must be kept";
    }
    unsetenv("CKPT_POLICY_EVERY_STEPS");
    for (const char *badv : {"-1", "nan", "inf", "1e10", "10s", ""}) {
        SCOPED_TRACE(badv);
        setenv("CKPT_POLICY_EVERY_S", badv, 1);
        int rc = ckpt_config_init(&cfg);
        if (*badv == '\0') { // empty means unset, like every CKPT_* variable
            EXPECT_EQ(rc, 0);
            continue;
        }
        EXPECT_TRUE(fails(rc, CKPT_EINVAL, nullptr, "CKPT_POLICY_EVERY_S"));
        EXPECT_EQ(cfg.policy_every_s, 0.0);
    }
}

TEST(PolicyCalls, NullContextAndBadSteps)
{
    EXPECT_TRUE(fails(ckpt_policy_due(nullptr, 1), CKPT_EINVAL, nullptr, "ckpt_policy_due"));
    EXPECT_TRUE(fails(ckpt_policy_due(nullptr, -1), CKPT_EINVAL, nullptr, "ctx is NULL"));
    Policy p([](ckpt_config *c) { c->policy_every_steps = 1; });
    ASSERT_NE(p.ctx, nullptr);
    EXPECT_TRUE(fails(ckpt_policy_due(p.ctx, -1), CKPT_EINVAL, p.ctx, "step -1"));
    EXPECT_TRUE(fails(ckpt_policy_due(p.ctx, INT64_MIN), CKPT_EINVAL, p.ctx, "ckpt_policy_due"));
    EXPECT_TRUE(fails(ckpt_policy_due(p.ctx, INT64_MAX), CKPT_EINVAL, p.ctx, "ckpt_policy_due"));
    EXPECT_EQ(ckpt_policy_due(p.ctx, 999999999999LL), 1);
}

} // namespace
