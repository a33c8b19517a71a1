// SPDX-License-Identifier: Apache-2.0
// Corruption of files at rest: flipped bytes and truncation in rank files
// and manifests, missing files.  Restore must detect every one of them,
// fall back to the previous checkpoint (naming checkpoint, tensor and chunk
// in its log and last-error message), and full verification must name the
// damaged tensor and chunk.  A randomized pass flips bytes anywhere in a
// rank file and checks the outcome is always an exact old or new state.
// Hostile files that pass every checksum (HostileFile, found while writing
// the fuzz targets of tests/fuzz) must be refused without reading past a
// buffer or opening any file they name.  The cudasim build runs the
// Corruption suite on the CUDA backend with the tensors in device memory
// (tensor_mem.h, two_steps.h).
#include <fcntl.h>

#include <random>

#include <hdf5.h>
#include <xxhash.h>

#include "io/manifest.h"
#include "runtime/verify.h"
#include "test_util.h"
#include "two_steps.h"

extern "C" {
#include "io/h5util.h"
#include "io/rankfile.h"
}

using namespace ckt;

namespace {

class Corruption : public WriterTest {
  protected:
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    ckpt_config cfg = config(dir, GetParam());
    Logs logs;
    TwoSteps st{5 << 18}; // w: five 1 MiB chunks
    ckpt_ctx *ctx = nullptr;

    void SetUp() override
    {
        WriterTest::SetUp();
        if (IsSkipped())
            return;
        logs.attach(&cfg);
        ctx = open_ctx(cfg);
        ASSERT_NE(ctx, nullptr);
        st.save(ctx);
    }
    void TearDown() override { ckpt_close(ctx); }

    void set(uint64_t v) { st.set(v); }
    bool is(uint64_t v) const { return st.is(v); }
    std::string rank_file(int64_t step) { return step_dir(dir, step) + "/rank-00000.h5"; }
    std::string manifest(int64_t step) { return step_dir(dir, step) + "/manifest.h5"; }

    // File offset of an entry's data, from the (verified) manifest.
    uint64_t data_offset(int64_t step, const char *name)
    {
        ckpt__index idx;
        ckpt__err err;
        EXPECT_EQ(ckpt__manifest_read(manifest(step).c_str(), &idx, &err), 0) << err.msg;
        const ckpt__entry *e = ckpt__index_find(&idx, CKPT__ENTRY_TENSOR, 0, name);
        uint64_t off = e ? e->file_off : 0;
        ckpt__index_free(&idx);
        return off;
    }
    static void flip(const std::string &path, uint64_t off)
    {
        ASSERT_TRUE(flip_byte(path, off)) << path;
    }
    static uint64_t size_of(const std::string &path)
    {
        struct stat st;
        return stat(path.c_str(), &st) == 0 ? (uint64_t)st.st_size : 0;
    }
    // Restoring LATEST must fall back to step 1, exactly.
    void expect_fallback(const std::string &why_a, const std::string &why_b = "")
    {
        set(0);
        int64_t got = -1;
        ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
        EXPECT_EQ(got, 1);
        EXPECT_TRUE(is(1));
        EXPECT_TRUE(logs.has("step 2", why_a) && logs.has(why_b))
            << "no log line names the damage: " << why_a << " " << why_b;
        uint64_t v = 0;
        size_t len;
        EXPECT_EQ(ckpt_get_meta(ctx, "version", &v, sizeof v, &len), 0);
        EXPECT_EQ(v, 1u);
    }
    // Full verification of step 2 reports the damage.
    void expect_verify_fails(const char *tensor, int chunk, const std::string &text)
    {
        ckpt__verify_report rep;
        memset(&rep, 0, sizeof rep);
        ckpt__err err;
        ckpt__err_clear(&err);
        EXPECT_EQ(ckpt__verify(dir.c_str(), 2, &rep, &err), CKPT_ECORRUPT);
        EXPECT_NE(std::string(err.msg).find(text), std::string::npos) << err.msg;
        if (tensor) {
            bool found = false;
            for (uint32_t i = 0; i < rep.nbads; i++)
                found |= strcmp(rep.idx.entries[rep.bads[i].entry].name, tensor) == 0 &&
                         (int)rep.bads[i].chunk == chunk;
            EXPECT_TRUE(found) << "verify did not list '" << tensor << "' chunk " << chunk;
        }
        ckpt__verify_report_free(&rep);
        ckpt__err_clear(&err);
        EXPECT_EQ(ckpt__verify(dir.c_str(), 1, &rep, &err), 0) << err.msg;
        ckpt__verify_report_free(&rep);
    }
};

TEST_P(Corruption, FlippedByteInTensorDataNamesTensorAndChunk)
{
    uint64_t off = data_offset(2, "w") + 3 * (1u << 20) + 12345; // chunk 3
    flip(rank_file(2), off);
    expect_fallback("'w' chunk 3", "checksum");
    // An explicit restore of step 2 fails and names the damage.
    EXPECT_EQ(ckpt_restore(ctx, 2, nullptr, nullptr), CKPT_ECORRUPT);
    std::string msg = ckpt_last_error(ctx);
    EXPECT_NE(msg.find("'w' chunk 3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("step-000000000002"), std::string::npos) << msg;
    expect_verify_fails("w", 3, "'w' chunk 3");
}

TEST_P(Corruption, FlippedByteInASmallTensor)
{
    flip(rank_file(2), data_offset(2, "tiny") + 7);
    expect_fallback("'tiny' chunk 0");
    expect_verify_fails("tiny", 0, "'tiny' chunk 0");
}

TEST_P(Corruption, TruncatedRankFile)
{
    std::string f = rank_file(2);
    ASSERT_EQ(truncate(f.c_str(), (off_t)(data_offset(2, "w") + (2u << 20) + 100)), 0);
    expect_fallback("rank-00000.h5", "truncated");
    expect_verify_fails("w", 4, "truncated");
}

TEST_P(Corruption, MissingRankFile)
{
    ASSERT_EQ(unlink(rank_file(2).c_str()), 0);
    expect_fallback("rank-00000.h5", "missing");
    expect_verify_fails(nullptr, 0, "missing");
}

TEST_P(Corruption, FlippedBytesInTheManifest)
{
    std::string m = manifest(2);
    uint64_t n = size_of(m);
    ASSERT_GT(n, 1024u);
    std::mt19937_64 rng(42);
    for (uint64_t off : {(uint64_t)20, (uint64_t)600, n / 2, n - 3}) {
        std::string copy = tmp.sub("manifest.bak");
        ASSERT_EQ(run("cp " + quote(m) + " " + quote(copy)), 0);
        flip(m, off);
        logs.clear();
        expect_fallback("manifest.h5");
        expect_verify_fails(nullptr, 0, "manifest.h5");
        ASSERT_EQ(run("cp " + quote(copy) + " " + quote(m)), 0);
    }
    // Restored file: step 2 is valid again.
    set(0);
    int64_t got;
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0);
    EXPECT_EQ(got, 2);
    EXPECT_TRUE(is(2));
}

TEST_P(Corruption, TruncatedOrMissingManifest)
{
    std::string m = manifest(2);
    ASSERT_EQ(truncate(m.c_str(), (off_t)(size_of(m) - 100)), 0);
    expect_fallback("manifest.h5", "truncated");
    ASSERT_EQ(unlink(m.c_str()), 0);
    logs.clear();
    expect_fallback("manifest.h5", "missing");
    expect_verify_fails(nullptr, 0, "missing");
}

TEST_P(Corruption, EveryCheckpointDamagedIsAnErrorNotGarbage)
{
    flip(rank_file(1), data_offset(1, "b") + 1);
    flip(rank_file(2), data_offset(2, "b") + 1);
    set(5);
    EXPECT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, nullptr), CKPT_ECORRUPT);
    std::string msg = ckpt_last_error(ctx);
    EXPECT_NE(msg.find("no valid checkpoint"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'b' chunk 0"), std::string::npos) << msg;
}

// Random single-byte flips anywhere in the newest rank file: the restore
// gives step 2 exactly (the byte was padding or HDF5 metadata that restore
// does not depend on) or falls back to step 1 exactly.  Never a mixture.
TEST_P(Corruption, RandomFlipsGiveOldOrNewNeverAMixture)
{
    std::string f = rank_file(2), copy = tmp.sub("rank.bak");
    ASSERT_EQ(run("cp " + quote(f) + " " + quote(copy)), 0);
    uint64_t n = size_of(f);
    const char *ss = getenv("CKPT_CORRUPT_SEED");
    uint64_t seed = ss ? strtoull(ss, nullptr, 10) : (uint64_t)time(nullptr);
    printf("random flips: seed %llu\n", (unsigned long long)seed);
    std::mt19937_64 rng(seed);
    int old_state = 0, new_state = 0;
    for (int i = 0; i < 60; i++) {
        uint64_t off = std::uniform_int_distribution<uint64_t>(0, n - 1)(rng);
        flip(f, off);
        set(0);
        int64_t got = -1;
        ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
        ASSERT_TRUE(got == 1 || got == 2) << got;
        ASSERT_TRUE(is((uint64_t)got)) << "flip at " << off << " gave a mixture";
        (got == 1 ? old_state : new_state)++;
        flip(f, off); // undo
    }
    printf("random flips: %d fell back, %d harmless\n", old_state, new_state);
    EXPECT_GT(old_state, 25) << "most bytes of the file are tensor data";
}

// A damaged chunk of a tensor restored by name (registered after the
// restore): CKPT_ECORRUPT naming tensor, chunk and step, and no fallback to
// step 1, since the other tensors came from step 2.
TEST_P(Corruption, ADamagedTensorRestoredByNameIsCorruptWithoutFallback)
{
    ASSERT_EQ(ckpt_unregister(ctx, "b"), 0);
    st.set(0);
    int64_t got = -1;
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(got, 2);
    EXPECT_TRUE(logs.has("'b'", "ckpt_restore_tensors")) << "no warning about 'b'";
    flip(rank_file(2), data_offset(2, "b") + 100);
    const int64_t b_shape[] = {333, 77};
    ASSERT_EQ(ckpt_register(ctx, "b", st.b.data(), CKPT_BF16, 2, b_shape), 0);
    const char *names[] = {"b"};
    EXPECT_EQ(ckpt_restore_tensors(ctx, names, 1, nullptr), CKPT_ECORRUPT);
    std::string msg = ckpt_last_error(ctx);
    EXPECT_NE(msg.find("ckpt_restore_tensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'b' chunk 0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("step-000000000002"), std::string::npos) << msg;
    EXPECT_FALSE(st.b.matches(1 * 7 + 2)) << "fell back to step 1's b";
    EXPECT_TRUE(st.w.matches(2 * 7 + 1)) << "w is not step 2's any more";
    EXPECT_TRUE(st.tiny.matches(2 * 7 + 3));
}

INSTANTIATE_TEST_SUITE_P(Writers, Corruption, ::testing::ValuesIn(writers()),
                         [](const ::testing::TestParamInfo<ckpt_io> &i) {
                             return std::string(writer_name(i.param));
                         });

// ---- hostile files that pass every checksum --------------------------------

// Where a forged manifest keeps its /index.
enum class IndexAt { kHere, kExternalLink, kExternalStorage };

class HostileFile : public ::testing::Test {
  protected:
    TempDir tmp;
    std::string dir = tmp.sub("ckpt"), outside = tmp.sub("outside");
    std::vector<uint8_t> w = std::vector<uint8_t>(3 * 4096);
    std::string blob; // the checkpoint's real /index
    ckpt__index idx{};

    void SetUp() override
    {
        ASSERT_EQ(mkdir(outside.c_str(), 0755), 0);
        ckpt_ctx *ctx = open_ctx(config(dir));
        ASSERT_NE(ctx, nullptr);
        int64_t shape[1] = {(int64_t)w.size() / 4};
        fill(w.data(), w.size(), 5);
        ASSERT_EQ(ckpt_register(ctx, "w", w.data(), CKPT_F32, 1, shape), 0);
        ASSERT_EQ(save_wait(ctx, 3), 0) << ckpt_last_error(ctx);
        ASSERT_EQ(ckpt_close(ctx), 0);
        ckpt__err err;
        ASSERT_EQ(ckpt__manifest_read(manifest().c_str(), &idx, &err), 0) << err.msg;
        uint8_t *b = nullptr;
        size_t n = 0;
        ASSERT_EQ(ckpt__index_encode(&idx, &b, &n, &err), 0);
        blob.assign((const char *)b, n);
        free(b);
    }
    void TearDown() override { ckpt__index_free(&idx); }

    std::string manifest() const { return step_dir(dir, 3) + "/manifest.h5"; }
    std::string rank_file() const { return step_dir(dir, 3) + "/rank-00000.h5"; }

    static void attr(hid_t f, const char *name, int64_t v, hsize_t n)
    {
        std::vector<int64_t> vals(n, v);
        hid_t sp = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, nullptr);
        hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        ASSERT_GE(a, 0);
        ASSERT_GE(H5Awrite(a, H5T_NATIVE_INT64, vals.data()), 0);
        H5Aclose(a);
        H5Sclose(sp);
    }

    // Replaces the manifest with one written here: `nstep` and `nworld`
    // values in the step and world_size attributes, /index where `at` says,
    // and a user block sealed as ckpt__manifest_write seals it.  In HDF5's
    // newest format, as ckptrt writes it (a reader refuses older ones
    // first), unless `oldest`.
    void forge(hsize_t nstep, hsize_t nworld, IndexAt at, bool oldest = false)
    {
        hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
        ASSERT_GE(H5Pset_userblock(fcpl, 512), 0);
        if (!oldest) {
            ASSERT_GE(H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), 0);
        }
        hid_t f = H5Fcreate(manifest().c_str(), H5F_ACC_TRUNC, fcpl, fapl);
        H5Pclose(fcpl);
        H5Pclose(fapl);
        ASSERT_GE(f, 0);
        attr(f, "step", idx.step, nstep);
        attr(f, "world_size", idx.world_size, nworld);
        hsize_t n = blob.size();
        hid_t sp = H5Screate_simple(1, &n, nullptr);
        if (at == IndexAt::kExternalLink) {
            // The real index, in a file outside the checkpoint.
            std::string other = outside + "/other.h5";
            hid_t o = H5Fcreate(other.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
            hid_t ds = H5Dcreate2(o, "index", H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                                  H5P_DEFAULT);
            ASSERT_GE(H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, blob.data()),
                      0);
            H5Dclose(ds);
            H5Fclose(o);
            ASSERT_GE(H5Lcreate_external(other.c_str(), "index", f, "index", H5P_DEFAULT,
                                         H5P_DEFAULT),
                      0);
        } else {
            hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
            if (at == IndexAt::kExternalStorage) {
                // The real index as the raw data of an external storage file.
                std::string raw = outside + "/index.bin";
                write_file(raw, blob);
                ASSERT_GE(H5Pset_external(dcpl, raw.c_str(), 0, n), 0);
            }
            hid_t ds = H5Dcreate2(f, "index", H5T_STD_U8LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
            ASSERT_GE(ds, 0);
            H5Pclose(dcpl);
            ASSERT_GE(H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, blob.data()),
                      0);
            H5Dclose(ds);
        }
        H5Sclose(sp);
        ASSERT_GE(H5Fclose(f), 0);
        std::string m = read_file(manifest());
        ASSERT_GT(m.size(), 512u);
        memcpy(&m[0], "CKPTMAN1", 8);
        m[8] = 1;
        uint64_t len = m.size(), h = XXH3_64bits(m.data() + 512, m.size() - 512);
        for (int k = 0; k < 8; k++) {
            m[16 + k] = (char)(len >> (8 * k));
            m[24 + k] = (char)(h >> (8 * k));
        }
        write_file(manifest(), m);
    }

    int read_manifest(std::string *msg)
    {
        ckpt__index got;
        ckpt__err err;
        ckpt__err_clear(&err);
        int rc = ckpt__manifest_read(manifest().c_str(), &got, &err);
        if (!rc)
            ckpt__index_free(&got);
        *msg = err.msg;
        return rc;
    }

    int check_rank_file(std::string *msg)
    {
        ckpt__err err;
        ckpt__err_clear(&err);
        ckpt__h5_enter();
        int rc = ckpt__rankfile_check(rank_file().c_str(), &idx, 0, &err);
        ckpt__h5_leave();
        *msg = err.msg;
        return rc;
    }
};

// The forgery itself is sound: written the honest way, it reads.  So the
// refusals below are about the one thing each test changes.
TEST_F(HostileFile, ForgedManifestReadsWhenHonest)
{
    forge(1, 1, IndexAt::kHere);
    std::string msg;
    EXPECT_EQ(read_manifest(&msg), 0) << msg;
}

// HDF5's oldest format has no checksums in its metadata, and HDF5 1.10
// loses memory on an object header of it that it cannot decode: a sealed
// manifest in that format (never written by ckptrt) is refused before HDF5
// parses it.
TEST_F(HostileFile, ManifestInHdf5sOldestFormatIsRefused)
{
    forge(1, 1, IndexAt::kHere, true);
    std::string msg;
    EXPECT_EQ(read_manifest(&msg), CKPT_ECORRUPT);
    EXPECT_NE(msg.find("superblock of version 2 or 3"), std::string::npos) << msg;
}

// get_attr_i64 passed a one-value buffer to H5Aread, which stores every
// value the file holds: a world_size of 64 values overran the stack
// (AddressSanitizer: stack-buffer-overflow in read_index_blob).
TEST_F(HostileFile, ManifestAttributeWithSeveralValuesIsRefused)
{
    std::string msg;
    forge(2, 1, IndexAt::kHere);
    EXPECT_EQ(read_manifest(&msg), CKPT_ECORRUPT);
    EXPECT_NE(msg.find("attributes"), std::string::npos) << msg;
    forge(1, 64, IndexAt::kHere);
    EXPECT_EQ(read_manifest(&msg), CKPT_ECORRUPT);
    EXPECT_NE(msg.find("attributes"), std::string::npos) << msg;
}

// HDF5 follows external links by default: a sealed manifest could make the
// reader open any path (and block for ever on a FIFO).
TEST_F(HostileFile, ManifestIndexBehindAnExternalLinkIsNotFollowed)
{
    forge(1, 1, IndexAt::kExternalLink);
    std::string msg;
    EXPECT_EQ(read_manifest(&msg), CKPT_ECORRUPT);
    EXPECT_NE(msg.find("/index"), std::string::npos) << msg;
}

// External storage would make H5Dread read a file the manifest names.
TEST_F(HostileFile, ManifestIndexInExternalStorageIsNotRead)
{
    forge(1, 1, IndexAt::kExternalStorage);
    std::string msg;
    EXPECT_EQ(read_manifest(&msg), CKPT_ECORRUPT);
    EXPECT_NE(msg.find("/index"), std::string::npos) << msg;
}

// A rank file whose dataset is an external link to a copy elsewhere: the
// structure check must not open the copy (which would pass every check).
TEST_F(HostileFile, RankFileDatasetBehindAnExternalLinkIsNotFollowed)
{
    std::string msg;
    ASSERT_EQ(check_rank_file(&msg), 0) << msg;
    std::string copy = outside + "/rank.h5";
    write_file(copy, read_file(rank_file()));
    hid_t f = H5Fopen(rank_file().c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    ASSERT_GE(H5Ldelete(f, "/tensors/w", H5P_DEFAULT), 0);
    ASSERT_GE(H5Lcreate_external(copy.c_str(), "/tensors/w", f, "/tensors/w", H5P_DEFAULT,
                                 H5P_DEFAULT),
              0);
    ASSERT_GE(H5Fclose(f), 0);
    EXPECT_EQ(check_rank_file(&msg), CKPT_ECORRUPT);
    EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
}

} // namespace
