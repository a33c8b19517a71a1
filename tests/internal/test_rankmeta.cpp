// SPDX-License-Identifier: Apache-2.0
// Every byte of a checkpoint is covered (issue 10): the rank file's bytes
// outside tensor data (HDF5's superblock, object headers, heaps and
// attributes) by the metadata hash of format 1.1, the manifest by its user
// block's header hash and its body checksum.  The byte-flip sweep flips
// every one of those bytes of a small checkpoint, one at a time, and checks
// what verify, restore and `ckpt gc` make of each.  Also here: the rank
// file's metadata block sized to its entries (issue 17, 3.7), edits that
// keep HDF5's own checksums valid, and format 1.0 and 1.1 checkpoints (whose
// rank files carry the save's hashes as attributes), which still restore
// and verify.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include <hdf5.h>
#include <xxhash.h>

#include "io/manifest.h"
#include "runtime/verify.h"
#include "test_util.h"
#include "two_steps.h"

extern "C" {
#include "io/paths.h"
#include "io/rankfile.h"
}

using namespace ckt;

namespace {

uint64_t size_of(const std::string &path)
{
    struct stat st;
    return stat(path.c_str(), &st) == 0 ? (uint64_t)st.st_size : 0;
}

void flip(int fd, uint64_t off, uint8_t mask)
{
    uint8_t c;
    ASSERT_EQ(pread(fd, &c, 1, (off_t)off), 1);
    c ^= mask;
    ASSERT_EQ(pwrite(fd, &c, 1, (off_t)off), 1);
}

// The manifest's index, or a failed assertion.
struct Manifest {
    ckpt__index idx{};
    explicit Manifest(const std::string &path)
    {
        ckpt__err err;
        ckpt__err_clear(&err);
        EXPECT_EQ(ckpt__manifest_read(path.c_str(), &idx, &err), 0) << err.msg;
    }
    ~Manifest() { ckpt__index_free(&idx); }
};

// The offsets of the rank file of rank 0 that lie outside every entry's
// data range: what the metadata hash covers.
std::vector<uint64_t> metadata_bytes(const ckpt__index &idx, uint64_t file_bytes)
{
    std::vector<char> data(file_bytes, 0);
    for (uint32_t i = 0; i < idx.nentries; i++) {
        const ckpt__entry &e = idx.entries[i];
        if (e.rank == 0 && e.nbytes)
            std::fill(data.begin() + (long)e.file_off, data.begin() + (long)(e.file_off + e.nbytes),
                      1);
    }
    std::vector<uint64_t> v;
    for (uint64_t k = 0; k < file_bytes; k++)
        if (!data[k])
            v.push_back(k);
    return v;
}

// A small checkpoint folder: steps 1 and 2 of an aligned tensor, two small
// ones and a metadata blob (two_steps.h).
class SmallCheckpoint : public ::testing::Test {
  protected:
    TempDir tmp;
    std::string dir = tmp.sub("ck");
    TwoSteps st{20000}; // w: 80,000 bytes, one 4 KiB-aligned dataset
    ckpt_ctx *ctx = nullptr;

    void SetUp() override
    {
        ckpt_config c = config(dir);
        c.keep_last = 0;
        ctx = open_ctx(c);
        ASSERT_NE(ctx, nullptr);
        st.save(ctx);
    }
    void TearDown() override { ckpt_close(ctx); }

    void set(uint64_t v) { st.set(v); }
    bool is(uint64_t v) const { return st.is(v); }
    std::string rank_file(int64_t step) const { return step_dir(dir, step) + "/rank-00000.h5"; }
    std::string manifest(int64_t step) const { return step_dir(dir, step) + "/manifest.h5"; }

    int verify(int64_t step, std::string *msg = nullptr, uint32_t *unhashed = nullptr)
    {
        ckpt__verify_report rep;
        memset(&rep, 0, sizeof rep);
        ckpt__err err;
        ckpt__err_clear(&err);
        int rc = ckpt__verify(dir.c_str(), step, &rep, &err);
        if (msg)
            *msg = err.msg;
        if (unhashed)
            *unhashed = rep.nunhashed;
        ckpt__verify_report_free(&rep);
        return rc;
    }

    // Rewrites attribute `name` of the object at `obj` in step 2's rank file
    // with values of the same size, through HDF5 (which keeps its own
    // checksums valid).
    void edit_attr(const char *obj, const char *name, int64_t delta)
    {
        hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
        H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
        hid_t f = H5Fopen(rank_file(2).c_str(), H5F_ACC_RDWR, fapl);
        H5Pclose(fapl);
        ASSERT_GE(f, 0);
        hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
        ASSERT_GE(o, 0) << obj;
        hid_t a = H5Aopen(o, name, H5P_DEFAULT);
        ASSERT_GE(a, 0) << obj << " " << name;
        hid_t sp = H5Aget_space(a);
        hssize_t n = H5Sget_simple_extent_npoints(sp);
        std::vector<int64_t> v((size_t)n);
        ASSERT_GE(H5Aread(a, H5T_NATIVE_INT64, v.data()), 0);
        v[0] += delta;
        ASSERT_GE(H5Awrite(a, H5T_NATIVE_INT64, v.data()), 0);
        H5Sclose(sp);
        H5Aclose(a);
        H5Oclose(o);
        ASSERT_GE(H5Fclose(f), 0);
    }

    // Makes step 2 a checkpoint of format 1.<minor> (0 or 1) the way those
    // versions wrote it: the rank file gets the per-save attributes 1.0 and
    // 1.1 wrote (each entry's hash and chunk_hashes, the root's step, uuid
    // and root), added through HDF5, and the manifest is written again with
    // that minor version and, for 1.1, the new file's size and metadata hash
    // (1.0: none, and a user block without a header hash).
    void downgrade(uint16_t minor)
    {
        Manifest m(manifest(2));
        ASSERT_EQ(m.idx.minor, CKPT__FORMAT_MINOR);
        hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
        H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
        hid_t f = H5Fopen(rank_file(2).c_str(), H5F_ACC_RDWR, fapl);
        H5Pclose(fapl);
        ASSERT_GE(f, 0);
        auto put = [](hid_t obj, const char *name, hid_t type, hsize_t n, const void *v) {
            hid_t sp = n ? H5Screate_simple(1, &n, nullptr) : H5Screate(H5S_SCALAR);
            hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
            EXPECT_GE(a, 0) << name;
            EXPECT_GE(H5Awrite(a, type, v), 0) << name;
            H5Aclose(a);
            H5Sclose(sp);
        };
        for (uint32_t i = 0; i < m.idx.nentries; i++) {
            const ckpt__entry &e = m.idx.entries[i];
            std::string path = std::string(e.kind == CKPT__ENTRY_META ? "/meta/" : "/tensors/") +
                               e.name;
            hid_t ds = H5Dopen2(f, path.c_str(), H5P_DEFAULT);
            ASSERT_GE(ds, 0) << path;
            put(ds, "hash", H5T_NATIVE_UINT64, 0, &e.hash);
            if (e.nchunks)
                put(ds, "chunk_hashes", H5T_NATIVE_UINT64, e.nchunks, m.idx.hashes + e.chunk0);
            H5Dclose(ds);
        }
        char uuid[CKPT__UUID_HEX];
        ckpt__uuid_hex(m.idx.uuid, uuid);
        const char *up = uuid;
        hid_t str = H5Tcopy(H5T_C_S1);
        H5Tset_size(str, H5T_VARIABLE);
        put(f, "step", H5T_NATIVE_INT64, 0, &m.idx.step);
        put(f, "uuid", str, 0, &up);
        put(f, "root", H5T_NATIVE_UINT64, 0, &m.idx.ranks[0].root);
        H5Tclose(str);
        hid_t a = H5Aopen(f, "ckpt_format_version", H5P_DEFAULT);
        int32_t ver[2] = {1, minor};
        ASSERT_GE(H5Awrite(a, H5T_NATIVE_INT32, ver), 0);
        H5Aclose(a);
        ASSERT_GE(H5Fclose(f), 0);
        ckpt__err err;
        ckpt__err_clear(&err);
        m.idx.minor = minor;
        m.idx.ranks[0].file_bytes = size_of(rank_file(2));
        uint64_t h = 0;
        ASSERT_EQ(ckpt__rankfile_meta_hash(rank_file(2).c_str(), &m.idx, 0,
                                           m.idx.ranks[0].file_bytes, &h, &err),
                  0)
            << err.msg;
        m.idx.ranks[0].meta_hash = minor >= CKPT__MINOR_META_HASH ? ckpt__meta_hash_tag(h) : 0;
        ASSERT_EQ(unlink(manifest(2).c_str()), 0);
        ASSERT_EQ(ckpt__manifest_write(manifest(2).c_str(), &m.idx, &err), 0) << err.msg;
        if (minor == 0) {
            std::string b = read_file(manifest(2));
            memset(&b[12], 0, 4); // 1.0: no flags,
            memset(&b[32], 0, 8); // no header hash
            write_file(manifest(2), b);
        }
    }

    // Rewrites u64 attribute `name` of the object at `obj` in step 2's rank
    // file with v (through HDF5, which keeps its own checksums valid).
    void set_u64(const char *obj, const char *name, uint64_t v)
    {
        hid_t f = H5Fopen(rank_file(2).c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
        ASSERT_GE(f, 0);
        hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
        hid_t a = o >= 0 ? H5Aopen(o, name, H5P_DEFAULT) : -1;
        ASSERT_GE(a, 0) << obj << " " << name;
        ASSERT_GE(H5Awrite(a, H5T_NATIVE_UINT64, &v), 0);
        H5Aclose(a);
        H5Oclose(o);
        ASSERT_GE(H5Fclose(f), 0);
    }
};

// Issue 17, 3.7: the rank file reserved 1 MiB for HDF5's metadata whatever
// it held, so the example's 1,600 KiB tensor took a 2.7 MB file.
TEST(RankFileSize, MetadataBlockIsSizedToTheEntries)
{
    TempDir tmp;
    std::string dir = tmp.sub("ck");
    ckpt_config c = config(dir);
    c.chunk_bytes = 4u << 20;
    ckpt_ctx *ctx = open_ctx(c);
    ASSERT_NE(ctx, nullptr);
    std::vector<float> w(1600 * 256);
    const int64_t shape[] = {(int64_t)w.size()};
    ASSERT_EQ(ckpt_register(ctx, "w", w.data(), CKPT_F32, 1, shape), 0);
    ASSERT_EQ(save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_close(ctx), 0);
    uint64_t data = w.size() * 4, file = size_of(step_dir(dir, 1) + "/rank-00000.h5");
    printf("one tensor of %llu bytes: rank file of %llu bytes (%llu more)\n",
           (unsigned long long)data, (unsigned long long)file,
           (unsigned long long)(file - data));
    EXPECT_LT(file, data + (64u << 10)) << "the metadata block is not sized to one tensor";
    EXPECT_EQ(expect_h5dump_all(dir), 2);

    // The documented formula (docs/FORMAT.md): 4 KiB, plus 1 KiB and 8
    // bytes per chunk for each entry, rounded up to 4 KiB, at most 1 MiB.
    ckpt__entry e[3] = {};
    ckpt__index idx{};
    idx.entries = e;
    idx.nentries = 3;
    e[0].nchunks = 1;
    e[1].nchunks = 700;
    e[2].rank = 1;
    EXPECT_EQ(ckpt__rankfile_meta_block(&idx, 1), 8192u);
    EXPECT_EQ(ckpt__rankfile_meta_block(&idx, 0), 12288u); // 4096 + 2 * 1024 + 8 * 701 = 11752
    std::vector<ckpt__entry> many(5000);
    idx.entries = many.data();
    idx.nentries = 5000;
    EXPECT_EQ(ckpt__rankfile_meta_block(&idx, 0), 1u << 20);
}

// Same-size edits that HDF5 re-checksums itself passed verify (issue 10):
// the root's chunk_bytes, rank, world_size and ckpt_format_version, a
// dataset's shape.
TEST_F(SmallCheckpoint, AttributeEditsOfTheSameSizeAreCorruption)
{
    const std::string copy = tmp.sub("rank.bak");
    write_file(copy, read_file(rank_file(2)));
    struct Edit {
        const char *obj, *name;
    } edits[] = {{"/", "chunk_bytes"},
                 {"/", "rank"},
                 {"/", "world_size"},
                 {"/", "ckpt_format_version"},
                 {"/tensors/w", "shape"},
                 {"/tensors/b", "shape"}};
    for (const Edit &e : edits) {
        // An attribute written back unchanged leaves the file as it was (no
        // object header tracks times, format 1.2), so what verify finds
        // below is the edit.
        edit_attr(e.obj, e.name, 0);
        EXPECT_EQ(verify(2), 0) << e.obj << " " << e.name << " rewritten unchanged";
        edit_attr(e.obj, e.name, 1);
        std::string msg;
        EXPECT_EQ(verify(2, &msg), CKPT_ECORRUPT) << e.obj << " " << e.name;
        EXPECT_NE(msg.find("rank-00000.h5"), std::string::npos) << msg;
        EXPECT_NE(msg.find("metadata"), std::string::npos) << msg;
        // Restore does not need the HDF5 metadata: the data still restores.
        set(0);
        int64_t got = -1;
        EXPECT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
        EXPECT_EQ(got, 2);
        EXPECT_TRUE(is(2));
        write_file(rank_file(2), read_file(copy));
    }
    EXPECT_EQ(verify(2), 0);
}

// A flip inside the global heap (the variable-length strings of the name
// and ckpt_dtype attributes) passed verify while h5py and h5dump crashed on
// it (issue 10).  It is found before HDF5 parses the file.
TEST_F(SmallCheckpoint, GlobalHeapFlipIsCorruption)
{
    std::string bytes = read_file(rank_file(2));
    size_t at = bytes.find("GCOL");
    ASSERT_NE(at, std::string::npos) << "no global heap in the rank file";
    size_t str = bytes.find("f32", at);
    ASSERT_TRUE(str != std::string::npos && str < at + 4096)
        << "the ckpt_dtype string is not in the heap";
    for (size_t off : {str, at + 16, at + 24}) { // the string, an object's index and size
        std::string damaged = bytes;
        damaged[off] = (char)(damaged[off] ^ 0x5A);
        write_file(rank_file(2), damaged);
        std::string msg;
        EXPECT_EQ(verify(2, &msg), CKPT_ECORRUPT) << "flip at " << off;
        EXPECT_NE(msg.find("rank-00000.h5: HDF5 metadata damaged"), std::string::npos) << msg;
    }
    write_file(rank_file(2), bytes);
    EXPECT_EQ(verify(2), 0);
}

// The sweep: every byte of step 2's manifest and of its rank file outside
// tensor data, flipped one at a time.  Each flip must be found by verify
// (CKPT_ECORRUPT) or change nothing h5dump shows; restore must give step 2
// or step 1 exactly; `ckpt gc --keep-last 1` must keep the newest
// checkpoint that verified and every newer one.  Verify runs on every
// flip; restore on every 2nd manifest flip and every 8th rank-file flip,
// gc on every 601st flip (a process and a copy of the folder each), which
// keeps the test near 20 s on 2 cores.  Deterministic: no random offsets.
TEST_F(SmallCheckpoint, ByteFlipSweepFindsEveryFlip)
{
    std::string bytes = read_file(rank_file(2));
    std::vector<uint64_t> rank_offs;
    {
        Manifest m(manifest(2));
        ASSERT_EQ(m.idx.nranks, 1u);
        ASSERT_EQ(m.idx.minor, CKPT__FORMAT_MINOR);
        rank_offs = metadata_bytes(m.idx, bytes.size());
    }
    uint64_t man_bytes = size_of(manifest(2));
    ASSERT_GT(man_bytes, 512u);
    ASSERT_LT(rank_offs.size(), 64u << 10) << "the rank file's metadata is not a few KiB";
    ckpt__verifier *ver = nullptr;
    ckpt__err err;
    ckpt__err_clear(&err);
    ASSERT_EQ(ckpt__verifier_open(1u << 20, &ver, &err), 0) << err.msg;
    const std::string h5dump = std::string(CKPT_H5DUMP) + " ";
    std::string dump_rank, dump_man;
    ASSERT_EQ(run(h5dump + quote(rank_file(2)), &dump_rank), 0) << dump_rank;
    ASSERT_EQ(run(h5dump + quote(manifest(2)), &dump_man), 0) << dump_man;
    const std::string gc_dir = tmp.sub("gc");
    const std::string gc = quote(std::string(CKPT_BIN_DIR) + "/ckpt") + " gc --keep-last 1 ";

    struct Counts {
        uint64_t flipped = 0, detected = 0, harmless = 0, restored_same = 0, fell_back = 0,
                 gc_runs = 0;
    } n[2];
    const char *names[2] = {"manifest.h5", "rank-00000.h5"};
    uint64_t seq = 0;
    for (int which = 0; which < 2; which++) {
        const std::string file = which ? rank_file(2) : manifest(2);
        const std::string &dump0 = which ? dump_rank : dump_man;
        uint64_t count = which ? rank_offs.size() : man_bytes;
        int fd = open(file.c_str(), O_RDWR);
        ASSERT_GE(fd, 0) << file;
        for (uint64_t k = 0; k < count; k++, seq++) {
            uint64_t off = which ? rank_offs[k] : k;
            // Deterministic masks that vary with the offset, never 0.
            uint8_t mask = (uint8_t)(1u << (off % 8));
            flip(fd, off, mask);
            Counts &c = n[which];
            c.flipped++;
            ckpt__verify_report rep;
            memset(&rep, 0, sizeof rep);
            ckpt__err_clear(&err);
            int rc = ckpt__verifier_run(ver, dir.c_str(), 2, &rep, &err);
            ckpt__verify_report_free(&rep);
            ASSERT_TRUE(rc == 0 || rc == CKPT_ECORRUPT)
                << names[which] << " byte " << off << ": " << ckpt_err_name(rc) << " " << err.msg;
            if (rc == CKPT_ECORRUPT) {
                c.detected++;
            } else {
                // Not detected: only harmless if HDF5 reads the same thing.
                std::string dump;
                run(h5dump + quote(file), &dump);
                ASSERT_EQ(dump, dump0) << names[which] << " byte " << off
                                       << " was not detected and changes what h5dump reads";
                c.harmless++;
            }
            if (k % (which ? 8 : 2) == 0) {
                set(0);
                int64_t got = -1;
                ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0)
                    << names[which] << " byte " << off << ": " << ckpt_last_error(ctx);
                ASSERT_TRUE(got == 1 || got == 2) << got;
                ASSERT_TRUE(is((uint64_t)got))
                    << names[which] << " byte " << off << ": restored bytes of neither step";
                (got == 2 ? c.restored_same : c.fell_back)++;
            }
            if (seq % 601 == 0) {
                c.gc_runs++;
                TempDir::remove_all(gc_dir);
                ASSERT_EQ(run("cp -a " + quote(dir) + " " + quote(gc_dir)), 0);
                std::string out;
                EXPECT_EQ(run(gc + quote(gc_dir), &out), 0) << out;
                // The newest that verified (2 when the flip was harmless)
                // is still there and verifies; so is the damaged newer one.
                int64_t newest = rc == 0 ? 2 : 1;
                ckpt__err_clear(&err);
                memset(&rep, 0, sizeof rep);
                EXPECT_EQ(ckpt__verifier_run(ver, gc_dir.c_str(), newest, &rep, &err), 0)
                    << names[which] << " byte " << off << ": gc lost step " << newest << ":\n"
                    << out;
                ckpt__verify_report_free(&rep);
                EXPECT_TRUE(exists(step_dir(gc_dir, 2))) << out;
            }
            flip(fd, off, mask); // undo
        }
        close(fd);
        printf("byte-flip sweep, %s: %llu bytes flipped, %llu detected, %llu proven harmless "
               "(h5dump identical); restore: %llu same step, %llu fell back; gc runs: %llu\n",
               names[which], (unsigned long long)n[which].flipped,
               (unsigned long long)n[which].detected, (unsigned long long)n[which].harmless,
               (unsigned long long)n[which].restored_same, (unsigned long long)n[which].fell_back,
               (unsigned long long)n[which].gc_runs);
    }
    ckpt__verifier_close(ver);
    // The manifest is needed by restore: every one of its flips falls back.
    EXPECT_EQ(n[0].detected, n[0].flipped);
    EXPECT_EQ(n[0].restored_same, 0u);
    EXPECT_GT(n[0].fell_back, 0u);
    // Restore does not read the HDF5 metadata: the data it needs is intact.
    EXPECT_EQ(n[1].fell_back, 0u);
    EXPECT_EQ(n[1].detected + n[1].harmless, n[1].flipped);
    EXPECT_EQ(verify(2), 0) << "the sweep did not undo its flips";
}

// A checkpoint of format 1.0 (no metadata hash, a user block without a
// header hash, rank files with hash attributes) still restores and
// verifies, by the structure check, which still compares the hash
// attributes; made here from a 1.2 one (downgrade).
TEST_F(SmallCheckpoint, FormatOneZeroStillRestoresAndVerifies)
{
    downgrade(0);
    uint32_t unhashed = 0;
    std::string msg;
    ASSERT_EQ(verify(2, &msg, &unhashed), 0) << msg;
    EXPECT_EQ(unhashed, 1u);
    set(0);
    int64_t got = -1;
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(got, 2);
    EXPECT_TRUE(is(2));
    std::string out;
    EXPECT_EQ(run(quote(std::string(CKPT_BIN_DIR) + "/ckpt") + " verify " + quote(dir), &out), 0)
        << out;
    EXPECT_NE(out.find("format 1.0"), std::string::npos) << out;
    EXPECT_EQ(run(quote(std::string(CKPT_BIN_DIR) + "/ckpt") + " list " + quote(dir), &out), 0)
        << out;
    EXPECT_NE(out.find("manifest ok (format 1.0: metadata not hashed)"), std::string::npos) << out;
    EXPECT_EQ(expect_h5dump_all(dir), 4);
    // The hash attributes a 1.0 file carries are still checked.
    const std::string copy = tmp.sub("rank.bak");
    write_file(copy, read_file(rank_file(2)));
    set_u64("/tensors/w", "hash", 12345);
    EXPECT_EQ(verify(2, &msg), CKPT_ECORRUPT);
    EXPECT_NE(msg.find("'w': hash attribute differs"), std::string::npos) << msg;
    write_file(rank_file(2), read_file(copy));
    set_u64("/", "root", 12345);
    EXPECT_EQ(verify(2, &msg), CKPT_ECORRUPT);
    EXPECT_NE(msg.find("root attribute differs"), std::string::npos) << msg;
    write_file(rank_file(2), read_file(copy));
    EXPECT_EQ(verify(2, &msg), 0) << msg;
    // Data damage in a 1.0 checkpoint is still found.
    Manifest idx(manifest(2));
    const ckpt__entry *e = ckpt__index_find(&idx.idx, CKPT__ENTRY_TENSOR, 0, "w");
    ASSERT_NE(e, nullptr);
    int fd = open(rank_file(2).c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    flip(fd, e->file_off + 100, 0x10);
    close(fd);
    EXPECT_EQ(verify(2, &msg), CKPT_ECORRUPT);
    EXPECT_NE(msg.find("'w' chunk 0"), std::string::npos) << msg;
}

// A checkpoint of format 1.1 (metadata hash, rank files with hash
// attributes) still restores and verifies; its metadata hash covers the
// attributes, and so an edited hash attribute is found before HDF5 reads
// the file.  The manifest's format is the one the tools print.
TEST_F(SmallCheckpoint, FormatOneOneStillRestoresAndVerifies)
{
    downgrade(1);
    uint32_t unhashed = 9;
    std::string msg;
    ASSERT_EQ(verify(2, &msg, &unhashed), 0) << msg;
    EXPECT_EQ(unhashed, 0u);
    set(0);
    int64_t got = -1;
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(got, 2);
    EXPECT_TRUE(is(2));
    std::string out;
    EXPECT_EQ(run(quote(std::string(CKPT_BIN_DIR) + "/ckpt") + " verify " + quote(dir), &out), 0)
        << out;
    EXPECT_EQ(expect_h5dump_all(dir), 4);
    set_u64("/tensors/b", "hash", 12345);
    EXPECT_EQ(verify(2, &msg), CKPT_ECORRUPT);
    EXPECT_NE(msg.find("metadata damaged"), std::string::npos) << msg;
    // Step 1 (format 1.2) beside it is untouched and verifies.
    EXPECT_EQ(verify(1, &msg), 0) << msg;
}

} // namespace
