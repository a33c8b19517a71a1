// SPDX-License-Identifier: Apache-2.0
// The commit's waits on their own (runtime/commit.c, invariants 10 and 11):
// rank 0 learns of done-records and failure marks from the folder's
// entries, by their exact names only; another rank learns its verdict from
// its record under the committed name, rank 0's abandoned mark, or the
// folder's removal, through the handle it opened at the start.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "io/paths.h"
#include "runtime/commit.h"
#include "test_util.h"

using namespace ckt;

namespace {

std::string done(uint32_t r)
{
    char n[CKPT__FNAME_MAX];
    ckpt__done_name(r, n);
    return n;
}

std::string failed(uint32_t r)
{
    char n[CKPT__FNAME_MAX];
    ckpt__failed_name(r, n);
    return n;
}

TEST(CommitNames, OnlyTheExactSpellingOfARecordCounts)
{
    uint32_t r = 99;
    EXPECT_EQ(ckpt__record_parse(done(0).c_str(), &r), CKPT__RECORD_DONE);
    EXPECT_EQ(r, 0u);
    EXPECT_EQ(ckpt__record_parse(done(4095).c_str(), &r), CKPT__RECORD_DONE);
    EXPECT_EQ(r, 4095u);
    EXPECT_EQ(ckpt__record_parse(done(123456).c_str(), &r), CKPT__RECORD_DONE);
    EXPECT_EQ(r, 123456u);
    EXPECT_EQ(ckpt__record_parse(failed(7).c_str(), &r), CKPT__RECORD_FAILED);
    EXPECT_EQ(r, 7u);
    r = 99;
    for (const char *other : {"done-7.rec", "done-000007.rec", "done-00007.tmp", "done-00007.rec.tmp",
                              "done-.rec", "done-0000a.rec", "failed-00007", "rank-00007.h5",
                              "done-99999999999.rec", "Done-00007.rec", "", "manifest.h5"}) {
        EXPECT_EQ(ckpt__record_parse(other, &r), CKPT__RECORD_OTHER) << other;
        EXPECT_EQ(r, 99u) << other;
    }
}

struct CommitWait : public ::testing::Test {
    TempDir tmp;
    std::string dir = tmp.sub("ck"), ppath;
    char partial[CKPT__FNAME_MAX] = "";
    int dfd = -1;
    ckpt__err err;
    uint8_t uuid[16] = {1, 2, 3};

    void SetUp() override
    {
        ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
        ASSERT_EQ(ckpt__commit_begin(dir.c_str(), 5, uuid, 1, partial, sizeof partial, &dfd,
                                     &err),
                  0)
            << err.msg;
        ASSERT_GE(dfd, 0);
        ppath = dir + "/" + partial;
    }
    void TearDown() override
    {
        if (dfd >= 0)
            close(dfd);
    }
    int wait_records(uint32_t world, double timeout_s)
    {
        ckpt__group g = {world, world, nullptr};
        return ckpt__commit_wait_records(dfd, ppath.c_str(), &g, timeout_s, &err);
    }
};

TEST_F(CommitWait, ASecondRankAcceptsTheFolderButNeverASymlink)
{
    char p2[CKPT__FNAME_MAX];
    int fd2 = -1;
    ASSERT_EQ(ckpt__commit_begin(dir.c_str(), 5, uuid, 1, p2, sizeof p2, &fd2, &err), 0);
    struct stat a, b;
    ASSERT_EQ(fstat(dfd, &a), 0);
    ASSERT_EQ(fstat(fd2, &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);
    close(fd2);
    // Alone (not shared), the name being taken is an error.
    EXPECT_NE(ckpt__commit_begin(dir.c_str(), 5, uuid, 0, p2, sizeof p2, &fd2, &err), 0);
    EXPECT_EQ(fd2, -1);
    EXPECT_STREQ(p2, "");
    // A symlink to a real folder under the partial name is refused.
    uint8_t other[16] = {9};
    char p3[CKPT__FNAME_MAX];
    ckpt__partial_name(6, other, p3);
    ASSERT_EQ(symlink(ppath.c_str(), (dir + "/" + p3).c_str()), 0);
    EXPECT_NE(ckpt__commit_begin(dir.c_str(), 6, other, 1, p2, sizeof p2, &fd2, &err), 0);
    EXPECT_EQ(fd2, -1);
    EXPECT_STREQ(p2, "") << "a folder this rank did not make must never be removed";
    // A plain file under the partial name: refused, and left alone.
    uint8_t third[16] = {7};
    char p4[CKPT__FNAME_MAX];
    ckpt__partial_name(7, third, p4);
    std::string planted = dir + "/" + p4;
    int pf = open(planted.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    ASSERT_GE(pf, 0);
    close(pf);
    EXPECT_NE(ckpt__commit_begin(dir.c_str(), 7, third, 1, p2, sizeof p2, &fd2, &err), 0);
    EXPECT_EQ(fd2, -1);
    EXPECT_STREQ(p2, "");
    struct stat ps;
    ASSERT_EQ(lstat(planted.c_str(), &ps), 0);
    EXPECT_TRUE(S_ISREG(ps.st_mode));
}

TEST_F(CommitWait, RankZeroSeesEveryRecordFromTheFolderEntries)
{
    for (uint32_t r = 0; r < 4; r++)
        write_file(ppath + "/" + done(r), "x");
    EXPECT_EQ(wait_records(4, 5), 0) << err.msg;
}

TEST_F(CommitWait, NamesThatOnlyLookLikeRecordsAreNotRecords)
{
    write_file(ppath + "/" + done(0), "x");
    write_file(ppath + "/done-1.rec", "x");
    write_file(ppath + "/" + done(1) + ".tmp", "x");
    write_file(ppath + "/" + done(7), "x"); // a rank beyond the world
    EXPECT_EQ(wait_records(2, 0.2), CKPT_ETIMEDOUT);
    EXPECT_NE(std::string(err.msg).find("rank 1's done-record"), std::string::npos) << err.msg;
}

TEST_F(CommitWait, AFailureMarkEndsTheWaitWithItsCode)
{
    write_file(ppath + "/" + done(0), "x");
    write_file(ppath + "/" + failed(2), "CKPT_ENOSPC: disk full on rank 2");
    EXPECT_EQ(wait_records(3, 30), CKPT_ENOSPC);
    EXPECT_NE(std::string(err.msg).find("rank 2 failed: disk full on rank 2"), std::string::npos)
        << err.msg;
}

TEST_F(CommitWait, ARecordArrivingLaterIsSeen)
{
    write_file(ppath + "/" + done(0), "x");
    std::thread late([&] {
        usleep(150000);
        write_file(ppath + "/" + done(1), "x");
    });
    EXPECT_EQ(wait_records(2, 30), 0) << err.msg;
    late.join();
}

TEST_F(CommitWait, TheFolderRemovedEndsEveryWait)
{
    ASSERT_EQ(rmdir(ppath.c_str()), 0);
    EXPECT_EQ(wait_records(2, 30), CKPT_EIO);
    EXPECT_NE(std::string(err.msg).find("went away"), std::string::npos) << err.msg;
    ckpt__fileid id{1, 1};
    EXPECT_EQ(ckpt__commit_wait_verdict(dfd, dir.c_str(), 5, 1, &id, 30, &err), CKPT_EIO);
    EXPECT_NE(std::string(err.msg).find("did not commit step 5"), std::string::npos) << err.msg;
}

TEST_F(CommitWait, TheVerdictIsTheRecordUnderTheCommittedName)
{
    write_file(ppath + "/" + done(1), "x");
    struct stat st;
    ASSERT_EQ(stat((ppath + "/" + done(1)).c_str(), &st), 0);
    ckpt__fileid id{(uint64_t)st.st_dev, (uint64_t)st.st_ino};
    // Not yet committed: a timeout, not a verdict.
    EXPECT_EQ(ckpt__commit_wait_verdict(dfd, dir.c_str(), 5, 1, &id, 0.05, &err),
              CKPT_ETIMEDOUT);
    char committed[CKPT__FNAME_MAX];
    ckpt__step_name(5, committed);
    std::thread commit([&] {
        usleep(100000);
        rename(ppath.c_str(), (dir + "/" + committed).c_str());
    });
    EXPECT_EQ(ckpt__commit_wait_verdict(dfd, dir.c_str(), 5, 1, &id, 30, &err), 0) << err.msg;
    commit.join();
    // Another file of that name (another save's record) is not this one's.
    ckpt__fileid other{id.dev, id.ino + 1};
    EXPECT_EQ(ckpt__commit_wait_verdict(dfd, dir.c_str(), 5, 1, &other, 0.05, &err),
              CKPT_ETIMEDOUT);
}

TEST_F(CommitWait, RankZerosAbandonedMarkCarriesItsCode)
{
    write_file(ppath + "/" + CKPT__ABANDONED_NAME, "CKPT_ENOSPC: rank 2 failed: disk full");
    ckpt__fileid id{1, 1};
    EXPECT_EQ(ckpt__commit_wait_verdict(dfd, dir.c_str(), 5, 1, &id, 30, &err), CKPT_ENOSPC);
    EXPECT_NE(std::string(err.msg).find("rank 0 abandoned step 5: rank 2 failed"),
              std::string::npos)
        << err.msg;
}

} // namespace
