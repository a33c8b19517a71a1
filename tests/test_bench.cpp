// SPDX-License-Identifier: Apache-2.0
// ckpt-bench works end to end on small sizes: both subcommands exit 0,
// verify what they restore, print the documented JSON fields, refuse bad
// arguments with exit 2 and leave the folder as they found it.  No figure
// is asserted here: speed is measured by the bench itself, not by tests.
// The GPU modes (d2h, train --device cuda) fail cleanly where there is no
// usable GPU, and run end to end on small sizes where there is one.
#include <algorithm>
#include <fstream>
#include <sstream>

#include "cuda_util.h"
#include "test_util.h"

using namespace ckt;

namespace {

std::string bench() { return std::string(CKPT_BIN_DIR) + "/ckpt-bench"; }

// The JSON parses and holds every key.
void expect_json(const std::string &json, const std::vector<std::string> &keys)
{
    TempDir tmp;
    std::string f = tmp.sub("out.json");
    FILE *fp = fopen(f.c_str(), "w");
    ASSERT_NE(fp, nullptr);
    fputs(json.c_str(), fp);
    fclose(fp);
    std::string out;
    EXPECT_EQ(run("python3 -c 'import json,sys; json.load(open(sys.argv[1]))' " + quote(f), &out),
              0)
        << out << json;
    for (const auto &k : keys)
        EXPECT_NE(json.find("\"" + k + "\""), std::string::npos) << k << " missing in " << json;
}

TEST(Bench, IoOnEveryWriterVerifiesAndReportsRatios)
{
    TempDir tmp;
    std::string dir = tmp.sub("io"), out, err = tmp.sub("err.txt");
    // In a subshell: the table on stderr must not mix into the JSON.
    ASSERT_EQ(run("(" + bench() + " io --dir " + quote(dir) + " --bytes 8M --staging 8M "
                  "--chunk 1M --writer all --json 2>" + quote(err) + ")", &out),
              0)
        << out;
    expect_json(out, {"writers", "save_gbps", "raw_write_gbps", "save_ratio", "restore_gbps",
                      "raw_read_gbps", "restore_ratio", "writer"});
    EXPECT_NE(out.find("\"buffered\""), std::string::npos);
    EXPECT_FALSE(exists(dir)) << "the bench made the folder and must remove it";
}

TEST(Bench, IoKeepLeavesAVerifiableCheckpoint)
{
    TempDir tmp;
    std::string dir = tmp.sub("io"), out;
    ASSERT_EQ(run(bench() + " io --dir " + quote(dir) + " --bytes 4M --staging 8M --keep", &out),
              0)
        << out;
    EXPECT_NE(out.find("restored bytes verified: ok"), std::string::npos) << out;
    EXPECT_EQ(run(std::string(CKPT_BIN_DIR) + "/ckpt verify " + quote(dir), &out), 0) << out;
}

TEST(Bench, TrainRunsBothPolicies)
{
    TempDir tmp;
    std::string dir = tmp.sub("train"), out, err = tmp.sub("err.txt");
    ASSERT_EQ(run("(" + bench() + " train --dir " + quote(dir) + " --state 16M --tensors 50 "
                  "--steps 8 --every 4 --step-ms 20 --json 2>" + quote(err) + ")", &out),
              0)
        << out;
    expect_json(out, {"overhead_pct", "save_call_us", "stall_ms_p50", "durable_s_p50",
                      "restore_gbps", "peak_rss_mib", "baseline", "runs", "step_ms",
                      "ranks", "world_size", "commit_latency_ms_p50", "save_ratio_agg"});
    EXPECT_NE(out.find("\"refuse\""), std::string::npos);
    EXPECT_NE(out.find("\"world_size\": 1"), std::string::npos) << out;
    // Without --local-dir there is one tier: no local figures.
    EXPECT_NE(out.find("\"local_commit_s_p50\": null"), std::string::npos) << out;
    EXPECT_NE(out.find("\"restore_local_s\": null"), std::string::npos) << out;
    EXPECT_FALSE(exists(dir));
}

// Two saves, the first durable (--durable-every 2): every run commits both
// locally and one in the durable folder, and restores once from each tier
// (the bench fails when ckpt_restore_tier disagrees).
const char *kTiersCheck = R"(
import json, sys
d = json.load(open(sys.argv[1]))
assert d["local_dir"] == sys.argv[2], d["local_dir"]
assert d["durable_every"] == 2 and d["nodes"] == 1, d
assert d["replicas"] == 0 and d["replicated_s_p50"] is None, "no --replicas"
assert d["restore_replica_s"] is None, "no restore from replicas without --replicas"
assert [r["policy"] for r in d["runs"]] == ["wait", "refuse"], d["runs"]
for r in [d] + d["runs"] + d["ranks"]:
    for k in ["local_commit_s_p50", "durable_s_p50", "restore_local_s", "restore_durable_s"]:
        assert r[k] is not None and 0 < r[k] < 60, (k, r)
    assert r["restore_tier_ratio"] > 0, r
# busy=wait (the headline and the per-rank figures are its run) makes both
# saves; busy=refuse may refuse the second while the first persists.
for r in [d, d["runs"][0]] + d["ranks"]:
    assert r["local_commits"] == 2 and r["durable_commits"] == 1, r
    # The newest step was local only: ckpt_close drained it into the
    # durable folder (no event: durable_commits counts the cadence's).
    assert r["restore_local_step"] == 4 and r["restore_durable_step"] == 4, r
r = d["runs"][1]
assert r["local_commits"] == r["committed"] and r["durable_commits"] == 1, r
assert r["restore_local_step"] == 4 * (r["local_commits"] - 1), r
assert r["restore_durable_step"] == r["restore_local_step"], r
)";

TEST(Bench, TrainWithTheLocalTierReportsEachTier)
{
    TempDir tmp;
    std::string dir = tmp.sub("train"), local = tmp.sub("local"), json = tmp.sub("out.json"),
                out, log;
    ASSERT_EQ(run_split(bench() + " train --dir " + quote(dir) + " --local-dir " + quote(local) +
                            " --durable-every 2 --state 16M --tensors 50 --steps 8 --every 4 "
                            "--step-ms 20 --json",
                        json, tmp.sub("err.txt"), &log),
              0)
        << log;
    EXPECT_EQ(run_python(tmp.sub("check.py"), kTiersCheck, quote(json) + " " + quote(local), &out),
              0)
        << out << log;
    EXPECT_NE(log.find("restore local"), std::string::npos) << log;
    EXPECT_FALSE(exists(dir)) << "the bench made the folder and must remove it";
    EXPECT_FALSE(exists(local)) << "the bench made the local folder and must remove it";
}

TEST(Bench, BadArgumentsExitTwo)
{
    std::string out;
    for (const char *args : {"", "nosuch", "io", "io --bytes 8M", "io --dir /tmp/x --bytes 1Q",
                             "io --dir /tmp/x --bytes 8M --writer floppy",
                             "train --dir /tmp/x --busy sometimes", "train --every 0 --dir /x",
                             "train --dir /tmp/x --ranks 0",
                             // Several ranks agree on every save: busy=wait only (or a
                             // build without MPI refuses --ranks 2 outright).
                             "train --dir /tmp/x --ranks 2 --busy refuse",
                             // The GPU modes check their options before looking for a GPU.
                             "d2h", "d2h --dir /tmp/x --size 1K", "d2h --dir /tmp/x --reps 0",
                             "d2h --dir /tmp/x --chunk 5000", "d2h --dir /tmp/x --bogus",
                             "train --dir /tmp/x --device gpu",
                             "train --dir /tmp/x --device cuda --busy refuse",
                             "train --dir /tmp/x --device cuda --ranks 2",
                             "train --dir /tmp/x --keep-last 1",
                             // The tiers' options need the local tier; nodes divide ranks.
                             "train --dir /tmp/x --nodes 2", "train --dir /tmp/x --durable-every 2",
                             "train --dir /tmp/x --local-dir /tmp/y --durable-every 0",
                             "train --dir /tmp/x --local-dir /tmp/y --ranks 3 --nodes 2",
                             "train --dir /tmp/x --local-dir /tmp/y --device cuda"})
        EXPECT_EQ(run(bench() + " " + args, &out), 2) << args << ": " << out;
    EXPECT_EQ(run(bench() + " --help", &out), 0);
    EXPECT_EQ(run(bench() + " train --help", &out), 0);
    EXPECT_NE(out.find("--every"), std::string::npos);
    EXPECT_NE(out.find("--ranks"), std::string::npos);
    EXPECT_NE(out.find("--device"), std::string::npos);
    EXPECT_NE(out.find("--local-dir"), std::string::npos);
    EXPECT_EQ(run(bench() + " d2h --help", &out), 0);
    EXPECT_NE(out.find("--size"), std::string::npos);
}

std::string slurp(const std::string &path)
{
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Both GPU modes, with what each is asked to do.
struct GpuMode {
    std::string prefix, args;
};
std::vector<GpuMode> gpu_modes(const std::string &dir)
{
    return {{"d2h", "d2h --dir " + quote(dir) + " --size 64M --tensors 8 --reps 2"},
            {"train --device cuda", "train --device cuda --dir " + quote(dir) +
                                        " --state 48M --tensors 12 --steps 4 --every 2 "
                                        "--step-ms 20"}};
}

TEST(Bench, GpuModesFailCleanlyWithoutAGpu)
{
    if (gpu_unavailable().empty())
        GTEST_SKIP() << "a GPU is here: GpuModesRunSmall covers the modes";
    TempDir tmp;
    std::string dir = tmp.sub("gpu"), out;
    for (const auto &m : gpu_modes(dir)) {
        EXPECT_EQ(run(bench() + " " + m.args, &out), 1) << m.args << ": " << out;
        // One line that names the mode and the reason: CUDA's own error
        // (this build has the backend) or the missing build option.
        std::string reason = gpu_error_name().empty() ? "built without" : gpu_error_name();
        EXPECT_NE(out.find("ckpt-bench: " + m.prefix + ": "), std::string::npos) << out;
        EXPECT_TRUE(out.find(reason) != std::string::npos ||
                    out.find("built without") != std::string::npos)
            << "no reason (" << reason << ") in: " << out;
        EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
        EXPECT_FALSE(exists(dir)) << "nothing may be created before the GPU is found";
    }
}

TEST(Bench, GpuModesRunSmall)
{
    std::string why = gpu_unavailable();
    if (!why.empty())
        GTEST_SKIP() << "no usable GPU: " << why;
    TempDir tmp;
    std::string dir = tmp.sub("gpu"), out, err = tmp.sub("err.txt");
    const std::vector<std::vector<std::string>> keys = {
        {"snapshot_gbps_median", "raw_gbps", "snapshot_ratio", "durable_s_median", "gpu"},
        {"stall_ms_p50", "stall_pct_of_snapshot_max", "overhead_pct", "snapshot_ms_p50",
         "durable_s_p50", "restore_gbps", "checkpoints", "baseline_step_ms"}};
    auto modes = gpu_modes(dir);
    for (size_t i = 0; i < modes.size(); i++) {
        int rc = run("(" + bench() + " " + modes[i].args + " --json 2>" + quote(err) + ")", &out);
        if (rc == 1 && slurp(err).find("built without") != std::string::npos)
            GTEST_SKIP() << "this build has no CUDA kernels";
        ASSERT_EQ(rc, 0) << modes[i].args << ": " << out << slurp(err);
        expect_json(out, keys[i]);
        EXPECT_FALSE(exists(dir));
    }
}

} // namespace
