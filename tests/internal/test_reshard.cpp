// SPDX-License-Identifier: Apache-2.0
// The resharding read (runtime/reshard.c), on every writer: a registered
// slice that no saved slice matches is read through the writer, a chunk
// (or neighbouring chunks) a read, up to the queue depth ahead.  Round
// trips on any number of ranks and queue depths; exactly the chunks a
// slice touches are read, each once (counted at the read fault site); a
// flipped byte in a chunk is named and falls back; an injected read error
// fails the restore and leaves the context usable; odd shapes and dtypes;
// chunks bigger than the staging pool; the slices of small neighbouring
// tensors share reads.  Copying a chunk before its read completed, or
// reading into a buffer a pending copy still uses, fails these tests.
#include <set>

#include "io/manifest.h"
#include "runtime/fault_hooks.h"
#include "shard_ranks.h"
#include "test_util.h"

using namespace ckt;

namespace {

// One tensor saved whole and a slice of it restored.
struct Shape {
    ckpt_dtype dtype;
    std::vector<int64_t> gshape, start, count;
};

uint64_t volume(const std::vector<int64_t> &v)
{
    uint64_t n = 1;
    for (int64_t x : v)
        n *= (uint64_t)x;
    return n;
}

// The byte of the whole tensor at global byte offset g, at step s.
uint8_t value(int64_t s, uint64_t g)
{
    return pattern_byte((uint64_t)s * 977 + 5, g);
}

// Global byte offset of each byte of the slice, in its row-major order.
std::vector<uint64_t> global_bytes(const Shape &sh)
{
    size_t es = ckpt_dtype_size(sh.dtype), nd = sh.gshape.size();
    std::vector<uint64_t> out;
    out.reserve(volume(sh.count) * es);
    std::vector<int64_t> at(nd, 0);
    for (uint64_t el = 0; el < volume(sh.count); el++) {
        uint64_t g = 0;
        for (size_t d = 0; d < nd; d++)
            g = g * (uint64_t)sh.gshape[d] + (uint64_t)(sh.start[d] + at[d]);
        for (size_t b = 0; b < es; b++)
            out.push_back(g * es + b);
        for (size_t d = nd; d-- > 0;) {
            if (++at[d] < sh.count[d])
                break;
            at[d] = 0;
        }
    }
    return out;
}

class Reshard : public WriterTest {
  protected:
    TempDir tmp;
    std::string dir = tmp.sub("ck");
    Logs logs;

    ckpt_config cfg(int depth = 16)
    {
        ckpt_config c = ckt::config(dir, GetParam());
        c.staging_bytes = 1u << 20;
        c.chunk_bytes = 64u << 10;
        c.queue_depth = depth;
        return c;
    }
    std::string rank_file(int64_t step) { return step_dir(dir, step) + "/rank-00000.h5"; }

    // Saves tensor "x" of sh's global shape whole, plus an unregistered
    // neighbour "other", at each step.
    void save(const ckpt_config &c, const Shape &sh, std::vector<int64_t> steps)
    {
        ckpt_ctx *ctx = open_ctx(c);
        ASSERT_NE(ctx, nullptr);
        size_t es = ckpt_dtype_size(sh.dtype);
        std::vector<uint8_t> x(volume(sh.gshape) * es), other(200000);
        const int64_t os[] = {(int64_t)other.size()};
        ASSERT_EQ(ckpt_register(ctx, "x", x.data(), sh.dtype, (int)sh.gshape.size(),
                                sh.gshape.data()),
                  0)
            << ckpt_last_error(ctx);
        ASSERT_EQ(ckpt_register(ctx, "other", other.data(), CKPT_U8, 1, os), 0);
        for (int64_t s : steps) {
            for (size_t i = 0; i < x.size(); i++)
                x[i] = value(s, i);
            fill(other.data(), other.size(), (uint64_t)s);
            ASSERT_EQ(save_wait(ctx, s), 0) << ckpt_last_error(ctx);
        }
        EXPECT_EQ(ckpt_close(ctx), 0);
    }

    // Opens a context that registers sh's slice of "x" into buf.
    ckpt_ctx *open_slice(ckpt_config c, const Shape &sh, std::vector<uint8_t> &buf)
    {
        logs.attach(&c);
        ckpt_ctx *ctx = open_ctx(c);
        if (!ctx)
            return nullptr;
        buf.assign(volume(sh.count) * ckpt_dtype_size(sh.dtype), 0xA5);
        int rc = ckpt_register_shard(ctx, "x", buf.data(), sh.dtype, (int)sh.gshape.size(),
                                     sh.gshape.data(), sh.start.data(), sh.count.data());
        EXPECT_EQ(rc, 0) << ckpt_last_error(ctx);
        // Counts every read submitted: armed at a hit never reached.
        EXPECT_EQ(ckpt__fault_arm(ctx, CKPT__FAULT_READ, INT64_MAX, CKPT__FAIL_EIO), 0);
        return ctx;
    }

    // The first byte of buf that differs from sh's slice at step s, or -1.
    static int64_t first_bad(const Shape &sh, const std::vector<uint8_t> &buf, int64_t s)
    {
        std::vector<uint64_t> g = global_bytes(sh);
        for (size_t i = 0; i < buf.size(); i++)
            if (buf[i] != value(s, g[i]))
                return (int64_t)i;
        return -1;
    }
    // How many chunks of "x" (chunk_bytes each) the slice touches.
    static int64_t chunks_touched(const Shape &sh, uint64_t chunk_bytes)
    {
        std::set<uint64_t> c;
        for (uint64_t g : global_bytes(sh))
            c.insert(g / chunk_bytes);
        return (int64_t)c.size();
    }

    // Restores step `want` (CKPT_LATEST: the newest) into sh's slice and
    // checks every byte and that exactly the chunks it touches were read.
    void restore_slice(const ckpt_config &c, const Shape &sh, int64_t want,
                       uint64_t saved_chunk = 64u << 10)
    {
        std::vector<uint8_t> buf;
        ckpt_ctx *ctx = open_slice(c, sh, buf);
        ASSERT_NE(ctx, nullptr);
        int64_t step = -1;
        ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &step), 0) << ckpt_last_error(ctx);
        EXPECT_EQ(step, want);
        EXPECT_EQ(first_bad(sh, buf, want), -1) << "depth " << c.queue_depth;
        EXPECT_EQ(ckpt__fault_hits(ctx, CKPT__FAULT_READ), chunks_touched(sh, saved_chunk))
            << "depth " << c.queue_depth;
        EXPECT_EQ(ckpt_close(ctx), 0);
    }

    uint64_t data_offset(int64_t step, const char *name)
    {
        ckpt__index idx;
        ckpt__err err;
        std::string m = step_dir(dir, step) + "/manifest.h5";
        EXPECT_EQ(ckpt__manifest_read(m.c_str(), &idx, &err), 0) << err.msg;
        const ckpt__entry *e = ckpt__index_find(&idx, CKPT__ENTRY_TENSOR, 0, name);
        uint64_t off = e ? e->file_off : 0;
        ckpt__index_free(&idx);
        return off;
    }
};

// 1500 x 1100 bytes: 26 chunks of 64 KiB, rows cross chunk boundaries.
const Shape kWide{CKPT_U8, {1500, 1100}, {0, 0}, {1500, 1100}};

Shape slice(Shape s, std::vector<int64_t> start, std::vector<int64_t> count)
{
    s.start = std::move(start);
    s.count = std::move(count);
    return s;
}

} // namespace

TEST_P(Reshard, RoundTripsOnAnyNumberOfRanksAndQueueDepths)
{
    ckpt_io io = GetParam();
    ckm::save_on(3, dir, {10, 20}, [&](ckpt_config &c) { c.io = io; });
    for (int n : {1, 2, 5}) {
        for (int depth : {1, 3, 64}) {
            SCOPED_TRACE("ranks " + std::to_string(n) + " depth " + std::to_string(depth));
            ckm::restore_on(n, dir, 20, [&](ckpt_config &c) {
                c.io = io;
                c.queue_depth = depth;
            });
        }
    }
}

TEST_P(Reshard, ReadsEveryChunkASliceTouchesOnceAndNoOther)
{
    // f32 [1000, 100]: 400000 bytes, 7 chunks.
    const Shape whole{CKPT_F32, {1000, 100}, {0, 0}, {1000, 100}};
    save(cfg(), whole, {1});
    const Shape slices[] = {
        slice(whole, {300, 0}, {220, 100}), // rows: chunks 1..3
        slice(whole, {0, 10}, {1000, 10}),  // a column band: 1000 runs, every chunk
        slice(whole, {999, 99}, {1, 1}),    // the last element: the last chunk
        slice(whole, {0, 0}, {164, 100}),   // 65600 bytes: chunks 0 and 1
        slice(whole, {163, 0}, {2, 100}),   // 800 bytes across the first boundary
    };
    for (const Shape &s : slices) {
        SCOPED_TRACE("slice at row " + std::to_string(s.start[0]) + ", col " +
                     std::to_string(s.start[1]));
        for (int depth : {1, 4, 16})
            restore_slice(cfg(depth), s, 1);
    }
    EXPECT_EQ(chunks_touched(slices[0], 64u << 10), 3);
    EXPECT_EQ(chunks_touched(slices[1], 64u << 10), 7);
    EXPECT_EQ(chunks_touched(slices[2], 64u << 10), 1);
    EXPECT_EQ(chunks_touched(slices[3], 64u << 10), 2);
    EXPECT_EQ(chunks_touched(slices[4], 64u << 10), 2);
}

// Small tensors lie next to each other in the rank file: the slices of
// many of them come in few reads (here at most two: one read holds at most
// a chunk's bytes), and every byte still goes to its own tensor.
TEST_P(Reshard, NeighbouringSmallSlicesShareReads)
{
    const int n = 40;
    const int64_t shape[] = {1000}, start[] = {1}, count[] = {998};
    std::vector<std::vector<uint8_t>> t(n, std::vector<uint8_t>(1000));
    ckpt_ctx *ctx = open_ctx(cfg());
    ASSERT_NE(ctx, nullptr);
    for (int i = 0; i < n; i++) {
        fill(t[i].data(), t[i].size(), (uint64_t)i);
        std::string name = "s" + std::to_string(i);
        ASSERT_EQ(ckpt_register(ctx, name.c_str(), t[i].data(), CKPT_U8, 1, shape), 0);
    }
    ASSERT_EQ(save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(ckpt_close(ctx), 0);
    for (int depth : {1, 4}) {
        ctx = open_ctx(cfg(depth));
        ASSERT_NE(ctx, nullptr);
        std::vector<std::vector<uint8_t>> got(n, std::vector<uint8_t>(998));
        for (int i = 0; i < n; i++) {
            std::string name = "s" + std::to_string(i);
            ASSERT_EQ(ckpt_register_shard(ctx, name.c_str(), got[i].data(), CKPT_U8, 1, shape,
                                          start, count),
                      0);
        }
        ASSERT_EQ(ckpt__fault_arm(ctx, CKPT__FAULT_READ, INT64_MAX, CKPT__FAIL_EIO), 0);
        ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, nullptr), 0) << ckpt_last_error(ctx);
        EXPECT_LE(ckpt__fault_hits(ctx, CKPT__FAULT_READ), 2) << "depth " << depth;
        for (int i = 0; i < n; i++)
            EXPECT_EQ(memcmp(got[i].data(), t[i].data() + 1, 998), 0) << "s" << i;
        EXPECT_EQ(ckpt_close(ctx), 0);
    }
}

// More chunks than the queue depth, fewer, and a staging pool that holds
// fewer buffers than the depth asks for; with and without verification
// (without, a chunk copied before its read completed is only caught by
// its bytes).
TEST_P(Reshard, MoreChunksThanTheQueueDepthAndFewer)
{
    save(cfg(), kWide, {1, 2});
    const Shape s = slice(kWide, {7, 3}, {1486, 1091});
    for (int verify : {1, 0}) {
        for (int depth : {1, 2, 5, 25, 26, 64, 4096}) {
            ckpt_config c = cfg(depth);
            c.verify = verify;
            SCOPED_TRACE("verify " + std::to_string(verify));
            restore_slice(c, s, 2);
        }
        ckpt_config c = cfg(64);
        c.verify = verify;
        c.staging_bytes = 3 * (64u << 10); // three buffers
        restore_slice(c, s, 2);
        c.staging_bytes = 64u << 10; // one
        restore_slice(c, s, 2);
    }
}

TEST_P(Reshard, OddShapesAndDtypes)
{
    const Shape shapes[] = {
        {CKPT_F64, {13, 17, 301}, {1, 2, 3}, {11, 13, 297}},
        {CKPT_F64, {13, 17, 301}, {12, 0, 0}, {1, 17, 301}},
        {CKPT_BF16, {7, 5, 3, 1999}, {2, 1, 1, 17}, {3, 4, 2, 1900}},
        {CKPT_U8, {200001}, {65535}, {65538}},
        {CKPT_I16, {3, 65536}, {1, 32767}, {2, 2}},
    };
    int64_t step = 1;
    for (const Shape &sh : shapes) {
        SCOPED_TRACE("dims " + std::to_string(sh.gshape.size()) + ", " +
                     std::to_string(ckpt_dtype_size(sh.dtype)) + "-byte elements");
        Shape whole = sh;
        whole.start.assign(sh.gshape.size(), 0);
        whole.count = sh.gshape;
        save(cfg(), whole, {step});
        for (int depth : {1, 7})
            restore_slice(cfg(depth), sh, step);
        step++;
    }
}

// Saved with 1 MiB chunks, restored into a 64 KiB staging pool: the
// chunks do not fit it, so the read uses one buffer of its own.  A slice
// saved with exactly the registered box, which would otherwise stream
// through the pipeline, takes the same read: no batch of the pipeline
// could start, and the restore waited for ever.
TEST_P(Reshard, ChunksBiggerThanTheStagingPool)
{
    ckpt_config big = cfg();
    big.chunk_bytes = 1u << 20;
    big.staging_bytes = 2u << 20;
    save(big, kWide, {1});
    ckpt_config c = cfg(8);
    c.staging_bytes = 64u << 10;
    restore_slice(c, slice(kWide, {100, 1}, {1300, 1000}), 1, 1u << 20);
    restore_slice(c, kWide, 1, 1u << 20);
}

// A flipped byte in a chunk the slice reads: the restore names the file,
// the tensor and the chunk, and falls back to the older step; a slice that
// does not touch the chunk never reads it and restores the newer step.
TEST_P(Reshard, AFlippedByteIsNamedAndFallsBack)
{
    save(cfg(), kWide, {1, 2});
    uint64_t off = data_offset(2, "x") + 5 * (64u << 10) + 100;
    ASSERT_TRUE(flip_byte(rank_file(2), off));
    const Shape touching = slice(kWide, {250, 0}, {150, 1100}); // chunks 4..6
    for (int depth : {1, 16}) {
        std::vector<uint8_t> buf;
        ckpt_ctx *ctx = open_slice(cfg(depth), touching, buf);
        ASSERT_NE(ctx, nullptr);
        int64_t step = -1;
        ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &step), 0) << ckpt_last_error(ctx);
        EXPECT_EQ(step, 1);
        EXPECT_EQ(first_bad(touching, buf, 1), -1);
        EXPECT_TRUE(logs.has("step 2 is not valid", "rank-00000.h5: tensor 'x' chunk 5 failed "
                                                    "its checksum"));
        // Asked for explicitly, step 2 is an error that says the same.
        EXPECT_EQ(ckpt_restore(ctx, 2, nullptr, nullptr), CKPT_ECORRUPT);
        std::string msg = ckpt_last_error(ctx);
        EXPECT_NE(msg.find("rank-00000.h5: tensor 'x' chunk 5 failed its checksum"),
                  std::string::npos)
            << msg;
        EXPECT_EQ(ckpt_close(ctx), 0);
        logs.clear();
    }
    restore_slice(cfg(), slice(kWide, {0, 0}, {100, 1100}), 2); // chunks 0..1
    restore_slice(cfg(), slice(kWide, {400, 0}, {1100, 1100}), 2); // chunks 6..25
}

// An injected read error (or short read) while other reads are in flight:
// the restore fails with the error, naming the file and tensor, falls back
// with CKPT_LATEST, and the context restores the step afterwards.
TEST_P(Reshard, AnInjectedReadFaultFailsTheRestoreCleanly)
{
    save(cfg(), kWide, {1, 2});
    const Shape s = slice(kWide, {3, 5}, {1490, 1090});
    const struct {
        int action, code;
        const char *says;
    } cases[] = {{CKPT__FAIL_EIO, CKPT_EIO, "read tensor 'x' from "},
                 {CKPT__FAIL_SHORT, CKPT_ECORRUPT, "tensor 'x' is cut short"}};
    for (const auto &k : cases) {
        for (int depth : {1, 8}) {
            for (int64_t nth : {0, 3, 25}) {
                SCOPED_TRACE("depth " + std::to_string(depth) + " nth " + std::to_string(nth));
                std::vector<uint8_t> buf;
                ckpt_ctx *ctx = open_slice(cfg(depth), s, buf);
                ASSERT_NE(ctx, nullptr);
                ASSERT_EQ(ckpt__fault_arm(ctx, CKPT__FAULT_READ, nth, k.action), 0);
                EXPECT_EQ(ckpt_restore(ctx, 2, nullptr, nullptr), k.code);
                std::string msg = ckpt_last_error(ctx);
                EXPECT_NE(msg.find(k.says), std::string::npos) << msg;
                EXPECT_NE(msg.find("rank-00000.h5"), std::string::npos) << msg;
                EXPECT_EQ(ckpt__fault_fired(ctx, CKPT__FAULT_READ), 1);
                ASSERT_EQ(ckpt__fault_arm(ctx, CKPT__FAULT_READ, nth, k.action), 0);
                int64_t step = -1;
                ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &step), 0)
                    << ckpt_last_error(ctx);
                EXPECT_EQ(step, 1);
                EXPECT_EQ(first_bad(s, buf, 1), -1);
                ckpt__fault_arm(ctx, CKPT__FAULT_READ, -1, CKPT__FAIL_NONE);
                ASSERT_EQ(ckpt_restore(ctx, 2, nullptr, nullptr), 0) << ckpt_last_error(ctx);
                EXPECT_EQ(first_bad(s, buf, 2), -1);
                EXPECT_EQ(ckpt_close(ctx), 0);
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Writers, Reshard, ::testing::ValuesIn(writers()),
                         [](const ::testing::TestParamInfo<ckpt_io> &i) {
                             return std::string(writer_name(i.param));
                         });
