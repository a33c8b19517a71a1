// SPDX-License-Identifier: Apache-2.0
// ckpt-bench train --ranks N, started like a user would (no mpirun around
// it): the bench runs itself again under mpirun, every rank runs the loop
// on its shard and rank 0 reports each rank, the aggregate, the commit
// latency after the last done-record and the save throughput against the
// raw write of all ranks.  The figures' values are the bench's business;
// asserted here is that they exist, come from 2 ranks that each committed
// every save, and are in range.
#include "test_util.h"

using namespace ckt;

namespace {

std::string bench() { return std::string(CKPT_BIN_DIR) + "/ckpt-bench"; }

const char *kCheck = R"(
import json, sys
d = json.load(open(sys.argv[1]))
ranks = d["ranks"]
assert d["world_size"] == 2, d["world_size"]
assert len(ranks) == 2, ranks
assert [r["rank"] for r in ranks] == [0, 1], ranks
assert sum(r["bytes"] for r in ranks) == d["state_bytes"] == 8 << 20, d["state_bytes"]
assert all(r["committed"] == 4 and r["saves"] == 4 for r in ranks), ranks
assert [r["policy"] for r in d["runs"]] == ["wait"], d["runs"]
assert d["commit_latency_saves"] == 4, d["commit_latency_saves"]
assert 0 <= d["commit_latency_ms_p50"] <= d["commit_latency_ms_max"], d
assert d["save_gbps_agg"] > 0 and d["raw_write_gbps_agg"] > 0, d
assert d["save_ratio_agg"] > 0, d["save_ratio_agg"]
assert d["raw_direct"] is True, "ext4 and xfs allow O_DIRECT"
)";

TEST(BenchRanks, TrainOnTwoRanksReportsEachRankAndTheCommit)
{
    TempDir tmp;
    std::string dir = tmp.sub("train"), json = tmp.sub("out.json"), out, log;
    ASSERT_EQ(run_split(bench() + " train --dir " + quote(dir) + " --ranks 2 --state 8M "
                            "--tensors 8 --step-ms 20 --every 5 --steps 20 --json",
                        json, tmp.sub("err.txt"), &log),
              0)
        << log;
    EXPECT_EQ(run_python(tmp.sub("check.py"), kCheck, quote(json), &out), 0) << out << log;
    EXPECT_NE(log.find("rank 1"), std::string::npos) << "no per-rank table: " << log;
    EXPECT_FALSE(exists(dir)) << "the bench made the folder and must remove it";
}

// 2 ranks as 2 "nodes" (--nodes 2), each with its own local folder, the
// first of two saves durable: each rank reports both tiers' commits and
// restores once from each (the bench fails when ckpt_restore_tier, on any
// rank, names another tier than the one it measures).
const char *kTiersCheck = R"(
import json, sys
d = json.load(open(sys.argv[1]))
assert d["world_size"] == 2 and d["nodes"] == 2 and d["durable_every"] == 2, d
assert len(d["ranks"]) == 2, d["ranks"]
for r in [d] + d["runs"] + d["ranks"]:
    assert r["local_commits"] == 2 and r["durable_commits"] == 1, r
    for k in ["local_commit_s_p50", "durable_s_p50", "restore_local_s", "restore_durable_s"]:
        assert r[k] is not None and 0 < r[k] < 60, (k, r)
    # ckpt_close drained the last (local-only) save into the durable folder.
    assert r["restore_local_step"] == 4 and r["restore_durable_step"] == 4, r
)";

TEST(BenchRanks, TrainOnTwoNodesReportsEachTier)
{
    TempDir tmp;
    std::string dir = tmp.sub("train"), local = tmp.sub("local"), json = tmp.sub("out.json"),
                out, log;
    ASSERT_EQ(run_split(bench() + " train --dir " + quote(dir) + " --ranks 2 --nodes 2 "
                            "--local-dir " + quote(local) + " --durable-every 2 --state 8M "
                            "--tensors 8 --step-ms 20 --every 4 --steps 8 --json",
                        json, tmp.sub("err.txt"), &log),
              0)
        << log;
    EXPECT_EQ(run_python(tmp.sub("check.py"), kTiersCheck, quote(json), &out), 0) << out << log;
    EXPECT_NE(log.find("2 node(s)"), std::string::npos) << log;
    EXPECT_FALSE(exists(dir));
    EXPECT_FALSE(exists(local)) << "the bench made the local folders and must remove them";
}

// The same with one replica (--replicas 1: the bench asks MPI for
// MPI_THREAD_MULTIPLE): every save's round ends after its local commit,
// and the restore with the last node's folder lost reads the newest step
// (the local restore's) from replicas (the bench fails when
// ckpt_restore_tier says another tier).
const char *kReplicasCheck = R"(
import json, sys
d = json.load(open(sys.argv[1]))
assert d["world_size"] == 2 and d["nodes"] == 2 and d["replicas"] == 1, d
for r in [d] + d["runs"] + d["ranks"]:
    assert r["replicated_s_p50"] is not None and 0 < r["replicated_s_p50"] < 60, r
    assert r["replicated_s_p50"] >= r["local_commit_s_p50"], r
for r in [d] + d["runs"]:
    assert 0 < r["restore_replica_s"] < 60, r
    assert r["restore_replica_step"] == r["restore_local_step"], r
)";

TEST(BenchRanks, TrainWithReplicasReportsTheRound)
{
    TempDir tmp;
    std::string dir = tmp.sub("train"), local = tmp.sub("local"), json = tmp.sub("out.json"),
                out, log;
    ASSERT_EQ(run_split(bench() + " train --dir " + quote(dir) + " --ranks 2 --nodes 2 "
                            "--replicas 1 --local-dir " + quote(local) + " --durable-every 2 "
                            "--state 8M --tensors 8 --step-ms 20 --every 4 --steps 8 --json",
                        json, tmp.sub("err.txt"), &log),
              0)
        << log;
    EXPECT_EQ(run_python(tmp.sub("check.py"), kReplicasCheck, quote(json), &out), 0)
        << out << log;
    EXPECT_NE(log.find("replicas: round done"), std::string::npos) << log;
    EXPECT_EQ(log.find("not kept"), std::string::npos) << log;
    EXPECT_FALSE(exists(local)) << "the bench made the local folders and must remove them";
}

// Under a launcher that started another number of ranks than --ranks asks,
// the bench refuses (usage: exit 2 from every rank) instead of running.
TEST(BenchRanks, LauncherWithOtherRankCountIsRefused)
{
    TempDir tmp;
    std::string out;
    EXPECT_NE(run("OMPI_MCA_btl_vader_single_copy_mechanism=none " + std::string(CKPT_MPIRUN) +
                  " --allow-run-as-root --oversubscribe -np 2 " +
                  bench() + " train --dir " + quote(tmp.sub("t")) + " --ranks 3 --state 8M",
                  &out),
              0)
        << out;
    EXPECT_NE(out.find("--ranks 3, but the launcher started 2 ranks"), std::string::npos) << out;
    EXPECT_FALSE(exists(tmp.sub("t")));
}

} // namespace
