// SPDX-License-Identifier: Apache-2.0
// Retention after a commit (issue 10, item 1): the runtime knows one
// checkpoint to be sound, the one it just committed (it hashed every byte
// it wrote), so it deletes only steps older than that one, by the rules,
// and never a newer step it has not verified.  Damage in the newest, the
// middle and the oldest checkpoint; and a save of an older step after an
// explicit restore, which used to cost the newer checkpoints.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using namespace ckt;

class Retention : public ::testing::Test {
  protected:
    TempDir tmp;
    std::string dir = tmp.sub("ck");
    std::vector<uint8_t> w = std::vector<uint8_t>(100000);

    ckpt_ctx *open(int keep_last)
    {
        ckpt_config c = config(dir);
        c.keep_last = keep_last;
        ckpt_ctx *ctx = open_ctx(c);
        if (!ctx)
            return nullptr;
        const int64_t shape[] = {(int64_t)w.size()};
        EXPECT_EQ(ckpt_register(ctx, "w", w.data(), CKPT_U8, 1, shape), 0);
        return ctx;
    }

    // Commits each step with its own bytes, keeping every checkpoint.
    void save_all(const std::vector<int64_t> &steps)
    {
        ckpt_ctx *ctx = open(0);
        ASSERT_NE(ctx, nullptr);
        for (int64_t s : steps) {
            fill(w.data(), w.size(), (uint64_t)s);
            ASSERT_EQ(save_wait(ctx, s), 0) << ckpt_last_error(ctx);
        }
        ASSERT_EQ(ckpt_close(ctx), 0);
    }

    // Committed steps on disk, newest first.
    std::vector<int64_t> on_disk() const
    {
        std::vector<int64_t> v;
        for (const std::string &n : list_dir(dir))
            if (n.size() == 17 && n.rfind("step-", 0) == 0)
                v.push_back(std::stoll(n.substr(5)));
        std::sort(v.rbegin(), v.rend());
        return v;
    }

    void damage(int64_t step)
    {
        ASSERT_EQ(truncate((step_dir(dir, step) + "/rank-00000.h5").c_str(), 4096), 0);
    }

    // Restores `step` (or the newest that verifies) and commits step+1 with
    // keep_last 1; returns the step restored.
    int64_t resume_and_save(int64_t step)
    {
        ckpt_ctx *ctx = open(1);
        if (!ctx)
            return -1;
        int64_t got = -1;
        EXPECT_EQ(ckpt_restore(ctx, step, nullptr, &got), 0) << ckpt_last_error(ctx);
        EXPECT_TRUE(matches(w.data(), w.size(), (uint64_t)got));
        fill(w.data(), w.size(), (uint64_t)got + 1);
        EXPECT_EQ(save_wait(ctx, got + 1), 0) << ckpt_last_error(ctx);
        EXPECT_EQ(ckpt_close(ctx), 0); // waits for the retention pass
        return got;
    }

    int64_t restore_latest()
    {
        ckpt_ctx *ctx = open(0);
        if (!ctx)
            return -1;
        int64_t got = -1;
        EXPECT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
        EXPECT_TRUE(matches(w.data(), w.size(), (uint64_t)got)) << "step " << got;
        EXPECT_EQ(ckpt_close(ctx), 0);
        return got;
    }
};

// keep_last 1 after resuming from step 10 used to delete 20 (and keep 30,
// the newest by name): the save of 11 proves nothing about 20 or 30.
TEST_F(Retention, ASaveOfAnOlderStepKeepsTheNewerOnes)
{
    save_all({10, 20, 30});
    EXPECT_EQ(resume_and_save(10), 10);
    EXPECT_EQ(on_disk(), (std::vector<int64_t>{30, 20, 11}));
    EXPECT_EQ(restore_latest(), 30);
}

TEST_F(Retention, DamageInTheNewestTheMiddleOrTheOldest)
{
    struct Case {
        std::vector<int64_t> damaged;
        int64_t resumes;            // the newest that verifies
        std::vector<int64_t> left;  // after the save of resumes + 1, keep_last 1
        int64_t then;               // what the next restore gives
    } cases[] = {
        {{30}, 20, {30, 21}, 21},
        {{20}, 30, {31}, 31},
        {{10}, 30, {31}, 31},
        {{30, 20}, 10, {30, 20, 11}, 11},
    };
    for (const Case &c : cases) {
        TempDir::remove_all(dir);
        save_all({10, 20, 30});
        for (int64_t s : c.damaged)
            damage(s);
        EXPECT_EQ(resume_and_save(CKPT_LATEST), c.resumes);
        EXPECT_EQ(on_disk(), c.left) << "damaged: " << c.damaged[0];
        EXPECT_EQ(restore_latest(), c.then);
    }
}

} // namespace
