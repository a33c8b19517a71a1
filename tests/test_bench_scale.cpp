// SPDX-License-Identifier: Apache-2.0
// `ckpt-bench scale` end to end on 8 ranks, 2 saves: exit 0, the documented
// JSON fields with sane values (every rank makes metadata calls, rank 0 at
// least one per rank for the commit, a commit and a save time measured),
// and the folder left as it was found.  No timing is asserted.
#include <sstream>

#include "test_util.h"

using namespace ckt;

namespace {

std::string bench() { return std::string(CKPT_BIN_DIR) + "/ckpt-bench"; }

// The number after "key": in json, or -1e300 when absent.
double field(const std::string &json, const std::string &key)
{
    size_t at = json.find("\"" + key + "\": ");
    if (at == std::string::npos)
        return -1e300;
    return std::stod(json.substr(at + key.size() + 4));
}

TEST(BenchScale, EightRanksReportSaneFigures)
{
    TempDir tmp;
    std::string dir = tmp.sub("d"), out;
    ASSERT_EQ(run(bench() + " scale --dir " + quote(dir) + " --ranks 8 --saves 2 --json", &out), 0)
        << out;
    EXPECT_EQ(field(out, "ranks"), 8) << out;
    double ops = field(out, "meta_ops_per_save"), ops0 = field(out, "meta_ops_rank0_per_save");
    EXPECT_GE(ops, 8 * 3) << out; // every rank at least creates, renames, syncs
    EXPECT_GE(ops0, 8) << out;    // rank 0 reads every rank's done-record
    EXPECT_LT(ops0, ops) << out;
    EXPECT_GT(field(out, "commit_latency_ms_p50"), 0) << out;
    EXPECT_GT(field(out, "save_s_p50"), 0) << out;
    EXPECT_FALSE(exists(dir)) << "the bench made " << dir << " and must remove it";
    EXPECT_EQ(run(bench() + " scale --dir " + quote(dir) + " --ranks 0", &out), 2) << out;
}

} // namespace
