// SPDX-License-Identifier: Apache-2.0
// A comm factory that fails still returns a comm, and ckpt_open refuses it
// with the factory's code and message instead of going on as one rank.
// Here through libckpt_mpi as a program links it, before MPI_Init (no
// mpirun needed); the failed comm itself, the out-of-memory comm and the
// version check are in tests/internal/test_comm_failed.cpp.
#include <string>
#include <sys/stat.h>

#include "test_util.h"

#if CKPT_HAVE_MPI
#include <ckpt/ckpt_mpi.h>
#endif

namespace {

using namespace ckt;

TEST(MpiComm, FailureBeforeMpiInitReachesOpen)
{
#if !CKPT_HAVE_MPI
    GTEST_SKIP() << "built without MPI";
#else
    int init = 1;
    ASSERT_EQ(MPI_Initialized(&init), MPI_SUCCESS);
    ASSERT_EQ(init, 0) << "this suite runs without MPI_Init";
    TempDir tmp;
    std::string dir = tmp.sub("ck");
    ckpt_config cfg = config(dir);
    ckpt_comm *comm = ckpt_comm_mpi(MPI_COMM_WORLD);
    ASSERT_NE(comm, nullptr) << "a factory never returns NULL";
    ckpt_ctx *ctx = reinterpret_cast<ckpt_ctx *>(&cfg); // must be reset to NULL
    EXPECT_EQ(ckpt_open(&cfg, comm, &ctx), CKPT_ESTATE);
    EXPECT_EQ(ctx, nullptr);
    std::string msg = ckpt_last_error(nullptr);
    EXPECT_NE(msg.find("ckpt_comm_mpi: MPI is not initialized"), std::string::npos) << msg;
    // Refused before anything happened: no folder, so no single-rank run.
    struct stat st;
    EXPECT_NE(stat(dir.c_str(), &st), 0) << dir << " was created";
#endif
}

} // namespace
