// SPDX-License-Identifier: Apache-2.0
// HDF5 failures become one line (io/h5util.c, ckpt__h5_fail): the runtime's
// words, the failing HDF5 call, its innermost message without HDF5's
// detail list (which holds a ctime() with its newline), and the text of the
// errno HDF5 recorded, which also decides the code.  Checked on real HDF5
// error stacks and on stacks pushed with the exact wording of HDF5 1.10's
// file drivers.
#include <cerrno>
#include <cstring>
#include <string>

#include <hdf5.h>

#include "test_util.h"

extern "C" {
#include "io/h5util.h"
}

using namespace ckt;

namespace {

std::string format(const std::string &head, const char *call, const char *what, int errnum)
{
    char out[CKPT__ERR_MSG];
    ckpt__h5_format(out, sizeof out, head.c_str(), call, what, errnum);
    return out;
}

// Pushes the stack HDF5 1.10.8 leaves when its sec2 driver's write fails
// inside H5Fflush, innermost first (the order HDF5 pushes in).
void push_write_failure(int errnum)
{
    char desc[600];
    snprintf(desc, sizeof desc,
             "file write failed: time = Wed Dec  2 06:16:06 2026\n, filename = '/d/f.h5', "
             "file descriptor = 4, errno = %d, error message = '%s', buf = 0x5555, total "
             "write size = 800, bytes this sub-write = 800, bytes actually written = "
             "18446744073709551615, offset = 0",
             errnum, strerror(errnum));
    H5Epush2(H5E_DEFAULT, "H5FDsec2.c", "H5FD__sec2_write", 864, H5E_ERR_CLS, H5E_IO,
             H5E_WRITEERROR, "%s", desc);
    H5Epush2(H5E_DEFAULT, "H5FDint.c", "H5FD_write", 240, H5E_ERR_CLS, H5E_VFL,
             H5E_WRITEERROR, "driver write request failed");
    H5Epush2(H5E_DEFAULT, "H5F.c", "H5Fflush", 700, H5E_ERR_CLS, H5E_FILE, H5E_CANTFLUSH,
             "unable to flush file");
}

TEST(H5Err, FormatsOneLine)
{
    EXPECT_EQ(format("create /d/manifest.h5", "H5Fcreate", "file write failed", ENOSPC),
              "create /d/manifest.h5: H5Fcreate: file write failed: No space left on device");
    EXPECT_EQ(format("check /d/r.h5", "H5Dopen2", "incorrect metadata checksum", 0),
              "check /d/r.h5: H5Dopen2: incorrect metadata checksum");
    EXPECT_EQ(format("flush /d/r.h5", "", "", 0), "flush /d/r.h5 (HDF5 gave no reason)");
}

TEST(H5Err, LongLinesLoseTheDescriptionThenCutTheHeadAtAWord)
{
    std::string head = "write the HDF5 metadata of /";
    for (int i = 0; i < 60; i++)
        head += "abcdefghij/";
    head += "manifest.h5";
    std::string what(200, 'w');
    ASSERT_GT(head.size(), (size_t)CKPT__ERR_MSG);
    std::string m = format(head, "H5Fflush", what.c_str(), EDQUOT);
    EXPECT_LT(m.size(), (size_t)CKPT__ERR_MSG);
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    EXPECT_EQ(m.find(what), std::string::npos) << "the description should go first: " << m;
    const std::string tail = "...: H5Fflush: " + std::string(strerror(EDQUOT));
    ASSERT_GE(m.size(), tail.size());
    EXPECT_EQ(m.substr(m.size() - tail.size()), tail) << m;
    // What is left of the head is a prefix of it that ends at a '/' or blank.
    std::string kept = m.substr(0, m.size() - tail.size());
    EXPECT_EQ(head.compare(0, kept.size(), kept), 0) << m;
    EXPECT_TRUE(head[kept.size()] == '/' || head[kept.size()] == ' ') << m;
}

// Not HDF5's, but the same promise for every message: a long path loses
// a piece of its middle, never the errno text at the end, and no word is
// cut in two (base/error.c).
TEST(H5Err, TooLongAMessageLosesItsMiddleNotItsEnd)
{
    std::string path = "/data";
    for (int i = 0; i < 100; i++)
        path += "/run-" + std::to_string(i);
    path += "/manifest.h5";
    ckpt__err err;
    EXPECT_EQ(ckpt__err_errno(&err, ENOSPC, "write %s", path.c_str()), CKPT_ENOSPC);
    ckpt__err_prefix(&err, "save step %d", 12);
    std::string m = err.msg;
    EXPECT_LT(m.size(), (size_t)CKPT__ERR_MSG);
    EXPECT_EQ(m.rfind("save step 12: write /data/run-0/", 0), 0u) << m;
    const std::string end = "/manifest.h5: No space left on device";
    ASSERT_GT(m.size(), end.size());
    EXPECT_EQ(m.substr(m.size() - end.size()), end) << m;
    size_t dots = m.find("...");
    ASSERT_NE(dots, std::string::npos) << m;
    EXPECT_EQ(m[dots - 1], '/') << m; // cut after a whole component
    EXPECT_EQ(m[dots + 3], '/') << m; // and resumed at the next one
}

TEST(H5Err, ADriverErrnoDecidesTheCodeAndItsTextEndsTheLine)
{
    struct {
        int errnum, code;
    } cases[] = {
        {ENOSPC, CKPT_ENOSPC}, {EDQUOT, CKPT_ENOSPC}, {EIO, CKPT_EIO}, {EACCES, CKPT_EPERM}};
    for (const auto &c : cases) {
        ckpt__h5_enter();
        push_write_failure(c.errnum);
        ckpt__err err;
        ckpt__err_clear(&err);
        int rc = ckpt__h5_fail(&err, CKPT_EIO, "write the HDF5 metadata of %s", "/d/f.h5");
        ckpt__h5_leave();
        EXPECT_EQ(rc, c.code) << strerror(c.errnum);
        EXPECT_EQ(err.code, c.code);
        EXPECT_EQ(std::string(err.msg), "write the HDF5 metadata of /d/f.h5: H5Fflush: file "
                                        "write failed: " +
                                            std::string(strerror(c.errnum)));
    }
}

TEST(H5Err, WithoutAnErrnoTheCallersCodeStays)
{
    ckpt__h5_enter();
    H5Epush2(H5E_DEFAULT, "H5Cint.c", "H5C__load_entry", 1, H5E_ERR_CLS, H5E_CACHE,
             H5E_BADVALUE, "incorrect metadata checksum after all read attempts");
    H5Epush2(H5E_DEFAULT, "H5D.c", "H5Dopen2", 2, H5E_ERR_CLS, H5E_DATASET, H5E_CANTOPENOBJ,
             "unable to open dataset");
    ckpt__err err;
    int rc = ckpt__h5_fail(&err, CKPT_ECORRUPT, "dataset of '%s' is missing", "w");
    ckpt__h5_leave();
    EXPECT_EQ(rc, CKPT_ECORRUPT);
    EXPECT_STREQ(err.msg, "dataset of 'w' is missing: H5Dopen2: incorrect metadata checksum "
                          "after all read attempts");
}

TEST(H5Err, ARealFailureOfH5Fcreate)
{
    TempDir tmp;
    std::string path = tmp.sub("no-such-folder/rank-00000.h5");
    ckpt__h5_enter();
    hid_t f = H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
    ckpt__err err;
    int rc = f < 0 ? ckpt__h5_fail(&err, CKPT_EIO, "create %s", path.c_str()) : 0;
    if (f >= 0)
        H5Fclose(f);
    ckpt__h5_leave();
    ASSERT_LT(f, 0);
    EXPECT_EQ(rc, CKPT_ENOTFOUND);
    std::string m = err.msg;
    EXPECT_EQ(m, "create " + path + ": H5Fcreate: unable to open file: " + strerror(ENOENT));
    EXPECT_EQ(m.find('\n'), std::string::npos);
}

} // namespace
