// SPDX-License-Identifier: Apache-2.0
// The comm interface's sticky errors and version (runtime/comm.h): a
// failed comm is refused by ckpt_open with its own code and message and
// destroyed; the static out-of-memory comm survives any number of refusals;
// a comm of another interface version is refused and left alone.
#include <string>
#include <sys/stat.h>

#include "runtime/comm.h"
#include "test_util.h"

namespace {

using namespace ckt;

class CommFailed : public ::testing::Test {
  protected:
    TempDir tmp;
    std::string dir = tmp.sub("ck");
    ckpt_config cfg = config(dir);

    bool dir_exists() const
    {
        struct stat st;
        return stat(dir.c_str(), &st) == 0;
    }
};

TEST_F(CommFailed, OpenRefusesItWithItsCodeAndMessage)
{
    ckpt__err e;
    ckpt__err_set(&e, CKPT_ECOMM, "ncclCommSplit: unhandled system error: peer gone");
    ckpt_comm *c = ckpt__comm_failed(&e);
    ASSERT_NE(c, nullptr);
    EXPECT_NE(c, ckpt__comm_oom());
    ckpt_ctx *ctx = nullptr;
    EXPECT_EQ(ckpt_open(&cfg, c, &ctx), CKPT_ECOMM); // and frees c (LeakSanitizer checks)
    EXPECT_EQ(ctx, nullptr);
    std::string msg = ckpt_last_error(nullptr);
    EXPECT_NE(msg.find("ncclCommSplit: unhandled system error: peer gone"), std::string::npos)
        << msg;
    EXPECT_FALSE(dir_exists());
}

TEST_F(CommFailed, ItsCollectivesFailWithoutCommunicating)
{
    ckpt__err e;
    ckpt__err_set(&e, CKPT_ESTATE, "ckpt_comm_mpi: MPI is finalized");
    ckpt_comm *c = ckpt__comm_failed(&e);
    ckpt__err got;
    ckpt__err_clear(&got);
    int64_t v = 7;
    EXPECT_EQ(c->m->allreduce_i64(c, &v, 1, CKPT__MAX, &got), CKPT_ESTATE);
    EXPECT_STREQ(got.msg, "ckpt_comm_mpi: MPI is finalized");
    EXPECT_EQ(v, 7);
    EXPECT_EQ(c->m->barrier(c, &got), CKPT_ESTATE);
    c->m->destroy(c);
}

TEST_F(CommFailed, OutOfMemoryCommIsImmortal)
{
    for (int i = 0; i < 2; i++) { // the same static comm, refused twice
        ckpt_ctx *ctx = nullptr;
        EXPECT_EQ(ckpt_open(&cfg, ckpt__comm_oom(), &ctx), CKPT_ENOMEM);
        EXPECT_EQ(ctx, nullptr);
        std::string msg = ckpt_last_error(nullptr);
        EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
    }
    EXPECT_EQ(ckpt__comm_oom()->err.code, CKPT_ENOMEM);
    EXPECT_FALSE(dir_exists());
}

int destroyed = 0;
void count_destroy(ckpt_comm *) { destroyed++; }

TEST_F(CommFailed, OtherInterfaceVersionIsRefusedAndLeftAlone)
{
    ckpt__comm_methods m = {};
    m.version = CKPT__COMM_VERSION;
    m.destroy = count_destroy;
    ckpt_comm c;
    ckpt__comm_init(&c, &m, nullptr);
    c.version = CKPT__COMM_VERSION + 1;
    destroyed = 0;
    ckpt_ctx *ctx = nullptr;
    EXPECT_EQ(ckpt_open(&cfg, &c, &ctx), CKPT_EINVAL);
    std::string msg = ckpt_last_error(nullptr);
    EXPECT_NE(msg.find("comm interface version " + std::to_string(CKPT__COMM_VERSION + 1)),
              std::string::npos)
        << msg;
    EXPECT_EQ(destroyed, 0);
    // The same for a methods table of another version: refused, not called.
    c.version = CKPT__COMM_VERSION;
    m.version = CKPT__COMM_VERSION - 1;
    EXPECT_EQ(ckpt_open(&cfg, &c, &ctx), CKPT_EINVAL);
    EXPECT_EQ(destroyed, 0);
    EXPECT_FALSE(dir_exists());
}

} // namespace
