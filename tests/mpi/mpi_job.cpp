// SPDX-License-Identifier: Apache-2.0
// One step of a multi-rank job, for the scripts that run jobs of different
// sizes one after another on the same folder (tests/mpi/*.sh):
//
//   mpi_job save DIR STEP [CRASH_RANK]   save the test model at STEP on every
//                                        rank; CRASH_RANK SIGKILLs itself at
//                                        its first data write (mid-save)
//   mpi_job restore DIR STEP             restore the newest checkpoint on this
//                                        job's ranks; it must be STEP, bit-exact
//   mpi_job series DIR FIRST LAST [CRASH_RANK]
//                                        save steps FIRST..LAST in one job (the
//                                        local tier's cadence counts saves since
//                                        open); CRASH_RANK SIGKILLs itself at
//                                        its first commit rename of step LAST
//
// With CKPT_LOCAL_DIR set (tests/mpi/tiers.sh), CKPT_TEST_WANT_TIERS (one
// letter per rank, L local, D durable or R fetched from a replica) is the
// tier each rank's restore must have read (ckpt_restore_tier).  With
// CKPT_REPLICAS > 0 the job runs MPI_THREAD_MULTIPLE (the exchange needs it).
//
// Exit status 0 when every rank succeeded, else 1 (on every rank).
#include <mpi.h>

#include <dirent.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "mpi_util.h"
#include "runtime/fault_hooks.h"

namespace {

int fail(const char *what, ckpt_ctx *ck)
{
    fprintf(stderr, "rank %d: %s: %s\n", mpt::rank(), what,
            ck ? ckpt_last_error(ck) : ckpt_last_error(nullptr));
    return 1;
}

ckpt_ctx *open_dir(const std::string &dir)
{
    ckpt_config cfg = mpt::config(dir);
    if (cfg.local_dir) /* tiers.sh reads the fallbacks from the log */
        cfg.log_level = CKPT_LOG_WARN;
    ckpt_ctx *ck = nullptr;
    if (ckpt_open(&cfg, ckpt_comm_mpi(MPI_COMM_WORLD), &ck) != 0)
        return nullptr;
    return ck;
}

int save(const std::string &dir, int64_t step, int crash_rank)
{
    ckpt_ctx *ck = open_dir(dir);
    if (!ck)
        return fail("open", nullptr);
    auto m = mpt::model(mpt::world(), mpt::rank());
    for (mpt::Part &p : m) {
        if (mpt::register_part(ck, p) != 0)
            return fail("register", ck);
        p.fill(step);
    }
    char meta[64];
    snprintf(meta, sizeof meta, "rank%d-of%d", mpt::rank(), mpt::world());
    ckpt_set_meta(ck, "who", meta, strlen(meta));
    if (mpt::rank() == crash_rank)
        ckpt__fault_arm(ck, CKPT__FAULT_WRITE, 0, CKPT__FAIL_CRASH);
    ckpt_ticket t;
    if (ckpt_save(ck, step, nullptr, &t) != 0 || ckpt_fence(ck, nullptr) != 0)
        return fail("save", ck);
    int rc = ckpt_wait(ck, t, -1);
    if (rc)
        fail("wait", ck);
    if (ckpt_close(ck) != 0 && !rc)
        rc = fail("close", nullptr);
    return rc ? 1 : 0;
}

int series(const std::string &dir, int64_t first, int64_t last, int crash_rank)
{
    ckpt_ctx *ck = open_dir(dir);
    if (!ck)
        return fail("open", nullptr);
    auto m = mpt::model(mpt::world(), mpt::rank());
    for (mpt::Part &p : m)
        if (mpt::register_part(ck, p) != 0)
            return fail("register", ck);
    char meta[64];
    snprintf(meta, sizeof meta, "rank%d-of%d", mpt::rank(), mpt::world());
    ckpt_set_meta(ck, "who", meta, strlen(meta));
    for (int64_t s = first; s <= last; s++) {
        for (mpt::Part &p : m)
            p.fill(s);
        if (s == last && mpt::rank() == crash_rank)
            ckpt__fault_arm(ck, CKPT__FAULT_RENAME, 0, CKPT__FAIL_CRASH);
        ckpt_ticket t;
        if (ckpt_save(ck, s, nullptr, &t) != 0 || ckpt_fence(ck, nullptr) != 0 ||
            ckpt_wait(ck, t, -1) != 0)
            return fail("save", ck);
    }
    if (ckpt_close(ck) != 0)
        return fail("close", nullptr);
    return 0;
}

// The folder holds committed checkpoints only (open removed leftovers).
int only_committed(const std::string &dir)
{
    DIR *d = opendir(dir.c_str());
    if (!d)
        return 1;
    int bad = 0;
    while (struct dirent *de = readdir(d))
        if (strstr(de->d_name, ".partial-")) {
            fprintf(stderr, "leftover %s\n", de->d_name);
            bad = 1;
        }
    closedir(d);
    return bad;
}

int restore(const std::string &dir, int64_t want)
{
    ckpt_ctx *ck = open_dir(dir);
    if (!ck)
        return fail("open", nullptr);
    if (mpt::rank() == 0 && only_committed(dir) != 0)
        return fail("leftovers after open", ck);
    auto m = mpt::model(mpt::world(), mpt::rank());
    for (mpt::Part &p : m) {
        if (mpt::register_part(ck, p) != 0)
            return fail("register", ck);
        for (uint32_t &v : p.data)
            v = 0xDEADBEEF;
    }
    int64_t step = -1;
    if (ckpt_restore(ck, CKPT_LATEST, nullptr, &step) != 0)
        return fail("restore", ck);
    int bad = 0;
    if (step != want) {
        fprintf(stderr, "rank %d: restored step %lld, expected %lld\n", mpt::rank(),
                (long long)step, (long long)want);
        bad = 1;
    }
    for (const mpt::Part &p : m) {
        int64_t i = p.first_bad(step);
        if (i >= 0) {
            fprintf(stderr, "rank %d of %d: tensor %s element %lld differs\n", mpt::rank(),
                    mpt::world(), p.name.c_str(), (long long)i);
            bad = 1;
        }
    }
    const char *want_tiers = getenv("CKPT_TEST_WANT_TIERS");
    if (want_tiers && (size_t)mpt::rank() < strlen(want_tiers)) {
        ckpt_tier got = ckpt_restore_tier(ck);
        char w = want_tiers[mpt::rank()];
        ckpt_tier wt = w == 'L'   ? CKPT_TIER_LOCAL
                       : w == 'R' ? CKPT_TIER_REPLICA
                                  : CKPT_TIER_DURABLE;
        if (wt != got) {
            fprintf(stderr, "rank %d: restored from tier %d, expected %c\n", mpt::rank(),
                    (int)got, w);
            bad = 1;
        }
    }
    ckpt_info info;
    size_t n = 0;
    int saved_world = ckpt_list(ck, &info, 1, &n) == 0 && n ? info.world_size : 0;
    char meta[64] = {0}, wantm[64];
    int rc = ckpt_get_meta(ck, "who", meta, sizeof meta - 1, nullptr);
    snprintf(wantm, sizeof wantm, "rank%d-of%d", mpt::rank(), saved_world);
    if (mpt::rank() < saved_world ? rc != 0 || strcmp(meta, wantm) != 0 : rc != CKPT_ENOTFOUND) {
        fprintf(stderr, "rank %d: metadata '%s' (rc %d), saved by %d ranks\n", mpt::rank(), meta,
                rc, saved_world);
        bad = 1;
    }
    if (ckpt_close(ck) != 0)
        bad = fail("close", nullptr);
    if (!bad && mpt::rank() == 0)
        printf("restored step %lld on %d ranks from a checkpoint of %d ranks: bit-exact\n",
               (long long)step, mpt::world(), saved_world);
    return bad;
}

} // namespace

int main(int argc, char **argv)
{
    const char *replicas = getenv("CKPT_REPLICAS");
    if (replicas && atoi(replicas) > 0) {
        int provided = 0;
        MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    } else {
        MPI_Init(&argc, &argv);
    }
    int rc = 2;
    if (argc >= 4 && strcmp(argv[1], "save") == 0)
        rc = save(argv[2], atoll(argv[3]), argc > 4 ? atoi(argv[4]) : -1);
    else if (argc == 4 && strcmp(argv[1], "restore") == 0)
        rc = restore(argv[2], atoll(argv[3]));
    else if (argc >= 5 && strcmp(argv[1], "series") == 0)
        rc = series(argv[2], atoll(argv[3]), atoll(argv[4]), argc > 5 ? atoi(argv[5]) : -1);
    else if (mpt::rank() == 0)
        fprintf(stderr, "usage: mpi_job save DIR STEP [CRASH_RANK] | restore DIR STEP | series "
                        "DIR FIRST LAST [CRASH_RANK]\n");
    int any = 0;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any;
}
