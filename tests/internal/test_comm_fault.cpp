// SPDX-License-Identifier: Apache-2.0
// The comm fault sites (runtime/backend.h): a failed barrier, allreduce,
// bcast or gather, with the single comm and with ranks as threads (the
// loopback comm).  The wrapper fails with CKPT_ECOMM and a message naming
// the backend and the collective, once, and the next collective works.
// Through the API: a failed allreduce at any point of a restore fails that
// restore on every rank with CKPT_ECOMM, leaves the committed checkpoint as
// it was, and the next restore gets it bit-exact; a failed policy agreement
// fails ckpt_policy_due, starts no save, and keeps the request for the next
// call.  A site is armed on every rank: a collective that fails on one rank
// only leaves the others waiting, as a broken communicator would.
#include <functional>

#include "loopback_comm.h"
#include "runtime/backend.h"
#include "runtime/fault_hooks.h"
#include "shard_model.h"
#include "test_util.h"

namespace {

// Runs body(rank, comm) on n threads; n = 1: the single comm.
void on_ranks(int n, const std::function<void(int, ckpt_comm *)> &body)
{
    if (n == 1)
        body(0, ckpt__comm_single());
    else
        ckl::on_ranks(n, body);
}

// Opens dir on rank r of n with cfg, registers the model into m and
// commits `step`; nullptr (with a test failure) when any of it fails.
ckpt_ctx *open_saved(const ckpt_config &cfg, ckpt_comm *comm, int n, int r, int64_t step,
                     std::vector<ckm::Part> &m)
{
    ckpt_ctx *ck = nullptr;
    EXPECT_EQ(ckpt_open(&cfg, comm, &ck), 0) << ckpt_last_error(nullptr);
    if (!ck)
        return nullptr;
    m = ckm::model(n, r);
    for (auto &p : m) {
        EXPECT_EQ(ckm::register_part(ck, p), 0) << ckpt_last_error(ck);
        p.fill(step);
    }
    int rc = ckt::save_wait(ck, step);
    EXPECT_EQ(rc, 0) << ckpt_last_error(ck);
    if (rc) {
        ckpt_close(ck);
        return nullptr;
    }
    return ck;
}

const char *backend(int n)
{
    return n == 1 ? "single" : "loopback";
}

// One collective through its wrapper; checks what it computed when it
// succeeds.  Returns its code.
int collective(int site, ckpt_comm *c, ckpt__fault *f, int r, int n, ckpt__err *err)
{
    switch (site) {
    case CKPT__FAULT_BARRIER:
        return ckpt__comm_barrier(c, f, err);
    case CKPT__FAULT_ALLREDUCE: {
        int64_t v[2] = {r, -r};
        int rc = ckpt__comm_allreduce(c, f, v, 2, CKPT__MAX, err);
        if (!rc) {
            EXPECT_EQ(v[0], n - 1);
            EXPECT_EQ(v[1], 0);
        }
        return rc;
    }
    case CKPT__FAULT_BCAST: {
        int64_t v = r == 0 ? 42 : -1;
        int rc = ckpt__comm_bcast(c, f, &v, sizeof v, 0, err);
        if (!rc) {
            EXPECT_EQ(v, 42);
        }
        return rc;
    }
    default: {
        int32_t mine = 100 + r;
        std::vector<int32_t> all((size_t)n, -1);
        int rc = ckpt__comm_gather(c, f, &mine, sizeof mine, all.data(), 0, err);
        for (int i = 0; !rc && r == 0 && i < n; i++) {
            EXPECT_EQ(all[(size_t)i], 100 + i);
        }
        return rc;
    }
    }
}

const struct {
    int site;
    const char *what;
} kSites[] = {{CKPT__FAULT_BARRIER, "barrier"},
              {CKPT__FAULT_ALLREDUCE, "allreduce"},
              {CKPT__FAULT_BCAST, "bcast"},
              {CKPT__FAULT_GATHER, "gather"}};

} // namespace

TEST(CommFault, EachCollectiveFailsOnceWithECOMMThenWorks)
{
    for (int n : {1, 3}) {
        on_ranks(n, [&](int r, ckpt_comm *c) {
            ckpt__fault *f = ckpt__fault_new();
            ASSERT_NE(f, nullptr);
            for (const auto &s : kSites) {
                // The second call of the site fails; the first and third work.
                ASSERT_EQ(ckpt__fault_arm_table(f, s.site, 1, CKPT__FAIL_EIO), 0);
                ckpt__err err;
                ckpt__err_clear(&err);
                EXPECT_EQ(collective(s.site, c, f, r, n, &err), 0) << err.msg;
                EXPECT_EQ(collective(s.site, c, f, r, n, &err), CKPT_ECOMM) << s.what;
                std::string want = std::string(backend(n)) + " " + s.what + ": injected fault";
                EXPECT_NE(std::string(err.msg).find(want), std::string::npos) << err.msg;
                EXPECT_EQ(ckpt__fault_fired_table(f, s.site), 1);
                ckpt__err_clear(&err);
                EXPECT_EQ(collective(s.site, c, f, r, n, &err), 0) << err.msg;
                EXPECT_EQ(ckpt__fault_fired_table(f, s.site), 1);
            }
            // Without a fault table the wrappers only pass the calls on.
            ckpt__err err;
            ckpt__err_clear(&err);
            EXPECT_EQ(ckpt__comm_barrier(c, nullptr, &err), 0) << err.msg;
            EXPECT_EQ(ckpt__fault_arm_table(f, CKPT__FAULT_NSITES, 0, CKPT__FAIL_EIO),
                      CKPT_EINVAL);
            ckpt__fault_free(f);
            ckpt__comm_destroy(c);
        });
    }
}

// The exchange (runtime/comm.h) over ranks as threads: a ring of messages
// posted at once arrives whole and in order; its fault site fails the
// exchange on that rank before anything is sent, so the peer that waits
// for its message times out; the single comm offers none.
TEST(CommFault, TheExchangeDeliversInOrderAndItsFaultLeavesThePeerTimingOut)
{
    ckl::on_ranks(3, [&](int r, ckpt_comm *c) {
        ckpt__fault *f = ckpt__fault_new();
        ASSERT_NE(f, nullptr);
        int next = (r + 1) % 3, prev = (r + 2) % 3;
        std::vector<int32_t> a(1000, 7 * r), b(3, -r), ga(a.size()), gb(b.size());
        ckpt__msg sends[2] = {{next, a.data(), a.size() * 4}, {next, b.data(), b.size() * 4}};
        ckpt__msg recvs[2] = {{prev, ga.data(), ga.size() * 4}, {prev, gb.data(), gb.size() * 4}};
        ckpt__err err;
        ckpt__err_clear(&err);
        ASSERT_TRUE(ckpt__comm_has_exchange(c));
        ASSERT_EQ(ckpt__comm_exchange(c, f, sends, 2, recvs, 2, 30, &err), 0) << err.msg;
        EXPECT_EQ(ga, std::vector<int32_t>(a.size(), 7 * prev));
        EXPECT_EQ(gb, std::vector<int32_t>(b.size(), -prev));
        ASSERT_EQ(ckpt__comm_barrier(c, nullptr, &err), 0);
        // Rank 1's exchange fails before it sends: rank 2 waits in vain.
        if (r == 1) {
            ASSERT_EQ(ckpt__fault_arm_table(f, CKPT__FAULT_EXCHANGE, 0, CKPT__FAIL_EIO), 0);
        }
        int rc = ckpt__comm_exchange(c, f, sends, 1, recvs, r == 2 ? 1 : 0, 0.2, &err);
        EXPECT_EQ(rc, r == 1 ? CKPT_ECOMM : r == 2 ? CKPT_ETIMEDOUT : 0) << err.msg;
        if (r == 1) {
            EXPECT_NE(std::string(err.msg).find("loopback exchange: injected fault"),
                      std::string::npos)
                << err.msg;
        }
        ASSERT_EQ(ckpt__comm_barrier(c, nullptr, &err), 0);
        // Rank 0's message to rank 1 of that round is still queued for it.
        if (r == 1) {
            ASSERT_EQ(ckpt__comm_exchange(c, nullptr, nullptr, 0, recvs, 1, 30, &err), 0)
                << err.msg;
            EXPECT_EQ(ga, std::vector<int32_t>(a.size(), 0));
        }
        ckpt__fault_free(f);
        ckpt__comm_destroy(c);
    });
    ckpt_comm *one = ckpt__comm_single();
    ckpt__err err;
    EXPECT_FALSE(ckpt__comm_has_exchange(one));
    EXPECT_EQ(ckpt__comm_exchange(one, nullptr, nullptr, 0, nullptr, 0, 1, &err),
              CKPT_EUNSUPPORTED);
    ckpt__comm_destroy(one);
}

// Every allreduce of a restore fails in turn (the first, before anything is
// read, and the later ones, after the checks or the reads): that restore
// fails on every rank with CKPT_ECOMM, the committed checkpoint stays as it
// was, and the next restore gets it bit-exact.
TEST(CommFault, AFailedAllreduceFailsTheRestoreAndTheCheckpointStays)
{
    for (int n : {1, 3}) {
        ckt::TempDir tmp;
        std::string dir = tmp.sub("ck");
        on_ranks(n, [&](int r, ckpt_comm *comm) {
            std::vector<ckm::Part> m;
            ckpt_ctx *ck = open_saved(ckm::config(dir), comm, n, r, 7, m);
            ASSERT_NE(ck, nullptr);
            int fired = 1;
            for (int64_t nth = 0; fired; nth++) {
                for (auto &p : m)
                    std::fill(p.data.begin(), p.data.end(), 0xDEADBEEFu);
                ASSERT_EQ(ckpt__fault_arm(ck, CKPT__FAULT_ALLREDUCE, nth, CKPT__FAIL_EIO), 0);
                int64_t got = -2;
                int rc = ckpt_restore(ck, CKPT_LATEST, nullptr, &got);
                fired = ckpt__fault_fired(ck, CKPT__FAULT_ALLREDUCE);
                ckpt__fault_arm(ck, CKPT__FAULT_ALLREDUCE, -1, CKPT__FAIL_NONE);
                if (!fired) {
                    EXPECT_EQ(rc, 0) << ckpt_last_error(ck);
                    EXPECT_GE(nth, 2) << "a restore agrees at least twice";
                    break;
                }
                std::string msg = ckpt_last_error(ck);
                EXPECT_EQ(rc, CKPT_ECOMM) << "allreduce " << nth << ": " << msg;
                EXPECT_NE(msg.find(std::string(backend(n)) + " allreduce: injected fault"),
                          std::string::npos)
                    << msg;
                EXPECT_EQ(got, -1);
                for (const auto &p : m) {
                    if (nth == 0) {
                        EXPECT_EQ(p.first_bad(7), 0) << "nothing is read before agreeing";
                    }
                }
                ASSERT_EQ(ckpt_restore(ck, CKPT_LATEST, nullptr, &got), 0)
                    << "after allreduce " << nth << ": " << ckpt_last_error(ck);
                EXPECT_EQ(got, 7);
                for (const auto &p : m)
                    EXPECT_EQ(p.first_bad(7), -1) << "rank " << r << ": " << p.name;
            }
            ckpt_info info[4];
            size_t count = 0;
            ASSERT_EQ(ckpt_list(ck, info, 4, &count), 0) << ckpt_last_error(ck);
            ASSERT_EQ(count, 1u);
            EXPECT_EQ(info[0].step, 7);
            EXPECT_EQ(ckpt_close(ck), 0);
        });
    }
}

// A failed policy agreement: ckpt_policy_due fails on every rank, nothing is
// saved, the request taken before the exchange is kept (policy.c, Inv. 3),
// so the next call is due; the previous checkpoint stays and the next save
// commits.
TEST(CommFault, AFailedPolicyAgreementKeepsTheRequestAndStartsNoSave)
{
    for (int n : {1, 3}) {
        ckt::TempDir tmp;
        std::string dir = tmp.sub("ck");
        on_ranks(n, [&](int r, ckpt_comm *comm) {
            ckpt_config cfg = ckm::config(dir);
            cfg.policy_request_file = "SAVE_NOW";
            std::vector<ckm::Part> m;
            ckpt_ctx *ck = open_saved(cfg, comm, n, r, 1, m);
            ASSERT_NE(ck, nullptr);
            if (r == 0)
                ckt::write_file(dir + "/SAVE_NOW", "");
            ASSERT_EQ(ckpt__fault_arm(ck, CKPT__FAULT_ALLREDUCE, 0, CKPT__FAIL_EIO), 0);
            EXPECT_EQ(ckpt_policy_due(ck, 2), CKPT_ECOMM);
            std::string msg = ckpt_last_error(ck);
            EXPECT_NE(msg.find("ckpt_policy_due: agreeing across ranks"), std::string::npos)
                << msg;
            EXPECT_NE(msg.find("allreduce: injected fault"), std::string::npos) << msg;
            EXPECT_EQ(ckpt__fault_fired(ck, CKPT__FAULT_ALLREDUCE), 1);
            ckpt_info info[4];
            size_t count = 0;
            ASSERT_EQ(ckpt_list(ck, info, 4, &count), 0) << ckpt_last_error(ck);
            ASSERT_EQ(count, 1u) << "a failed agreement starts no save";
            EXPECT_EQ(info[0].step, 1);
            EXPECT_EQ(ckpt_policy_due(ck, 3), 1) << "the request is kept: "
                                                 << ckpt_last_error(ck);
            for (auto &p : m)
                p.fill(3);
            ASSERT_EQ(ckt::save_wait(ck, 3), 0) << ckpt_last_error(ck);
            EXPECT_EQ(ckpt_policy_due(ck, 4), 0);
            for (auto &p : m)
                std::fill(p.data.begin(), p.data.end(), 0u);
            int64_t got = -2;
            ASSERT_EQ(ckpt_restore(ck, 1, nullptr, &got), 0) << ckpt_last_error(ck);
            EXPECT_EQ(got, 1);
            for (const auto &p : m)
                EXPECT_EQ(p.first_bad(1), -1) << "rank " << r << ": " << p.name;
            EXPECT_EQ(ckpt_close(ck), 0);
        });
    }
}
