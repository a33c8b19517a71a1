// SPDX-License-Identifier: Apache-2.0
// The rank file's layout built once (issue 16, item 1; format 1.2): after
// the first save of a set of tensors, a rank file is written from the
// cached image of the one HDF5 built, without HDF5, and its metadata hash
// is the cache's.  These tests show that a cached file is byte for byte
// the file HDF5 builds, that HDF5 (and h5dump) read it, that any change of
// the layout builds again, and that a damaged cache never yields a
// checkpoint that verifies.
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <hdf5.h>

#include "runtime/fault_hooks.h"
#include "runtime/verify.h"
#include "test_util.h"

using namespace ckt;

namespace {

struct Counts {
    uint64_t built = 0, cached = 0;
};

Counts counts(ckpt_ctx *ctx)
{
    Counts c;
    ckpt__layout_counts(ctx, &c.built, &c.cached);
    return c;
}

int verify(const std::string &dir, int64_t step, std::string *msg = nullptr)
{
    ckpt__verify_report rep;
    memset(&rep, 0, sizeof rep);
    ckpt__err err;
    ckpt__err_clear(&err);
    int rc = ckpt__verify(dir.c_str(), step, &rep, &err);
    if (msg)
        *msg = err.msg;
    ckpt__verify_report_free(&rep);
    return rc;
}

std::string rank_file(const std::string &dir, int64_t step)
{
    return step_dir(dir, step) + "/rank-00000.h5";
}

// Reads dataset `path` of an HDF5 file as raw bytes through libhdf5.
std::string h5_read(const std::string &file, const char *path, size_t n)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    std::string out;
    if (f < 0)
        return out;
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    if (ds >= 0) {
        hid_t t = H5Dget_type(ds);
        std::string buf(n, '\0');
        if (H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &buf[0]) >= 0)
            out = buf;
        H5Tclose(t);
        H5Dclose(ds);
    }
    H5Fclose(f);
    return out;
}

// A state with every kind of entry: an aligned tensor of several chunks, a
// bf16 matrix, a small i32, a scalar, an empty tensor and a metadata blob.
struct State {
    std::vector<uint8_t> w = std::vector<uint8_t>(600 * 1024),
                         b = std::vector<uint8_t>(333 * 77 * 2),
                         tiny = std::vector<uint8_t>(5 * 4), one = std::vector<uint8_t>(8),
                         none = std::vector<uint8_t>(4);
    std::string blob = "rng state 0123456789";

    void add(ckpt_ctx *ctx)
    {
        const int64_t ws[] = {(int64_t)w.size() / 4}, bs[] = {333, 77}, ts[] = {5}, zs[] = {0};
        ASSERT_EQ(ckpt_register(ctx, "w", w.data(), CKPT_F32, 1, ws), 0);
        ASSERT_EQ(ckpt_register(ctx, "layer.0/b", b.data(), CKPT_BF16, 2, bs), 0);
        ASSERT_EQ(ckpt_register(ctx, "tiny", tiny.data(), CKPT_I32, 1, ts), 0);
        ASSERT_EQ(ckpt_register(ctx, "scalar", one.data(), CKPT_F64, 0, nullptr), 0);
        ASSERT_EQ(ckpt_register(ctx, "empty", none.data(), CKPT_F32, 1, zs), 0);
    }
    void set(uint64_t v)
    {
        fill(w.data(), w.size(), v * 11 + 1);
        fill(b.data(), b.size(), v * 11 + 2);
        fill(tiny.data(), tiny.size(), v * 11 + 3);
        fill(one.data(), one.size(), v * 11 + 4);
        blob[0] = (char)('a' + v % 26);
    }
    bool is(uint64_t v) const
    {
        return matches(w.data(), w.size(), v * 11 + 1) && matches(b.data(), b.size(), v * 11 + 2) &&
               matches(tiny.data(), tiny.size(), v * 11 + 3) &&
               matches(one.data(), one.size(), v * 11 + 4);
    }
    int save(ckpt_ctx *ctx, int64_t step, uint64_t v)
    {
        set(v);
        int rc = ckpt_set_meta(ctx, "rng", blob.data(), blob.size());
        return rc ? rc : save_wait(ctx, step);
    }
};

class LayoutCache : public ::testing::TestWithParam<ckpt_io> {
  protected:
    TempDir tmp;
    std::string dir = tmp.sub("ck");
    State st;
    ckpt_ctx *ctx = nullptr;

    void SetUp() override
    {
        std::string why = writer_unavailable(GetParam());
        if (!why.empty())
            GTEST_SKIP() << why;
        ctx = open_here(dir);
        ASSERT_NE(ctx, nullptr);
        st.add(ctx);
    }
    void TearDown() override
    {
        if (ctx)
            ckpt_close(ctx);
    }
    ckpt_ctx *open_here(const std::string &d)
    {
        ckpt_config c = config(d, GetParam());
        c.keep_last = 0;
        c.chunk_bytes = 256u << 10;
        return open_ctx(c);
    }
    void restore_is(int64_t want_step, uint64_t v)
    {
        st.set(0);
        int64_t got = -1;
        ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
        EXPECT_EQ(got, want_step);
        EXPECT_TRUE(st.is(v)) << "restored bytes differ from step " << want_step;
    }
};

// The first save builds the layout, the second (same tensors, same data)
// writes it from the cache: the two rank files are the same bytes, and the
// same as the one a fresh context (no cache) builds through HDF5.  HDF5
// opens the cached file and reads every dataset; h5dump reads it whole.
TEST_P(LayoutCache, CachedFileIsTheFileHdf5Builds)
{
    ASSERT_EQ(st.save(ctx, 1, 5), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(counts(ctx).built, 1u);
    EXPECT_EQ(counts(ctx).cached, 0u);
    ASSERT_EQ(st.save(ctx, 2, 5), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(counts(ctx).built, 1u);
    EXPECT_EQ(counts(ctx).cached, 1u) << "the second save of one layout did not use the cache";
    const std::string built = read_file(rank_file(dir, 1)), cached = read_file(rank_file(dir, 2));
    ASSERT_GT(built.size(), st.w.size());
    EXPECT_TRUE(built == cached) << "the cached rank file differs from the built one ("
                                 << built.size() << " and " << cached.size() << " bytes)";

    // A fresh context builds the same state at another step, a second later
    // (object header times have 1 s resolution): same bytes.
    usleep(1100 * 1000);
    const std::string dir2 = tmp.sub("ck2");
    ckpt_ctx *c2 = open_here(dir2);
    ASSERT_NE(c2, nullptr);
    State s2;
    s2.add(c2);
    ASSERT_EQ(s2.save(c2, 7, 5), 0) << ckpt_last_error(c2);
    EXPECT_EQ(counts(c2).built, 1u);
    ckpt_close(c2);
    EXPECT_TRUE(read_file(rank_file(dir2, 7)) == cached)
        << "HDF5 builds other bytes for the same layout at another step";

    // The cached file's holes: no bigger on disk than the built one.
    struct stat a, b;
    ASSERT_EQ(stat(rank_file(dir, 1).c_str(), &a), 0);
    ASSERT_EQ(stat(rank_file(dir, 2).c_str(), &b), 0);
    EXPECT_LE(b.st_blocks, a.st_blocks + 8) << "the cached file fills HDF5's holes";

    for (int64_t s : {1, 2}) {
        std::string msg;
        EXPECT_EQ(verify(dir, s, &msg), 0) << "step " << s << ": " << msg;
    }
    // HDF5 itself reads the cached file's datasets.
    EXPECT_TRUE(h5_read(rank_file(dir, 2), "/tensors/w", st.w.size()) ==
                std::string(st.w.begin(), st.w.end()));
    EXPECT_TRUE(h5_read(rank_file(dir, 2), "/tensors/layer.0%2Fb", st.b.size()) ==
                std::string(st.b.begin(), st.b.end()));
    EXPECT_EQ(h5_read(rank_file(dir, 2), "/meta/rng", st.blob.size()), st.blob);
    EXPECT_EQ(expect_h5dump_all(dir), 4) << "h5dump does not read every file";
    restore_is(2, 5);
}

// Data and metadata blobs that change between saves of one layout: every
// cached file verifies and restores its own step.
TEST_P(LayoutCache, EveryCachedSaveVerifiesWithItsOwnData)
{
    for (int64_t s = 1; s <= 4; s++) {
        ASSERT_EQ(st.save(ctx, s, (uint64_t)s), 0) << ckpt_last_error(ctx);
        std::string msg;
        EXPECT_EQ(verify(dir, s, &msg), 0) << "step " << s << ": " << msg;
    }
    EXPECT_EQ(counts(ctx).built, 1u);
    EXPECT_EQ(counts(ctx).cached, 3u);
    restore_is(4, 4);
    EXPECT_EQ(h5_read(rank_file(dir, 3), "/meta/rng", st.blob.size())[0], 'a' + 3);
}

// Anything that changes the layout builds it again: a new tensor, one
// unregistered, another shape under the same name, another metadata blob
// size.  Each save verifies and the last one restores bit-exact.
TEST_P(LayoutCache, ChangingTheLayoutBuildsItAgain)
{
    int64_t step = 1;
    uint64_t want_built = 0, want_cached = 0;
    auto save = [&](bool builds, const char *what) {
        ASSERT_EQ(st.save(ctx, step, (uint64_t)step), 0) << what << ": " << ckpt_last_error(ctx);
        (builds ? want_built : want_cached)++;
        Counts c = counts(ctx);
        EXPECT_EQ(c.built, want_built) << what;
        EXPECT_EQ(c.cached, want_cached) << what;
        std::string msg;
        EXPECT_EQ(verify(dir, step, &msg), 0) << what << ": " << msg;
        step++;
    };
    save(true, "first save");
    save(false, "same layout");
    std::vector<float> extra(300);
    const int64_t es[] = {300};
    ASSERT_EQ(ckpt_register(ctx, "extra", extra.data(), CKPT_F32, 1, es), 0);
    save(true, "a tensor registered");
    save(false, "same layout again");
    ASSERT_EQ(ckpt_unregister(ctx, "extra"), 0);
    save(true, "a tensor unregistered");
    // The same name with another shape (same byte count).
    ASSERT_EQ(ckpt_unregister(ctx, "tiny"), 0);
    const int64_t t2[] = {1, 5};
    ASSERT_EQ(ckpt_register(ctx, "tiny", st.tiny.data(), CKPT_I32, 2, t2), 0);
    save(true, "another shape");
    save(false, "same layout after the shape");
    st.blob += "longer";
    save(true, "a longer metadata blob");
    save(false, "same blob size");
    EXPECT_EQ(expect_h5dump_all(dir), 2 * (int)(step - 1));
    restore_is(step - 1, (uint64_t)(step - 1));
}

// A damaged cache (a flipped byte of the image, a moved data offset, a
// wrong metadata hash) never gives a checkpoint that verifies: the save
// fails or verify finds the damage; restore still gives a step's exact
// bytes, as it reads only verified chunks at the manifest's offsets.
TEST_P(LayoutCache, DamagedCacheNeverVerifies)
{
    struct Damage {
        int what;
        uint64_t k;
    } damages[] = {{CKPT__LAYOUT_DAMAGE_IMAGE, 0},      {CKPT__LAYOUT_DAMAGE_IMAGE, 100},
                   {CKPT__LAYOUT_DAMAGE_IMAGE, 4099},   {CKPT__LAYOUT_DAMAGE_IMAGE, 77777},
                   {CKPT__LAYOUT_DAMAGE_OFFSET, 0},     {CKPT__LAYOUT_DAMAGE_OFFSET, 1},
                   {CKPT__LAYOUT_DAMAGE_OFFSET, 2},     {CKPT__LAYOUT_DAMAGE_HASH, 0}};
    ASSERT_EQ(ckpt__layout_damage(ctx, CKPT__LAYOUT_DAMAGE_HASH, 0), CKPT_ENOTFOUND);
    int64_t step = 1, good = 0;
    int found = 0, round = 0;
    for (const Damage &d : damages) {
        // A clean build first (the unregister/register makes the layout new).
        ASSERT_EQ(ckpt_unregister(ctx, "tiny"), 0);
        const bool odd = round++ % 2;
        const int64_t ts[] = {odd ? 5 : 1, odd ? 1 : 5};
        ASSERT_EQ(ckpt_register(ctx, "tiny", st.tiny.data(), CKPT_I32, 2, ts), 0);
        uint64_t built = counts(ctx).built;
        ASSERT_EQ(st.save(ctx, step, (uint64_t)step), 0) << ckpt_last_error(ctx);
        ASSERT_EQ(counts(ctx).built, built + 1);
        ASSERT_EQ(verify(dir, step), 0);
        good = step++;
        ASSERT_EQ(ckpt__layout_damage(ctx, d.what, d.k), 0);
        uint64_t cached = counts(ctx).cached;
        int rc = st.save(ctx, step, (uint64_t)step);
        std::string msg;
        if (rc == 0) {
            EXPECT_EQ(counts(ctx).cached, cached + 1) << "the damaged cache was not used";
            EXPECT_EQ(verify(dir, step, &msg), CKPT_ECORRUPT)
                << "damage " << d.what << "/" << d.k << " verified";
            found++;
            st.set(0);
            int64_t got = -1;
            ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
            EXPECT_TRUE(got == step || got == good) << got;
            EXPECT_TRUE(st.is((uint64_t)got)) << "damage " << d.what << "/" << d.k
                                              << ": restored bytes of no step";
            good = step;
        }
        step++;
    }
    EXPECT_GT(found, 4) << "most damage should still commit (and then fail verify)";
}

INSTANTIATE_TEST_SUITE_P(Writers, LayoutCache, ::testing::ValuesIn(writers()),
                         [](const ::testing::TestParamInfo<ckpt_io> &i) {
                             return std::string(writer_name(i.param));
                         });

} // namespace
