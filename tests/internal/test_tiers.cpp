// SPDX-License-Identifier: Apache-2.0
// The local tier (issue 13; docs/ARCHITECTURE.md, "Tiers") with 4 ranks as
// threads of this process, put on 2 "nodes" by cfg.node_name: each node's
// local folder holds only its ranks' files, committed by the node's lowest
// rank; every durable_every-th save also goes to DIR; a restore takes each
// rank's local copy when it verifies, else the durable copy (a node's
// folder lost, a corrupt chunk), named in the log and by
// ckpt_restore_tier; a crash in a local commit leaves the previous local
// step.  The same with real MPI ranks: tests/mpi/tiers.sh.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "io/manifest.h"
#include "runtime/fault_hooks.h"
#include "shard_ranks.h"
#include "test_util.h"

using ckm::Part;

namespace {

const int N = 4; // ranks 0, 1 on node "n0"; 2, 3 on "n1"

std::string node_of(int r) { return r < 2 ? "n0" : "n1"; }

// A world of N ranks with the local tier: DIR and, per node, LOCAL/<node>.
struct Tiers {
    ckt::TempDir tmp;
    std::string dir = tmp.sub("durable"), local = tmp.sub("local");
    int durable_every = 3;
    int local_keep_last = 0;
    int replicas = 0;
    int no_drain_at_close = 0;
    ckt::Logs log;
    std::vector<std::string> ldirs, nodes;
    Tiers()
    {
        for (int r = 0; r < N; r++) {
            ldirs.push_back(local_of(r));
            nodes.push_back(node_of(r));
        }
    }
    std::string local_of(int r) const { return local + "/" + node_of(r); }

    void tweak(int r, ckpt_config &c)
    {
        c.local_dir = ldirs[(size_t)r].c_str();
        c.node_name = nodes[(size_t)r].c_str();
        c.durable_every = durable_every;
        c.local_keep_last = local_keep_last;
        c.replicas = replicas;
        c.no_drain_at_close = no_drain_at_close;
        c.log_level = CKPT_LOG_INFO;
        c.log_fn = ckt::Logs::fn;
        c.log_user = &log;
    }
    ckpt_ctx *open(int r, ckpt_comm *comm, std::vector<Part> &m)
    {
        return ckm::open_with_model(dir, comm, N, r, m, [&](ckpt_config &c) { tweak(r, c); });
    }
    void save(const std::vector<int64_t> &steps)
    {
        ckm::save_each(N, dir, steps, [&](int r, ckpt_config &c) { tweak(r, c); });
    }
    // Restores the newest step on N ranks: it must be `want`, bit-exact,
    // and rank r must have read tier[r]; then after(r, ctx) when given.
    void restore(int64_t want, const std::vector<ckpt_tier> &tier,
                 const std::function<void(int, ckpt_ctx *)> &after = nullptr)
    {
        ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
            std::vector<Part> m;
            ckpt_ctx *ck = open(r, comm, m);
            ASSERT_NE(ck, nullptr);
            EXPECT_EQ(ckpt_restore_tier(ck), CKPT_TIER_NONE);
            for (auto &p : m)
                std::fill(p.data.begin(), p.data.end(), 0xDEADBEEFu);
            int64_t step = -1;
            EXPECT_EQ(ckpt_restore(ck, CKPT_LATEST, nullptr, &step), 0) << ckpt_last_error(ck);
            EXPECT_EQ(step, want) << "rank " << r;
            EXPECT_EQ(ckpt_restore_tier(ck), tier[(size_t)r]) << "rank " << r;
            for (const auto &p : m)
                EXPECT_EQ(p.first_bad(want), -1) << "rank " << r << ": " << p.name;
            if (after)
                after(r, ck);
            EXPECT_EQ(ckpt_close(ck), 0);
        });
    }
};

std::set<std::string> names_in(const std::string &d)
{
    auto v = ckt::list_dir(d);
    return std::set<std::string>(v.begin(), v.end());
}

using ckt::committed;
using ckt::step_name;

const ckpt_tier L = CKPT_TIER_LOCAL, D = CKPT_TIER_DURABLE;

} // namespace

TEST(Tiers, EachNodeCommitsItsOwnRanksAndEveryThirdSaveIsDurable)
{
    Tiers t;
    t.save({10, 11, 12, 13, 14});
    // Saves 1 and 4 ((k - 1) % 3 == 0) went to DIR as well, and ckpt_close
    // drained the last one, local-only.
    EXPECT_EQ(committed(t.dir),
              (std::vector<std::string>{step_name(10), step_name(13), step_name(14)}));
    EXPECT_TRUE(t.log.has("ckpt_close: step 14 drained into"));
    for (int node = 0; node < 2; node++) {
        std::string l = t.local_of(node * 2);
        std::vector<std::string> want;
        for (int64_t s = 10; s <= 14; s++)
            want.push_back(step_name(s));
        EXPECT_EQ(committed(l), want) << l;
        EXPECT_EQ(ckt::list_dir(l).size(), want.size()) << l << ": no partial folder left";
        // Only this node's ranks' files, and the node's manifest.
        std::set<std::string> files = names_in(l + "/" + step_name(14));
        char a[32], b[32];
        snprintf(a, sizeof a, "rank-%05d.h5", node * 2);
        snprintf(b, sizeof b, "rank-%05d.h5", node * 2 + 1);
        EXPECT_TRUE(files.count(a) && files.count(b)) << l;
        EXPECT_TRUE(files.count("manifest.h5")) << l;
        for (const auto &f : files)
            EXPECT_TRUE(f == a || f == b || f == "manifest.h5" || f.rfind("done-", 0) == 0)
                << l << " holds " << f;
        // The manifest lists this node's two ranks of a world of four.
        ckpt__index idx;
        ckpt__err err;
        ASSERT_EQ(ckpt__manifest_read_part((l + "/" + step_name(14) + "/manifest.h5").c_str(),
                                           &idx, &err),
                  0)
            << err.msg;
        EXPECT_EQ(idx.world_size, 4u);
        ASSERT_EQ(idx.nranks, 2u);
        EXPECT_EQ(idx.ranks[0].rank, (uint32_t)node * 2);
        EXPECT_EQ(idx.ranks[1].rank, (uint32_t)node * 2 + 1);
        // The full-world reader refuses it: it is no durable checkpoint.
        ckpt__index_free(&idx);
        EXPECT_NE(ckpt__manifest_read((l + "/" + step_name(14) + "/manifest.h5").c_str(), &idx,
                                      &err),
                  0);
    }
}

// The local pass spreads the replicated tensors over the node, the durable
// pass over the world, so their rank files differ: each tier keeps a
// layout cache of its own, built once (one cache for both was rebuilt by
// HDF5 on every pass of the ranks whose two layouts differ).
TEST(Tiers, EachTierBuildsItsLayoutOnce)
{
    Tiers t;
    t.durable_every = 1;
    ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
        std::vector<Part> m;
        ckpt_ctx *ck = t.open(r, comm, m);
        ASSERT_NE(ck, nullptr);
        for (int64_t s = 1; s <= 3; s++) {
            for (auto &p : m)
                p.fill(s);
            ckpt_ticket tk;
            ASSERT_EQ(ckpt_save(ck, s, nullptr, &tk), 0) << ckpt_last_error(ck);
            ASSERT_EQ(ckpt_fence(ck, nullptr), 0);
            EXPECT_EQ(ckpt_wait(ck, tk, -1), 0) << ckpt_last_error(ck);
        }
        uint64_t built = 0, cached = 0;
        ckpt__layout_counts(ck, &built, &cached);
        EXPECT_EQ(built, 2u) << "rank " << r;
        EXPECT_EQ(cached, 4u) << "rank " << r;
        EXPECT_EQ(ckpt_close(ck), 0);
    });
}

TEST(Tiers, RestoresFromTheLocalTierAloneBitExact)
{
    Tiers t;
    t.save({1, 2, 3, 4, 5});
    // DIR holds 1 and 4, the local tier 5: the restore takes 5 from the
    // local folders, even with DIR emptied.
    ckt::TempDir::remove_all(t.dir);
    ASSERT_EQ(mkdir(t.dir.c_str(), 0755), 0);
    t.restore(5, {L, L, L, L});
    EXPECT_TRUE(t.log.has("restored step 5", "(local tier)"));
}

TEST(Tiers, ANodeThatLostItsFolderReadsTheDurableCopy)
{
    Tiers t;
    t.no_drain_at_close = 1; // DIR keeps 1 and 4 (the job "failed" after 5)
    t.save({1, 2, 3, 4, 5});
    ckt::TempDir::remove_all(t.local_of(2));
    // Node n1 can reach only DIR's 1 and 4: every rank takes 4, node n0
    // from its local copy, node n1 from DIR.
    t.restore(4, {L, L, D, D});
}

// A byte inside the data of a tensor that rank saved into the local copy
// in folder sd (its manifest's index); 0 when none is found.
static uint64_t tensor_byte(const std::string &sd, int rank)
{
    ckpt__index idx;
    ckpt__err err;
    if (ckpt__manifest_read_part((sd + "/manifest.h5").c_str(), &idx, &err) != 0)
        return 0;
    uint64_t off = 0;
    for (uint32_t i = 0; i < idx.nentries && !off; i++)
        if (idx.entries[i].rank == rank && idx.entries[i].kind == CKPT__ENTRY_TENSOR &&
            idx.entries[i].nbytes > 16)
            off = idx.entries[i].file_off + 8;
    ckpt__index_free(&idx);
    return off;
}

TEST(Tiers, ACorruptLocalChunkIsReadFromTheDurableCopyAndNamed)
{
    Tiers t;
    t.durable_every = 1;
    t.save({7});
    // Damage a chunk rank 0 wrote into its local rank file.
    std::string sd = t.local_of(0) + "/" + step_name(7);
    uint64_t off = tensor_byte(sd, 0);
    ASSERT_NE(off, 0u);
    ASSERT_TRUE(ckt::flip_byte(sd + "/rank-00000.h5", off));
    t.restore(7, {D, L, L, L});
    EXPECT_TRUE(t.log.has("rank 0: the local copy of step 7", "durable copy"));
}

// Every rank's COMMITTED event names the tiers its save committed to
// (saves 1 and 4 also went to DIR) and when it saw its node's local commit:
// after ckpt_save, and for a durable save before the commit in DIR.
TEST(Tiers, TheCommittedEventNamesTheTiersAndTheLocalCommit)
{
    Tiers t;
    struct Seen {
        std::mutex mu;
        std::vector<ckpt_event> ev;
    } seen[N];
    ckm::save_each(N, t.dir, {10, 11, 12, 13, 14}, [&](int r, ckpt_config &c) {
        t.tweak(r, c);
        c.event_fn = [](void *user, const ckpt_event *ev) {
            auto *s = static_cast<Seen *>(user);
            std::lock_guard<std::mutex> g(s->mu);
            if (ev->kind == CKPT_EVENT_COMMITTED)
                s->ev.push_back(*ev);
            else
                EXPECT_EQ(ev->tiers, 0u) << ev->kind;
        };
        c.event_user = &seen[r];
    });
    const unsigned local = 1u << CKPT_TIER_LOCAL, both = local | 1u << CKPT_TIER_DURABLE;
    for (int r = 0; r < N; r++) {
        ASSERT_EQ(seen[r].ev.size(), 5u) << "rank " << r;
        for (size_t k = 0; k < 5; k++) {
            const ckpt_event &e = seen[r].ev[k];
            EXPECT_EQ(e.step, 10 + (int64_t)k);
            EXPECT_EQ(e.tiers, k % 3 == 0 ? both : local) << "rank " << r << " save " << k + 1;
            EXPECT_GT(e.local_commit_s, 0) << "rank " << r;
            EXPECT_LE(e.local_commit_s, e.since_save_s) << "rank " << r;
        }
    }
}

TEST(Tiers, LocalRetentionKeepsTheNewestPerNode)
{
    Tiers t;
    t.local_keep_last = 2;
    t.durable_every = 100;
    t.save({1, 2, 3, 4});
    for (int r : {0, 2})
        EXPECT_EQ(committed(t.local_of(r)),
                  (std::vector<std::string>{step_name(3), step_name(4)}));
    // Save 1, and step 4 drained by ckpt_close.
    EXPECT_EQ(committed(t.dir), (std::vector<std::string>{step_name(1), step_name(4)}));
}

// Node n1's leader (rank 2) is SIGKILLed at the rename of its local
// commit of step 2 (a local-only save): its local folder keeps step 1 and
// at most one partial folder; the next job cleans it and restores step 1.
TEST(Tiers, ACrashInALocalCommitLeavesThePreviousLocalStep)
{
    Tiers t;
    t.durable_every = 5;
    fflush(nullptr);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
            std::vector<Part> m;
            ckpt_ctx *ck = t.open(r, comm, m);
            if (!ck)
                _exit(3);
            for (int64_t s : {1, 2}) {
                for (auto &p : m)
                    p.fill(s);
                if (s == 2 && r == 2)
                    ckpt__fault_arm(ck, CKPT__FAULT_RENAME, 0, CKPT__FAIL_CRASH);
                ckpt_ticket tk;
                if (ckpt_save(ck, s, nullptr, &tk) != 0 || ckpt_fence(ck, nullptr) != 0 ||
                    ckpt_wait(ck, tk, -1) != 0)
                    _exit(4);
            }
            // Node n0 does not wait for n1's local commit: it stays open
            // until rank 2's crash ends the process.
            if (r < 2)
                pause();
        });
        _exit(5); // the crash should have come first
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "status " << st;
    std::string l1 = t.local_of(2);
    EXPECT_EQ(committed(l1), (std::vector<std::string>{step_name(1)}));
    size_t partial = 0;
    for (const auto &n : ckt::list_dir(l1))
        partial += n.find(".partial-") != std::string::npos;
    EXPECT_LE(partial, 1u);
    // Node n0 may have committed step 2; node n1 has only 1, so every
    // rank restores 1 (n0 from its local copy, n1 too).
    t.restore(1, {L, L, L, L});
    for (const auto &n : ckt::list_dir(l1))
        EXPECT_EQ(n.find(".partial-"), std::string::npos) << "left over: " << n;
}

TEST(Tiers, EveryRankMustSetLocalDirOrNone)
{
    ckt::TempDir tmp;
    std::string dir = tmp.sub("d"), l = tmp.sub("l");
    ckl::on_ranks(2, [&](int r, ckpt_comm *comm) {
        ckpt_config cfg = ckm::config(dir);
        if (r == 1)
            cfg.local_dir = l.c_str();
        ckpt_ctx *ck = nullptr;
        EXPECT_EQ(ckpt_open(&cfg, comm, &ck), CKPT_EINVAL);
        EXPECT_NE(std::string(ckpt_last_error(nullptr)).find("local_dir"), std::string::npos)
            << ckpt_last_error(nullptr);
        EXPECT_EQ(ck, nullptr);
    });
}

// cfg.replicas: refused without local_dir, out of 0..2, with no more
// nodes than replicas (never silently fewer copies), with a comm without
// the exchange (the single comm: one rank), and with different values on
// different ranks; taken with 2 nodes and 1 replica.
TEST(Tiers, ReplicasAreCheckedAtOpen)
{
    auto refused = [](const ckpt_config &cfg, ckpt_comm *comm, const char *want) {
        ckpt_ctx *ck = nullptr;
        EXPECT_EQ(ckpt_open(&cfg, comm, &ck), CKPT_EINVAL) << want;
        EXPECT_NE(std::string(ckpt_last_error(nullptr)).find(want), std::string::npos)
            << ckpt_last_error(nullptr);
        EXPECT_EQ(ck, nullptr);
    };
    ckt::TempDir tmp;
    std::string dir = tmp.sub("d"), l = tmp.sub("l");
    ckpt_config cfg = ckm::config(dir);
    cfg.replicas = 1;
    refused(cfg, nullptr, "without local_dir");
    cfg.local_dir = l.c_str();
    cfg.replicas = 3;
    refused(cfg, nullptr, "replicas is 3");
    cfg.replicas = 1;
    refused(cfg, nullptr, "replicas");
    {
        Tiers t;
        // 4 ranks on 2 nodes: 2 replicas need 3 nodes.
        ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
            ckpt_config c = ckm::config(t.dir);
            t.tweak(r, c);
            c.replicas = 2;
            refused(c, comm, "replicas");
        });
        ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
            ckpt_config c = ckm::config(t.dir);
            t.tweak(r, c);
            c.replicas = r == 3 ? 0 : 1;
            refused(c, comm, "same durable_every and replicas");
        });
        ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
            ckpt_config c = ckm::config(t.dir);
            t.tweak(r, c);
            c.replicas = 1;
            ckpt_ctx *ck = nullptr;
            EXPECT_EQ(ckpt_open(&c, comm, &ck), 0) << ckpt_last_error(nullptr);
            EXPECT_EQ(ckpt_close(ck), 0);
        });
    }
    setenv("CKPT_REPLICAS", "2", 1);
    ckpt_config e;
    EXPECT_EQ(ckpt_config_init(&e), 0);
    EXPECT_EQ(e.replicas, 2);
    setenv("CKPT_REPLICAS", "3", 1);
    EXPECT_EQ(ckpt_config_init(&e), CKPT_EINVAL);
    EXPECT_NE(std::string(ckpt_last_error(nullptr)).find("CKPT_REPLICAS"), std::string::npos);
    unsetenv("CKPT_REPLICAS");
}

// ---- Restore from replicas (issue 13; docs/FORMAT.md, "Restore from
// replicas").  With cfg.replicas = 1 on 2 nodes, rank r's partner is the
// rank of the same local index on the other node (0 <-> 2, 1 <-> 3).  The
// replicas are made here by copying a rank's committed local files into
// the partner's LOCAL/replica-of-RRRRR/step-S, as the save side lays them.

namespace {

std::string replica_dir(const std::string &local, int rank)
{
    char b[32];
    snprintf(b, sizeof b, "replica-of-%05d", rank);
    return local + "/" + b;
}

std::string rank_file(int r)
{
    char b[32];
    snprintf(b, sizeof b, "rank-%05d.h5", r);
    return b;
}

std::string done_file(int r)
{
    char b[32];
    snprintf(b, sizeof b, "done-%05d.rec", r);
    return b;
}

// The three files of rank's committed local copy of step in src_local,
// copied as its replica into dst_local.
void make_replica(const std::string &src_local, int64_t step, int rank,
                  const std::string &dst_local)
{
    std::string from = src_local + "/" + step_name(step), rd = replica_dir(dst_local, rank),
                to = rd + "/" + step_name(step);
    ASSERT_TRUE(mkdir(rd.c_str(), 0755) == 0 || errno == EEXIST) << rd;
    ASSERT_EQ(mkdir(to.c_str(), 0755), 0) << to;
    for (const std::string &f : {std::string("manifest.h5"), rank_file(rank), done_file(rank)}) {
        std::string b = ckt::read_file(from + "/" + f);
        ASSERT_FALSE(b.empty()) << from << "/" << f;
        ckt::write_file(to + "/" + f, b);
    }
}

// Every rank's replica of step, on its partner's node.
void replicate_all(Tiers &t, int64_t step)
{
    for (int r = 0; r < N; r++)
        make_replica(t.local_of(r), step, r, t.local_of((r + 2) % N));
}

const ckpt_tier R = CKPT_TIER_REPLICA;

// Whether two files hold the same bytes (without printing them).
::testing::AssertionResult same_file(const std::string &a, const std::string &b)
{
    std::string x = ckt::read_file(a), y = ckt::read_file(b);
    if (!x.empty() && x == y)
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << a << " (" << x.size() << " bytes) differs from " << b << " (" << y.size()
           << " bytes)";
}

// As Tiers::restore, with one replica (the saves before it had none);
// bytes[r][tier] gets what rank r read from each tier.
void restore_rep(Tiers &t, int64_t want, const std::vector<ckpt_tier> &tier,
                 uint64_t (*bytes)[4] = nullptr)
{
    t.replicas = 1;
    t.restore(want, tier, [&](int r, ckpt_ctx *ck) {
        for (int k = 0; bytes && k < 4; k++)
            bytes[r][k] = ckpt__restore_bytes(ck, k);
    });
    t.replicas = 0;
}

} // namespace

// Node n1 lost its local folder (its files and the replicas it kept): its
// ranks fetch theirs from node n0's replicas, no byte comes from DIR, the
// node's local copy is committed again (a second restore reads it as a
// plain local copy), and the replicas n1 kept for n0 come back.
TEST(Tiers, ANodeThatLostItsFolderFetchesItFromTheReplicas)
{
    Tiers t;
    t.save({1, 2, 3, 4, 5});
    replicate_all(t, 5);
    ckt::TempDir::remove_all(t.local_of(2));
    uint64_t bytes[N][4] = {};
    restore_rep(t, 5, {L, L, R, R}, bytes);
    for (int r = 0; r < N; r++) {
        EXPECT_EQ(bytes[r][CKPT_TIER_DURABLE], 0u) << "rank " << r;
        EXPECT_GT(bytes[r][r < 2 ? CKPT_TIER_LOCAL : CKPT_TIER_REPLICA], 0u) << "rank " << r;
    }
    EXPECT_TRUE(t.log.has("rank 2: fetched its files of step 5 from rank 0"));
    EXPECT_TRUE(t.log.has("rank 3: fetched its files of step 5 from rank 1"));
    EXPECT_TRUE(t.log.has("(local tier, fetched from a replica)"));
    std::string l1 = t.local_of(2);
    EXPECT_EQ(committed(l1), (std::vector<std::string>{step_name(5)}));
    for (const auto &n : ckt::list_dir(l1))
        EXPECT_EQ(n.find(".partial-"), std::string::npos) << "left over: " << n;
    for (int r : {2, 3})
        EXPECT_TRUE(same_file(l1 + "/" + step_name(5) + "/" + rank_file(r),
                              replica_dir(t.local_of(0), r) + "/" + step_name(5) + "/" +
                                  rank_file(r)));
    // The replicas node n1 kept of ranks 0 and 1 are re-created.
    for (int r : {0, 1}) {
        std::string rd = replica_dir(l1, r);
        EXPECT_EQ(committed(rd), (std::vector<std::string>{step_name(5)})) << rd;
        for (const std::string &f :
             {std::string("manifest.h5"), rank_file(r), done_file(r)})
            EXPECT_TRUE(same_file(rd + "/" + step_name(5) + "/" + f,
                                  t.local_of(0) + "/" + step_name(5) + "/" + f));
    }
    t.log.clear();
    restore_rep(t, 5, {L, L, L, L});
    EXPECT_FALSE(t.log.has("fetched its files"));
}

// Rank 0's local rank file is cut short: it alone fetches its file from
// its partner's replica (named in the log), and rank 1, which reads
// replicated tensors from it, reads the repaired local copy.
TEST(Tiers, ACorruptLocalFileIsRepairedFromItsReplica)
{
    Tiers t;
    t.save({1, 2, 3, 4, 5});
    replicate_all(t, 5);
    std::string f = t.local_of(0) + "/" + step_name(5) + "/" + rank_file(0);
    std::string good = ckt::read_file(f);
    ASSERT_EQ(truncate(f.c_str(), (off_t)good.size() - 4096), 0);
    uint64_t bytes[N][4] = {};
    restore_rep(t, 5, {R, L, L, L}, bytes);
    for (int r = 0; r < N; r++)
        EXPECT_EQ(bytes[r][CKPT_TIER_DURABLE], 0u) << "rank " << r;
    EXPECT_TRUE(t.log.has("rank 0: its local file of step 5 is not usable"));
    EXPECT_TRUE(t.log.has("rank 0: fetched its files of step 5 from rank 2"));
    EXPECT_FALSE(t.log.has("rank 1: fetched"));
    EXPECT_TRUE(ckt::read_file(f) == good) << f << " is not its replica's copy";
    for (const auto &n : ckt::list_dir(t.local_of(0) + "/" + step_name(5)))
        EXPECT_EQ(n.find(".tmp"), std::string::npos) << "left over: " << n;
}

// Node n1 lost its folder and node n0 lost the replica of rank 2 (rank
// 3's is there): the node cannot be repaired whole, so every rank takes
// DIR's newest step that all reach, n1 from DIR, bit-exact.
TEST(Tiers, ADoubleLossFallsBackToTheDurableCopy)
{
    Tiers t;
    t.no_drain_at_close = 1; // DIR keeps 1 and 4
    t.save({1, 2, 3, 4, 5});
    replicate_all(t, 5);
    ckt::TempDir::remove_all(t.local_of(2));
    ckt::TempDir::remove_all(replica_dir(t.local_of(0), 2));
    restore_rep(t, 4, {L, L, D, D});
    EXPECT_FALSE(t.log.has("fetched its files"));
    EXPECT_TRUE(t.log.has("node 1: rank 2 lacks its local files of step 4"));
}

// The replica of rank 2 has a damaged chunk: rank 2 fetches it, its local
// read fails on that chunk and it reads DIR's copy of the same step
// (named in the log); rank 3's fetched file serves it.
TEST(Tiers, ADamagedReplicaFallsBackToTheDurableCopy)
{
    Tiers t;
    t.durable_every = 1;
    t.save({5});
    replicate_all(t, 5);
    std::string rd = replica_dir(t.local_of(0), 2) + "/" + step_name(5);
    uint64_t off = tensor_byte(rd, 2);
    ASSERT_NE(off, 0u);
    ASSERT_TRUE(ckt::flip_byte(rd + "/" + rank_file(2), off));
    ckt::TempDir::remove_all(t.local_of(2));
    uint64_t bytes[N][4] = {};
    restore_rep(t, 5, {L, L, D, R}, bytes);
    EXPECT_TRUE(t.log.has("rank 2: fetched its files of step 5 from rank 0"));
    EXPECT_TRUE(t.log.has("rank 2: the local copy of step 5", "durable copy"));
    EXPECT_GT(bytes[2][CKPT_TIER_DURABLE], 0u);
    EXPECT_EQ(bytes[3][CKPT_TIER_DURABLE], 0u);
}

// Node n0 lost the replica it kept of rank 2 (the nodes' own copies are
// whole): the restore reads every local copy, then rank 2 sends its files
// and rank 0 lands them as the replica again, byte-identical.
TEST(Tiers, AReplicaAPartnerLostIsRecreatedAfterTheRestore)
{
    Tiers t;
    t.save({1, 2, 3, 4, 5});
    replicate_all(t, 5);
    std::string rd = replica_dir(t.local_of(0), 2);
    ckt::TempDir::remove_all(rd);
    restore_rep(t, 5, {L, L, L, L});
    EXPECT_TRUE(t.log.has("rank 0: re-created the replica of rank 2's files of step 5"));
    EXPECT_FALSE(t.log.has("re-created the replica of rank 3"));
    EXPECT_EQ(committed(rd), (std::vector<std::string>{step_name(5)}));
    EXPECT_EQ(ckt::list_dir(rd).size(), 1u) << "no partial folder left";
    for (const std::string &f : {std::string("manifest.h5"), rank_file(2), done_file(2)})
        EXPECT_TRUE(same_file(rd + "/" + step_name(5) + "/" + f,
                              t.local_of(2) + "/" + step_name(5) + "/" + f));
}

// Node n1 lost its folder and the replica of rank 3 lacks its rank file:
// rank 3's partner sends nothing, so node n1 is not repaired (its partial
// folder removed, rank 2's landed files with it), no rank says it fetched,
// and both ranks of n1 read DIR's copy of the same step.
TEST(Tiers, ANodeWhoseFetchFailsReadsTheDurableCopyAndKeepsNoPartialFolder)
{
    Tiers t;
    t.durable_every = 1;
    t.save({5});
    replicate_all(t, 5);
    ASSERT_EQ(unlink((replica_dir(t.local_of(0), 3) + "/" + step_name(5) + "/" + rank_file(3))
                         .c_str()),
              0);
    ckt::TempDir::remove_all(t.local_of(2));
    restore_rep(t, 5, {L, L, D, D});
    EXPECT_TRUE(t.log.has("rank 1: cannot send rank 3 its files of step 5"));
    EXPECT_TRUE(t.log.has("rank 3: fetching its files of step 5 from rank 1 failed"));
    EXPECT_FALSE(t.log.has("fetched its files"));
    EXPECT_TRUE(committed(t.local_of(2)).empty());
    for (const auto &n : ckt::list_dir(t.local_of(2)))
        EXPECT_EQ(n.find(".partial-"), std::string::npos) << "left over: " << n;
}

// ---- replicas (cfg.replicas; docs/FORMAT.md, "Replicas") -------------------

namespace {

// With 2 nodes and 1 replica, rank r's replica is kept by rank (r + 2) % 4
// (nodes.h, P1), in its node's LOCAL/replica-of-R.
std::string replica_dir(const Tiers &t, int src)
{
    char b[32];
    snprintf(b, sizeof b, "replica-of-%05d", src);
    return t.local_of((src + 2) % N) + "/" + b;
}

// Flips the byte at off of rank's rank file in its node's local folder of
// step, partial or already committed (a DURABLE event comes in either).
bool flip_local(const Tiers &t, int rank, int64_t step, uint64_t off)
{
    std::string l = t.local_of(rank);
    for (int tries = 0; tries < 100; tries++)
        for (const auto &e : ckt::list_dir(l))
            if (e.rfind(step_name(step), 0) == 0 &&
                ckt::flip_byte(l + "/" + e + "/" + rank_file(rank), off))
                return true;
    return false;
}

// An offset inside one of rank's tensors in its local file of step 1 (only
// slices: a slice of rank's own, in its DIR file too).  The layout is
// cached, so the next steps' data sits at the same place.
uint64_t local_data_off(const Tiers &t, int rank, bool slices_only)
{
    ckpt__index idx;
    ckpt__err err;
    std::string man = t.local_of(rank) + "/" + step_name(1) + "/manifest.h5";
    if (ckpt__manifest_read_part(man.c_str(), &idx, &err) != 0) {
        ADD_FAILURE() << err.msg;
        return 0;
    }
    uint64_t off = 0;
    for (uint32_t i = 0; i < idx.nentries && !off; i++) {
        const ckpt__entry &e = idx.entries[i];
        if (e.rank == rank && e.kind == CKPT__ENTRY_TENSOR && e.nbytes > 16 &&
            (!slices_only || e.count[0] != e.shape[0]))
            off = e.file_off + 8;
    }
    ckpt__index_free(&idx);
    return off;
}

std::set<std::string> source_files(int src)
{
    char a[32], b[32];
    snprintf(a, sizeof a, "rank-%05d.h5", src);
    snprintf(b, sizeof b, "done-%05d.rec", src);
    return {"manifest.h5", a, b};
}

size_t partials_in(const std::string &d)
{
    size_t n = 0;
    for (const auto &e : ckt::list_dir(d))
        n += e.find(".partial-") != std::string::npos;
    return n;
}

// Opens rank r with the fixture's tiers, one replica and `extra`.
ckpt_ctx *open_replicated(Tiers &t, int r, ckpt_comm *comm, std::vector<Part> &m,
                          const std::function<void(ckpt_config &)> &extra = nullptr)
{
    return ckm::open_with_model(t.dir, comm, N, r, m, [&](ckpt_config &c) {
        t.tweak(r, c);
        c.replicas = 1;
        if (extra)
            extra(c);
    });
}

// Opens rank r as Tiers does, with a commit timeout of 20 s (a failed save
// must not wait the default) and fn(user, ev) as its event hook.
ckpt_ctx *open_hooked(Tiers &t, int r, ckpt_comm *comm, std::vector<Part> &m, void *user,
                      ckpt_event_fn fn)
{
    return ckm::open_with_model(t.dir, comm, N, r, m, [&](ckpt_config &c) {
        t.tweak(r, c);
        c.commit_timeout_s = 20;
        c.event_user = user;
        c.event_fn = fn;
    });
}

int save_one(ckpt_ctx *ck, std::vector<Part> &m, int64_t s)
{
    for (auto &p : m)
        p.fill(s);
    ckpt_ticket tk;
    int rc = ckpt_save(ck, s, nullptr, &tk);
    if (!rc)
        rc = ckpt_fence(ck, nullptr);
    if (!rc)
        rc = ckpt_wait(ck, tk, -1);
    return rc;
}

} // namespace

// Each rank's committed local files of every save land on its partner's
// node, byte-identical, and nowhere else; the COMMITTED event carries the
// replica bit and replicated_s (after the local commit).
TEST(Tiers, ReplicasLandOnThePartnersNodeByteIdentical)
{
    Tiers t;
    struct Seen {
        std::mutex mu;
        std::vector<ckpt_event> ev;
    } seen[N];
    ckm::save_each(N, t.dir, {1, 2}, [&](int r, ckpt_config &c) {
        t.tweak(r, c);
        c.replicas = 1;
        c.event_fn = [](void *user, const ckpt_event *ev) {
            auto *s = static_cast<Seen *>(user);
            std::lock_guard<std::mutex> g(s->mu);
            if (ev->kind == CKPT_EVENT_COMMITTED)
                s->ev.push_back(*ev);
        };
        c.event_user = &seen[r];
    });
    for (int src = 0; src < N; src++) {
        std::string rd = replica_dir(t, src);
        EXPECT_EQ(committed(rd), (std::vector<std::string>{step_name(1), step_name(2)})) << rd;
        EXPECT_EQ(partials_in(rd), 0u) << rd;
        for (int64_t s : {1, 2}) {
            std::string from = t.local_of(src) + "/" + step_name(s), to = rd + "/" + step_name(s);
            EXPECT_EQ(names_in(to), source_files(src)) << to;
            for (const auto &f : source_files(src)) {
                std::string a = ckt::read_file(from + "/" + f), b = ckt::read_file(to + "/" + f);
                EXPECT_FALSE(a.empty()) << from << "/" << f;
                EXPECT_TRUE(a == b) << to << "/" << f << " differs from the source's";
            }
        }
    }
    // A node keeps the replicas of the other node's ranks only.
    for (int node = 0; node < 2; node++) {
        std::set<std::string> reps;
        for (const auto &e : ckt::list_dir(t.local_of(node * 2)))
            if (e.rfind("replica-of-", 0) == 0)
                reps.insert(e);
        char a[32], b[32];
        snprintf(a, sizeof a, "replica-of-%05d", (1 - node) * 2);
        snprintf(b, sizeof b, "replica-of-%05d", (1 - node) * 2 + 1);
        EXPECT_EQ(reps, (std::set<std::string>{a, b})) << t.local_of(node * 2);
    }
    for (int r = 0; r < N; r++) {
        ASSERT_EQ(seen[r].ev.size(), 2u) << "rank " << r;
        for (const auto &e : seen[r].ev) {
            EXPECT_TRUE(e.tiers & (1u << CKPT_TIER_REPLICA)) << "rank " << r << " step " << e.step;
            EXPECT_GE(e.replicated_s, e.local_commit_s) << "rank " << r;
            EXPECT_LE(e.replicated_s, e.since_save_s) << "rank " << r;
        }
    }
}

// Rank 1's local rank file of step 2 is damaged after its hashes were
// taken and before it is sent: its partner (rank 3) finds it does not
// verify, keeps step 1 only and names it; the save itself commits.
TEST(Tiers, AReplicaThatDoesNotVerifyIsNotKept)
{
    Tiers t;
    t.durable_every = 100; // step 2 is local-only: its DURABLE event comes before replication
    t.no_drain_at_close = 1; // (a drain at close would find the damage too)
    struct Hook {
        Tiers *t;
        uint64_t off = 0;
        bool flipped = false;
        std::mutex mu;
        std::vector<ckpt_event> ev;
    } hook[N];
    ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
        std::vector<Part> m;
        hook[r].t = &t;
        ckpt_ctx *ck = open_replicated(t, r, comm, m, [&](ckpt_config &c) {
            c.event_user = &hook[r];
            c.event_fn = [](void *user, const ckpt_event *ev) {
                auto *h = static_cast<Hook *>(user);
                std::lock_guard<std::mutex> g(h->mu);
                if (ev->kind == CKPT_EVENT_COMMITTED)
                    h->ev.push_back(*ev);
                if (ev->kind == CKPT_EVENT_DURABLE && ev->step == 2 && h->off && !h->flipped)
                    h->flipped = flip_local(*h->t, 1, 2, h->off);
            };
        });
        ASSERT_NE(ck, nullptr);
        EXPECT_EQ(save_one(ck, m, 1), 0) << ckpt_last_error(ck);
        if (r == 1)
            hook[r].off = local_data_off(t, 1, false);
        EXPECT_EQ(save_one(ck, m, 2), 0) << ckpt_last_error(ck);
        EXPECT_EQ(ckpt_close(ck), 0);
    });
    ASSERT_TRUE(hook[1].flipped);
    EXPECT_EQ(committed(replica_dir(t, 1)), (std::vector<std::string>{step_name(1)}));
    EXPECT_EQ(partials_in(replica_dir(t, 1)), 0u);
    EXPECT_TRUE(t.log.has("step 2: replica 1 of rank 1 not kept by rank 3"))
        << t.log.find("replica");
    // The others landed; rank 3's event says its round failed.
    for (int src : {0, 2, 3})
        EXPECT_EQ(committed(replica_dir(t, src)),
                  (std::vector<std::string>{step_name(1), step_name(2)}));
    ASSERT_EQ(hook[3].ev.size(), 2u);
    EXPECT_TRUE(hook[3].ev[0].tiers & (1u << CKPT_TIER_REPLICA));
    EXPECT_FALSE(hook[3].ev[1].tiers & (1u << CKPT_TIER_REPLICA));
    EXPECT_TRUE(hook[3].ev[1].tiers & (1u << CKPT_TIER_LOCAL));
}

TEST(Tiers, ReplicaRetentionKeepsTheNewest)
{
    Tiers t;
    t.local_keep_last = 2;
    t.durable_every = 100;
    ckm::save_each(N, t.dir, {1, 2, 3, 4}, [&](int r, ckpt_config &c) {
        t.tweak(r, c);
        c.replicas = 1;
    });
    for (int src = 0; src < N; src++)
        EXPECT_EQ(committed(replica_dir(t, src)),
                  (std::vector<std::string>{step_name(3), step_name(4)}))
            << replica_dir(t, src);
}

// Rank 3, which keeps rank 1's replica, is SIGKILLed at the rename of its
// landing of step 2 (a rank that is not its node's leader renames nothing
// else): replica-of-00001 keeps step 1 and at most one partial folder,
// which the next open removes.
TEST(Tiers, ACrashInAReplicaLandingLeavesThePreviousReplica)
{
    Tiers t;
    t.durable_every = 5;
    fflush(nullptr);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        alarm(120); // a crash that never comes fails the test, not hangs it
        ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
            std::vector<Part> m;
            ckpt_ctx *ck = open_replicated(t, r, comm, m);
            if (!ck)
                _exit(3);
            for (int64_t s : {1, 2}) {
                if (s == 2 && r == 3)
                    ckpt__fault_arm(ck, CKPT__FAULT_RENAME, 0, CKPT__FAIL_CRASH);
                if (save_one(ck, m, s) != 0)
                    _exit(4);
            }
            if (r != 3)
                pause();
        });
        _exit(5);
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "status " << st;
    std::string rd = replica_dir(t, 1);
    EXPECT_EQ(committed(rd), (std::vector<std::string>{step_name(1)}));
    EXPECT_LE(partials_in(rd), 1u);
    EXPECT_EQ(names_in(rd + "/" + step_name(1)), source_files(1));
    ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
        std::vector<Part> m;
        ckpt_ctx *ck = open_replicated(t, r, comm, m);
        ASSERT_NE(ck, nullptr);
        EXPECT_EQ(ckpt_close(ck), 0);
    });
    EXPECT_EQ(partials_in(rd), 0u) << "left over in " << rd;
    EXPECT_EQ(committed(rd), (std::vector<std::string>{step_name(1)}));
}

// Rank 3's exchange fails at step 2 before it posts anything: rank 1,
// whose replica it keeps and which keeps its, gives up after the timeout
// (half of commit_timeout_s), both stop replicating (logged once), and
// every save still commits locally and durably; ranks 0 and 2 go on.
TEST(Tiers, APeerThatNeverAnswersFailsReplicationNotTheSave)
{
    Tiers t;
    t.durable_every = 1;
    ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
        std::vector<Part> m;
        ckpt_ctx *ck = open_replicated(t, r, comm, m, [](ckpt_config &c) {
            c.commit_timeout_s = 4;
        });
        ASSERT_NE(ck, nullptr);
        for (int64_t s : {1, 2, 3}) {
            if (s == 2 && r == 3) {
                EXPECT_EQ(ckpt__fault_arm(ck, CKPT__FAULT_EXCHANGE, 0, CKPT__FAIL_EIO), 0);
            }
            EXPECT_EQ(save_one(ck, m, s), 0) << "rank " << r << ": " << ckpt_last_error(ck);
        }
        if (r == 3) {
            EXPECT_EQ(ckpt__fault_fired(ck, CKPT__FAULT_EXCHANGE), 1);
        }
        EXPECT_EQ(ckpt_close(ck), 0);
    });
    std::vector<std::string> all = {step_name(1), step_name(2), step_name(3)};
    EXPECT_EQ(committed(t.dir), all);
    EXPECT_EQ(committed(t.local_of(0)), all);
    EXPECT_EQ(committed(t.local_of(2)), all);
    EXPECT_EQ(committed(replica_dir(t, 0)), all);
    EXPECT_EQ(committed(replica_dir(t, 2)), all);
    EXPECT_EQ(committed(replica_dir(t, 1)), (std::vector<std::string>{step_name(1)}));
    EXPECT_EQ(committed(replica_dir(t, 3)), (std::vector<std::string>{step_name(1)}));
    EXPECT_TRUE(t.log.has("step 2: replication by rank 1 failed", "no message from rank 3"))
        << t.log.find("replication");
    EXPECT_TRUE(t.log.has("step 2: replication by rank 3 failed", "injected"))
        << t.log.find("replication");
    EXPECT_EQ(t.log.count("replication by rank 1 failed"), 1);
    EXPECT_EQ(t.log.count("replication by rank 3 failed"), 1);
}

// The drain (docs/ARCHITECTURE.md, "Tiers"): a durable save's DIR files
// are copied from the committed local files, so the snapshot is taken once
// and the fence comes back before the local commit; tensors changed after
// the fence never reach DIR, which restores the saved values bit-exact.
TEST(Tiers, ADurableSaveIsDrainedFromTheLocalFilesAfterTheFence)
{
    Tiers t;
    t.durable_every = 1;
    struct Seen {
        std::mutex mu;
        double snapshot_s = -1;
        std::vector<ckpt_event> committed;
    } seen[N];
    ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
        std::vector<Part> m;
        ckpt_ctx *ck = ckm::open_with_model(t.dir, comm, N, r, m, [&](ckpt_config &c) {
            t.tweak(r, c);
            c.event_user = &seen[r];
            c.event_fn = [](void *user, const ckpt_event *ev) {
                auto *s = static_cast<Seen *>(user);
                std::lock_guard<std::mutex> g(s->mu);
                if (ev->kind == CKPT_EVENT_SNAPSHOT && ev->step == 7)
                    s->snapshot_s = ev->since_save_s;
                if (ev->kind == CKPT_EVENT_COMMITTED)
                    s->committed.push_back(*ev);
            };
        });
        ASSERT_NE(ck, nullptr);
        for (auto &p : m)
            p.fill(7);
        ckpt_ticket tk;
        ASSERT_EQ(ckpt_save(ck, 7, nullptr, &tk), 0) << ckpt_last_error(ck);
        ASSERT_EQ(ckpt_fence(ck, nullptr), 0);
        for (auto &p : m)
            p.fill(99); // the next step's values, while the save persists
        EXPECT_EQ(ckpt_wait(ck, tk, -1), 0) << "rank " << r << ": " << ckpt_last_error(ck);
        EXPECT_EQ(ckpt_close(ck), 0);
    });
    EXPECT_EQ(committed(t.dir), (std::vector<std::string>{step_name(7)}));
    for (int r = 0; r < N; r++) {
        ASSERT_EQ(seen[r].committed.size(), 1u) << "rank " << r;
        const ckpt_event &e = seen[r].committed[0];
        EXPECT_EQ(e.tiers, (1u << CKPT_TIER_LOCAL) | (1u << CKPT_TIER_DURABLE)) << "rank " << r;
        EXPECT_GE(seen[r].snapshot_s, 0) << "rank " << r;
        EXPECT_LE(seen[r].snapshot_s, e.local_commit_s) << "rank " << r << ": one snapshot, "
                                                        << "taken by the local pass";
        EXPECT_LE(e.local_commit_s, e.since_save_s) << "rank " << r;
    }
    // Both nodes' local folders lost: DIR alone restores step 7's values.
    for (int node = 0; node < 2; node++)
        ckt::TempDir::remove_all(t.local_of(node * 2));
    t.restore(7, {D, D, D, D});
}

// Rank 1's local file of step 2 is damaged after its commit and before the
// drain reads it: the drain finds the chunk that fails its hash, names the
// local file, and step 2 is not committed in DIR (no partial folder left),
// which keeps step 1; the newest step every rank restores is then step 1.
TEST(Tiers, ADrainFindsADamagedLocalFileAndDIRKeepsItsStep)
{
    Tiers t;
    t.durable_every = 1;
    struct Hook {
        Tiers *t;
        uint64_t off = 0;
        bool flipped = false;
    } hook[N];
    std::string errs[N];
    ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
        std::vector<Part> m;
        hook[r].t = &t;
        ckpt_ctx *ck = open_hooked(t, r, comm, m, &hook[r], [](void *user, const ckpt_event *ev) {
            auto *h = static_cast<Hook *>(user);
            if (ev->kind == CKPT_EVENT_DURABLE && ev->step == 2 && h->off && !h->flipped)
                h->flipped = flip_local(*h->t, 1, 2, h->off);
        });
        ASSERT_NE(ck, nullptr);
        EXPECT_EQ(save_one(ck, m, 1), 0) << ckpt_last_error(ck);
        if (r == 1) {
            hook[r].off = local_data_off(t, 1, true);
            ASSERT_NE(hook[r].off, 0u) << "no slice of rank 1 in its local file";
        }
        EXPECT_NE(save_one(ck, m, 2), 0) << "rank " << r;
        errs[r] = ckpt_last_error(ck);
        EXPECT_EQ(ckpt_close(ck), 0);
    });
    ASSERT_TRUE(hook[1].flipped);
    EXPECT_NE(errs[1].find("failed its checksum"), std::string::npos) << errs[1];
    EXPECT_NE(errs[1].find(step_name(2) + "/rank-00001.h5"), std::string::npos) << errs[1];
    EXPECT_NE(errs[1].find("drain of"), std::string::npos) << errs[1];
    EXPECT_EQ(committed(t.dir), (std::vector<std::string>{step_name(1)}));
    EXPECT_EQ(partials_in(t.dir), 0u);
    // The local tiers committed step 2 (rank 1's copy damaged since).
    EXPECT_EQ(committed(t.local_of(0)), (std::vector<std::string>{step_name(1), step_name(2)}));
    t.restore(1, {L, L, L, L});
}

// The newest save was local-only: ckpt_close drains it into DIR, so DIR
// alone restores the job's last step bit-exact; a save that was durable is
// not written again at close.
TEST(Tiers, CloseDrainsTheNewestLocalOnlySaveIntoDIR)
{
    Tiers t;
    t.durable_every = 100;
    t.save({1, 2, 3});
    EXPECT_EQ(committed(t.dir), (std::vector<std::string>{step_name(1), step_name(3)}));
    EXPECT_EQ(partials_in(t.dir), 0u);
    EXPECT_TRUE(t.log.has("ckpt_close: step 3 drained into"));
    EXPECT_FALSE(t.log.has("ckpt_close: step 1 drained"));
    for (int node = 0; node < 2; node++)
        ckt::TempDir::remove_all(t.local_of(node * 2));
    t.restore(3, {D, D, D, D});
    // The restoring job saved nothing: its close drains nothing.
    EXPECT_EQ(committed(t.dir), (std::vector<std::string>{step_name(1), step_name(3)}));
}

// Different no_drain_at_close values on different ranks are refused at
// open, on every rank (a close drain on some ranks only would wait for
// the others).
TEST(Tiers, NoDrainAtCloseMustBeTheSameOnEveryRank)
{
    Tiers t;
    ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
        ckpt_config c = ckm::config(t.dir);
        t.tweak(r, c);
        c.no_drain_at_close = r == 3;
        ckpt_ctx *ck = nullptr;
        EXPECT_EQ(ckpt_open(&c, comm, &ck), CKPT_EINVAL);
        EXPECT_NE(std::string(ckpt_last_error(nullptr)).find("no_drain_at_close"),
                  std::string::npos)
            << ckpt_last_error(nullptr);
        EXPECT_EQ(ck, nullptr);
    });
}

// Rank 1's local file of the last (local-only) save is damaged before
// ckpt_close: the close drain finds the chunk that fails its hash, every
// rank's ckpt_close fails, rank 1's naming the file, and DIR keeps step 1
// with no partial folder.
TEST(Tiers, ACloseDrainOfADamagedLocalFileFailsAndDIRKeepsItsStep)
{
    Tiers t;
    t.durable_every = 100;
    std::string errs[N];
    int rcs[N];
    ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
        std::vector<Part> m;
        ckpt_ctx *ck = ckm::open_with_model(t.dir, comm, N, r, m, [&](ckpt_config &c) {
            t.tweak(r, c);
            c.commit_timeout_s = 20;
        });
        ASSERT_NE(ck, nullptr);
        EXPECT_EQ(save_one(ck, m, 1), 0) << ckpt_last_error(ck);
        EXPECT_EQ(save_one(ck, m, 2), 0) << ckpt_last_error(ck);
        if (r == 1) {
            uint64_t off = local_data_off(t, 1, true);
            ASSERT_NE(off, 0u);
            ASSERT_TRUE(flip_local(t, 1, 2, off));
        }
        rcs[r] = ckpt_close(ck);
        errs[r] = ckpt_last_error(nullptr);
    });
    for (int r = 0; r < N; r++)
        EXPECT_NE(rcs[r], 0) << "rank " << r;
    EXPECT_NE(errs[1].find("failed its checksum"), std::string::npos) << errs[1];
    EXPECT_NE(errs[1].find(step_name(2) + "/rank-00001.h5"), std::string::npos) << errs[1];
    EXPECT_NE(errs[1].find("ckpt_close: step 2"), std::string::npos) << errs[1];
    EXPECT_EQ(committed(t.dir), (std::vector<std::string>{step_name(1)}));
    EXPECT_EQ(partials_in(t.dir), 0u);
    t.restore(1, {L, L, L, L});
}

// A shutdown request (the request file, found by rank 0 and agreed) makes
// the next save durable whatever the cadence; a step-rule save on the way
// does not use the request up while it may be local-only.
TEST(Tiers, AShutdownRequestMakesTheNextSaveDurable)
{
    Tiers t;
    t.durable_every = 100;
    t.no_drain_at_close = 1; // DIR gets only what the cadence and requests send
    int due[N][3];
    ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
        std::vector<Part> m;
        ckpt_ctx *ck = ckm::open_with_model(t.dir, comm, N, r, m, [&](ckpt_config &c) {
            t.tweak(r, c);
            c.policy_request_file = "stop-now";
            c.policy_every_steps = 5;
            c.policy_sync_steps = 2;
        });
        ASSERT_NE(ck, nullptr);
        EXPECT_EQ(save_one(ck, m, 1), 0) << ckpt_last_error(ck); // save 1: durable
        EXPECT_EQ(save_one(ck, m, 2), 0) << ckpt_last_error(ck);
        if (r == 0) {
            FILE *f = fopen((t.dir + "/stop-now").c_str(), "w");
            ASSERT_NE(f, nullptr);
            fclose(f);
        }
        // Calls 1..3: call 1 (step 5) is due by the step rule alone, and
        // local-only; call 2 (step 6) is an agreement point, where the
        // request is taken: its save is durable.
        int64_t steps[3] = {5, 6, 7};
        for (int i = 0; i < 3; i++) {
            due[r][i] = ckpt_policy_due(ck, steps[i]);
            if (due[r][i] == 1) {
                EXPECT_EQ(save_one(ck, m, steps[i]), 0) << ckpt_last_error(ck);
            }
        }
        EXPECT_EQ(ckpt_close(ck), 0);
    });
    for (int r = 0; r < N; r++)
        EXPECT_EQ(std::vector<int>(due[r], due[r] + 3), (std::vector<int>{1, 1, 0}))
            << "rank " << r;
    EXPECT_EQ(committed(t.dir), (std::vector<std::string>{step_name(1), step_name(6)}));
    EXPECT_EQ(committed(t.local_of(0)),
              (std::vector<std::string>{step_name(1), step_name(2), step_name(5),
                                        step_name(6)}));
    EXPECT_TRUE(t.log.has("stop-now"));
}

// The partner's disk is full when a replica lands (its files cannot be
// allocated): that replica is not kept, the log names it and the cause,
// no partial folder is left, the save itself commits, and the next save's
// replica lands again.
TEST(Tiers, AFullDiskWhereAReplicaLandsKeepsThePreviousOneAndTheNextLands)
{
    Tiers t;
    t.durable_every = 100;
    ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
        std::vector<Part> m;
        ckpt_ctx *ck = open_replicated(t, r, comm, m);
        ASSERT_NE(ck, nullptr);
        EXPECT_EQ(save_one(ck, m, 1), 0) << ckpt_last_error(ck);
        if (r == 3) { // the partner of rank 1 (replica_dir)
            ASSERT_EQ(ckpt__fault_arm(ck, CKPT__FAULT_REPLICA_ROOM, 0, CKPT__FAIL_ENOSPC), 0);
        }
        EXPECT_EQ(save_one(ck, m, 2), 0) << "rank " << r << ": " << ckpt_last_error(ck);
        EXPECT_EQ(save_one(ck, m, 3), 0) << "rank " << r << ": " << ckpt_last_error(ck);
        if (r == 3) {
            EXPECT_EQ(ckpt__fault_fired(ck, CKPT__FAULT_REPLICA_ROOM), 1);
        }
        EXPECT_EQ(ckpt_close(ck), 0);
    });
    EXPECT_EQ(committed(replica_dir(t, 1)),
              (std::vector<std::string>{step_name(1), step_name(3)}));
    EXPECT_EQ(partials_in(replica_dir(t, 1)), 0u);
    EXPECT_TRUE(t.log.has("step 2: replica 1 of rank 1 not kept by rank 3", "No space left"))
        << t.log.find("replica");
    for (int src : {0, 2, 3})
        EXPECT_EQ(committed(replica_dir(t, src)),
                  (std::vector<std::string>{step_name(1), step_name(2), step_name(3)}));
    // The local tiers have every step.
    EXPECT_EQ(committed(t.local_of(2)),
              (std::vector<std::string>{step_name(1), step_name(2), step_name(3)}));
}

// DIR's disk fills up during a drain (rank 1's first write into DIR), or
// rank 2's local file cannot be read back (EIO): save 2 fails on every
// rank, the failing rank's error names the cause and the drain, DIR keeps
// step 1 with no partial folder, the local tiers keep step 2, and the
// next durable save commits in DIR.
TEST(Tiers, AFullDiskOrAReadErrorInADrainFailsOnlyThatSave)
{
    struct Case {
        int rank, site, action;
        const char *want;
    } cases[] = {{1, CKPT__FAULT_WRITE, CKPT__FAIL_ENOSPC, "No space left"},
                 {2, CKPT__FAULT_READ, CKPT__FAIL_EIO, "reading the source"}};
    for (const Case &k : cases) {
        SCOPED_TRACE(k.want);
        Tiers t;
        t.durable_every = 1;
        struct Hook {
            const Case *k;
            int rank;
            ckpt_ctx *ck = nullptr;
        } hook[N];
        std::string errs[N];
        ckl::on_ranks(N, [&](int r, ckpt_comm *comm) {
            std::vector<Part> m;
            hook[r] = {&k, r};
            ckpt_ctx *ck = open_hooked(t, r, comm, m, &hook[r], [](void *user,
                                                                   const ckpt_event *ev) {
                auto *h = static_cast<Hook *>(user);
                // After the local pass's last write and read: the next are
                // the drain's.
                if (ev->kind == CKPT_EVENT_DURABLE && ev->step == 2 && h->rank == h->k->rank)
                    ckpt__fault_arm(h->ck, h->k->site, 0, h->k->action);
            });
            ASSERT_NE(ck, nullptr);
            hook[r].ck = ck;
            EXPECT_EQ(save_one(ck, m, 1), 0) << ckpt_last_error(ck);
            EXPECT_NE(save_one(ck, m, 2), 0) << "rank " << r;
            errs[r] = ckpt_last_error(ck);
            EXPECT_EQ(save_one(ck, m, 3), 0) << "rank " << r << ": " << ckpt_last_error(ck);
            if (r == k.rank) {
                EXPECT_EQ(ckpt__fault_fired(ck, k.site), 1);
            }
            EXPECT_EQ(ckpt_close(ck), 0);
        });
        const std::string &e = errs[k.rank];
        EXPECT_NE(e.find(k.want), std::string::npos) << e;
        EXPECT_NE(e.find("drain of"), std::string::npos) << e;
        EXPECT_EQ(committed(t.dir), (std::vector<std::string>{step_name(1), step_name(3)}));
        EXPECT_EQ(partials_in(t.dir), 0u);
        for (int node = 0; node < 2; node++)
            EXPECT_EQ(committed(t.local_of(node * 2)),
                      (std::vector<std::string>{step_name(1), step_name(2), step_name(3)}));
        t.restore(3, {L, L, L, L});
    }
}
