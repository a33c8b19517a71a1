// SPDX-License-Identifier: Apache-2.0
// Multi-rank saves and restores with real MPI ranks (run under mpirun with
// 2 or more ranks): one checkpoint from all ranks, replicated tensors
// written once, a failing rank or a wrong layout means no commit, a corrupt
// shard makes every rank fall back together, and ranks agree on the step.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "io/manifest.h"
#include "mpi_util.h"
#include "runtime/comm.h"
#include "runtime/fault_hooks.h"

using mpt::Part;

namespace {

void save_and_wait(ckpt_ctx *ck, std::vector<Part> &m, int64_t step, const char *rng)
{
    for (Part &p : m)
        p.fill(step);
    char meta[64];
    snprintf(meta, sizeof meta, "%s-rank%d-step%lld", rng, mpt::rank(), (long long)step);
    ASSERT_EQ(ckpt_set_meta(ck, "rng", meta, strlen(meta)), 0);
    ckpt_ticket t;
    ASSERT_EQ(ckpt_save(ck, step, nullptr, &t), 0) << ckpt_last_error(ck);
    ASSERT_EQ(ckpt_fence(ck, nullptr), 0) << ckpt_last_error(ck);
    ASSERT_EQ(ckpt_wait(ck, t, -1), 0) << ckpt_last_error(ck);
}

void scramble(std::vector<Part> &m)
{
    for (Part &p : m)
        for (uint32_t &v : p.data)
            v = 0xDEADBEEF;
}

void expect_step(const std::vector<Part> &m, int64_t step)
{
    for (const Part &p : m)
        EXPECT_EQ(p.first_bad(step), -1) << "rank " << mpt::rank() << ": tensor " << p.name
                                         << " differs from step " << step;
}

std::vector<int64_t> steps_of(ckpt_ctx *ck)
{
    ckpt_info info[16];
    size_t n = 0;
    EXPECT_EQ(ckpt_list(ck, info, 16, &n), 0) << ckpt_last_error(ck);
    std::vector<int64_t> v;
    for (size_t i = 0; i < n && i < 16; i++)
        v.push_back(info[i].step);
    return v;
}

bool has(const std::vector<int64_t> &v, int64_t s)
{
    return std::find(v.begin(), v.end(), s) != v.end();
}

// Opens with cfg on every rank and registers this rank's part of the model.
ckpt_ctx *open_with_model(const ckpt_config &cfg, std::vector<Part> &m)
{
    ckpt_ctx *ck = mpt::open_ctx(cfg);
    m = mpt::model(mpt::world(), mpt::rank());
    for (Part &p : m) {
        if (ck) {
            EXPECT_EQ(mpt::register_part(ck, p), 0) << ckpt_last_error(ck);
        }
    }
    return ck;
}

// Every test: a folder all ranks share, the default config for it and this
// rank's part of the model once registered.
class Mpi : public ::testing::Test {
  protected:
    mpt::SharedDir dir;
    ckpt_config cfg = mpt::config(dir.ck());
    std::vector<Part> m;
};
using MpiSave = Mpi;
using MpiRestore = Mpi;
using MpiOpen = Mpi;
using MpiPolicy = Mpi;

} // namespace

TEST_F(MpiSave, AllRanksMakeOneCheckpointThatRestoresBitExact)
{
    ckpt_ctx *ck = open_with_model(cfg, m);
    ASSERT_NE(ck, nullptr);
    save_and_wait(ck, m, 10, "a");
    save_and_wait(ck, m, 20, "b");

    // Every rank sees both, saved by all ranks.
    ckpt_info info[4];
    size_t n = 0;
    ASSERT_EQ(ckpt_list(ck, info, 4, &n), 0) << ckpt_last_error(ck);
    ASSERT_EQ(n, 2u);
    EXPECT_EQ(info[0].step, 20);
    EXPECT_EQ(info[0].world_size, mpt::world());
    for (int r = 0; r < mpt::world(); r++) {
        char f[64];
        snprintf(f, sizeof f, "/ck/step-000000000020/rank-%05d.h5", r);
        struct stat st;
        EXPECT_EQ(stat((dir.path() + f).c_str(), &st), 0) << f;
    }

    // The CLI verifies every rank file; h5dump reads them all.
    if (mpt::rank() == 0) {
        std::string out;
        EXPECT_EQ(ckt::run(std::string(CKPT_BIN_DIR) + "/ckpt verify " + ckt::quote(dir.ck()),
                           &out),
                  0)
            << out;
        EXPECT_GE(ckt::expect_h5dump_all(dir.ck()), mpt::world() + 1);
    }

    scramble(m);
    int64_t step = -1;
    ASSERT_EQ(ckpt_restore(ck, CKPT_LATEST, nullptr, &step), 0) << ckpt_last_error(ck);
    EXPECT_EQ(step, 20);
    expect_step(m, 20);
    char meta[64] = {0};
    size_t len = 0;
    ASSERT_EQ(ckpt_get_meta(ck, "rng", meta, sizeof meta - 1, &len), 0) << ckpt_last_error(ck);
    char want[64];
    snprintf(want, sizeof want, "b-rank%d-step20", mpt::rank());
    EXPECT_STREQ(meta, want);

    scramble(m);
    ASSERT_EQ(ckpt_restore(ck, 10, nullptr, &step), 0) << ckpt_last_error(ck);
    EXPECT_EQ(step, 10);
    expect_step(m, 10);
    EXPECT_EQ(ckpt_close(ck), 0);
}

TEST_F(MpiSave, ReplicatedTensorsAreWrittenOnceAndSlicesByTheirRank)
{
    ckpt_ctx *ck = open_with_model(cfg, m);
    ASSERT_NE(ck, nullptr);
    save_and_wait(ck, m, 5, "a");
    ASSERT_EQ(ckpt_close(ck), 0);

    ckpt__index idx;
    ckpt__err err;
    ASSERT_EQ(ckpt__manifest_read((dir.path() + "/ck/step-000000000005/manifest.h5").c_str(),
                                  &idx, &err),
              0)
        << err.msg;
    EXPECT_EQ(idx.world_size, (uint32_t)mpt::world());
    for (const Part &p : m) {
        int copies = 0;
        for (uint32_t i = 0; i < idx.nentries; i++) {
            const ckpt__entry &e = idx.entries[i];
            if (e.kind != CKPT__ENTRY_TENSOR || p.name != e.name)
                continue;
            copies++;
            EXPECT_EQ(e.shape[0], p.gshape[0]) << p.name;
            if (p.sharded && e.rank == mpt::rank()) {
                EXPECT_EQ(e.start[0], p.start[0]) << p.name;
                EXPECT_EQ(e.count[p.ndim - 1], p.count[p.ndim - 1]) << p.name;
            }
        }
        EXPECT_EQ(copies, p.sharded ? mpt::world() : 1) << p.name;
    }
    ckpt__index_free(&idx);
}

TEST_F(MpiSave, ARankWhoseWriteFailsStopsTheCommitAtOnce)
{
    ckpt_ctx *ck = open_with_model(cfg, m);
    ASSERT_NE(ck, nullptr);
    save_and_wait(ck, m, 10, "a");

    if (mpt::rank() == 1) {
        ASSERT_EQ(ckpt__fault_arm(ck, CKPT__FAULT_WRITE, 0, CKPT__FAIL_EIO), 0);
    }
    auto t0 = std::chrono::steady_clock::now();
    ckpt_ticket t;
    ASSERT_EQ(ckpt_save(ck, 20, nullptr, &t), 0) << ckpt_last_error(ck);
    ASSERT_EQ(ckpt_fence(ck, nullptr), 0);
    int rc = ckpt_wait(ck, t, -1);
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_NE(rc, 0) << "rank " << mpt::rank() << ": step 20 must not commit";
    std::string msg = ckpt_last_error(ck);
    if (mpt::rank() == 0) {
        EXPECT_NE(msg.find("rank 1 failed"), std::string::npos) << msg;
    }
    EXPECT_LT(waited, cfg.commit_timeout_s / 2) << "waited for the timeout: " << msg;
    MPI_Barrier(MPI_COMM_WORLD);
    EXPECT_FALSE(has(steps_of(ck), 20));

    // The next save works on every rank.
    save_and_wait(ck, m, 30, "c");
    EXPECT_TRUE(has(steps_of(ck), 30));
    EXPECT_EQ(ckpt_close(ck), 0);
}

TEST_F(MpiSave, OverlappingSlicesFailTheCommitNamingTheTensor)
{
    ckpt_ctx *ck = mpt::open_ctx(cfg);
    ASSERT_NE(ck, nullptr);
    m = mpt::model(mpt::world(), mpt::rank());
    for (Part &p : m)
        if (p.name == "bias" && mpt::rank() == 1)
            p.start[0] -= 1; // overlaps rank 0's slice
    mpt::register_model(ck, m);
    for (Part &p : m)
        p.fill(7);
    ckpt_ticket t;
    ASSERT_EQ(ckpt_save(ck, 7, nullptr, &t), 0) << ckpt_last_error(ck);
    ASSERT_EQ(ckpt_fence(ck, nullptr), 0);
    int rc = ckpt_wait(ck, t, -1);
    if (mpt::rank() == 0) {
        EXPECT_EQ(rc, CKPT_EMISMATCH) << ckpt_last_error(ck);
        EXPECT_NE(std::string(ckpt_last_error(ck)).find("'bias'"), std::string::npos)
            << ckpt_last_error(ck);
    } else {
        EXPECT_NE(rc, 0);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    EXPECT_TRUE(steps_of(ck).empty());
    ckpt_close(ck);
}

TEST_F(MpiSave, ARankThatNeverSavesTimesOutWithoutACommit)
{
    cfg.commit_timeout_s = 1;
    ckpt_ctx *ck = mpt::open_ctx(cfg);
    ASSERT_NE(ck, nullptr);
    m = mpt::model(mpt::world(), mpt::rank());
    mpt::register_model(ck, m);
    int last = mpt::world() - 1;
    if (mpt::rank() != last) {
        ckpt_ticket t;
        ASSERT_EQ(ckpt_save(ck, 3, nullptr, &t), 0) << ckpt_last_error(ck);
        ASSERT_EQ(ckpt_fence(ck, nullptr), 0);
        int rc = ckpt_wait(ck, t, -1);
        if (mpt::rank() == 0) {
            EXPECT_EQ(rc, CKPT_ETIMEDOUT) << ckpt_last_error(ck);
        } else {
            EXPECT_NE(rc, 0);
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    EXPECT_TRUE(steps_of(ck).empty());
    // The rank that skipped a save names the next one like the others.
    save_and_wait(ck, m, 4, "d");
    EXPECT_TRUE(has(steps_of(ck), 4));
    EXPECT_EQ(ckpt_close(ck), 0);
}

TEST_F(MpiRestore, ACorruptShardOnOneRankMakesEveryRankFallBack)
{
    ckpt_ctx *ck = open_with_model(cfg, m);
    ASSERT_NE(ck, nullptr);
    save_and_wait(ck, m, 10, "a");
    save_and_wait(ck, m, 20, "b");
    MPI_Barrier(MPI_COMM_WORLD);
    int victim = mpt::world() - 1;
    if (mpt::rank() == 0) {
        // Flip a byte of the last rank's first tensor in step 20.
        ckpt__index idx;
        ckpt__err err;
        std::string sd = dir.path() + "/ck/step-000000000020";
        ASSERT_EQ(ckpt__manifest_read((sd + "/manifest.h5").c_str(), &idx, &err), 0) << err.msg;
        uint64_t off = 0;
        for (uint32_t i = 0; i < idx.nentries && !off; i++)
            if (idx.entries[i].rank == victim && idx.entries[i].kind == CKPT__ENTRY_TENSOR &&
                idx.entries[i].nbytes)
                off = idx.entries[i].file_off + 1;
        ckpt__index_free(&idx);
        ASSERT_NE(off, 0u);
        char f[32];
        snprintf(f, sizeof f, "/rank-%05d.h5", victim);
        std::fstream fs(sd + f, std::ios::in | std::ios::out | std::ios::binary);
        fs.seekg((std::streamoff)off);
        char c = 0;
        fs.read(&c, 1);
        c ^= 0x40;
        fs.seekp((std::streamoff)off);
        fs.write(&c, 1);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    scramble(m);
    int64_t step = -1;
    ASSERT_EQ(ckpt_restore(ck, CKPT_LATEST, nullptr, &step), 0) << ckpt_last_error(ck);
    EXPECT_EQ(step, 10) << "rank " << mpt::rank();
    expect_step(m, 10);
    // Asking for the damaged step explicitly fails on every rank, naming it.
    int rc = ckpt_restore(ck, 20, nullptr, &step);
    EXPECT_EQ(rc, CKPT_ECORRUPT) << ckpt_last_error(ck);
    EXPECT_NE(std::string(ckpt_last_error(ck)).find("checksum"), std::string::npos)
        << ckpt_last_error(ck);
    EXPECT_EQ(ckpt_close(ck), 0);
}

TEST_F(MpiRestore, AMismatchOnOneRankFailsEveryRankWithItsMessage)
{
    ckpt_ctx *ck = open_with_model(cfg, m);
    ASSERT_NE(ck, nullptr);
    save_and_wait(ck, m, 10, "a");
    uint32_t extra[4] = {0};
    int64_t shape[1] = {4};
    if (mpt::rank() == 1) {
        ASSERT_EQ(ckpt_register(ck, "not.saved", extra, CKPT_I32, 1, shape), 0);
    }
    int64_t step = -1;
    int rc = ckpt_restore(ck, CKPT_LATEST, nullptr, &step);
    EXPECT_EQ(rc, CKPT_EMISMATCH) << ckpt_last_error(ck);
    EXPECT_NE(std::string(ckpt_last_error(ck)).find("not.saved"), std::string::npos)
        << ckpt_last_error(ck);
    EXPECT_EQ(ckpt_close(ck), 0);
}

// Notes (runtime/comm.h) exactly when MPI runs MPI_THREAD_MULTIPLE
// (mpi.np4.notes runs this suite so): rank 0's note reaches every rank,
// whole and in order, and a receive with none coming ends in its timeout.
TEST(MpiNotes, OfferedExactlyWithThreadMultipleAndDelivered)
{
    int level = 0;
    MPI_Query_thread(&level);
    ckpt_comm *c = ckpt_comm_mpi(MPI_COMM_WORLD);
    ASSERT_EQ(c->err.code, 0) << c->err.msg;
    bool notes = c->m->note_send && c->m->note_recv;
    EXPECT_EQ(notes, level == MPI_THREAD_MULTIPLE && mpt::world() > 1);
    const char *want_env = getenv("CKPT_TEST_MPI_THREADS");
    if (want_env && strcmp(want_env, "multiple") == 0) {
        EXPECT_TRUE(notes) << "MPI_Init_thread(MPI_THREAD_MULTIPLE) gave level " << level;
    }
    if (notes) {
        ckpt__err err;
        unsigned char buf[CKPT__NOTE_BYTES];
        for (int round = 0; round < 2; round++) {
            if (mpt::rank() == 0) {
                for (int r = 1; r < mpt::world(); r++) {
                    memset(buf, r * 7 + round, sizeof buf);
                    EXPECT_EQ(c->m->note_send(c, r, buf, &err), 0) << err.msg;
                }
                EXPECT_LT(c->m->note_send(c, 0, buf, &err), 0) << "rank 0 sends itself nothing";
            } else {
                memset(buf, 0, sizeof buf);
                ASSERT_EQ(c->m->note_recv(c, buf, 60, &err), 1) << err.msg;
                for (unsigned char b : buf)
                    ASSERT_EQ(b, (unsigned char)(mpt::rank() * 7 + round));
            }
        }
        if (mpt::rank() != 0) {
            EXPECT_EQ(c->m->note_recv(c, buf, 0.05, &err), 0) << "no third note was sent";
        }
        MPI_Barrier(MPI_COMM_WORLD);
    }
    c->m->destroy(c);
}

// The exchange (runtime/comm.h) exactly where notes are: every rank sends
// a message to its ring neighbour and, in the same call, receives its other
// neighbour's, in whatever order the ranks arrive (posted at once, so no
// order deadlocks); messages between a pair keep their order; a receive of
// the wrong size is CKPT_ECOMM; a receive nobody answers ends in its
// timeout and breaks the channel.
TEST(MpiExchange, OfferedWithNotesAndDeliveredInOrder)
{
    ckpt_comm *c = ckpt_comm_mpi(MPI_COMM_WORLD);
    ASSERT_EQ(c->err.code, 0) << c->err.msg;
    bool notes = c->m->note_send && c->m->note_recv;
    EXPECT_EQ(c->m->exchange != nullptr, notes);
    if (c->m->exchange) {
        int r = mpt::rank(), n = mpt::world();
        int next = (r + 1) % n, prev = (r + n - 1) % n;
        ckpt__err err;
        std::vector<unsigned char> a(3 << 20), b(17), ga(a.size()), gb(b.size());
        for (size_t i = 0; i < a.size(); i++)
            a[i] = (unsigned char)(i * 31 + (size_t)r);
        memset(b.data(), 0x40 + r, b.size());
        if (r % 2)
            usleep(20000); // odd ranks come late
        ckpt__msg sends[2] = {{next, a.data(), a.size()}, {next, b.data(), b.size()}};
        ckpt__msg recvs[2] = {{prev, ga.data(), ga.size()}, {prev, gb.data(), gb.size()}};
        ASSERT_EQ(c->m->exchange(c, sends, 2, recvs, 2, 60, &err), 0) << err.msg;
        for (size_t i = 0; i < ga.size(); i++)
            ASSERT_EQ(ga[i], (unsigned char)(i * 31 + (size_t)prev)) << i;
        for (unsigned char v : gb)
            ASSERT_EQ(v, 0x40 + prev);
        // A receive one byte short of what came.
        ckpt__msg s1 = {next, b.data(), b.size()}, r1 = {prev, gb.data(), gb.size() + 1};
        EXPECT_EQ(c->m->exchange(c, &s1, 1, &r1, 1, 60, &err), CKPT_ECOMM);
        MPI_Barrier(MPI_COMM_WORLD);
        // Nobody sends: the timeout, then a broken channel.
        ckpt__msg r2 = {prev, gb.data(), gb.size()};
        EXPECT_EQ(c->m->exchange(c, nullptr, 0, &r2, 1, 0.05, &err), CKPT_ETIMEDOUT);
        EXPECT_EQ(c->m->exchange(c, nullptr, 0, &r2, 1, 0.05, &err), CKPT_ECOMM);
        MPI_Barrier(MPI_COMM_WORLD);
    }
    c->m->destroy(c);
}

TEST_F(MpiOpen, RefuseIsRejectedWithSeveralRanks)
{
    cfg.busy = CKPT_BUSY_REFUSE;
    ckpt_ctx *ck = nullptr;
    EXPECT_EQ(ckpt_open(&cfg, ckpt_comm_mpi(MPI_COMM_WORLD), &ck), CKPT_EINVAL);
    EXPECT_EQ(ck, nullptr);
    EXPECT_NE(std::string(ckpt_last_error(nullptr)).find("refuse"), std::string::npos);
}

// Time, a signal on one rank and a request file race with the calls; every
// rank must still take the same decision at every step.
TEST_F(MpiPolicy, RanksNeverDiverge)
{
    cfg.policy_every_steps = 25;
    cfg.policy_every_s = 0.01;
    cfg.policy_signal = SIGUSR1;
    cfg.policy_request_file = "save-now";
    cfg.policy_sync_steps = 3;
    ckpt_ctx *ck = mpt::open_ctx(cfg);
    ASSERT_NE(ck, nullptr);
    const int steps = 200;
    std::vector<int> mine(steps), all((size_t)steps * (size_t)mpt::world());
    for (int s = 0; s < steps; s++) {
        if (mpt::rank() == mpt::world() - 1 && s % 37 == 5)
            raise(SIGUSR1);
        if (mpt::rank() == 1 && s % 50 == 17) {
            FILE *f = fopen((dir.ck() + "/save-now").c_str(), "w");
            if (f)
                fclose(f);
        }
        usleep((useconds_t)(500 * (mpt::rank() + 1))); // ranks run at different speeds
        mine[(size_t)s] = ckpt_policy_due(ck, s);
        ASSERT_GE(mine[(size_t)s], 0) << ckpt_last_error(ck);
    }
    MPI_Allgather(mine.data(), steps, MPI_INT, all.data(), steps, MPI_INT, MPI_COMM_WORLD);
    int due = 0;
    for (int s = 0; s < steps; s++) {
        due += mine[(size_t)s];
        for (int r = 0; r < mpt::world(); r++)
            ASSERT_EQ(all[(size_t)r * steps + (size_t)s], mine[(size_t)s])
                << "rank " << r << " and rank " << mpt::rank() << " differ at step " << s;
    }
    EXPECT_GT(due, steps / 25) << "time and requests must add saves to every-25";
    EXPECT_EQ(ckpt_close(ck), 0);
}

int main(int argc, char **argv)
{
    return mpt::run_all(argc, argv);
}
