// SPDX-License-Identifier: Apache-2.0
// HDF5 on damaged rank files: whatever a flipped byte does to a rank
// file's HDF5 metadata, the structure check (ckpt__rankfile_check, the part
// of `ckpt verify` that lets libhdf5 parse the file) leaves no HDF5 object
// open, prints nothing, and loses no memory.  HDF5 1.10 loses the object
// header it was decoding whenever that header fails its checksum (424
// bytes, and then "HDF5: infinite loop closing library" at exit), so the
// check must refuse such a header before HDF5 reads it (io/h5guard.h).
// The leak itself is caught by LeakSanitizer in the ASan build; the message
// at exit, in every build, by running the CLI on damaged copies.
#include <fcntl.h>

#include <string>
#include <vector>

#include <hdf5.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define CKPT_TEST_LSAN 1
#endif

#include "io/manifest.h"
#include "test_util.h"

extern "C" {
#include "io/h5util.h"
#include "io/rankfile.h"
}

using namespace ckt;

namespace {

constexpr uint64_t kHead = 4096; // the flipped bytes: the first 4 KiB

// Sends fd 2 to a file for the scope; what was written there is text().
class StderrCapture
{
  public:
    StderrCapture()
    {
        fflush(stderr);
        saved_ = dup(2);
        FILE *f = tmpfile();
        fd_ = f ? dup(fileno(f)) : -1;
        if (f)
            fclose(f);
        if (saved_ >= 0 && fd_ >= 0)
            dup2(fd_, 2);
    }
    ~StderrCapture()
    {
        restore();
    }
    void restore()
    {
        if (saved_ >= 0) {
            fflush(stderr);
            dup2(saved_, 2);
            close(saved_);
            saved_ = -1;
        }
    }
    bool ok() const
    {
        return fd_ >= 0;
    }
    off_t size() const
    {
        return fd_ >= 0 ? lseek(fd_, 0, SEEK_END) : 0;
    }
    std::string text() const
    {
        std::string s((size_t)size(), '\0');
        if (!s.empty() && pread(fd_, &s[0], s.size(), 0) != (ssize_t)s.size())
            s = "(unreadable)";
        return s;
    }

  private:
    int saved_ = -1, fd_ = -1;
};

class H5Damage : public ::testing::Test
{
  protected:
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    std::vector<float> w = std::vector<float>(40000); // > 64 KiB: aligned, preallocated
    std::vector<int32_t> small[10];                   // more than 8 links: dense groups
    ckpt__index idx;
    std::string rank;

    void SetUp() override
    {
        ckpt_config cfg = config(dir);
        cfg.chunk_bytes = 64u << 10; // several chunk hashes for w
        ckpt_ctx *ctx = open_ctx(cfg);
        ASSERT_NE(ctx, nullptr);
        fill(w.data(), w.size() * 4, 1);
        int64_t ws[1] = {(int64_t)w.size()}, ss[2] = {3, 5};
        ASSERT_EQ(ckpt_register(ctx, "w", w.data(), CKPT_F32, 1, ws), 0);
        for (int i = 0; i < 10; i++) {
            small[i].assign(15, i);
            std::string n = "layer" + std::to_string(i) + "/bias";
            ASSERT_EQ(ckpt_register(ctx, n.c_str(), small[i].data(), CKPT_I32, 2, ss), 0);
        }
        ASSERT_EQ(ckpt_set_meta(ctx, "loader", "epoch=1", 7), 0);
        ASSERT_EQ(save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
        ASSERT_EQ(ckpt_close(ctx), 0);
        ckpt__err err;
        std::string m = step_dir(dir, 1) + "/manifest.h5";
        ASSERT_EQ(ckpt__manifest_read(m.c_str(), &idx, &err), 0) << err.msg;
        rank = step_dir(dir, 1) + "/rank-00000.h5";
    }
    void TearDown() override
    {
        ckpt__index_free(&idx);
    }

    int check(std::string *msg, ssize_t *open_ids)
    {
        ckpt__err err;
        ckpt__err_clear(&err);
        ckpt__h5_enter();
        int rc = ckpt__rankfile_check(rank.c_str(), &idx, 0, &err);
        *open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
        ckpt__h5_leave();
        *msg = err.msg;
        return rc;
    }
};

// Every byte of the first 4 KiB (superblock, root group, group and dataset
// headers), flipped one at a time in place and put back.
TEST_F(H5Damage, EveryFlipInTheHeadLeavesNothingOpenPrintsNothingLosesNothing)
{
    std::string msg;
    ssize_t open_ids = -1;
    ASSERT_EQ(check(&msg, &open_ids), 0) << msg;
    ASSERT_EQ(open_ids, 0);
    int fd = open(rank.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    StderrCapture cap;
    ASSERT_TRUE(cap.ok());
    int detected = 0, passed = 0;
    std::vector<std::string> problems;
    for (uint64_t off = 0; off < kHead; off++) {
        uint8_t c, x;
        ASSERT_EQ(pread(fd, &c, 1, (off_t)off), 1);
        x = (uint8_t)(c ^ 0xff);
        ASSERT_EQ(pwrite(fd, &x, 1, (off_t)off), 1);
        off_t before = cap.size();
        int rc = check(&msg, &open_ids);
        ASSERT_EQ(pwrite(fd, &c, 1, (off_t)off), 1);
        if (rc == 0)
            passed++;
        else
            detected++;
        if (rc != 0 && rc != CKPT_ECORRUPT)
            problems.push_back("byte " + std::to_string(off) + ": " + ckpt_err_name(rc) +
                               " " + msg);
        if (open_ids != 0)
            problems.push_back("byte " + std::to_string(off) + ": " +
                               std::to_string(open_ids) + " HDF5 ids left open");
        if (cap.size() != before)
            problems.push_back("byte " + std::to_string(off) + ": something was printed");
        if (msg.find('\n') != std::string::npos)
            problems.push_back("byte " + std::to_string(off) +
                               ": a message of several lines");
    }
    close(fd);
    std::string printed = cap.text();
    cap.restore();
    EXPECT_TRUE(problems.empty())
        << problems.size() << " problems, the first: " << problems[0];
    EXPECT_EQ(printed.find("HDF5"), std::string::npos) << printed.substr(0, 2000);
    EXPECT_TRUE(printed.empty()) << printed.substr(0, 2000);
    // Most of the head is HDF5 metadata under a checksum: the sweep must
    // find damage (it does in about 19 of 20 bytes).
    EXPECT_GT(detected, (int)kHead / 2) << detected << " detected, " << passed << " passed";
    ASSERT_EQ(check(&msg, &open_ids), 0) << "the restored file: " << msg;
#if CKPT_TEST_LSAN
    EXPECT_EQ(__lsan_do_recoverable_leak_check(), 0) << "memory was lost (report above)";
#endif
}

// `ckpt verify` on damaged copies: exit 0 or 1 and only the runtime's
// words, none of HDF5's own ("HDF5-DIAG: Error detected ...", "HDF5:
// infinite loop closing library", which it printed at exit before).
TEST_F(H5Damage, VerifyOfADamagedRankFilePrintsNoHdf5Text)
{
    std::string copy = tmp.sub("copy");
    std::vector<std::string> problems;
    for (uint64_t off = 48; off < kHead; off += 256) {
        TempDir::remove_all(copy);
        ASSERT_EQ(run("cp -r " + quote(dir) + " " + quote(copy)), 0);
        std::string f = step_dir(copy, 1) + "/rank-00000.h5";
        int fd = open(f.c_str(), O_RDWR);
        ASSERT_GE(fd, 0);
        uint8_t c;
        ASSERT_EQ(pread(fd, &c, 1, (off_t)off), 1);
        c ^= 0xff;
        ASSERT_EQ(pwrite(fd, &c, 1, (off_t)off), 1);
        close(fd);
        std::string out;
        int rc = run(std::string(CKPT_BIN_DIR) + "/ckpt verify " + quote(copy), &out);
        if (out.find("HDF5-DIAG") != std::string::npos ||
            out.find("HDF5:") != std::string::npos || (rc != 0 && rc != 1))
            problems.push_back("byte " + std::to_string(off) + ": exit " +
                               std::to_string(rc) + ":\n" + out);
    }
    EXPECT_TRUE(problems.empty())
        << problems.size() << " problems, the first: " << problems[0];
}

} // namespace
