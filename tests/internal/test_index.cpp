// SPDX-License-Identifier: Apache-2.0
// Unit tests of the index encoding (io/index.c), name rules (io/names.c)
// and the string map (io/strmap.c).  The decoder is fed every truncation,
// every single-bit flip and hand-crafted records whose trailing checksum is
// valid but whose fields are not: it must refuse each with CKPT_ECORRUPT
// (CKPT_EFORMAT for a newer major version) and never read out of bounds,
// which the ASan build checks.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <xxhash.h>

extern "C" {
#include "io/index.h"
#include "io/names.h"
#include "io/strmap.h"
}

namespace {

// Byte offsets of the encoding (docs/FORMAT.md "index", io/index.c).
constexpr size_t kHeader = 80;
constexpr size_t kOffMajor = 8;
constexpr size_t kOffStep = 16;
constexpr size_t kOffWorld = 32;
constexpr size_t kOffNranks = 36;
constexpr size_t kOffNentries = 40;
constexpr size_t kOffNhashes = 48;
constexpr size_t kOffChunk = 56;
constexpr size_t kRankRec = 24;
constexpr size_t kEntryFixed = 48;

void put_le(std::vector<uint8_t> &b, size_t off, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[off + i] = (uint8_t)(v >> (8 * i));
}

// Recomputes the XXH3 trailer so that only the fields under test are wrong.
void reseal(std::vector<uint8_t> &b)
{
    ASSERT_GE(b.size(), 8u);
    put_le(b, b.size() - 8, XXH3_64bits(b.data(), b.size() - 8), 8);
}

// An index owned by C++ containers; view() gives the C struct encode reads.
struct Model {
    struct E {
        std::string name;
        int kind = CKPT__ENTRY_TENSOR;
        int dtype = CKPT_F32; // an int: tests store values no ckpt_dtype has
        int ndim = 0;
        int32_t rank = 0;
        std::vector<int64_t> shape, start, count;
        uint64_t nbytes = 0;
        uint64_t file_off = CKPT__NO_OFFSET;
        uint64_t chunk0 = 0;
        uint32_t nchunks = 0;
    };
    uint16_t minor = 0; // a 1.0 index unless a test says otherwise
    int64_t step = 1234;
    int64_t created = 1700000000;
    uint32_t world = 2;
    uint64_t chunk = 4096;
    std::vector<ckpt__rankrec> ranks;
    std::vector<E> ents;
    std::vector<uint64_t> hashes;

    std::vector<ckpt__entry> cents;
    ckpt__index idx;

    // Adds an entry whose size, chunks and offset follow from its shape.
    void add(const std::string &name, int kind, ckpt_dtype dt, int32_t rank,
             std::vector<int64_t> shape, std::vector<int64_t> start = {},
             std::vector<int64_t> count = {}, uint64_t off = 4096)
    {
        E e;
        e.name = name;
        e.kind = kind;
        e.dtype = dt;
        e.ndim = (int)shape.size();
        e.rank = rank;
        e.shape = shape;
        e.start = start.empty() ? std::vector<int64_t>(shape.size(), 0) : start;
        e.count = count.empty() ? shape : count;
        uint64_t nb = ckpt_dtype_size(dt);
        for (int64_t c : e.count)
            nb *= (uint64_t)c;
        e.nbytes = nb;
        e.nchunks = (uint32_t)((nb + chunk - 1) / chunk);
        e.chunk0 = hashes.size();
        e.file_off = nb ? off : CKPT__NO_OFFSET;
        for (uint32_t c = 0; c < e.nchunks; c++)
            hashes.push_back(0x1000 + hashes.size() * 0x9E3779B97F4A7C15ull);
        ents.push_back(e);
    }

    const ckpt__index &view()
    {
        cents.assign(ents.size(), ckpt__entry{});
        for (size_t i = 0; i < ents.size(); i++) {
            const E &e = ents[i];
            ckpt__entry &c = cents[i];
            c.name = const_cast<char *>(e.name.c_str());
            c.kind = e.kind;
            // memcpy, so that C++ never loads an out-of-range enum value.
            static_assert(sizeof c.dtype == sizeof e.dtype, "ckpt_dtype is int-sized");
            memcpy(&c.dtype, &e.dtype, sizeof c.dtype);
            c.ndim = e.ndim;
            c.rank = e.rank;
            for (int d = 0; d < e.ndim && d < CKPT_MAX_NDIM; d++) {
                c.shape[d] = e.shape[d];
                c.start[d] = e.start[d];
                c.count[d] = e.count[d];
            }
            c.nbytes = e.nbytes;
            c.file_off = e.file_off;
            c.chunk0 = e.chunk0;
            c.nchunks = e.nchunks;
        }
        memset(&idx, 0, sizeof idx);
        idx.minor = minor;
        idx.step = step;
        idx.created_unix = created;
        idx.world_size = world;
        idx.chunk_bytes = chunk;
        for (int k = 0; k < 16; k++)
            idx.uuid[k] = (uint8_t)(0xA0 + k);
        idx.ranks = ranks.data();
        idx.nranks = (uint32_t)ranks.size();
        idx.entries = cents.data();
        idx.nentries = (uint32_t)cents.size();
        idx.hashes = hashes.data();
        idx.nhashes = hashes.size();
        // Node hashes and rank roots, so that the tree checks pass.
        for (auto &c : cents)
            c.hash = ckpt__entry_hash(&c, hashes.data() + c.chunk0);
        for (auto &r : ranks)
            r.root = ckpt__rank_root(&idx, r.rank);
        return idx;
    }

    std::vector<uint8_t> encode()
    {
        view();
        uint8_t *buf = nullptr;
        size_t len = 0;
        ckpt__err err;
        ckpt__err_clear(&err);
        int rc = ckpt__index_encode(&idx, &buf, &len, &err);
        EXPECT_EQ(rc, 0) << err.msg;
        std::vector<uint8_t> v(buf, buf + len);
        free(buf);
        return v;
    }
};

// Two ranks; full, sharded, empty, scalar, metadata and non-ASCII entries;
// the same name used as tensor and metadata, and on both ranks.
Model sample()
{
    Model m;
    m.ranks = {{0, 1u << 20, 0, 0}, {1, 1u << 20, 0, 0}};
    m.add("w", CKPT__ENTRY_TENSOR, CKPT_F32, 0, {4, 1024});                 // 4 chunks
    m.add("emb", CKPT__ENTRY_TENSOR, CKPT_BF16, 1, {8, 300}, {4, 0}, {4, 300}, 8192);
    m.add("emb", CKPT__ENTRY_TENSOR, CKPT_BF16, 0, {8, 300}, {0, 0}, {4, 300}, 65536);
    m.add("empty", CKPT__ENTRY_TENSOR, CKPT_F32, 0, {0, 5});
    m.add("scalar", CKPT__ENTRY_TENSOR, CKPT_I64, 0, {}, {}, {}, 131072);
    m.add("rng", CKPT__ENTRY_META, CKPT_BYTES, 0, {16}, {}, {}, 200000);
    m.add("rng", CKPT__ENTRY_META, CKPT_BYTES, 1, {16}, {}, {}, 300000);
    m.add("rng", CKPT__ENTRY_TENSOR, CKPT_U8, 0, {16}, {}, {}, 400000);
    m.add("empty meta", CKPT__ENTRY_META, CKPT_BYTES, 1, {0});
    m.add("ünïcødé/日本語 .x", CKPT__ENTRY_TENSOR, CKPT_FP8_E5M2, 1, {3, 2, 5000}, {}, {},
          500000);
    return m;
}

struct Decoded {
    ckpt__index idx;
    ckpt__err err;
    int rc;
    Decoded(const std::vector<uint8_t> &v, const char *what = "test-index")
    {
        ckpt__err_clear(&err);
        // An exact-size heap copy, so ASan sees any read past the end.
        uint8_t *p = (uint8_t *)malloc(v.size() ? v.size() : 1);
        if (!v.empty())
            memcpy(p, v.data(), v.size());
        rc = ckpt__index_decode(p, v.size(), what, &idx, &err);
        free(p);
    }
    ~Decoded() { ckpt__index_free(&idx); }
};

// Offsets of every byte the decoder ignores (reserved fields, and before
// format 1.1 the rank records' u32 that 1.1 uses for the metadata hash),
// for the flip test.  The minor version is kept (idx.minor).
std::set<size_t> reserved_bytes(const std::vector<uint8_t> &v)
{
    std::set<size_t> s;
    for (size_t k = 12; k < 16; k++)
        s.insert(k);
    for (size_t k = 44; k < 48; k++)
        s.insert(k);
    uint32_t nranks = v[kOffNranks] | v[kOffNranks + 1] << 8;
    uint32_t nent = v[kOffNentries] | v[kOffNentries + 1] << 8;
    unsigned minor = v[10] | v[11] << 8;
    size_t off = kHeader;
    for (uint32_t r = 0; r < nranks; r++, off += kRankRec)
        for (size_t k = 4; k < 8 && minor < CKPT__MINOR_META_HASH; k++)
            s.insert(off + k);
    for (uint32_t i = 0; i < nent; i++) {
        size_t nlen = v[off] | v[off + 1] << 8, ndim = v[off + 4];
        for (size_t k = 5; k < 8; k++)
            s.insert(off + k);
        off += kEntryFixed + 24 * ndim + nlen;
    }
    return s;
}

// Offset of entry i in an encoding.
size_t entry_offset(const std::vector<uint8_t> &v, uint32_t i)
{
    uint32_t nranks = v[kOffNranks] | v[kOffNranks + 1] << 8;
    size_t off = kHeader + nranks * kRankRec;
    for (uint32_t k = 0; k < i; k++) {
        size_t nlen = v[off] | v[off + 1] << 8, ndim = v[off + 4];
        off += kEntryFixed + 24 * ndim + nlen;
    }
    return off;
}

// ---- encode / decode ---------------------------------------------------------

TEST(Index, RoundTripKeepsEveryField)
{
    Model m = sample();
    std::vector<uint8_t> enc = m.encode();
    Decoded d(enc);
    ASSERT_EQ(d.rc, 0) << d.err.msg;
    const ckpt__index &a = m.idx, &b = d.idx;
    EXPECT_EQ(b.step, a.step);
    EXPECT_EQ(b.created_unix, a.created_unix);
    EXPECT_EQ(b.world_size, a.world_size);
    EXPECT_EQ(b.chunk_bytes, a.chunk_bytes);
    EXPECT_EQ(memcmp(b.uuid, a.uuid, 16), 0);
    ASSERT_EQ(b.nranks, a.nranks);
    for (uint32_t r = 0; r < a.nranks; r++) {
        EXPECT_EQ(b.ranks[r].rank, a.ranks[r].rank);
        EXPECT_EQ(b.ranks[r].file_bytes, a.ranks[r].file_bytes);
        EXPECT_EQ(b.ranks[r].root, a.ranks[r].root);
    }
    ASSERT_EQ(b.nentries, a.nentries);
    for (uint32_t i = 0; i < a.nentries; i++) {
        const ckpt__entry &x = a.entries[i], &y = b.entries[i];
        SCOPED_TRACE(x.name);
        EXPECT_STREQ(y.name, x.name);
        EXPECT_EQ(y.kind, x.kind);
        EXPECT_EQ(y.dtype, x.dtype);
        EXPECT_EQ(y.ndim, x.ndim);
        EXPECT_EQ(y.rank, x.rank);
        for (int dd = 0; dd < x.ndim; dd++) {
            EXPECT_EQ(y.shape[dd], x.shape[dd]);
            EXPECT_EQ(y.start[dd], x.start[dd]);
            EXPECT_EQ(y.count[dd], x.count[dd]);
        }
        EXPECT_EQ(y.nbytes, x.nbytes);
        EXPECT_EQ(y.file_off, x.file_off);
        EXPECT_EQ(y.chunk0, x.chunk0);
        EXPECT_EQ(y.nchunks, x.nchunks);
        EXPECT_EQ(y.hash, x.hash);
    }
    ASSERT_EQ(b.nhashes, a.nhashes);
    for (uint64_t i = 0; i < a.nhashes; i++)
        EXPECT_EQ(b.hashes[i], a.hashes[i]);

    // Re-encoding the decoded index gives the same bytes.
    uint8_t *buf = nullptr;
    size_t len = 0;
    ckpt__err err;
    ASSERT_EQ(ckpt__index_encode(&d.idx, &buf, &len, &err), 0);
    EXPECT_EQ(std::vector<uint8_t>(buf, buf + len), enc);
    free(buf);
}

TEST(Index, EmptyEntriesHaveNoOffsetAndNoChunks)
{
    Model m = sample();
    Decoded d(m.encode());
    ASSERT_EQ(d.rc, 0) << d.err.msg;
    const ckpt__entry *e = ckpt__index_find(&d.idx, CKPT__ENTRY_TENSOR, 0, "empty");
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->nbytes, 0u);
    EXPECT_EQ(e->nchunks, 0u);
    EXPECT_EQ(e->file_off, CKPT__NO_OFFSET);
    e = ckpt__index_find(&d.idx, CKPT__ENTRY_META, 1, "empty meta");
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->file_off, CKPT__NO_OFFSET);
}

TEST(Index, FindDistinguishesKindAndRank)
{
    Model m = sample();
    Decoded d(m.encode());
    ASSERT_EQ(d.rc, 0) << d.err.msg;
    const ckpt__entry *t0 = ckpt__index_find(&d.idx, CKPT__ENTRY_TENSOR, 0, "rng");
    const ckpt__entry *m0 = ckpt__index_find(&d.idx, CKPT__ENTRY_META, 0, "rng");
    const ckpt__entry *m1 = ckpt__index_find(&d.idx, CKPT__ENTRY_META, 1, "rng");
    ASSERT_TRUE(t0 && m0 && m1);
    EXPECT_EQ(t0->kind, CKPT__ENTRY_TENSOR);
    EXPECT_EQ(t0->dtype, CKPT_U8);
    EXPECT_EQ(m0->rank, 0);
    EXPECT_EQ(m1->rank, 1);
    EXPECT_NE(m0, m1);
    const ckpt__entry *s0 = ckpt__index_find(&d.idx, CKPT__ENTRY_TENSOR, 0, "emb");
    const ckpt__entry *s1 = ckpt__index_find(&d.idx, CKPT__ENTRY_TENSOR, 1, "emb");
    ASSERT_TRUE(s0 && s1);
    EXPECT_EQ(s0->start[0], 0);
    EXPECT_EQ(s1->start[0], 4);
    EXPECT_EQ(s1->count[0], 4);
    EXPECT_EQ(s1->shape[0], 8);
    EXPECT_EQ(ckpt__index_find(&d.idx, CKPT__ENTRY_TENSOR, 1, "w"), nullptr);
    EXPECT_EQ(ckpt__index_find(&d.idx, CKPT__ENTRY_META, 0, "w"), nullptr);
    EXPECT_EQ(ckpt__index_find(&d.idx, CKPT__ENTRY_TENSOR, 0, "nope"), nullptr);
    EXPECT_NE(ckpt__index_find(&d.idx, CKPT__ENTRY_TENSOR, 1, "ünïcødé/日本語 .x"), nullptr);
}

TEST(Index, EmptyIndexRoundTrips)
{
    Model m;
    m.world = 1;
    m.ranks = {{0, 0, 0, 0}};
    Decoded d(m.encode());
    ASSERT_EQ(d.rc, 0) << d.err.msg;
    EXPECT_EQ(d.idx.nentries, 0u);
    EXPECT_EQ(d.idx.nhashes, 0u);
    ckpt__err err;
    EXPECT_EQ(ckpt__index_check_tree(&d.idx, "empty", &err), 0) << err.msg;
}

// ---- hash tree --------------------------------------------------------------

TEST(Index, TreeChecksPassAndDetectEachChange)
{
    Model m = sample();
    Decoded d(m.encode());
    ASSERT_EQ(d.rc, 0) << d.err.msg;
    ckpt__err err;
    ckpt__err_clear(&err);
    ASSERT_EQ(ckpt__index_check_tree(&d.idx, "tree", &err), 0) << err.msg;

    // A leaf of "w" changes: its node hash no longer matches.
    d.idx.hashes[2] ^= 1;
    EXPECT_EQ(ckpt__index_check_tree(&d.idx, "tree", &err), CKPT_ECORRUPT);
    EXPECT_NE(std::string(err.msg).find("'w'"), std::string::npos) << err.msg;
    EXPECT_NE(std::string(err.msg).find("tree"), std::string::npos) << err.msg;
    d.idx.hashes[2] ^= 1;

    // A node hash changes: the entry and then the rank root disagree.
    d.idx.entries[1].hash ^= 1;
    EXPECT_EQ(ckpt__index_check_tree(&d.idx, "tree", &err), CKPT_ECORRUPT);
    EXPECT_NE(std::string(err.msg).find("'emb'"), std::string::npos) << err.msg;
    d.idx.entries[1].hash ^= 1;

    // A root changes.
    d.idx.ranks[1].root ^= 1;
    EXPECT_EQ(ckpt__index_check_tree(&d.idx, "tree", &err), CKPT_ECORRUPT);
    EXPECT_NE(std::string(err.msg).find("rank 1"), std::string::npos) << err.msg;
    d.idx.ranks[1].root ^= 1;
    EXPECT_EQ(ckpt__index_check_tree(&d.idx, "tree", &err), 0) << err.msg;
}

TEST(Index, NodeHashCoversDescriptionAndLeaves)
{
    Model m = sample();
    const ckpt__index &idx = m.view();
    ckpt__entry e = idx.entries[0];
    const uint64_t *leaves = idx.hashes + e.chunk0;
    uint64_t h = ckpt__entry_hash(&e, leaves);
    EXPECT_EQ(h, idx.entries[0].hash);
    EXPECT_EQ(ckpt__entry_hash(&e, leaves), h) << "deterministic";

    std::vector<uint64_t> other(leaves, leaves + e.nchunks);
    other.back() ^= 0x100;
    EXPECT_NE(ckpt__entry_hash(&e, other.data()), h) << "leaf";
    ckpt__entry x = e;
    x.rank = 1;
    EXPECT_NE(ckpt__entry_hash(&x, leaves), h) << "rank";
    x = e;
    x.dtype = CKPT_I32;
    EXPECT_NE(ckpt__entry_hash(&x, leaves), h) << "dtype";
    x = e;
    x.kind = CKPT__ENTRY_META;
    EXPECT_NE(ckpt__entry_hash(&x, leaves), h) << "kind";
    x = e;
    x.shape[0] = 5;
    EXPECT_NE(ckpt__entry_hash(&x, leaves), h) << "shape";
    x = e;
    x.start[1] = 1;
    EXPECT_NE(ckpt__entry_hash(&x, leaves), h) << "start";
    x = e;
    x.count[0] = 3;
    EXPECT_NE(ckpt__entry_hash(&x, leaves), h) << "count";
    x = e;
    x.nbytes++;
    EXPECT_NE(ckpt__entry_hash(&x, leaves), h) << "nbytes";
    x = e;
    x.name = const_cast<char *>("W");
    EXPECT_NE(ckpt__entry_hash(&x, leaves), h) << "name";
    // The offset in the file is not part of the content.
    x = e;
    x.file_off += 4096;
    EXPECT_EQ(ckpt__entry_hash(&x, leaves), h) << "file_off";
}

TEST(Index, RootsDependOnEveryRankAndOrder)
{
    Model m = sample();
    const ckpt__index &idx = m.view();
    uint64_t r0 = ckpt__rank_root(&idx, 0), r1 = ckpt__rank_root(&idx, 1);
    EXPECT_EQ(r0, idx.ranks[0].root);
    EXPECT_EQ(r1, idx.ranks[1].root);
    EXPECT_NE(r0, r1);
    uint64_t root = ckpt__index_root(&idx);
    EXPECT_NE(root, 0u);
    m.ranks[1].root ^= 1;
    EXPECT_NE(ckpt__index_root(&m.idx), root);
    m.ranks[1].root ^= 1;
    std::swap(m.ranks[0].root, m.ranks[1].root);
    EXPECT_NE(ckpt__index_root(&m.idx), root) << "rank order matters";
    std::swap(m.ranks[0].root, m.ranks[1].root);
    // Entry order within a rank matters too.
    std::swap(m.cents[0].hash, m.cents[2].hash);
    EXPECT_NE(ckpt__rank_root(&m.idx, 0), r0);
}

// ---- hostile input ----------------------------------------------------------

TEST(IndexHostile, EveryTruncationFails)
{
    Model m = sample();
    std::vector<uint8_t> enc = m.encode();
    for (size_t len = 0; len < enc.size(); len++) {
        std::vector<uint8_t> v(enc.begin(), enc.begin() + (long)len);
        Decoded d(v);
        ASSERT_EQ(d.rc, CKPT_ECORRUPT) << "length " << len;
        EXPECT_NE(std::string(d.err.msg).find("test-index"), std::string::npos) << d.err.msg;
    }
}

TEST(IndexHostile, EveryResealedTruncationFails)
{
    // The cut record carries a valid checksum, so the field checks must catch it.
    Model m = sample();
    std::vector<uint8_t> enc = m.encode();
    for (size_t len = 8; len < enc.size(); len++) {
        std::vector<uint8_t> v(enc.begin(), enc.begin() + (long)(len - 8));
        v.resize(len);
        reseal(v);
        Decoded d(v);
        ASSERT_EQ(d.rc, CKPT_ECORRUPT) << "length " << len << ": " << d.err.msg;
    }
}

TEST(IndexHostile, EverySingleBitFlipFails)
{
    Model m = sample();
    std::vector<uint8_t> enc = m.encode();
    for (size_t bit = 0; bit < enc.size() * 8; bit++) {
        std::vector<uint8_t> v = enc;
        v[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        Decoded d(v);
        ASSERT_EQ(d.rc, CKPT_ECORRUPT) << "bit " << bit;
    }
}

TEST(IndexHostile, ResealedBitFlipsFailOrDecodeExactly)
{
    // With a recomputed checksum, a flip either is refused or decodes to an
    // index that encodes back to the flipped bytes (reserved bytes aside).
    Model m = sample();
    std::vector<uint8_t> enc = m.encode();
    std::set<size_t> reserved = reserved_bytes(enc);
    int refused = 0, accepted = 0;
    for (size_t bit = 0; bit < (enc.size() - 8) * 8; bit++) {
        std::vector<uint8_t> v = enc;
        size_t byte = bit / 8;
        v[byte] ^= (uint8_t)(1u << (bit % 8));
        reseal(v);
        Decoded d(v);
        if (d.rc != 0) {
            ASSERT_TRUE(d.rc == CKPT_ECORRUPT || d.rc == CKPT_EFORMAT)
                << "bit " << bit << ": " << ckpt_err_name(d.rc);
            EXPECT_GT(strlen(d.err.msg), 0u);
            refused++;
            continue;
        }
        accepted++;
        uint8_t *buf = nullptr;
        size_t len = 0;
        ckpt__err err;
        ASSERT_EQ(ckpt__index_encode(&d.idx, &buf, &len, &err), 0);
        std::vector<uint8_t> re(buf, buf + len);
        free(buf);
        if (reserved.count(byte)) {
            EXPECT_EQ(re, enc) << "reserved byte " << byte << " should be ignored";
        } else {
            EXPECT_EQ(re, v) << "bit " << bit << " decoded to something else";
        }
    }
    EXPECT_GT(refused, 0);
    EXPECT_GT(accepted, 0);
}

TEST(IndexHostile, NullAndTinyBuffers)
{
    ckpt__index idx;
    ckpt__err err;
    ckpt__err_clear(&err);
    EXPECT_EQ(ckpt__index_decode(nullptr, 0, "null", &idx, &err), CKPT_ECORRUPT);
    EXPECT_NE(std::string(err.msg).find("null"), std::string::npos);
    EXPECT_EQ(ckpt__index_decode(nullptr, 1000, "null", &idx, &err), CKPT_ECORRUPT);
    std::vector<uint8_t> zeros(kHeader + 8, 0);
    reseal(zeros);
    Decoded d(zeros);
    EXPECT_EQ(d.rc, CKPT_ECORRUPT);
    EXPECT_NE(std::string(d.err.msg).find("magic"), std::string::npos) << d.err.msg;
}

// A crafted record: valid checksum, one bad field.
struct Crafted {
    const char *what;
    std::vector<uint8_t> bytes;
};

void expect_refused(const std::vector<uint8_t> &v, const char *why, int code = CKPT_ECORRUPT,
                    const char *must_say = nullptr)
{
    Decoded d(v, "crafted");
    EXPECT_EQ(d.rc, code) << why << ": got " << ckpt_err_name(d.rc) << " " << d.err.msg;
    EXPECT_NE(std::string(d.err.msg).find("crafted"), std::string::npos) << why;
    if (must_say) {
        EXPECT_NE(std::string(d.err.msg).find(must_say), std::string::npos)
            << why << ": " << d.err.msg;
    }
}

TEST(IndexHostile, HugeCountsAreRefusedBeforeAllocating)
{
    Model m = sample();
    std::vector<uint8_t> enc = m.encode();
    struct {
        size_t off, n;
        uint64_t v;
        const char *why;
    } cases[] = {
        {kOffNentries, 4, 0xFFFFFFFFu, "nentries 2^32-1"},
        {kOffNentries, 4, 0x10000000u, "nentries 2^28"},
        {kOffNentries, 4, 11, "one entry more than present"},
        {kOffNentries, 4, 9, "one entry fewer than present"},
        {kOffNhashes, 8, UINT64_MAX, "nhashes 2^64-1"},
        {kOffNhashes, 8, 1ull << 61, "nhashes 2^61"},
        {kOffNhashes, 8, 1ull << 32, "nhashes 2^32"},
        {kOffNranks, 4, 0xFFFFFFFFu, "nranks 2^32-1"},
        {kOffWorld, 4, 0, "world size 0"},
        {kOffWorld, 4, 0xFFFFFFFFu, "world size 2^32-1"},
        {kOffNranks, 4, 0, "no rank records"},
        {kOffNranks, 4, 3, "more rank records than world size"},
        {kOffChunk, 8, 0, "chunk size 0"},
        {kOffChunk, 8, 1000, "chunk size not a multiple of 4 KiB"},
        {kOffChunk, 8, 1ull << 31, "chunk size 2 GiB"},
        {kOffChunk, 8, 8192, "chunk size differs from the chunk counts"},
        {kOffStep, 8, (uint64_t)-1, "step -1"},
        {kOffStep, 8, 1000000000000ull, "step 10^12"},
    };
    for (const auto &c : cases) {
        std::vector<uint8_t> v = enc;
        put_le(v, c.off, c.v, c.n);
        reseal(v);
        expect_refused(v, c.why);
    }
}

TEST(IndexHostile, NewerMajorVersionIsEformat)
{
    Model m = sample();
    std::vector<uint8_t> v = m.encode();
    put_le(v, kOffMajor, 2, 2);
    reseal(v);
    expect_refused(v, "major 2", CKPT_EFORMAT, "2.0");
    put_le(v, kOffMajor, 0xFFFF, 2);
    reseal(v);
    expect_refused(v, "major 65535", CKPT_EFORMAT);
    put_le(v, kOffMajor, 0, 2);
    reseal(v);
    expect_refused(v, "major 0", CKPT_ECORRUPT);
    // A newer minor version of the same major is read.
    v = m.encode();
    put_le(v, kOffMajor + 2, 7, 2);
    reseal(v);
    Decoded d(v);
    EXPECT_EQ(d.rc, 0) << d.err.msg;
}

// Format 1.1 keeps each rank file's metadata hash in the rank record's u32
// that 1.0 wrote as zero; a 1.0 index decodes with no hash, whatever the
// field holds, and the layout is the same, so a 1.0 reader reads 1.1.
TEST(IndexFormat, MetadataHashTravelsFromMinorOne)
{
    Model m = sample();
    m.ranks[0].meta_hash = 0xDEADBEEFu;
    m.ranks[1].meta_hash = 0x01234567u;
    m.minor = 1;
    std::vector<uint8_t> v11 = m.encode();
    EXPECT_EQ(v11[kOffMajor + 2], 1u);
    EXPECT_EQ(v11[kHeader + 4], 0xEFu);
    EXPECT_EQ(v11[kHeader + kRankRec + 7], 0x01u);
    {
        Decoded d(v11);
        ASSERT_EQ(d.rc, 0) << d.err.msg;
        EXPECT_EQ(d.idx.minor, 1u);
        EXPECT_EQ(d.idx.ranks[0].meta_hash, 0xDEADBEEFu);
        EXPECT_EQ(d.idx.ranks[1].meta_hash, 0x01234567u);
    }
    m.minor = 0;
    std::vector<uint8_t> v10 = m.encode();
    ASSERT_EQ(v10.size(), v11.size());
    EXPECT_EQ(v10[kHeader + 4], 0u) << "1.0 writes zero there";
    // A 1.0 index whose u32 holds something is still read as having none.
    put_le(v10, kHeader + 4, 0x55u, 4);
    reseal(v10);
    Decoded d(v10);
    ASSERT_EQ(d.rc, 0) << d.err.msg;
    EXPECT_EQ(d.idx.minor, 0u);
    EXPECT_EQ(d.idx.ranks[0].meta_hash, 0u);
}

TEST(IndexHostile, BadMagicIsRefused)
{
    Model m = sample();
    std::vector<uint8_t> v = m.encode();
    v[7] = '2';
    reseal(v);
    expect_refused(v, "magic CKPTIDX2", CKPT_ECORRUPT, "magic");
}

TEST(IndexHostile, TrailingBytesAreRefused)
{
    Model m = sample();
    std::vector<uint8_t> v = m.encode();
    v.insert(v.end() - 8, 8, 0);
    reseal(v);
    expect_refused(v, "8 extra bytes before the trailer");
}

TEST(IndexHostile, RankRecordsOutOfOrderOrRange)
{
    {
        Model m = sample();
        m.ranks = {{1, 1u << 20, 0, 0}, {0, 1u << 20, 0, 0}};
        expect_refused(m.encode(), "ranks 1, 0");
    }
    {
        Model m = sample();
        m.ranks = {{0, 1u << 20, 0, 0}, {0, 1u << 20, 0, 0}};
        expect_refused(m.encode(), "rank 0 twice");
    }
    {
        Model m = sample();
        m.ranks = {{0, 1u << 20, 0, 0}, {2, 1u << 20, 0, 0}};
        expect_refused(m.encode(), "rank record 2 in a world of 2");
    }
}

// Each mutation of one entry of the sample, encoded normally (valid trailer).
TEST(IndexHostile, BadEntryFieldsAreRefused)
{
    struct Case {
        const char *why;
        void (*edit)(Model &);
        const char *says;
    };
    const Case cases[] = {
        {"rank >= world", [](Model &m) { m.ents[1].rank = 2; }, "rank 2"},
        {"rank without a file record",
         [](Model &m) {
             m.world = 4;
             m.ents[1].rank = 3;
         },
         "no file record"},
        {"negative rank", [](Model &m) { m.ents[1].rank = -1; }, nullptr},
        {"chunk0 out of place", [](Model &m) { m.ents[1].chunk0 += 1; }, "out of place"},
        {"chunk0 of the first entry", [](Model &m) { m.ents[0].chunk0 = 1; }, "out of place"},
        {"nchunks too small", [](Model &m) { m.ents[0].nchunks -= 1; }, "chunks"},
        {"nchunks too large", [](Model &m) { m.ents[0].nchunks += 1; }, "chunks"},
        {"nbytes not matching the shape", [](Model &m) { m.ents[0].nbytes += 4; }, "shape"},
        {"nbytes 0 for a non-empty shape", [](Model &m) { m.ents[0].nbytes = 0; }, nullptr},
        {"overflowing shape {INT64_MAX, 2}",
         [](Model &m) {
             auto &e = m.ents[0];
             e.shape = e.count = {INT64_MAX, 2};
         },
         nullptr},
        {"overflowing shape {2^40, 2^40}",
         [](Model &m) {
             auto &e = m.ents[0];
             e.shape = e.count = {1ll << 40, 1ll << 40};
         },
         nullptr},
        {"negative dimension",
         [](Model &m) {
             auto &e = m.ents[0];
             e.shape = e.count = {-4, -1024};
         },
         "dimension"},
        {"start + count past the shape",
         [](Model &m) {
             auto &e = m.ents[1];
             e.start = {5, 0};
         },
         "dimension 0"},
        {"count larger than shape",
         [](Model &m) {
             auto &e = m.ents[1];
             e.count = {9, 300};
         },
         "dimension"},
        {"start overflowing with count",
         [](Model &m) {
             auto &e = m.ents[1];
             e.start = {INT64_MAX, 0};
         },
         "dimension"},
        {"file_off beyond the file", [](Model &m) { m.ents[0].file_off = (1u << 20) + 1; },
         "outside rank file"},
        {"data runs past the file end",
         [](Model &m) { m.ents[0].file_off = (1u << 20) - 4096; }, "outside rank file"},
        {"file_off near 2^64",
         [](Model &m) { m.ents[0].file_off = UINT64_MAX - 10; }, "outside rank file"},
        {"non-empty entry without offset",
         [](Model &m) { m.ents[0].file_off = CKPT__NO_OFFSET; }, "outside rank file"},
        {"empty entry with an offset", [](Model &m) { m.ents[3].file_off = 4096; },
         "empty entry"},
        {"duplicate tensor name on one rank",
         [](Model &m) { m.ents[4].name = "w"; }, "duplicate"},
        {"duplicate metadata key on one rank",
         [](Model &m) {
             m.ents[8].name = "rng"; /* "empty meta" on rank 1 -> second "rng" of rank 1 */
             m.ents[8].shape = m.ents[8].count = {0};
         },
         "duplicate"},
        {"invalid UTF-8 name", [](Model &m) { m.ents[0].name = "a\xff\xfe"; }, "UTF-8"},
        {"overlong UTF-8 name", [](Model &m) { m.ents[0].name = "\xc0\xaf"; }, "UTF-8"},
        {"surrogate in name", [](Model &m) { m.ents[0].name = "\xed\xa0\x80"; }, "UTF-8"},
        {"control character in name", [](Model &m) { m.ents[0].name = "a\nb"; }, "control"},
        {"empty name", [](Model &m) { m.ents[0].name = ""; }, "empty"},
        {"256-byte name", [](Model &m) { m.ents[0].name = std::string(256, 'n'); }, "256"},
        {"unknown kind", [](Model &m) { m.ents[0].kind = 3; }, "kind"},
        {"kind 0", [](Model &m) { m.ents[0].kind = 0; }, "kind"},
        {"dtype 0", [](Model &m) { m.ents[0].dtype = 0; }, "dtype"},
        {"dtype 99", [](Model &m) { m.ents[0].dtype = 99; }, "dtype"},
        {"metadata that is not bytes", [](Model &m) { m.ents[5].dtype = CKPT_U8; },
         "byte string"},
        {"metadata with two dimensions",
         [](Model &m) {
             auto &e = m.ents[5];
             e.ndim = 2;
             e.shape = e.count = {4, 4};
             e.start = {0, 0};
         },
         "byte string"},
        {"more hashes than the entries use", [](Model &m) { m.hashes.push_back(7); },
         "chunk hashes"},
    };
    for (const Case &c : cases) {
        Model m = sample();
        c.edit(m);
        expect_refused(m.encode(), c.why, CKPT_ECORRUPT, c.says);
    }
}

TEST(IndexHostile, NineDimensionsAreRefused)
{
    // Encode cannot describe ndim 9 (CKPT_MAX_NDIM arrays): patch the byte.
    Model m = sample();
    std::vector<uint8_t> v = m.encode();
    size_t off = entry_offset(v, 0);
    v[off + 4] = 9;
    reseal(v);
    expect_refused(v, "ndim 9", CKPT_ECORRUPT, "9 dimensions");
    v[off + 4] = 255;
    reseal(v);
    expect_refused(v, "ndim 255", CKPT_ECORRUPT);
}

TEST(IndexHostile, NulInsideANameIsRefused)
{
    // Encode writes strlen(name) bytes, so the NUL is patched in.
    Model m = sample();
    m.ents[0].name = "abc";
    std::vector<uint8_t> v = m.encode();
    size_t off = entry_offset(v, 0);
    size_t name_at = off + kEntryFixed + 24 * v[off + 4];
    ASSERT_EQ(v[name_at + 1], 'b');
    v[name_at + 1] = 0;
    reseal(v);
    expect_refused(v, "name a\\0c", CKPT_ECORRUPT, "control");
}

TEST(IndexHostile, NameLengthPastTheRecord)
{
    Model m = sample();
    std::vector<uint8_t> v = m.encode();
    size_t off = entry_offset(v, 9); // the last entry: its name ends at the hashes
    put_le(v, off, 0xFFFF, 2);
    reseal(v);
    expect_refused(v, "name length 65535");
    uint32_t nlen = v[entry_offset(m.encode(), 9)];
    put_le(v, off, nlen + 1, 2);
    reseal(v);
    expect_refused(v, "name one byte longer");
}

// ---- names -----------------------------------------------------------------

std::string esc(const std::string &s)
{
    char out[CKPT__ESCAPED_MAX];
    ckpt__name_escape(s.c_str(), out);
    return out;
}

int check(const std::string &s, ckpt__err *err = nullptr)
{
    ckpt__err e;
    ckpt__err_clear(&e);
    int rc = ckpt__name_check_n(s.data(), s.size(), "tensor name", err ? err : &e);
    return rc;
}

TEST(IndexNames, EscapeRules)
{
    EXPECT_EQ(esc("plain"), "plain");
    EXPECT_EQ(esc("%"), "%25");
    EXPECT_EQ(esc("/"), "%2F");
    EXPECT_EQ(esc("a/b"), "a%2Fb");
    EXPECT_EQ(esc(".hidden"), "%2Ehidden");
    EXPECT_EQ(esc("."), "%2E");
    EXPECT_EQ(esc(".."), "%2E.");
    EXPECT_EQ(esc("a.b"), "a.b");
    EXPECT_EQ(esc("../../etc/passwd"), "%2E.%2F..%2Fetc%2Fpasswd");
    EXPECT_EQ(esc("100%"), "100%25");
    EXPECT_EQ(esc("a b\tc"), "a b\tc") << "escape only changes %, / and a leading .";
    EXPECT_EQ(esc("日本語"), "日本語");
    std::string worst(CKPT_MAX_NAME, '/');
    std::string e = esc(worst);
    EXPECT_EQ(e.size(), (size_t)CKPT__ESCAPED_MAX - 1);
}

TEST(IndexNames, EscapeIsInjectiveAndGivesLinkNames)
{
    const char *tricky[] = {
        "a",     "a/b",   "a%2Fb", "a%252Fb", "%2F",    "/",     "%",      "%25",
        "%2525", ".",     "..",    "%2E",     "%2E.",   ".a",    "%2Ea",   "a.",
        "a/",    "/a",    "//",    "%2F%2F",  "a//b",   "a%2F/b", ".%2E",   "...",
        "./",    "%",     "%%",    "%252",    "%2",     "%F",    " ",      ". ",
        "ü",     "%C3%BC", "é/é",  "é%2Fé",   "../x",   "%2E.%2Fx", "a b", "a%20b",
    };
    std::set<std::string> seen_in, seen_out;
    for (const char *t : tricky) {
        if (!seen_in.insert(t).second)
            continue;
        ASSERT_EQ(check(t), 0) << t;
        std::string e = esc(t);
        EXPECT_TRUE(seen_out.insert(e).second) << "'" << t << "' escapes to '" << e
                                               << "' like another name";
        EXPECT_EQ(e.find('/'), std::string::npos) << t;
        EXPECT_NE(e[0], '.') << t;
        EXPECT_NE(e, ".");
        EXPECT_NE(e, "..");
    }
    // Exhaustive over short strings of the special characters.
    const char alpha[] = {'%', '/', '.', '2', 'F', 'E', '5', 'a'};
    std::set<std::string> outs;
    size_t total = 0;
    for (int len = 1; len <= 4; len++) {
        std::vector<int> ix(len, 0);
        for (;;) {
            std::string s;
            for (int i : ix)
                s += alpha[i];
            total++;
            EXPECT_TRUE(outs.insert(esc(s)).second) << "collision at '" << s << "'";
            int k = len - 1;
            while (k >= 0 && ++ix[k] == (int)sizeof alpha)
                ix[k--] = 0;
            if (k < 0)
                break;
        }
    }
    EXPECT_EQ(outs.size(), total);
}

TEST(IndexNames, CheckAcceptsValidNames)
{
    EXPECT_EQ(check("a"), 0);
    EXPECT_EQ(check(std::string(CKPT_MAX_NAME, 'x')), 0);
    EXPECT_EQ(check("model.layers.0/attn weight %"), 0);
    EXPECT_EQ(check("ünïcødé"), 0);
    EXPECT_EQ(check("日本語"), 0);
    EXPECT_EQ(check("\xf0\x9f\x98\x80"), 0) << "U+1F600";
    EXPECT_EQ(check("\xf4\x8f\xbf\xbf"), 0) << "U+10FFFF";
    EXPECT_EQ(check("\xed\x9f\xbf"), 0) << "U+D7FF";
    EXPECT_EQ(check("\xee\x80\x80"), 0) << "U+E000";
    EXPECT_EQ(check("\xc2\x80"), 0) << "U+0080";
    EXPECT_EQ(check("~!@#$^&*()[]{}<>?,;:'\"\\|`= "), 0);
    // Exactly 255 bytes ending in a 3-byte character.
    std::string s(CKPT_MAX_NAME - 3, 'x');
    s += "語";
    EXPECT_EQ(check(s), 0);
}

TEST(IndexNames, CheckRefusesBadNames)
{
    struct {
        std::string s;
        const char *says;
    } bad[] = {
        {"", "empty"},
        {std::string(CKPT_MAX_NAME + 1, 'x'), "256 bytes"},
        {"a\tb", "control character 0x09 at byte 1"},
        {"a\nb", "control"},
        {"\x1f", "control"},
        {"a\x7f", "0x7f"},
        {std::string("a\0b", 3), "control"},
        {"\xff\xfe", "UTF-8 at byte 0"},
        {"ab\x80", "UTF-8 at byte 2"},
        {"\xc0\xaf", "UTF-8"},             // overlong '/'
        {"\xe0\x80\xaf", "UTF-8"},         // overlong 3-byte
        {"\xf0\x80\x80\xaf", "UTF-8"},     // overlong 4-byte
        {"\xed\xa0\x80", "UTF-8"},         // U+D800
        {"\xed\xbf\xbf", "UTF-8"},         // U+DFFF
        {"\xf4\x90\x80\x80", "UTF-8"},     // U+110000
        {"\xf5\x80\x80\x80", "UTF-8"},     // lead byte F5
        {"\xf8\x88\x80\x80\x80", "UTF-8"}, // 5-byte form
        {"a\xc3", "UTF-8"},                // cut 2-byte sequence
        {"a\xe6\x97", "UTF-8"},            // cut 3-byte sequence
        {"\xc3\x28", "UTF-8"},             // bad continuation
    };
    for (const auto &b : bad) {
        ckpt__err err;
        ckpt__err_clear(&err);
        EXPECT_EQ(check(b.s, &err), CKPT_EINVAL) << b.says;
        EXPECT_NE(std::string(err.msg).find("tensor name"), std::string::npos) << err.msg;
        EXPECT_NE(std::string(err.msg).find(b.says), std::string::npos) << err.msg;
    }
    // A 255-byte limit that cuts a multi-byte character is refused, not split.
    std::string s(CKPT_MAX_NAME - 1, 'x');
    s += "語";
    EXPECT_EQ(check(s), CKPT_EINVAL);
    ckpt__err err;
    EXPECT_EQ(ckpt__name_check(nullptr, "metadata key", &err), CKPT_EINVAL);
    EXPECT_NE(std::string(err.msg).find("metadata key is NULL"), std::string::npos);
    EXPECT_EQ(ckpt__name_check(std::string(1000, 'y').c_str(), "k", &err), CKPT_EINVAL);
    EXPECT_EQ(ckpt__name_check("ok", "k", &err), 0);
}

TEST(IndexNames, PrintableReplacesBadBytesAndStaysInBounds)
{
    char out[32];
    EXPECT_STREQ(ckpt__name_printable("a\nb\xff" "c", out, sizeof out), "a?b?c");
    EXPECT_STREQ(ckpt__name_printable("日本", out, sizeof out), "日本");
    EXPECT_STREQ(ckpt__name_printable(nullptr, out, sizeof out), "(null)");
    std::string longname(100, 'z');
    const char *p = ckpt__name_printable(longname.c_str(), out, sizeof out);
    EXPECT_LT(strlen(p), sizeof out);
    char tiny[6];
    p = ckpt__name_printable("日本語日本語", tiny, sizeof tiny);
    EXPECT_LT(strlen(p), sizeof tiny);
}

// ---- strmap ------------------------------------------------------------------

struct Map {
    ckpt__strmap m{};
    ~Map() { ckpt__strmap_free(&m); }
};

TEST(IndexStrmap, EmptyMapAnswersNothing)
{
    Map mp;
    uint32_t v = 77;
    EXPECT_EQ(ckpt__strmap_get(&mp.m, "x", 0, &v), 0);
    EXPECT_EQ(v, 77u);
    EXPECT_EQ(ckpt__strmap_set(&mp.m, "x", 0, 1), 0);
    EXPECT_EQ(ckpt__strmap_del(&mp.m, "x", 0), 0);
    EXPECT_EQ(mp.m.len, 0u);
}

TEST(IndexStrmap, TwentyThousandKeys)
{
    const int n = 20000;
    std::vector<std::string> keys;
    for (int i = 0; i < n; i++)
        keys.push_back("layer." + std::to_string(i % 97) + ".w" + std::to_string(i));
    Map mp;
    for (int i = 0; i < n; i++)
        ASSERT_EQ(ckpt__strmap_put(&mp.m, keys[i].c_str(), 0, (uint32_t)i), 0);
    EXPECT_EQ(mp.m.len, (size_t)n);
    EXPECT_GE(mp.m.cap, (size_t)2 * n);
    EXPECT_EQ(mp.m.cap & (mp.m.cap - 1), 0u) << "power of two";
    for (int i = 0; i < n; i++) {
        uint32_t v = 0;
        ASSERT_EQ(ckpt__strmap_get(&mp.m, keys[i].c_str(), 0, &v), 1) << keys[i];
        ASSERT_EQ(v, (uint32_t)i);
    }
    // Lookups go by content, not by pointer.
    std::string copy = keys[12345];
    uint32_t v = 0;
    EXPECT_EQ(ckpt__strmap_get(&mp.m, copy.c_str(), 0, &v), 1);
    EXPECT_EQ(v, 12345u);
    EXPECT_EQ(ckpt__strmap_get(&mp.m, "layer.0.w", 0, nullptr), 0);

    // set changes values, del removes every other key.
    for (int i = 0; i < n; i++)
        ASSERT_EQ(ckpt__strmap_set(&mp.m, keys[i].c_str(), 0, (uint32_t)(n - i)), 1);
    for (int i = 0; i < n; i += 2)
        ASSERT_EQ(ckpt__strmap_del(&mp.m, keys[i].c_str(), 0), 1);
    EXPECT_EQ(mp.m.len, (size_t)n / 2);
    for (int i = 0; i < n; i++) {
        uint32_t w = 0;
        int found = ckpt__strmap_get(&mp.m, keys[i].c_str(), 0, &w);
        ASSERT_EQ(found, i % 2) << keys[i];
        if (found) {
            ASSERT_EQ(w, (uint32_t)(n - i));
        }
    }
    EXPECT_EQ(ckpt__strmap_del(&mp.m, keys[0].c_str(), 0), 0) << "already deleted";
    EXPECT_EQ(ckpt__strmap_set(&mp.m, keys[0].c_str(), 0, 5), 0) << "absent";
    EXPECT_EQ(ckpt__strmap_get(&mp.m, keys[0].c_str(), 0, nullptr), 0);
}

TEST(IndexStrmap, TagsDistinguishEqualStrings)
{
    Map mp;
    std::string a = "same", b = "same";
    ASSERT_EQ(ckpt__strmap_put(&mp.m, a.c_str(), 0, 10), 0);
    ASSERT_EQ(ckpt__strmap_put(&mp.m, b.c_str(), 1, 11), 0);
    ASSERT_EQ(ckpt__strmap_put(&mp.m, a.c_str(), (2u << 24) ^ 0, 12), 0);
    EXPECT_EQ(mp.m.len, 3u);
    uint32_t v;
    ASSERT_EQ(ckpt__strmap_get(&mp.m, "same", 0, &v), 1);
    EXPECT_EQ(v, 10u);
    ASSERT_EQ(ckpt__strmap_get(&mp.m, "same", 1, &v), 1);
    EXPECT_EQ(v, 11u);
    ASSERT_EQ(ckpt__strmap_get(&mp.m, "same", 2u << 24, &v), 1);
    EXPECT_EQ(v, 12u);
    EXPECT_EQ(ckpt__strmap_get(&mp.m, "same", 3, &v), 0);
    EXPECT_EQ(ckpt__strmap_del(&mp.m, "same", 1), 1);
    EXPECT_EQ(ckpt__strmap_get(&mp.m, "same", 1, &v), 0);
    ASSERT_EQ(ckpt__strmap_get(&mp.m, "same", 0, &v), 1);
    EXPECT_EQ(v, 10u);
    // put of an existing (key, tag) replaces the value, not the count.
    ASSERT_EQ(ckpt__strmap_put(&mp.m, "same", 0, 99), 0);
    EXPECT_EQ(mp.m.len, 2u);
    ASSERT_EQ(ckpt__strmap_get(&mp.m, "same", 0, &v), 1);
    EXPECT_EQ(v, 99u);
}

TEST(IndexStrmap, TombstonesAreReusedAndDoNotGrowTheTable)
{
    Map mp;
    std::vector<std::string> keys;
    for (int i = 0; i < 1000; i++)
        keys.push_back("k" + std::to_string(i));
    for (int i = 0; i < 1000; i++)
        ASSERT_EQ(ckpt__strmap_put(&mp.m, keys[i].c_str(), 0, (uint32_t)i), 0);
    size_t cap = mp.m.cap;
    // Delete and re-insert the same keys: tombstones are reused.
    for (int i = 0; i < 500; i++)
        ASSERT_EQ(ckpt__strmap_del(&mp.m, keys[i].c_str(), 0), 1);
    EXPECT_EQ(mp.m.tomb, 500u);
    for (int i = 0; i < 500; i++)
        ASSERT_EQ(ckpt__strmap_put(&mp.m, keys[i].c_str(), 0, (uint32_t)(i + 1)), 0);
    EXPECT_EQ(mp.m.len, 1000u);
    EXPECT_LT(mp.m.tomb, 500u) << "re-inserted keys should land on tombstones";
    EXPECT_EQ(mp.m.cap, cap);
    for (int i = 0; i < 1000; i++) {
        uint32_t v;
        ASSERT_EQ(ckpt__strmap_get(&mp.m, keys[i].c_str(), 0, &v), 1);
        EXPECT_EQ(v, (uint32_t)(i < 500 ? i + 1 : i));
    }
    // Churn of fresh keys against a small live set stays bounded.
    Map churn;
    std::vector<std::string> fresh;
    for (int i = 0; i < 100000; i++)
        fresh.push_back("c" + std::to_string(i));
    for (int i = 0; i < 100000; i++) {
        ASSERT_EQ(ckpt__strmap_put(&churn.m, fresh[i].c_str(), 7, (uint32_t)i), 0);
        if (i >= 8) {
            ASSERT_EQ(ckpt__strmap_del(&churn.m, fresh[i - 8].c_str(), 7), 1);
        }
    }
    EXPECT_EQ(churn.m.len, 8u);
    EXPECT_LE(churn.m.cap, 1024u) << "tombstones must be purged, not accumulated";
    for (int i = 100000 - 8; i < 100000; i++)
        EXPECT_EQ(ckpt__strmap_get(&churn.m, fresh[i].c_str(), 7, nullptr), 1);
}

} // namespace
