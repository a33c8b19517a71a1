// SPDX-License-Identifier: Apache-2.0
// Helpers for the suites that run under mpirun: a folder every rank shares,
// the sharded model the tests save and restore on any number of ranks, and
// a main() that initializes MPI and fails the job when any rank failed.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ckpt/ckpt.h"
#include "ckpt/ckpt_mpi.h"
#include "shard_model.h"
#include "test_util.h"

namespace mpt {

using namespace ckm;

inline int rank()
{
    int r;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

inline int world()
{
    int w;
    MPI_Comm_size(MPI_COMM_WORLD, &w);
    return w;
}

// A folder under $TMPDIR that rank 0 makes and every rank learns; rank 0
// removes it at the end unless CKPT_TEST_KEEP is set.
class SharedDir {
  public:
    SharedDir()
    {
        char buf[4096] = {0};
        if (rank() == 0) {
            const char *base = getenv("TMPDIR");
            snprintf(buf, sizeof buf, "%s/ckpt-mpi-XXXXXX", base && *base ? base : "/tmp");
            if (!mkdtemp(buf))
                buf[0] = 0;
        }
        MPI_Bcast(buf, sizeof buf, MPI_CHAR, 0, MPI_COMM_WORLD);
        path_ = buf;
        ck_ = path_ + "/ck";
        EXPECT_FALSE(path_.empty()) << "mkdtemp failed on rank 0";
    }
    ~SharedDir()
    {
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank() == 0 && !getenv("CKPT_TEST_KEEP"))
            ckt::TempDir::remove_all(path_);
    }
    const std::string &path() const { return path_; }
    // The checkpoint folder; lives as long as this object (cfg.dir borrows it).
    const std::string &ck() const { return ck_; }

  private:
    std::string path_, ck_;
};

inline ckpt_ctx *open_ctx(const ckpt_config &cfg)
{
    ckpt_ctx *ck = nullptr;
    EXPECT_EQ(ckpt_open(&cfg, ckpt_comm_mpi(MPI_COMM_WORLD), &ck), 0) << ckpt_last_error(nullptr);
    return ck;
}

// Any rank's failure fails every rank, so mpirun's exit status tells.
// CKPT_TEST_MPI_THREADS=multiple: MPI_THREAD_MULTIPLE, so that the comm
// carries notes (runtime/comm.h) and the verdicts travel by them.
inline int run_all(int argc, char **argv)
{
    const char *th = getenv("CKPT_TEST_MPI_THREADS");
    int provided = 0;
    if (th && strcmp(th, "multiple") == 0)
        MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    else
        MPI_Init(&argc, &argv);
    ::testing::InitGoogleTest(&argc, argv);
    int rc = RUN_ALL_TESTS();
    int any = 0;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rc && rank() != 0)
        fprintf(stderr, "rank %d: a test failed (its messages follow above)\n", rank());
    MPI_Finalize();
    return any ? 1 : 0;
}

} // namespace mpt
