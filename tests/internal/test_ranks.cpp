// SPDX-License-Identifier: Apache-2.0
// Multi-rank saves and restores with ranks as threads of this process (the
// loopback comm), so the multi-rank commit and the agreed, resharding
// restore run under ThreadSanitizer and LeakSanitizer too.  The same
// behaviour with real MPI ranks is tested in tests/mpi.
#include <functional>
#include <thread>

#include "runtime/fault_hooks.h"
#include "shard_ranks.h"
#include "test_util.h"

using ckl::on_ranks;
using ckm::open_with_model;
using ckm::restore_on;
using ckm::save_on;

TEST(Ranks, ThreeRanksSaveAndRestoreOnOneTwoThreeAndFive)
{
    ckt::TempDir tmp;
    std::string dir = tmp.sub("ck");
    save_on(3, dir, {10, 20});
    for (int n : {3, 1, 2, 5})
        restore_on(n, dir, 20);
}

TEST(Ranks, OneRankSavesAndThreeRestore)
{
    ckt::TempDir tmp;
    std::string dir = tmp.sub("ck");
    save_on(1, dir, {4});
    restore_on(3, dir, 4);
}

// Rank 2's fsync fails: no rank commits, every rank's ticket has rank 2's
// code (it travels in the failure and abandoned marks: a full disk is
// CKPT_ENOSPC everywhere, not a generic CKPT_EIO), and the next save works.
TEST(Ranks, AFailingRankMeansNoCommitAndTheNextSaveWorks)
{
    const struct {
        int action, code;
    } cases[] = {{CKPT__FAIL_EIO, CKPT_EIO}, {CKPT__FAIL_ENOSPC, CKPT_ENOSPC}};
    for (const auto &c : cases) {
        ckt::TempDir tmp;
        std::string dir = tmp.sub("ck");
        on_ranks(3, [&](int r, ckpt_comm *comm) {
            std::vector<ckm::Part> m;
            ckpt_ctx *ck = open_with_model(dir, comm, 3, r, m);
            ASSERT_NE(ck, nullptr);
            if (r == 2) {
                ASSERT_EQ(ckpt__fault_arm(ck, CKPT__FAULT_SYNC, 0, c.action), 0);
            }
            ckpt_ticket t;
            ASSERT_EQ(ckpt_save(ck, 1, nullptr, &t), 0) << ckpt_last_error(ck);
            ASSERT_EQ(ckpt_fence(ck, nullptr), 0);
            int rc = ckpt_wait(ck, t, -1);
            std::string msg = ckpt_last_error(ck);
            // Rank 1 reads rank 0's abandoned mark, unless it looks only
            // after rank 0 removed the folder (which waits for rank 1's
            // done-record, not for its look): then it cannot know why.
            bool late = r == 1 && rc == CKPT_EIO && msg.find("did not commit") != std::string::npos;
            if (!late) {
                EXPECT_EQ(rc, c.code) << "rank " << r << ": " << msg;
                EXPECT_NE(msg.find(strerror(c.code == CKPT_ENOSPC ? ENOSPC : EIO)),
                          std::string::npos)
                    << msg;
            }
            if (r == 0) {
                EXPECT_NE(msg.find("rank 2 failed"), std::string::npos) << msg;
            }
            for (auto &p : m)
                p.fill(2);
            ASSERT_EQ(ckpt_save(ck, 2, nullptr, &t), 0) << ckpt_last_error(ck);
            ASSERT_EQ(ckpt_fence(ck, nullptr), 0);
            EXPECT_EQ(ckpt_wait(ck, t, -1), 0) << "rank " << r << ": " << ckpt_last_error(ck);
            EXPECT_EQ(ckpt_close(ck), 0);
        });
        restore_on(2, dir, 2);
    }
}

// Replicated tensors must be the same on every rank: each rank assigns
// them to writers from its own registry, so a rank's tensor could go to a
// rank that never registered it and be missing from the commit.  Rank 0
// refuses such a save (CKPT_EMISMATCH, naming the rank), nothing is
// committed, and the next save with matching registrations commits.
TEST(Ranks, DifferentReplicatedTensorsOnTheRanksCommitNothing)
{
    ckt::TempDir tmp;
    std::string dir = tmp.sub("ck");
    const int n = 3;
    on_ranks(n, [&](int r, ckpt_comm *comm) {
        ckpt_config cfg = ckm::config(dir);
        ckpt_ctx *ck = nullptr;
        ASSERT_EQ(ckpt_open(&cfg, comm, &ck), 0) << ckpt_last_error(nullptr);
        std::vector<float> a(64, 1.0f + (float)r), b(64, 2.0f), c(64, 3.0f);
        int64_t shape[1] = {64}, other[1] = {32};
        ASSERT_EQ(ckpt_register(ck, "a", a.data(), CKPT_F32, 1, shape), 0);
        // Rank 1 names another tensor, rank 2 the same name with another shape.
        const char *name = r == 1 ? "c" : "b";
        ASSERT_EQ(ckpt_register(ck, name, r == 1 ? c.data() : b.data(), CKPT_F32, 1,
                                r == 2 ? other : shape),
                  0);
        ckpt_ticket t;
        ASSERT_EQ(ckpt_save(ck, 1, nullptr, &t), 0) << ckpt_last_error(ck);
        ASSERT_EQ(ckpt_fence(ck, nullptr), 0);
        int rc = ckpt_wait(ck, t, -1);
        std::string msg = ckpt_last_error(ck);
        EXPECT_NE(rc, 0) << "rank " << r << " committed a save whose tensors differ";
        if (r == 0) {
            EXPECT_EQ(rc, CKPT_EMISMATCH) << msg;
            EXPECT_NE(msg.find("rank 1 registered other replicated tensors"), std::string::npos)
                << msg;
        }
        // The same registrations everywhere: the next save commits.
        ASSERT_EQ(ckpt_unregister(ck, name), 0);
        ASSERT_EQ(ckpt_register(ck, "b", b.data(), CKPT_F32, 1, shape), 0);
        ASSERT_EQ(ckpt_save(ck, 2, nullptr, &t), 0) << ckpt_last_error(ck);
        ASSERT_EQ(ckpt_fence(ck, nullptr), 0);
        EXPECT_EQ(ckpt_wait(ck, t, -1), 0) << "rank " << r << ": " << ckpt_last_error(ck);
        EXPECT_EQ(ckpt_close(ck), 0);
    });
    EXPECT_FALSE(ckt::exists(dir + "/step-000000000001"));
    EXPECT_TRUE(ckt::exists(dir + "/step-000000000002"));
}

// The verdict of a save reaches the other ranks in rank 0's note where the
// comm carries notes (one per rank and save), from the folder where it does
// not, and from the folder again when a note fails (CKPT__FAULT_NOTE):
// every rank's ticket says committed each time, and the steps restore.
TEST(Ranks, VerdictsComeByNoteOrFromTheFolder)
{
#if CKPT_LOOPBACK_NCCL
    const bool kNccl = true;
#else
    const bool kNccl = false;
#endif
    const int n = 4, saves = 3;
    for (int mode = 0; mode < 3; mode++) { // 0 notes, 1 no notes, 2 rank 2's note fails
        ckt::TempDir tmp;
        std::string dir = tmp.sub("ck");
        ckl::Shared sh(n);
        if (mode == 1)
            ckpt_loopback_set_notes(sh.lb, 0);
        on_ranks(sh, [&](int r, ckpt_comm *comm) {
            std::vector<ckm::Part> m;
            ckpt_ctx *ck = open_with_model(dir, comm, n, r, m);
            ASSERT_NE(ck, nullptr);
            if (mode == 2 && r == 2) {
                ASSERT_EQ(ckpt__fault_arm(ck, CKPT__FAULT_NOTE, 0, CKPT__FAIL_EIO), 0);
            }
            for (int64_t s = 1; s <= saves; s++) {
                for (auto &p : m)
                    p.fill(s);
                ckpt_ticket t;
                ASSERT_EQ(ckpt_save(ck, s, nullptr, &t), 0) << ckpt_last_error(ck);
                ASSERT_EQ(ckpt_fence(ck, nullptr), 0);
                EXPECT_EQ(ckpt_wait(ck, t, -1), 0)
                    << "mode " << mode << " rank " << r << ": " << ckpt_last_error(ck);
            }
            if (mode == 2 && r == 2 && !kNccl) {
                EXPECT_EQ(ckpt__fault_fired(ck, CKPT__FAULT_NOTE), 1);
            }
            EXPECT_EQ(ckpt_close(ck), 0);
        });
        unsigned long got = ckpt_loopback_notes_received(sh.lb);
        // Mode 2: rank 2 stopped taking them after the failed one.
        unsigned long want = kNccl      ? 0 // the NCCL comm has no notes
                             : mode == 0 ? (n - 1) * saves
                             : mode == 1 ? 0
                                         : (n - 2) * saves;
        EXPECT_EQ(got, want) << "mode " << mode;
        restore_on(3, dir, saves);
    }
}

TEST(Ranks, ADifferentGlobalShapeIsAMismatchOnEveryRank)
{
    ckt::TempDir tmp;
    std::string dir = tmp.sub("ck");
    save_on(2, dir, {3});
    on_ranks(2, [&](int r, ckpt_comm *comm) {
        ckpt_config cfg = ckm::config(dir);
        ckpt_ctx *ck = nullptr;
        ASSERT_EQ(ckpt_open(&cfg, comm, &ck), 0) << ckpt_last_error(nullptr);
        auto m = ckm::model(2, r);
        for (auto &p : m)
            if (p.name == "emb" && r == 1) // rank 1 thinks the vocabulary grew
                p.gshape[0] += 1;
        ckm::register_model(ck, m);
        int64_t step = -1;
        EXPECT_EQ(ckpt_restore(ck, CKPT_LATEST, nullptr, &step), CKPT_EMISMATCH);
        EXPECT_NE(std::string(ckpt_last_error(ck)).find("'emb'"), std::string::npos)
            << ckpt_last_error(ck);
        // Rank 0's checks passed, but it must not write before rank 1's did.
        for (const auto &p : m)
            EXPECT_TRUE(std::all_of(p.data.begin(), p.data.end(), [](uint32_t v) { return !v; }))
                << "rank " << r << ": " << p.name << " was written";
        EXPECT_EQ(ckpt_close(ck), 0);
    });
}

// Tensors registered after the restore (optimizer moments allocated on the
// first update) are restored by name on every rank and resharded: saved on
// 3 ranks, restored on 2.  The by-name restore is collective: a rank that
// names a tensor the checkpoint lacks fails it on every rank.
TEST(Ranks, TensorsRegisteredAfterTheRestoreAreRestoredByNameAndResharded)
{
    ckt::TempDir tmp;
    std::string dir = tmp.sub("ck");
    save_on(3, dir, {10, 20});
    on_ranks(2, [&](int r, ckpt_comm *comm) {
        ckt::Logs logs;
        ckpt_config cfg = ckm::config(dir);
        logs.attach(&cfg);
        ckpt_ctx *ck = nullptr;
        ASSERT_EQ(ckpt_open(&cfg, comm, &ck), 0) << ckpt_last_error(nullptr);
        auto m = ckm::model(2, r);
        auto lazy = [](const ckm::Part &p) { return p.name == "adam.m.emb" || p.name == "table"; };
        for (auto &p : m) {
            std::fill(p.data.begin(), p.data.end(), 0xDEADBEEFu);
            if (!lazy(p)) {
                ASSERT_EQ(ckm::register_part(ck, p), 0) << ckpt_last_error(ck);
            }
        }
        int64_t step = -1;
        ASSERT_EQ(ckpt_restore(ck, CKPT_LATEST, nullptr, &step), 0) << ckpt_last_error(ck);
        EXPECT_EQ(step, 20);
        EXPECT_TRUE(logs.has("2 tensor(s)", "'adam.m.emb'")) << "rank " << r;
        EXPECT_TRUE(logs.has("2 tensor(s)", "'table'")) << "rank " << r;
        for (auto &p : m)
            if (lazy(p)) {
                EXPECT_NE(p.first_bad(20), -1) << "restored before it was registered";
                ASSERT_EQ(ckm::register_part(ck, p), 0) << ckpt_last_error(ck);
            }
        const char *names[] = {"table", "adam.m.emb"};
        ASSERT_EQ(ckpt_restore_tensors(ck, names, 2, nullptr), 0)
            << "rank " << r << ": " << ckpt_last_error(ck);
        for (const auto &p : m)
            EXPECT_EQ(p.first_bad(20), -1) << "rank " << r << ": " << p.name;
        // Rank 1 names a tensor that step 20 does not hold: both fail.
        std::vector<uint32_t> extra(4, 7);
        int64_t four[1] = {4};
        ASSERT_EQ(ckpt_register(ck, "extra", extra.data(), CKPT_I32, 1, four), 0);
        const char *mine[] = {r == 1 ? "extra" : "emb"};
        EXPECT_EQ(ckpt_restore_tensors(ck, mine, 1, nullptr), CKPT_ENOTFOUND) << "rank " << r;
        std::string msg = ckpt_last_error(ck);
        EXPECT_NE(msg.find("'extra' is not in the checkpoint"), std::string::npos) << msg;
        if (r == 0) {
            EXPECT_NE(msg.find("rank 1"), std::string::npos) << msg;
        }
        EXPECT_EQ(ckpt_close(ck), 0);
    });
}

// With CKPT_RESTORE_FAIL, a tensor of the checkpoint that one rank did not
// register fails the restore on every rank, before anything is written.
TEST(Ranks, ATensorOneRankLeftUnregisteredFailsTheRestoreOnEveryRank)
{
    ckt::TempDir tmp;
    std::string dir = tmp.sub("ck");
    save_on(2, dir, {3});
    on_ranks(2, [&](int r, ckpt_comm *comm) {
        ckpt_config cfg = ckm::config(dir);
        cfg.restore_unregistered = CKPT_RESTORE_FAIL;
        ckpt_ctx *ck = nullptr;
        ASSERT_EQ(ckpt_open(&cfg, comm, &ck), 0) << ckpt_last_error(nullptr);
        auto m = ckm::model(2, r);
        for (auto &p : m) {
            std::fill(p.data.begin(), p.data.end(), 0xDEADBEEFu);
            if (r == 0 || p.name != "ln.weight") {
                ASSERT_EQ(ckm::register_part(ck, p), 0) << ckpt_last_error(ck);
            }
        }
        int64_t step = -1;
        EXPECT_EQ(ckpt_restore(ck, CKPT_LATEST, nullptr, &step), CKPT_EMISMATCH) << "rank " << r;
        EXPECT_EQ(step, -1);
        std::string msg = ckpt_last_error(ck);
        EXPECT_NE(msg.find("not registered on rank 1: 'ln.weight'"), std::string::npos) << msg;
        for (const auto &p : m)
            EXPECT_TRUE(std::all_of(p.data.begin(), p.data.end(),
                                    [](uint32_t v) { return v == 0xDEADBEEFu; }))
                << "rank " << r << ": " << p.name << " was written";
        EXPECT_EQ(ckpt_close(ck), 0);
    });
}
