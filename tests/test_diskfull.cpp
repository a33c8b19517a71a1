// SPDX-License-Identifier: Apache-2.0
// A full disk, for real: each test mounts a small tmpfs in its temporary
// folder, saves a checkpoint there, then fills the file system so that the
// next save runs out of space at one chosen write (the rank file's
// preallocation, its data writes, its HDF5 layout, the done-record, the
// manifest).  That save must fail with CKPT_ENOSPC and a one-line message
// that names the file and says "No space left on device"; the previous
// checkpoint must still restore bit for bit; once space is freed the next
// save must work; and the process must end cleanly (HDF5 1.10 crashes at
// exit when a close of one of its files failed).  Mounting needs root
// (CAP_SYS_ADMIN): elsewhere the tests skip and say so.
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>

#include "test_util.h"

using namespace ckt;

namespace {

constexpr long kTmpfsMagic = 0x01021994; // TMPFS_MAGIC, linux/magic.h
constexpr uint64_t kDiskBytes = 8u << 20;

// The tensors of every save: one big enough to be preallocated (1,600 KiB,
// the size of the report) and eight small ones that are written
// into holes of the file, where only the write itself can run out of space.
struct Model {
    std::vector<float> big = std::vector<float>(1600 * 256);
    std::vector<std::vector<float>> small{8, std::vector<float>(8192)};
    void fill_for(int64_t step)
    {
        fill(big.data(), big.size() * 4, (uint64_t)step);
        for (size_t i = 0; i < small.size(); i++)
            fill(small[i].data(), small[i].size() * 4, (uint64_t)step * 100 + i);
    }
    bool holds(int64_t step) const
    {
        uint64_t s = (uint64_t)step;
        bool ok = matches(big.data(), big.size() * 4, s);
        for (size_t i = 0; i < small.size(); i++)
            ok = ok && matches(small[i].data(), small[i].size() * 4, s * 100 + i);
        return ok;
    }
    void scramble()
    {
        std::fill(big.begin(), big.end(), -1.0f);
        for (auto &s : small)
            std::fill(s.begin(), s.end(), -1.0f);
    }
};

// Bytes of the disk that path takes.
uint64_t blocks_of(const std::string &path)
{
    struct stat st;
    return stat(path.c_str(), &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

class DiskFull : public WriterTest
{
  protected:
    TempDir tmp;
    std::string mnt, dir, filler;
    bool mounted = false;
    Model model;
    ckpt_ctx *ctx = nullptr;
    // What a saved step takes on the disk, file by file.
    uint64_t rank_bytes = 0, done_bytes = 0;

    void SetUp() override
    {
        WriterTest::SetUp();
        if (IsSkipped())
            return;
        mnt = tmp.sub("disk");
        ASSERT_EQ(mkdir(mnt.c_str(), 0700), 0) << strerror(errno);
        std::string opts = "size=" + std::to_string(kDiskBytes) + ",mode=0700";
        if (mount("tmpfs", mnt.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0) {
            int e = errno;
            GTEST_SKIP() << "cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): "
                         << strerror(e);
        }
        mounted = true;
        // Filling must never reach another file system.
        struct statfs sf;
        ASSERT_EQ(statfs(mnt.c_str(), &sf), 0) << strerror(errno);
        ASSERT_EQ((long)sf.f_type, kTmpfsMagic);
        ASSERT_LE((uint64_t)sf.f_blocks * (uint64_t)sf.f_bsize, kDiskBytes);
        dir = mnt + "/ckpt";
        filler = mnt + "/filler";
        ckpt_config cfg = config(dir, GetParam());
        cfg.chunk_bytes = 256u << 10;
        cfg.staging_bytes = 4u << 20;
        ctx = open_ctx(cfg);
        ASSERT_NE(ctx, nullptr);
        int64_t sb[1] = {(int64_t)model.big.size()}, ss[1] = {8192};
        ASSERT_EQ(ckpt_register(ctx, "big", model.big.data(), CKPT_F32, 1, sb), 0);
        for (size_t i = 0; i < model.small.size(); i++) {
            std::string n = "small" + std::to_string(i);
            ASSERT_EQ(ckpt_register(ctx, n.c_str(), model.small[i].data(), CKPT_F32, 1, ss),
                      0);
        }
        model.fill_for(1);
        ASSERT_EQ(save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
        std::string s1 = step_dir(dir, 1);
        rank_bytes = blocks_of(s1 + "/rank-00000.h5");
        done_bytes = blocks_of(s1 + "/done-00000.rec");

        ASSERT_GT(rank_bytes, model.big.size() * 4);
        ASSERT_GT(done_bytes, 0u);
        ASSERT_GT(blocks_of(s1 + "/manifest.h5"), 4096u) << "ManifestWrite needs two pages";
    }

    void TearDown() override
    {
        if (ctx) {
            EXPECT_EQ(ckpt_close(ctx), 0) << ckpt_last_error(ctx);
        }
        ctx = nullptr;
        if (mounted) {
            EXPECT_EQ(umount2(mnt.c_str(), MNT_DETACH), 0) << strerror(errno);
        }
        mounted = false;
    }

    uint64_t free_bytes() const
    {
        struct statvfs sv;
        EXPECT_EQ(statvfs(mnt.c_str(), &sv), 0);
        return (uint64_t)sv.f_bavail * sv.f_frsize;
    }

    // Fills the file system until exactly `left` bytes are free.
    void leave_free(uint64_t left)
    {
        uint64_t avail = free_bytes();
        ASSERT_GE(avail, left);
        int fd = open(filler.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ASSERT_GE(fd, 0) << strerror(errno);
        if (avail > left) {
            ASSERT_EQ(fallocate(fd, 0, 0, (off_t)(avail - left)), 0) << strerror(errno);
        }
        close(fd);
        ASSERT_EQ(free_bytes(), left);
    }

    // Step 2 runs out of space: CKPT_ENOSPC, one line naming `file`; step 1
    // still restores exactly; with space again, step 3 saves and restores.
    void expect_enospc(const std::string &file)
    {
        model.fill_for(2);
        ckpt_ticket t = 0;
        ASSERT_EQ(ckpt_save(ctx, 2, nullptr, &t), 0) << ckpt_last_error(ctx);
        int rc = ckpt_wait(ctx, t, -1);
        std::string msg = ckpt_last_error(ctx);
        EXPECT_EQ(rc, CKPT_ENOSPC) << ckpt_err_name(rc) << ": " << msg;
        EXPECT_NE(msg.find(file), std::string::npos) << msg;
        EXPECT_NE(msg.find("No space left on device"), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
        EXPECT_FALSE(exists(step_dir(dir, 2)));
        EXPECT_EQ(list_dir(dir).size(), 1u) << "the failed save left its folder behind";

        model.scramble();
        int64_t got = -1;
        ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
        EXPECT_EQ(got, 1);
        EXPECT_TRUE(model.holds(1));

        ASSERT_EQ(unlink(filler.c_str()), 0) << strerror(errno);
        model.fill_for(3);
        ASSERT_EQ(save_wait(ctx, 3), 0) << ckpt_last_error(ctx);
        model.scramble();
        ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
        EXPECT_EQ(got, 3);
        EXPECT_TRUE(model.holds(3));
    }
};

// No room for the big tensor: its preallocation (fallocate) refuses.
TEST_P(DiskFull, RankFilePreallocation)
{
    leave_free(rank_bytes - model.big.size() * 4);
    expect_enospc("rank-00000.h5");
}

// Room for the layout and the big tensor, not for all the small ones: a
// data write of the writer backend fails.
TEST_P(DiskFull, RankFileDataWrite)
{
    leave_free(rank_bytes - 128 * 1024);
    expect_enospc("rank-00000.h5");
}

// No room at all: HDF5 cannot even write the rank file's superblock.
TEST_P(DiskFull, RankFileCreate)
{
    leave_free(0);
    expect_enospc("rank-00000.h5");
}

// One page: HDF5 creates the rank file, then its layout does not fit.
TEST_P(DiskFull, RankFileLayout)
{
    leave_free(4096);
    expect_enospc("rank-00000.h5");
}

// The rank file fits, its done-record does not.
TEST_P(DiskFull, DoneRecord)
{
    leave_free(rank_bytes);
    expect_enospc("done-00000");
}

// The case: everything of the save fits but the manifest, whose
// very first write (HDF5's superblock) fails.
TEST_P(DiskFull, ManifestCreate)
{
    leave_free(rank_bytes + done_bytes);
    expect_enospc("manifest.h5");
}

// One page for the manifest: HDF5 creates it, then a later write fails.
TEST_P(DiskFull, ManifestWrite)
{
    leave_free(rank_bytes + done_bytes + 4096);
    expect_enospc("manifest.h5");
}

INSTANTIATE_TEST_SUITE_P(Writers, DiskFull, ::testing::ValuesIn(writers()),
                         [](const ::testing::TestParamInfo<ckpt_io> &i) {
                             return std::string(writer_name(i.param));
                         });

} // namespace
