// SPDX-License-Identifier: Apache-2.0
// The node layout and the replica partners (runtime/nodes.h): numbering
// by lowest rank (N1, N2), every replica on another node than its rank and
// than the rank's other replicas (P1, P2), sources the exact inverse of
// partners (P3), too few nodes refused, names from the configuration, the
// environment or the host, and the same layout on every rank of a
// loopback world.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "loopback_comm.h"
#include "runtime/backend.h"
#include "runtime/nodes.h"
#include "test_util.h"

namespace {

std::vector<char> names_of(const std::vector<std::string> &v)
{
    std::vector<char> out(v.size() * CKPT__NODE_NAME_MAX, 0);
    for (size_t r = 0; r < v.size(); r++)
        snprintf(&out[r * CKPT__NODE_NAME_MAX], CKPT__NODE_NAME_MAX, "%s", v[r].c_str());
    return out;
}

struct Layout {
    ckpt__nodes n{};
    ckpt__err err{};
    int rc;
    explicit Layout(const std::vector<std::string> &v)
    {
        std::vector<char> b = names_of(v);
        rc = ckpt__nodes_build(b.data(), (uint32_t)v.size(), &n, &err);
    }
    ~Layout() { ckpt__nodes_free(&n); }
};

// Checks P1-P3 on a layout for k = 1..replicas.
void check_partners(const ckpt__nodes &n, int replicas)
{
    std::vector<uint32_t> src(n.nranks);
    for (int k = 1; k <= replicas; k++) {
        std::vector<std::set<uint32_t>> kept(n.nranks);
        for (uint32_t r = 0; r < n.nranks; r++) {
            uint32_t p = ckpt__nodes_partner(&n, r, k);
            ASSERT_LT(p, n.nranks);
            EXPECT_NE(n.node[p], n.node[r]) << "rank " << r << " replica " << k;
            for (int j = 1; j < k; j++)
                EXPECT_NE(n.node[p], n.node[ckpt__nodes_partner(&n, r, j)])
                    << "rank " << r << ": replicas " << j << " and " << k << " share a node";
            kept[p].insert(r);
        }
        for (uint32_t s = 0; s < n.nranks; s++) {
            uint32_t c = ckpt__nodes_sources(&n, s, k, src.data());
            std::set<uint32_t> got(src.begin(), src.begin() + c);
            EXPECT_EQ(got, kept[s]) << "sources of rank " << s << ", replica " << k;
            for (uint32_t i = 1; i < c; i++)
                EXPECT_LT(src[i - 1], src[i]) << "sources in rank order";
        }
    }
}

} // namespace

TEST(Nodes, NumberedByLowestRankWithLocalIndicesInRankOrder)
{
    // Interleaved names, node "b" holding rank 0.
    Layout l({"b", "a", "b", "c", "a", "b"});
    ASSERT_EQ(l.rc, 0) << l.err.msg;
    EXPECT_EQ(l.n.nnodes, 3u);
    const uint32_t node[] = {0, 1, 0, 2, 1, 0}, local[] = {0, 0, 1, 0, 1, 2};
    for (uint32_t r = 0; r < 6; r++) {
        EXPECT_EQ(l.n.node[r], node[r]) << "rank " << r;
        EXPECT_EQ(l.n.local[r], local[r]) << "rank " << r;
    }
    const uint32_t first[] = {0, 3, 5, 6}, byrank[] = {0, 2, 5, 1, 4, 3};
    for (int m = 0; m < 4; m++)
        EXPECT_EQ(l.n.first[m], first[m]);
    for (int i = 0; i < 6; i++)
        EXPECT_EQ(l.n.byrank[i], byrank[i]);
}

TEST(Nodes, PartnersLieOnOtherNodesAndSourcesAreTheirInverse)
{
    // Even nodes, uneven nodes (a small node after a big one and before),
    // one rank per node, and 64 ranks on 5 nodes.
    std::vector<std::vector<std::string>> worlds = {
        {"n0", "n0", "n1", "n1"},
        {"n0", "n0", "n0", "n0", "n1", "n2", "n2"},
        {"x", "y", "z"},
    };
    std::vector<std::string> big;
    for (int r = 0; r < 64; r++)
        big.push_back("node" + std::to_string((r * 7) % 5));
    worlds.push_back(big);
    for (const auto &w : worlds) {
        Layout l(w);
        ASSERT_EQ(l.rc, 0) << l.err.msg;
        int most = l.n.nnodes > 2 ? 2 : 1;
        ASSERT_EQ(ckpt__nodes_check_replicas(&l.n, most, &l.err), 0) << l.err.msg;
        check_partners(l.n, most);
    }
    // The documented rule (P1) on 4 ranks as 2 nodes: each rank's copy
    // goes to the rank of the same local index on the other node.
    Layout l({"n0", "n0", "n1", "n1"});
    EXPECT_EQ(ckpt__nodes_partner(&l.n, 0, 1), 2u);
    EXPECT_EQ(ckpt__nodes_partner(&l.n, 1, 1), 3u);
    EXPECT_EQ(ckpt__nodes_partner(&l.n, 2, 1), 0u);
    EXPECT_EQ(ckpt__nodes_partner(&l.n, 3, 1), 1u);
}

TEST(Nodes, TooFewNodesOrBadReplicasAreRefusedNotWeakened)
{
    Layout one({"a", "a", "a"});
    ASSERT_EQ(one.rc, 0);
    EXPECT_EQ(ckpt__nodes_check_replicas(&one.n, 0, &one.err), 0);
    EXPECT_EQ(ckpt__nodes_check_replicas(&one.n, 1, &one.err), CKPT_EINVAL);
    EXPECT_NE(strstr(one.err.msg, "at least 2 nodes"), nullptr) << one.err.msg;
    Layout two({"a", "b"});
    EXPECT_EQ(ckpt__nodes_check_replicas(&two.n, 1, &two.err), 0);
    EXPECT_EQ(ckpt__nodes_check_replicas(&two.n, 2, &two.err), CKPT_EINVAL);
    EXPECT_EQ(ckpt__nodes_check_replicas(&two.n, 3, &two.err), CKPT_EINVAL);
    EXPECT_EQ(ckpt__nodes_check_replicas(&two.n, -1, &two.err), CKPT_EINVAL);
}

TEST(Nodes, NamesThatAreEmptyOrTooLongAreRefused)
{
    Layout empty({"a", ""});
    EXPECT_EQ(empty.rc, CKPT_EINVAL);
    EXPECT_NE(strstr(empty.err.msg, "rank 1"), nullptr) << empty.err.msg;
    EXPECT_EQ(empty.n.node, nullptr);
    // A name filling the whole slot has no NUL: refused, never read past.
    std::vector<char> b(2 * CKPT__NODE_NAME_MAX, 'x');
    b[CKPT__NODE_NAME_MAX - 1] = 0;
    ckpt__nodes n;
    ckpt__err err;
    EXPECT_EQ(ckpt__nodes_build(b.data(), 2, &n, &err), CKPT_EINVAL);
    EXPECT_NE(strstr(err.msg, "rank 1"), nullptr) << err.msg;
    // Two names with a long common prefix are two nodes.
    std::string p(CKPT__NODE_NAME_MAX - 2, 'p');
    Layout two({p + "1", p + "2"});
    ASSERT_EQ(two.rc, 0);
    EXPECT_EQ(two.n.nnodes, 2u);

    char out[CKPT__NODE_NAME_MAX];
    EXPECT_EQ(ckpt__node_name("", out, &err), CKPT_EINVAL);
    std::string longer(CKPT__NODE_NAME_MAX, 'y');
    EXPECT_EQ(ckpt__node_name(longer.c_str(), out, &err), CKPT_EINVAL);
    EXPECT_NE(strstr(err.msg, "too long"), nullptr) << err.msg;
}

TEST(Nodes, TheNameComesFromTheConfigurationThenTheEnvironmentThenTheHost)
{
    char out[CKPT__NODE_NAME_MAX], host[256];
    ckpt__err err;
    ASSERT_EQ(gethostname(host, sizeof host), 0);
    const char *was = getenv("CKPT_NODE");
    std::string saved = was ? was : "";
    unsetenv("CKPT_NODE");
    ASSERT_EQ(ckpt__node_name(nullptr, out, &err), 0) << err.msg;
    EXPECT_STREQ(out, host);
    setenv("CKPT_NODE", "rack3-node7", 1);
    ASSERT_EQ(ckpt__node_name(nullptr, out, &err), 0);
    EXPECT_STREQ(out, "rack3-node7");
    ASSERT_EQ(ckpt__node_name("given", out, &err), 0);
    EXPECT_STREQ(out, "given");
    setenv("CKPT_NODE", "", 1);
    EXPECT_EQ(ckpt__node_name(nullptr, out, &err), CKPT_EINVAL);
    EXPECT_NE(strstr(err.msg, "CKPT_NODE"), nullptr) << err.msg;
    if (was)
        setenv("CKPT_NODE", saved.c_str(), 1);
    else
        unsetenv("CKPT_NODE");
}

TEST(Nodes, EveryRankOfALoopbackWorldGetsTheSameLayout)
{
    const int n = 6;
    std::vector<std::vector<uint32_t>> got(n);
    std::vector<int> rcs(n, -1);
    std::vector<std::string> errs(n);
    ckl::on_ranks(n, [&](int r, ckpt_comm *c) {
        std::string name = "node" + std::to_string(r % 3 == 0 ? 0 : r % 2 + 1);
        ckpt__nodes nodes;
        ckpt__err err;
        rcs[r] = ckpt__nodes_gather(c, nullptr, name.c_str(), &nodes, &err);
        if (rcs[r] == 0)
            got[r].assign(nodes.node, nodes.node + nodes.nranks);
        else
            errs[r] = err.msg;
        ckpt__nodes_free(&nodes);
        ckpt__comm_destroy(c);
    });
    // node0: ranks 0 and 3; node2 ("r % 2 + 1" of rank 1): ranks 1 and 5;
    // node1: ranks 2 and 4; numbered by lowest rank (N1).
    const std::vector<uint32_t> want = {0, 1, 2, 0, 2, 1};
    for (int r = 0; r < n; r++) {
        ASSERT_EQ(rcs[r], 0) << "rank " << r << ": " << errs[r];
        EXPECT_EQ(got[r], want) << "rank " << r;
    }
    // One rank without a valid name fails the layout on every rank, and
    // nobody hangs.
    ckl::on_ranks(4, [&](int r, ckpt_comm *c) {
        ckpt__nodes nodes;
        ckpt__err err;
        rcs[r] = ckpt__nodes_gather(c, nullptr, r == 2 ? "" : "same", &nodes, &err);
        if (rcs[r])
            errs[r] = err.msg;
        ckpt__nodes_free(&nodes);
        ckpt__comm_destroy(c);
    });
    for (int r = 0; r < 4; r++)
        EXPECT_EQ(rcs[r], CKPT_EINVAL) << "rank " << r;
    EXPECT_NE(errs[0].find("rank 2"), std::string::npos) << errs[0];
}
