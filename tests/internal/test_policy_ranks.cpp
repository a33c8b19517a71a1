// SPDX-License-Identifier: Apache-2.0
// ckpt_policy_due across ranks, without MPI: each rank is a thread with its
// own context, joined by an in-process comm (runtime/comm.h) whose
// collectives meet at a barrier, check that every rank entered the same
// kind of collective with the same size, and time out instead of hanging.
// Shown here: every rank returns the same value at every call while time,
// a signal on one rank and a request file race with the calls; every rank
// makes the same collectives; a cadence that differs between ranks is
// refused at open on every rank; no rule that needs agreement means no
// collective; a failed exchange returns the comm's error and keeps the
// request for the next call.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "runtime/comm.h"
}
#include "test_util.h"

using namespace ckt;

namespace {

// The meeting point of n rank threads.
struct Hub {
    explicit Hub(int nranks) : n(nranks), slots(nranks), kinds(nranks), made(nranks) {}
    int n;
    std::mutex mu;
    std::condition_variable cv;
    int arrived = 0;
    uint64_t gen = 0;
    std::vector<std::vector<uint8_t>> slots;  // what each rank brought
    std::vector<std::string> kinds;           // the collective each rank is in
    std::vector<std::vector<std::string>> made; // every collective of each rank
    int fail_next = 0;                        // fail this many collectives (1 rank)

    // Every rank arrives or, after 20 s, the caller gives up.
    bool meet()
    {
        std::unique_lock<std::mutex> lk(mu);
        uint64_t g = gen;
        if (++arrived == n) {
            arrived = 0;
            gen++;
            cv.notify_all();
            return true;
        }
        return cv.wait_for(lk, std::chrono::seconds(20), [&] { return gen != g; });
    }
};

struct ThreadComm {
    ckpt_comm base; // first: the runtime sees a ckpt_comm
    Hub *hub;
    int rank;
};

ThreadComm *tc(const ckpt_comm *c)
{
    return static_cast<ThreadComm *>(c->impl);
}

// One collective: each rank brings n bytes; `use` reads every rank's bytes
// between the two meetings.
template <class F>
int exchange(ckpt_comm *c, const char *kind, const void *data, size_t n, ckpt__err *err,
             F use)
{
    ThreadComm *t = tc(c);
    Hub *h = t->hub;
    std::string k = std::string(kind) + "/" + std::to_string(n);
    {
        std::lock_guard<std::mutex> lk(h->mu);
        h->made[t->rank].push_back(k);
        if (h->fail_next > 0) {
            h->fail_next--;
            return ckpt__err_set(err, CKPT_ECOMM, "test comm: injected %s failure", kind);
        }
        h->kinds[t->rank] = k;
        h->slots[t->rank].assign(static_cast<const uint8_t *>(data),
                                 static_cast<const uint8_t *>(data) + n);
    }
    if (!h->meet())
        return ckpt__err_set(err, CKPT_ECOMM, "test comm: rank %d waited 20 s in %s", t->rank,
                             k.c_str());
    int rc = 0;
    {
        std::lock_guard<std::mutex> lk(h->mu);
        for (int r = 0; r < h->n; r++)
            if (h->kinds[r] != k)
                rc = ckpt__err_set(err, CKPT_ECOMM, "test comm: rank %d in %s, rank %d in %s",
                                   t->rank, k.c_str(), r, h->kinds[r].c_str());
        if (!rc)
            use(h->slots);
    }
    if (!h->meet() && !rc)
        rc = ckpt__err_set(err, CKPT_ECOMM, "test comm: rank %d waited 20 s after %s",
                           t->rank, k.c_str());
    return rc;
}

int tc_rank(const ckpt_comm *c)
{
    return tc(c)->rank;
}

int tc_size(const ckpt_comm *c)
{
    return tc(c)->hub->n;
}

int tc_barrier(ckpt_comm *c, ckpt__err *err)
{
    return exchange(c, "barrier", nullptr, 0, err, [](auto &) {});
}

int tc_bcast(ckpt_comm *c, void *buf, size_t n, int root, ckpt__err *err)
{
    return exchange(c, "bcast", buf, n, err,
                    [&](auto &slots) { memcpy(buf, slots[root].data(), n); });
}

int tc_allreduce(ckpt_comm *c, int64_t *vals, int n, int op, ckpt__err *err)
{
    std::vector<int64_t> mine(vals, vals + n);
    return exchange(c, op == CKPT__MIN ? "allreduce-min" : "allreduce-max", mine.data(),
                    (size_t)n * 8, err, [&](auto &slots) {
                        for (int i = 0; i < n; i++) {
                            int64_t v = mine[i];
                            for (const auto &s : slots) {
                                int64_t x;
                                memcpy(&x, s.data() + 8 * i, 8);
                                v = op == CKPT__MIN ? std::min(v, x) : std::max(v, x);
                            }
                            vals[i] = v;
                        }
                    });
}

int tc_gather(ckpt_comm *c, const void *send, size_t n, void *recv, int root, ckpt__err *err)
{
    int rank = tc(c)->rank;
    return exchange(c, "gather", send, n, err, [&](auto &slots) {
        if (rank == root)
            for (size_t r = 0; r < slots.size(); r++)
                memcpy(static_cast<uint8_t *>(recv) + r * n, slots[r].data(), n);
    });
}

void tc_destroy(ckpt_comm *c)
{
    delete tc(c);
}

const ckpt__comm_methods tc_methods = {
    CKPT__COMM_VERSION, "test-threads", tc_rank, tc_size, tc_barrier,
    tc_bcast,           tc_allreduce,   tc_gather, tc_destroy,
    nullptr,            nullptr, // no notes: verdicts from the folder
    nullptr,                     // no exchange
};

ckpt_comm *make_comm(Hub *hub, int rank)
{
    auto *t = new ThreadComm;
    ckpt__comm_init(&t->base, &tc_methods, t);
    t->hub = hub;
    t->rank = rank;
    return &t->base;
}

// Runs body(rank) on n threads, one per rank.
template <class F> void on_ranks(int n, F body)
{
    std::vector<std::thread> ts;
    for (int r = 0; r < n; r++)
        ts.emplace_back(body, r);
    for (auto &t : ts)
        t.join();
}

size_t count_of(const std::vector<std::string> &v, const std::string &prefix)
{
    size_t n = 0;
    for (const auto &s : v)
        n += s.compare(0, prefix.size(), prefix) == 0;
    return n;
}

TEST(PolicyRanks, EveryRankReturnsTheSameAtEveryCall)
{
    const int N = 3, STEPS = 400;
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    Hub hub(N);
    std::vector<std::vector<int>> got(N);
    unsigned seed = (unsigned)time(nullptr);
    SCOPED_TRACE("seed " + std::to_string(seed));
    on_ranks(N, [&](int rank) {
        ckpt_config cfg = config(dir);
        cfg.policy_every_steps = 50;
        cfg.policy_sync_steps = 3;
        cfg.policy_every_s = 0.02;                // read on rank 0 only
        cfg.policy_request_file = "SAVE_NOW";     // looked for by rank 0 only
        cfg.policy_signal = rank == 2 ? SIGUSR2 : 0; // held by rank 2 only
        ckpt_ctx *ctx = nullptr;
        int rc = ckpt_open(&cfg, make_comm(&hub, rank), &ctx);
        ASSERT_EQ(rc, 0) << "rank " << rank << ": " << ckpt_last_error(nullptr);
        std::mt19937 rng(seed + (unsigned)rank);
        for (int64_t step = 0; step < STEPS; step++) {
            if (rank == 2 && (step == 37 || step == 211))
                raise(SIGUSR2);
            if (rank == 1 && (step == 120 || step == 300))
                close(open((dir + "/SAVE_NOW").c_str(), O_CREAT | O_WRONLY, 0644));
            int r = ckpt_policy_due(ctx, step);
            EXPECT_GE(r, 0) << "rank " << rank << ": " << ckpt_last_error(ctx);
            got[rank].push_back(r);
            usleep(rng() % 400); // ranks drift apart between agreement points
        }
        EXPECT_EQ(ckpt_close(ctx), 0);
    });
    for (int r = 1; r < N; r++) {
        EXPECT_EQ(got[r], got[0]) << "rank " << r << " diverged from rank 0";
        EXPECT_EQ(hub.made[r], hub.made[0]) << "rank " << r << " made other collectives";
    }
    ASSERT_EQ(got[0].size(), (size_t)STEPS);
    for (int64_t s = 0; s < STEPS; s += 50)
        EXPECT_EQ(got[0][s], 1) << "step " << s << " is a multiple of 50";
    // Call c (from 1) is an agreement point when c % 3 == 0: steps 2, 5, ...
    // The signal before step 37 (call 38) is taken at step 38 (call 39).
    EXPECT_EQ(got[0][38], 1) << "rank 2's signal must make step 38 due on every rank";
    EXPECT_EQ(got[0][212], 1) << "rank 2's signal must make step 212 due on every rank";
    EXPECT_FALSE(exists(dir + "/SAVE_NOW")) << "rank 0 took both file requests";
    // Open agrees once; then one allreduce per agreement point.
    EXPECT_EQ(count_of(hub.made[0], "allreduce-max/24"), (size_t)STEPS / 3);
    EXPECT_EQ(count_of(hub.made[0], "allreduce-max/64"), 1u);
}

TEST(PolicyRanks, SignalOnOneRankIsDueOnAllAtTheNextAgreementPoint)
{
    const int N = 4;
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    Hub hub(N);
    std::vector<std::vector<int64_t>> due(N);
    on_ranks(N, [&](int rank) {
        ckpt_config cfg = config(dir);
        cfg.policy_sync_steps = 2;
        cfg.policy_signal = rank == 3 ? SIGUSR1 : 0;
        ckpt_ctx *ctx = nullptr;
        ASSERT_EQ(ckpt_open(&cfg, make_comm(&hub, rank), &ctx), 0) << ckpt_last_error(nullptr);
        for (int64_t step = 0; step < 20; step++) {
            if (rank == 3 && step == 4)
                raise(SIGUSR1); // before call 5; call 6 (step 5) agrees
            int r = ckpt_policy_due(ctx, step);
            EXPECT_GE(r, 0) << ckpt_last_error(ctx);
            if (r == 1)
                due[rank].push_back(step);
        }
        EXPECT_EQ(ckpt_close(ctx), 0);
    });
    for (int r = 0; r < N; r++)
        EXPECT_EQ(due[r], (std::vector<int64_t>{5})) << "rank " << r;
}

TEST(PolicyRanks, CadenceThatDiffersIsRefusedOnEveryRank)
{
    const int N = 3;
    for (int which = 0; which < 2; which++) {
        SCOPED_TRACE(which ? "policy_every_steps" : "policy_sync_steps");
        TempDir tmp;
        std::string dir = tmp.sub("ckpt");
        Hub hub(N);
        std::vector<int> rc(N, 99);
        std::vector<std::string> msg(N);
        on_ranks(N, [&](int rank) {
            ckpt_config cfg = config(dir);
            cfg.policy_every_s = 60;
            if (rank == 1 && which == 0)
                cfg.policy_sync_steps = 2;
            if (rank == 2 && which == 1)
                cfg.policy_every_steps = 10;
            ckpt_ctx *ctx = nullptr;
            rc[rank] = ckpt_open(&cfg, make_comm(&hub, rank), &ctx);
            msg[rank] = ckpt_last_error(nullptr);
            EXPECT_EQ(ctx, nullptr);
            ckpt_close(ctx);
        });
        for (int r = 0; r < N; r++) {
            EXPECT_EQ(rc[r], CKPT_EINVAL) << "rank " << r << ": " << msg[r];
            EXPECT_NE(msg[r].find(which ? "policy_every_steps (0..10)" : "policy_sync_steps (1..2)"),
                      std::string::npos)
                << msg[r];
        }
    }
}

TEST(PolicyRanks, NoRuleThatNeedsAgreementMeansNoCollective)
{
    const int N = 2;
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    Hub hub(N);
    std::vector<size_t> before(N), after(N);
    on_ranks(N, [&](int rank) {
        ckpt_config cfg = config(dir);
        cfg.policy_every_steps = 10;
        ckpt_ctx *ctx = nullptr;
        ASSERT_EQ(ckpt_open(&cfg, make_comm(&hub, rank), &ctx), 0) << ckpt_last_error(nullptr);
        {
            std::lock_guard<std::mutex> lk(hub.mu);
            before[rank] = hub.made[rank].size();
        }
        int n = 0;
        for (int64_t step = 0; step < 100; step++)
            n += ckpt_policy_due(ctx, step);
        EXPECT_EQ(n, 10);
        {
            std::lock_guard<std::mutex> lk(hub.mu);
            after[rank] = hub.made[rank].size();
        }
        EXPECT_EQ(ckpt_close(ctx), 0);
    });
    for (int r = 0; r < N; r++)
        EXPECT_EQ(after[r], before[r]) << "rank " << r << " communicated for the step rule";
}

TEST(PolicyRanks, FailedExchangeKeepsTheRequest)
{
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    Hub hub(1);
    ckpt_config cfg = config(dir);
    cfg.policy_signal = SIGUSR2;
    cfg.policy_request_file = "SAVE_NOW";
    ckpt_ctx *ctx = nullptr;
    ASSERT_EQ(ckpt_open(&cfg, make_comm(&hub, 0), &ctx), 0) << ckpt_last_error(nullptr);
    EXPECT_EQ(ckpt_policy_due(ctx, 1), 0);
    raise(SIGUSR2);
    hub.fail_next = 1;
    int rc = ckpt_policy_due(ctx, 2);
    EXPECT_EQ(rc, CKPT_ECOMM);
    std::string msg = ckpt_last_error(ctx);
    EXPECT_NE(msg.find("agreeing across ranks"), std::string::npos) << msg;
    EXPECT_NE(msg.find("injected"), std::string::npos) << msg;
    EXPECT_EQ(ckpt_policy_due(ctx, 3), 1) << "the signal must survive the failed exchange";
    EXPECT_EQ(ckpt_policy_due(ctx, 4), 0);
    // The same for the file, which rank 0 already removed when it took it.
    close(open((dir + "/SAVE_NOW").c_str(), O_CREAT | O_WRONLY, 0644));
    hub.fail_next = 1;
    EXPECT_EQ(ckpt_policy_due(ctx, 5), CKPT_ECOMM);
    EXPECT_FALSE(exists(dir + "/SAVE_NOW"));
    EXPECT_EQ(ckpt_policy_due(ctx, 6), 1);
    EXPECT_EQ(ckpt_policy_due(ctx, 7), 0);
    EXPECT_EQ(ckpt_close(ctx), 0);
}

} // namespace
