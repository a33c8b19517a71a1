// SPDX-License-Identifier: Apache-2.0
// ckpt-bench works end to end on small sizes: both subcommands exit 0,
// verify what they restore, print the documented JSON fields, refuse bad
// arguments with exit 2 and leave the folder as they found it.  No figure
// is asserted here: speed is measured by the bench itself, not by tests.
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
    EXPECT_FALSE(exists(dir));
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
                             "train --dir /tmp/x --ranks 2 --busy refuse"})
        EXPECT_EQ(run(bench() + " " + args, &out), 2) << args << ": " << out;
    EXPECT_EQ(run(bench() + " --help", &out), 0);
    EXPECT_EQ(run(bench() + " train --help", &out), 0);
    EXPECT_NE(out.find("--every"), std::string::npos);
    EXPECT_NE(out.find("--ranks"), std::string::npos);
}

} // namespace
