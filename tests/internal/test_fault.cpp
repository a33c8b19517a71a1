// SPDX-License-Identifier: Apache-2.0
// Fault injection through the numbered fault sites (runtime/fault.h): ENOSPC,
// EIO and short writes at every write index of a save; failures at every
// other step of the save (layout, finishing the rank file, fsync, done-record,
// manifest, rename, folder fsync); a failed snapshot copy; a crash right
// before the commit rename; read errors during restore.  Each time: a clear
// error on the ticket, no commit, the previous checkpoint intact, and the
// next save succeeds.  A save without a ticket that fails is reported once,
// by the next ckpt_save or ckpt_fence (or ckpt_close when none came).  The
// cudasim build runs the same on the CUDA backend with the tensors in
// device memory (tensor_mem.h).
#include <signal.h>

#include "runtime/fault_hooks.h"
#include "tensor_mem.h"
#include "test_util.h"

using namespace ckt;

namespace {

struct Fault : public WriterTest {
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    ckpt_config cfg = config(dir, GetParam());
    // A state that needs several writes: two multi-chunk tensors, tails,
    // and small tensors packed together; 2 MiB of staging forces reuse.
    std::vector<TensorMem> bufs;
    std::vector<std::vector<int64_t>> shapes{{5 << 19}, {700, 301}, {77}, {4097}, {}};
    std::vector<ckpt_dtype> dtypes{CKPT_U8, CKPT_BF16, CKPT_F32, CKPT_U8, CKPT_F64};
    ckpt_ctx *ctx = nullptr;

    void SetUp() override
    {
        WriterTest::SetUp();
        if (IsSkipped())
            return;
        cfg.staging_bytes = 2u << 20;
        cfg.keep_last = 3; // keeps the final h5dump pass short
        for (size_t i = 0; i < shapes.size(); i++) {
            size_t n = ckpt_dtype_size(dtypes[i]);
            for (auto d : shapes[i])
                n *= (size_t)d;
            bufs.emplace_back(n);
        }
        reopen();
    }
    void TearDown() override { ckpt_close(ctx); }

    // (Re)opens ctx with cfg and registers the state.
    void reopen()
    {
        ckpt_close(ctx);
        ctx = open_ctx(cfg);
        ASSERT_NE(ctx, nullptr);
        for (size_t i = 0; i < bufs.size(); i++) {
            std::string name = "t" + std::to_string(i);
            ASSERT_EQ(ckpt_register(ctx, name.c_str(), bufs[i].data(), dtypes[i],
                                    (int)shapes[i].size(), shapes[i].data()),
                      0);
        }
    }

    // Commits step 1, then starts step 2 without a ticket, armed to fail
    // at `site`.
    void start_failing_save(int site, int action)
    {
        set(1);
        ASSERT_EQ(save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
        set(2);
        ASSERT_EQ(ckpt__fault_arm(ctx, site, 0, action), 0);
        ASSERT_EQ(ckpt_save(ctx, 2, nullptr, nullptr), 0) << ckpt_last_error(ctx);
    }
    void set(uint64_t v)
    {
        for (size_t i = 0; i < bufs.size(); i++)
            bufs[i].fill(v * 31 + i);
    }
    bool is(uint64_t v)
    {
        for (size_t i = 0; i < bufs.size(); i++)
            if (!bufs[i].matches(v * 31 + i))
                return false;
        return true;
    }
    // The newest checkpoint restores to content v at step.
    void expect_latest(int64_t step, uint64_t v)
    {
        set(999999);
        int64_t got = -1;
        ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
        EXPECT_EQ(got, step);
        EXPECT_TRUE(is(v)) << "restored content is not version " << v;
    }
    void expect_no_leftovers()
    {
        size_t count;
        ckpt_list(ctx, nullptr, 0, &count); // waits for retention still deleting
        for (const auto &n : list_dir(dir)) {
            EXPECT_EQ(n.find(".partial-"), std::string::npos) << n;
            EXPECT_EQ(n.find(".trash-"), std::string::npos) << n;
        }
    }
};

struct IoFault {
    int action;
    int code;
    const char *text;
};

TEST_P(Fault, EveryWriteIndexOfASave)
{
    set(1);
    ASSERT_EQ(save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
    int64_t committed_step = 1;
    uint64_t committed_v = 1;
    const IoFault faults[] = {{CKPT__FAIL_ENOSPC, CKPT_ENOSPC, "No space left"},
                              {CKPT__FAIL_EIO, CKPT_EIO, "Input/output error"},
                              {CKPT__FAIL_SHORT, CKPT_EIO, "short write"}};
    int64_t step = 100;
    for (const IoFault &f : faults) {
        int writes = 0;
        for (int n = 0;; n++, step++) {
            ASSERT_LT(n, 10000) << "the fault never stopped firing";
            uint64_t v = 1000 + (uint64_t)step;
            set(v);
            ASSERT_EQ(ckpt__fault_arm(ctx, CKPT__FAULT_WRITE, n, f.action), 0);
            int rc = save_wait(ctx, step);
            if (ckpt__fault_fired(ctx, CKPT__FAULT_WRITE) == 0) {
                // n is past the last write of a save: it succeeded.
                ASSERT_EQ(rc, 0) << ckpt_last_error(ctx);
                writes = n;
                ckpt__fault_arm(ctx, CKPT__FAULT_WRITE, -1, CKPT__FAIL_NONE);
                committed_step = step;
                committed_v = v;
                step++;
                break;
            }
            ASSERT_EQ(rc, f.code) << "write " << n << ": " << ckpt_last_error(ctx);
            std::string msg = ckpt_last_error(ctx);
            EXPECT_NE(msg.find("save step " + std::to_string(step)), std::string::npos) << msg;
            EXPECT_NE(msg.find("rank-00000.h5"), std::string::npos) << msg;
            EXPECT_NE(msg.find(f.text), std::string::npos) << msg;
            EXPECT_FALSE(exists(step_dir(dir, step))) << "failed save committed";
            expect_no_leftovers();
            expect_latest(committed_step, committed_v);
            // The next save (no fault armed any more: it fired once) works.
            set(v + 500000);
            ASSERT_EQ(save_wait(ctx, step), 0) << ckpt_last_error(ctx);
            committed_step = step;
            committed_v = v + 500000;
            expect_latest(committed_step, committed_v);
        }
        EXPECT_GE(writes, 4) << "a save of this state should take several writes";
        printf("fault %d: failed each of %d write indices in turn\n", f.action, writes);
    }
    ckpt_close(ctx); // waits for retention, which may still be deleting
    ctx = nullptr;
    expect_h5dump_all(dir);
}

TEST_P(Fault, EveryOtherStepOfTheSaveAndCommit)
{
    set(1);
    ASSERT_EQ(save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
    const struct {
        int site;
        const char *text;
    } sites[] = {{CKPT__FAULT_LAYOUT, "rank file layout"},
                 {CKPT__FAULT_FINISH, "finish rank file"},
                 {CKPT__FAULT_SYNC, "fsync rank file"},
                 {CKPT__FAULT_DONE, "done-record"},
                 {CKPT__FAULT_MANIFEST, "manifest"},
                 {CKPT__FAULT_RENAME, "rename"}};
    int64_t step = 2;
    for (const auto &s : sites) {
        for (int action : {CKPT__FAIL_EIO, CKPT__FAIL_ENOSPC}) {
            set((uint64_t)step);
            ASSERT_EQ(ckpt__fault_arm(ctx, s.site, 0, action), 0);
            int rc = save_wait(ctx, step);
            EXPECT_EQ(ckpt__fault_fired(ctx, s.site), 1) << s.text;
            EXPECT_EQ(rc, action == CKPT__FAIL_EIO ? CKPT_EIO : CKPT_ENOSPC) << s.text;
            std::string msg = ckpt_last_error(ctx);
            EXPECT_NE(msg.find(s.text), std::string::npos) << msg;
            EXPECT_FALSE(exists(step_dir(dir, step))) << s.text << " committed anyway";
            expect_no_leftovers();
            expect_latest(step - 1, (uint64_t)(step - 1));
            set((uint64_t)step);
            ASSERT_EQ(save_wait(ctx, step), 0) << ckpt_last_error(ctx);
            expect_latest(step, (uint64_t)step);
            step++;
        }
    }
    // The folder fsync after the rename: the error is reported; the data that
    // was renamed into place is complete, so either version may be restored.
    set((uint64_t)step);
    ASSERT_EQ(ckpt__fault_arm(ctx, CKPT__FAULT_DIRSYNC, 0, CKPT__FAIL_EIO), 0);
    EXPECT_EQ(save_wait(ctx, step), CKPT_EIO);
    EXPECT_NE(std::string(ckpt_last_error(ctx)).find("fsync"), std::string::npos);
    set(0);
    int64_t got = -1;
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
    EXPECT_TRUE(got == step ? is((uint64_t)step) : is((uint64_t)step - 1));
    set((uint64_t)step + 1);
    ASSERT_EQ(save_wait(ctx, step + 1), 0) << ckpt_last_error(ctx);
    expect_latest(step + 1, (uint64_t)step + 1);
}

TEST_P(Fault, AFailedSaveEndsWithAFailedEvent)
{
    Events events;
    events.attach(&cfg);
    reopen();
    set(1);
    ASSERT_EQ(ckpt__fault_arm(ctx, CKPT__FAULT_MANIFEST, 0, CKPT__FAIL_ENOSPC), 0);
    EXPECT_EQ(save_wait(ctx, 9), CKPT_ENOSPC);
    using K = std::vector<ckpt_event_kind>;
    EXPECT_EQ(events.kinds(9), (K{CKPT_EVENT_STARTED, CKPT_EVENT_SNAPSHOT, CKPT_EVENT_DURABLE,
                                  CKPT_EVENT_FAILED}));
    ASSERT_FALSE(events.ev.empty());
    EXPECT_EQ(events.ev.back().error, CKPT_ENOSPC);
    EXPECT_NE(events.msg.back().find("manifest"), std::string::npos) << events.msg.back();
}

// A snapshot copy that fails on the device: the backend hands its message
// (which call failed, with the device's error text) to the core with the
// code, and the ticket keeps it, so ckpt_wait's error says more than that
// "a copy failed".  Each copy request of a save fails in turn; no commit,
// the previous checkpoint intact, and the next save works.
TEST_P(Fault, AFailedDeviceCopyKeepsTheDeviceMessage)
{
    set(1);
    ASSERT_EQ(save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
    const std::string device_msg = std::string(ckpt_device_name(ctx)) + " copy_out";
    int copies = 0;
    for (int n = 0;; n++) {
        ASSERT_LT(n, 1000) << "the fault never stopped firing";
        int64_t step = 2 + n;
        set((uint64_t)step);
        ASSERT_EQ(ckpt__fault_arm(ctx, CKPT__FAULT_COPY, n, CKPT__FAIL_EIO), 0);
        int rc = save_wait(ctx, step);
        if (ckpt__fault_fired(ctx, CKPT__FAULT_COPY) == 0) {
            // n is past the last copy request of a save: it succeeded.
            ASSERT_EQ(rc, 0) << ckpt_last_error(ctx);
            ckpt__fault_arm(ctx, CKPT__FAULT_COPY, -1, CKPT__FAIL_NONE);
            expect_latest(step, (uint64_t)step);
            copies = n;
            break;
        }
        ASSERT_EQ(rc, CKPT_EDEVICE) << "copy " << n << ": " << ckpt_last_error(ctx);
        std::string msg = ckpt_last_error(ctx);
        EXPECT_NE(msg.find("save step " + std::to_string(step)), std::string::npos) << msg;
        EXPECT_NE(msg.find("snapshot copy of batch " + std::to_string(n) + " failed: " +
                           device_msg),
                  std::string::npos)
            << msg;
        EXPECT_NE(msg.find("injected fault"), std::string::npos) << msg;
        EXPECT_FALSE(exists(step_dir(dir, step))) << "failed save committed";
        expect_no_leftovers();
        expect_latest(1, 1);
    }
    EXPECT_GE(copies, 2) << "a save of this state should take several copy requests";
}

TEST_P(Fault, CrashRightBeforeTheRename)
{
    if (kDeviceTensors)
        GTEST_SKIP() << "CUDA does not survive fork: a child of a process that used it gets "
                        "cudaErrorInitializationError (the crash suite's cudasim build kills "
                        "children of a parent that never touches CUDA)";
    set(1);
    ASSERT_EQ(save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
    ckpt_close(ctx);
    ctx = nullptr;
    fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        ckpt_ctx *c = nullptr;
        if (ckpt_open(&cfg, nullptr, &c) != 0)
            _exit(10);
        set(2);
        for (size_t i = 0; i < bufs.size(); i++) {
            std::string name = "t" + std::to_string(i);
            ckpt_register(c, name.c_str(), bufs[i].data(), dtypes[i], (int)shapes[i].size(),
                          shapes[i].data());
        }
        ckpt__fault_arm(c, CKPT__FAULT_RENAME, 0, CKPT__FAIL_CRASH);
        save_wait(c, 2);
        _exit(0); // not reached: the fault site raises SIGKILL
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "child was not killed";
    // The sealed partial folder is on disk, the committed name is not.
    bool partial = false;
    for (const auto &n : list_dir(dir))
        partial |= n.find("step-000000000002.partial-") == 0;
    EXPECT_TRUE(partial);
    EXPECT_FALSE(exists(step_dir(dir, 2)));
    // Reopen: the leftover goes, step 1 restores, and the next save works.
    ctx = open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    for (size_t i = 0; i < bufs.size(); i++) {
        std::string name = "t" + std::to_string(i);
        ckpt_register(ctx, name.c_str(), bufs[i].data(), dtypes[i], (int)shapes[i].size(),
                      shapes[i].data());
    }
    expect_no_leftovers();
    expect_latest(1, 1);
    set(3);
    ASSERT_EQ(save_wait(ctx, 2), 0) << ckpt_last_error(ctx);
    expect_latest(2, 3);
}

TEST_P(Fault, ReadErrorsFallBackToTheOlderCheckpoint)
{
    set(1);
    ASSERT_EQ(save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
    set(2);
    ASSERT_EQ(save_wait(ctx, 2), 0) << ckpt_last_error(ctx);
    for (int action : {CKPT__FAIL_EIO, CKPT__FAIL_SHORT}) {
        ASSERT_EQ(ckpt__fault_arm(ctx, CKPT__FAULT_READ, 1, action), 0);
        expect_latest(1, 1); // step 2 failed to read
        EXPECT_EQ(ckpt__fault_fired(ctx, CKPT__FAULT_READ), 1);
        // An explicit step does not fall back: the error is returned.
        ASSERT_EQ(ckpt__fault_arm(ctx, CKPT__FAULT_READ, 0, action), 0);
        int rc = ckpt_restore(ctx, 2, nullptr, nullptr);
        EXPECT_EQ(rc, action == CKPT__FAIL_EIO ? CKPT_EIO : CKPT_ECORRUPT);
        EXPECT_NE(std::string(ckpt_last_error(ctx)).find("rank-00000.h5"), std::string::npos);
        ckpt__fault_arm(ctx, CKPT__FAULT_READ, -1, CKPT__FAIL_NONE);
        expect_latest(2, 2);
    }
}

// The message of a report of an earlier save without a ticket names the
// step, the save's own code and what failed.
void expect_report(const std::string &msg, int64_t step, const char *code, const char *what)
{
    EXPECT_NE(msg.find("without a ticket"), std::string::npos) << msg;
    EXPECT_NE(msg.find("save step " + std::to_string(step) + ":"), std::string::npos) << msg;
    EXPECT_NE(msg.find(code), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
}

// Disk full while the manifest is written, after the fence: the next
// ckpt_fence or ckpt_save reports it (which one depends on how fast the
// save fails), exactly once, and nothing after that reports it again.
TEST_P(Fault, ATicketlessFailureIsReportedOnceByTheNextCall)
{
    Events events;
    events.attach(&cfg);
    reopen();
    start_failing_save(CKPT__FAULT_MANIFEST, CKPT__FAIL_ENOSPC);
    int fence_rc = ckpt_fence(ctx, nullptr);
    std::string fence_msg = ckpt_last_error(ctx);
    set(3);
    ckpt_ticket t = 0;
    // One save in flight at most: this waits for step 2 to end.
    int save_rc = ckpt_save(ctx, 3, nullptr, &t);
    std::string save_msg = ckpt_last_error(ctx);
    ASSERT_NE(t, 0u) << "the save was started: its ticket must be set";
    EXPECT_EQ(ckpt__fault_fired(ctx, CKPT__FAULT_MANIFEST), 1);
    EXPECT_EQ((fence_rc == CKPT_ESAVEFAILED) + (save_rc == CKPT_ESAVEFAILED), 1)
        << "reported " << ckpt_err_name(fence_rc) << " by the fence, "
        << ckpt_err_name(save_rc) << " by the save; it must be reported exactly once";
    EXPECT_TRUE(fence_rc == 0 || fence_rc == CKPT_ESAVEFAILED) << ckpt_err_name(fence_rc);
    EXPECT_TRUE(save_rc == 0 || save_rc == CKPT_ESAVEFAILED) << ckpt_err_name(save_rc);
    expect_report(fence_rc == CKPT_ESAVEFAILED ? fence_msg : save_msg, 2, "CKPT_ENOSPC",
                  "manifest");
    // The calls after the report are clean; the new save committed.
    EXPECT_EQ(ckpt_fence(ctx, nullptr), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(ckpt_wait(ctx, t, -1), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(save_wait(ctx, 4), 0) << ckpt_last_error(ctx);
    EXPECT_FALSE(exists(step_dir(dir, 2)));
    EXPECT_EQ(ckpt_close(ctx), 0) << "reported once already: " << ckpt_last_error(nullptr);
    ctx = nullptr;
    // And the event callback heard of it too.
    using K = std::vector<ckpt_event_kind>;
    EXPECT_EQ(events.kinds(2), (K{CKPT_EVENT_STARTED, CKPT_EVENT_SNAPSHOT, CKPT_EVENT_DURABLE,
                                  CKPT_EVENT_FAILED}));
}

// A snapshot copy that fails: the fence returns once the save has failed,
// and reports it; a call with an error of its own (a bad step) leaves the
// report for the next call.
TEST_P(Fault, ATicketlessFailureIsReportedByTheFenceAfterItsOwnErrors)
{
    EventGate gate;
    gate.attach(&cfg);
    reopen();
    start_failing_save(CKPT__FAULT_COPY, CKPT__FAIL_EIO);
    gate.wait_failed(2); // the report is pending once the event is out
    ckpt_ticket t = 7;
    EXPECT_EQ(ckpt_save(ctx, -1, nullptr, &t), CKPT_EINVAL) << "its own error comes first";
    EXPECT_EQ(t, 0u);
    EXPECT_EQ(ckpt_fence(ctx, nullptr), CKPT_ESAVEFAILED) << ckpt_last_error(ctx);
    expect_report(ckpt_last_error(ctx), 2, "CKPT_EDEVICE", "injected fault");
    EXPECT_EQ(ckpt_fence(ctx, nullptr), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(save_wait(ctx, 3), 0) << ckpt_last_error(ctx);
    expect_latest(3, 2);
    EXPECT_EQ(ckpt_close(ctx), 0) << ckpt_last_error(nullptr);
    ctx = nullptr;
}

// With a ticket the error stays on the ticket: no call reports it, ckpt_wait
// returns it, and close is clean.
TEST_P(Fault, AFailureWithATicketIsOnlyOnTheTicket)
{
    EventGate gate;
    gate.attach(&cfg);
    reopen();
    set(1);
    ASSERT_EQ(ckpt__fault_arm(ctx, CKPT__FAULT_COPY, 0, CKPT__FAIL_EIO), 0);
    ckpt_ticket t = 0;
    ASSERT_EQ(ckpt_save(ctx, 1, nullptr, &t), 0) << ckpt_last_error(ctx);
    gate.wait_failed(1);
    EXPECT_EQ(ckpt_fence(ctx, nullptr), 0) << ckpt_last_error(ctx);
    set(2);
    EXPECT_EQ(save_wait(ctx, 2), 0) << ckpt_last_error(ctx); // after step 1 ended
    EXPECT_EQ(ckpt_poll(ctx, t), CKPT_EDEVICE);
    EXPECT_EQ(ckpt_wait(ctx, t, -1), CKPT_EDEVICE);
    EXPECT_NE(std::string(ckpt_last_error(ctx)).find("save step 1:"), std::string::npos);
    EXPECT_EQ(ckpt_close(ctx), 0) << ckpt_last_error(nullptr);
    ctx = nullptr;
}

// Two saves without a ticket fail with no call in between that could report
// them: ckpt_close returns the first one's code and counts both.
TEST_P(Fault, CloseReportsWhatNoCallReported)
{
    EventGate gate;
    gate.hold_step = 2; // step 2 fails only after step 3 was accepted
    gate.attach(&cfg);
    cfg.max_inflight = 2;
    reopen();
    set(1);
    ASSERT_EQ(ckpt__fault_arm(ctx, CKPT__FAULT_COPY, 0, CKPT__FAIL_EIO), 0);
    ASSERT_EQ(ckpt__fault_arm(ctx, CKPT__FAULT_MANIFEST, 0, CKPT__FAIL_ENOSPC), 0);
    ASSERT_EQ(ckpt_save(ctx, 2, nullptr, nullptr), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_save(ctx, 3, nullptr, nullptr), 0) << ckpt_last_error(ctx);
    gate.release();
    gate.wait_failed(3);
    EXPECT_EQ(ckpt_close(ctx), CKPT_EDEVICE) << ckpt_last_error(nullptr);
    ctx = nullptr;
    std::string msg = ckpt_last_error(nullptr);
    EXPECT_NE(msg.find("2 saves without a ticket failed"), std::string::npos) << msg;
    EXPECT_NE(msg.find("save step 2:"), std::string::npos) << msg;
    EXPECT_FALSE(exists(step_dir(dir, 2)));
    EXPECT_FALSE(exists(step_dir(dir, 3)));
}

INSTANTIATE_TEST_SUITE_P(Writers, Fault, ::testing::ValuesIn(writers()),
                         [](const ::testing::TestParamInfo<ckpt_io> &i) {
                             return std::string(writer_name(i.param));
                         });

} // namespace
