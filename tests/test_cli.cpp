// SPDX-License-Identifier: Apache-2.0
// The `ckpt` command-line tool, end to end: real checkpoints made through
// the public API, the real binary run on them, assertions on its exit
// status, its text and JSON output and the folders it leaves.  Damage is
// made at exact places: the byte offsets come from the manifest itself
// (io/manifest.h), so a verify test knows which tensor and chunk it broke.
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "io/manifest.h"
}

namespace {

using namespace ckt;

const char kUnicode[] = "emb/wte \xc3\xbc" "n\xc3\xaf" "code"; // "emb/wte ünïcode"
const char kQuoted[] = "odd \"quoted\" \\name";
const uint64_t kChunk = 1u << 20;                       // config()'s chunk_bytes
const uint64_t kWBytes = 1024 * 1024 * 4;               // layer.0.w: 4 chunks
const uint64_t kTotal = kWBytes + 64 * 48 * 2 + 100 + 8; // tensors + "rng"

std::string bin()
{
    return std::string(CKPT_BIN_DIR) + "/ckpt";
}

// Runs `ckpt ARGS`; stdout and stderr together in *out.
int cli(const std::string &args, std::string *out)
{
    return run(quote(bin()) + " " + args, out);
}

// Runs `ckpt ARGS` keeping only stdout (a JSON document must stand alone).
int cli_stdout(const std::string &args, std::string *out)
{
    return run("{ " + quote(bin()) + " " + args + " 2>/dev/null; }", out);
}

bool have_python()
{
    return run("python3 -c 'import json'") == 0;
}

// Feeds `json` to a python3 snippet as d = json.load(...) and returns what
// it prints; the exit status is 0 only when the document parsed.
int py(const TempDir &tmp, const std::string &json, const std::string &code, std::string *out)
{
    std::string file = tmp.sub("doc.json");
    FILE *f = fopen(file.c_str(), "w");
    if (!f)
        return -1;
    fwrite(json.data(), 1, json.size(), f);
    fclose(f);
    std::string script = "import json,sys\nd = json.load(open(sys.argv[1], encoding='utf-8'))\n" +
                         code;
    return run("python3 -c " + quote(script) + " " + quote(file), out);
}

size_t count(const std::string &s, const std::string &what)
{
    size_t n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1))
        n++;
    return n;
}

std::vector<std::string> lines(const std::string &s)
{
    std::vector<std::string> v;
    size_t at = 0;
    while (at < s.size()) {
        size_t nl = s.find('\n', at);
        if (nl == std::string::npos)
            nl = s.size();
        v.push_back(s.substr(at, nl - at));
        at = nl + 1;
    }
    return v;
}

// Column (in code points) where `what` starts in line, or -1.
long column_of(const std::string &line, const std::string &what)
{
    size_t at = line.find(what);
    if (at == std::string::npos)
        return -1;
    long col = 0;
    for (size_t i = 0; i < at; i++)
        col += ((unsigned char)line[i] & 0xC0) != 0x80;
    return col;
}

std::string rank_file(const std::string &dir, int64_t step)
{
    return step_dir(dir, step) + "/rank-00000.h5";
}

// A partial folder as a crashed save leaves it.
std::string make_partial(const std::string &dir, int64_t step)
{
    char b[96];
    snprintf(b, sizeof b, "/step-%012lld.partial-0123456789abcdef0123456789abcdef",
             (long long)step);
    std::string p = dir + b;
    EXPECT_EQ(mkdir(p.c_str(), 0755), 0);
    FILE *f = fopen((p + "/rank-00000.h5").c_str(), "w");
    EXPECT_NE(f, nullptr);
    if (f)
        fclose(f);
    return p;
}

// Moves a folder's modification time (what retention measures age by)
// `hours` into the past.
void age(const std::string &path, double hours)
{
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= (time_t)(hours * 3600);
    ts[1] = ts[0];
    ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), ts, 0), 0) << path << ": " << strerror(errno);
}

class CliTest : public ::testing::Test {
  protected:
    TempDir tmp;
    std::string dir = tmp.sub("ck");
    std::vector<float> w = std::vector<float>(1024 * 1024);
    std::vector<uint16_t> emb = std::vector<uint16_t>(64 * 48);
    std::vector<uint8_t> odd = std::vector<uint8_t>(100);

    ckpt_config cfg() const
    {
        ckpt_config c = config(dir);
        c.keep_last = 0;
        return c;
    }

    void add_tensors(ckpt_ctx *ctx)
    {
        const int64_t ws[] = {1024, 1024}, es[] = {64, 48}, os[] = {100};
        ASSERT_EQ(ckpt_register(ctx, "layer.0.w", w.data(), CKPT_F32, 2, ws), 0)
            << ckpt_last_error(ctx);
        ASSERT_EQ(ckpt_register(ctx, kUnicode, emb.data(), CKPT_BF16, 2, es), 0)
            << ckpt_last_error(ctx);
        ASSERT_EQ(ckpt_register(ctx, kQuoted, odd.data(), CKPT_U8, 1, os), 0)
            << ckpt_last_error(ctx);
    }

    void fill_all(int64_t seed)
    {
        fill(w.data(), w.size() * sizeof w[0], (uint64_t)seed);
        fill(emb.data(), emb.size() * sizeof emb[0], (uint64_t)seed + 1000);
        fill(odd.data(), odd.size(), (uint64_t)seed + 2000);
    }

    // Commits one checkpoint per step, each with its own data.
    void save(const std::vector<int64_t> &steps)
    {
        ckpt_config c = cfg();
        ckpt_ctx *ctx = open_ctx(c);
        ASSERT_NE(ctx, nullptr);
        add_tensors(ctx);
        for (int64_t s : steps) {
            fill_all(s);
            ASSERT_EQ(ckpt_set_meta(ctx, "rng", &s, sizeof s), 0) << ckpt_last_error(ctx);
            ASSERT_EQ(save_wait(ctx, s), 0) << ckpt_last_error(ctx);
        }
        ASSERT_EQ(ckpt_close(ctx), 0);
    }

    // Restores the newest checkpoint through the API; returns its step.
    int64_t restore_latest()
    {
        ckpt_config c = cfg();
        ckpt_ctx *ctx = open_ctx(c);
        if (!ctx)
            return -1;
        add_tensors(ctx);
        int64_t step = -1;
        EXPECT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &step), 0) << ckpt_last_error(ctx);
        EXPECT_TRUE(matches(w.data(), w.size() * sizeof w[0], (uint64_t)step));
        EXPECT_TRUE(matches(odd.data(), odd.size(), (uint64_t)step + 2000));
        EXPECT_EQ(ckpt_close(ctx), 0);
        return step;
    }

    // The data offset of a tensor in rank-00000.h5 of `step`, from the manifest.
    uint64_t data_offset(int64_t step, const char *name)
    {
        ckpt__index idx;
        ckpt__err err;
        std::string path = step_dir(dir, step) + "/manifest.h5";
        int rc = ckpt__manifest_read(path.c_str(), &idx, &err);
        EXPECT_EQ(rc, 0) << err.msg;
        if (rc)
            return 0;
        const ckpt__entry *e = ckpt__index_find(&idx, CKPT__ENTRY_TENSOR, 0, name);
        EXPECT_NE(e, nullptr) << name;
        EXPECT_EQ(idx.chunk_bytes, kChunk);
        uint64_t off = e ? e->file_off : 0;
        ckpt__index_free(&idx);
        return off;
    }

    static void flip_byte(const std::string &file, uint64_t off)
    {
        int fd = open(file.c_str(), O_RDWR);
        ASSERT_GE(fd, 0) << file << ": " << strerror(errno);
        unsigned char b;
        ASSERT_EQ(pread(fd, &b, 1, (off_t)off), 1);
        b ^= 0x5A;
        ASSERT_EQ(pwrite(fd, &b, 1, (off_t)off), 1);
        close(fd);
    }
};

using CliList = CliTest;
using CliVerify = CliTest;
using CliInspect = CliTest;
using CliGc = CliTest;
using CliArgs = CliTest;

// ---- list -------------------------------------------------------------------------------

TEST_F(CliList, NewestFirstWithSizesAndAlignedColumns)
{
    save({10, 20, 30});
    std::string out;
    ASSERT_EQ(cli("list " + quote(dir), &out), 0) << out;
    std::vector<std::string> ls = lines(out);
    ASSERT_EQ(ls.size(), 4u) << out;
    EXPECT_EQ(ls[0].find("STEP"), ls[0].find_first_not_of(' ')) << out;
    EXPECT_NE(ls[0].find("SIZE"), std::string::npos);
    // Steps newest first, right-aligned under STEP.
    EXPECT_EQ(ls[1].find("30"), ls[0].find("STEP") + 2) << out;
    EXPECT_EQ(ls[2].find("20"), ls[0].find("STEP") + 2) << out;
    EXPECT_EQ(ls[3].find("10"), ls[0].find("STEP") + 2) << out;
    for (int i = 1; i <= 3; i++) {
        EXPECT_NE(ls[i].find("4.0 MiB"), std::string::npos) << ls[i];
        EXPECT_EQ(column_of(ls[i], "manifest ok"), column_of(ls[0], "STATUS")) << out;
    }
}

// Issue 17, 3.5: `list` said "ok" of a checkpoint whose data is corrupt.
// Each row says what was checked; --verify checks everything.
TEST_F(CliList, EveryRowSaysWhatWasCheckedAndVerifyChecksTheData)
{
    save({10, 20, 30});
    flip_byte(rank_file(dir, 30), data_offset(30, "layer.0.w") + 5);
    std::string out;
    ASSERT_EQ(cli("list " + quote(dir), &out), 0) << out;
    std::vector<std::string> ls = lines(out);
    ASSERT_EQ(ls.size(), 4u) << out;
    for (int i = 1; i <= 3; i++) // data is not read without --verify
        EXPECT_NE(ls[i].find("  manifest ok"), std::string::npos) << out;
    EXPECT_EQ(out.find("verified"), std::string::npos) << out;
    ASSERT_EQ(cli("list --verify " + quote(dir), &out), 0) << out;
    ls = lines(out);
    ASSERT_EQ(ls.size(), 4u) << out;
    EXPECT_NE(ls[1].find("bad: rank-00000.h5: 'layer.0.w' chunk 0"), std::string::npos) << out;
    EXPECT_NE(ls[2].find("  verified"), std::string::npos) << out;
    EXPECT_NE(ls[3].find("  verified"), std::string::npos) << out;
    ASSERT_EQ(cli_stdout("list --json --verify " + quote(dir), &out), 0);
    EXPECT_EQ(count(out, "\"checked\":\"verified\""), 3u) << out;
    EXPECT_EQ(count(out, "\"status\":\"ok\""), 2u) << out;
    EXPECT_EQ(count(out, "\"status\":\"bad\""), 1u) << out;
    EXPECT_EQ(count(out, "\"metadata_hashed\":true"), 2u) << out;
    ASSERT_EQ(cli_stdout("list --json " + quote(dir), &out), 0);
    EXPECT_EQ(count(out, "\"checked\":\"manifest\""), 3u) << out;
    EXPECT_EQ(count(out, "\"status\":\"ok\""), 3u) << out;
    // The cheap check does hash the HDF5 metadata: a flip there is seen.
    flip_byte(rank_file(dir, 20), 100);
    ASSERT_EQ(cli("list " + quote(dir), &out), 0) << out;
    ls = lines(out);
    ASSERT_EQ(ls.size(), 4u) << out;
    EXPECT_NE(ls[2].find("bad: rank-00000.h5: HDF5 metadata damaged"), std::string::npos) << out;
}

TEST_F(CliList, JsonParsesAndListsNewestFirst)
{
    if (!have_python())
        GTEST_SKIP() << "python3 not found";
    save({10, 20, 30});
    std::string out, got;
    ASSERT_EQ(cli_stdout("list --json " + quote(dir), &out), 0) << out;
    EXPECT_NE(out.find("\"checkpoints\":["), std::string::npos) << out;
    EXPECT_EQ(count(out, "\"status\":\"ok\""), 3u) << out;
    EXPECT_NE(out.find("\"created_unix\":"), std::string::npos) << out;
    ASSERT_EQ(py(tmp, out,
                 "c = d['checkpoints']\n"
                 "print(' '.join(str(x['step']) for x in c))\n"
                 "print(set(x['bytes'] for x in c), set(x['tensors'] for x in c),\n"
                 "      set(x['world_size'] for x in c), set(len(x['uuid']) for x in c))\n",
                 &got),
              0)
        << got;
    EXPECT_EQ(got, "30 20 10\n{" + std::to_string(kTotal) + "} {3} {1} {32}\n");
}

TEST_F(CliList, ShowsBadAndPartialFolders)
{
    save({10, 20, 30});
    ASSERT_EQ(unlink((step_dir(dir, 20) + "/manifest.h5").c_str()), 0);
    ASSERT_EQ(truncate(rank_file(dir, 10).c_str(), 4096), 0);
    make_partial(dir, 40);
    std::string out;
    ASSERT_EQ(cli("list " + quote(dir), &out), 0) << out;
    std::vector<std::string> ls = lines(out);
    ASSERT_EQ(ls.size(), 5u) << out;
    EXPECT_NE(ls[1].find("40"), std::string::npos) << out;
    EXPECT_NE(ls[1].find("partial"), std::string::npos) << out;
    EXPECT_NE(ls[2].find(" ok"), std::string::npos) << out;
    EXPECT_NE(ls[3].find("bad: manifest.h5 is missing"), std::string::npos) << out;
    EXPECT_NE(ls[4].find("bad: rank-00000.h5 is 4096 bytes"), std::string::npos) << out;
}

TEST_F(CliList, EmptyFolderAndMissingFolder)
{
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    std::string out;
    EXPECT_EQ(cli("list " + quote(dir), &out), 0) << out;
    EXPECT_NE(out.find("no checkpoints"), std::string::npos) << out;
    EXPECT_EQ(cli_stdout("list --json " + quote(dir), &out), 0);
    EXPECT_NE(out.find("\"checkpoints\":[]"), std::string::npos) << out;
    EXPECT_EQ(cli("list " + quote(tmp.sub("nope")), &out), 2) << out;
    EXPECT_NE(out.find(tmp.sub("nope")), std::string::npos) << out;
}

// ---- verify -----------------------------------------------------------------------------

TEST_F(CliVerify, GoodCheckpointExitsZero)
{
    save({10, 20});
    std::string out;
    ASSERT_EQ(cli("verify " + quote(dir), &out), 0) << out;
    EXPECT_NE(out.find("step 20: ok"), std::string::npos) << out;
    EXPECT_NE(out.find("(" + std::to_string(kTotal) + " bytes)"), std::string::npos) << out;
    EXPECT_NE(out.find("/s)"), std::string::npos) << out;
    EXPECT_EQ(cli("verify --step 10 " + quote(dir), &out), 0) << out;
    EXPECT_NE(out.find("step 10: ok"), std::string::npos) << out;
    EXPECT_EQ(cli("verify --all " + quote(dir), &out), 0) << out;
    EXPECT_EQ(count(out, ": ok"), 2u) << out;
    ASSERT_EQ(cli_stdout("verify --json " + quote(dir), &out), 0);
    EXPECT_NE(out.find("\"valid\":true"), std::string::npos) << out;
    EXPECT_NE(out.find("\"bytes\":" + std::to_string(kTotal)), std::string::npos) << out;
    EXPECT_NE(out.find("\"bad_chunks\":[]"), std::string::npos) << out;
}

TEST_F(CliVerify, FlippedByteNamesTensorAndChunk)
{
    save({10, 20});
    uint64_t off = data_offset(20, "layer.0.w");
    ASSERT_GT(off, 0u);
    flip_byte(rank_file(dir, 20), off + 2 * kChunk + 12345);
    std::string out;
    ASSERT_EQ(cli("verify " + quote(dir), &out), 1) << out;
    EXPECT_NE(out.find("CORRUPT"), std::string::npos) << out;
    EXPECT_NE(out.find("tensor 'layer.0.w' chunk 2\n"), std::string::npos) << out;
    EXPECT_EQ(count(out, "\n  tensor '"), 1u) << out; // only that chunk is listed
    // The error message names the tensor and the chunk's byte range.
    EXPECT_NE(out.find("error: "), std::string::npos) << out;
    EXPECT_NE(out.find("layer.0.w"), out.rfind("layer.0.w")) << out;
    EXPECT_NE(out.find("2097152"), std::string::npos) << out;
    // The older checkpoint is untouched.
    EXPECT_EQ(cli("verify --step 10 " + quote(dir), &out), 0) << out;
    EXPECT_EQ(cli("verify --all " + quote(dir), &out), 1) << out;

    ASSERT_EQ(cli_stdout("verify --json " + quote(dir), &out), 1);
    EXPECT_NE(out.find("\"valid\":false"), std::string::npos) << out;
    EXPECT_NE(out.find("{\"tensor\":\"layer.0.w\",\"kind\":\"tensor\",\"rank\":0,\"chunk\":2}"),
              std::string::npos)
        << out;
    if (!have_python())
        GTEST_SKIP() << "python3 not found";
    std::string got;
    ASSERT_EQ(py(tmp, out,
                 "print(d['step'], d['valid'], [(b['tensor'], b['chunk']) for b in "
                 "d['bad_chunks']], 'layer.0.w' in d['error'])\n",
                 &got),
              0)
        << got;
    EXPECT_EQ(got, "20 False [('layer.0.w', 2)] True\n");
}

TEST_F(CliVerify, FlippedByteInUnicodeTensor)
{
    save({10});
    uint64_t off = data_offset(10, kUnicode);
    ASSERT_GT(off, 0u);
    flip_byte(rank_file(dir, 10), off + 7);
    std::string out;
    ASSERT_EQ(cli("verify " + quote(dir), &out), 1) << out;
    EXPECT_NE(out.find(std::string("tensor '") + kUnicode + "' chunk 0\n"), std::string::npos)
        << out;
}

TEST_F(CliVerify, TruncatedRankFileIsCorrupt)
{
    save({10});
    uint64_t off = data_offset(10, "layer.0.w");
    ASSERT_EQ(truncate(rank_file(dir, 10).c_str(), (off_t)(off + kChunk + 10)), 0);
    std::string out;
    ASSERT_EQ(cli("verify " + quote(dir), &out), 1) << out;
    EXPECT_NE(out.find("rank-00000.h5 ends early"), std::string::npos) << out;
    // Chunk 0 survived; chunk 1 is cut short, 2 and 3 and the small entries
    // stored after them are gone.  Listed in index order.
    EXPECT_NE(out.find("CORRUPT\n"
                       "  tensor 'layer.0.w' chunk 1\n"
                       "  tensor 'layer.0.w' chunk 2\n"
                       "  tensor 'layer.0.w' chunk 3\n"),
              std::string::npos)
        << out;
    EXPECT_EQ(out.find("'layer.0.w' chunk 0\n"), std::string::npos) << out;
}

TEST_F(CliVerify, MissingRankFileIsCorrupt)
{
    save({10});
    ASSERT_EQ(unlink(rank_file(dir, 10).c_str()), 0);
    std::string out;
    EXPECT_EQ(cli("verify " + quote(dir), &out), 1) << out;
    EXPECT_NE(out.find("rank-00000.h5 is missing"), std::string::npos) << out;
}

TEST_F(CliVerify, MissingManifestIsCorrupt)
{
    save({10, 20});
    ASSERT_EQ(unlink((step_dir(dir, 20) + "/manifest.h5").c_str()), 0);
    std::string out;
    EXPECT_EQ(cli("verify --step 20 " + quote(dir), &out), 1) << out;
    EXPECT_NE(out.find("manifest.h5 is missing"), std::string::npos) << out;
    EXPECT_EQ(cli("verify " + quote(dir), &out), 1) << out; // 20 is still the newest folder
    EXPECT_EQ(cli("verify --step 10 " + quote(dir), &out), 0) << out;
}

TEST_F(CliVerify, DamagedManifestIsCorrupt)
{
    save({10});
    std::string m = step_dir(dir, 10) + "/manifest.h5";
    struct stat st;
    ASSERT_EQ(stat(m.c_str(), &st), 0);
    flip_byte(m, (uint64_t)st.st_size - 100);
    std::string out;
    EXPECT_EQ(cli("verify " + quote(dir), &out), 1) << out;
    EXPECT_NE(out.find("checksum mismatch"), std::string::npos) << out;
}

// Issue 10, item 4: a manifest.h5 that is a symlink made verify exit 2
// (ELOOP) and gc delete nothing.  A file of a checkpoint that is not a
// regular file is damage: exit 1, restore falls back, gc moves past it.
TEST_F(CliVerify, SymlinkedManifestIsCorrupt)
{
    save({10, 20, 30});
    std::string m = step_dir(dir, 30) + "/manifest.h5";
    ASSERT_EQ(rename(m.c_str(), tmp.sub("manifest.h5").c_str()), 0);
    ASSERT_EQ(symlink(tmp.sub("manifest.h5").c_str(), m.c_str()), 0);
    std::string out;
    EXPECT_EQ(cli("verify " + quote(dir), &out), 1) << out;
    EXPECT_NE(out.find("manifest.h5 is not a regular file (a symbolic link)"), std::string::npos)
        << out;
    EXPECT_EQ(restore_latest(), 20);
    ASSERT_EQ(cli("gc --keep-last 1 " + quote(dir), &out), 0) << out;
    EXPECT_TRUE(exists(step_dir(dir, 30)) && exists(step_dir(dir, 20))) << out;
    EXPECT_FALSE(exists(step_dir(dir, 10))) << out;
    EXPECT_NE(out.find("protected: step 20"), std::string::npos) << out;
    // A rank file that is a symlink is damage too.
    std::string r = rank_file(dir, 20);
    ASSERT_EQ(rename(r.c_str(), tmp.sub("rank.h5").c_str()), 0);
    ASSERT_EQ(symlink(tmp.sub("rank.h5").c_str(), r.c_str()), 0);
    EXPECT_EQ(cli("verify --step 20 " + quote(dir), &out), 1) << out;
    EXPECT_NE(out.find("rank-00000.h5 is not a regular file"), std::string::npos) << out;
}

// Issue 10, item 2: byte 8 of the user block set to 0xfe stopped every
// restore with CKPT_EFORMAT, verify exited 2 and gc deleted nothing.
TEST_F(CliVerify, UserBlockByteEightIsCorruption)
{
    save({10, 20, 30});
    std::string m = step_dir(dir, 30) + "/manifest.h5";
    int fd = open(m.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    unsigned char b = 0xfe;
    ASSERT_EQ(pwrite(fd, &b, 1, 8), 1);
    close(fd);
    std::string out;
    EXPECT_EQ(cli("verify " + quote(dir), &out), 1) << out;
    EXPECT_NE(out.find("user block damaged"), std::string::npos) << out;
    EXPECT_EQ(restore_latest(), 20);
    ASSERT_EQ(cli_stdout("gc --json --keep-last 1 " + quote(dir), &out), 0) << out;
    EXPECT_NE(out.find("\"protected\":20,\"deleted\":[10],\"kept\":[30,20]"), std::string::npos)
        << out;
}

// Issue 10, item 3: a flip in the rank file's global heap passed verify and
// crashed h5dump.  Verify now hashes every byte outside tensor data before
// HDF5 reads the file.
TEST_F(CliVerify, GlobalHeapFlipIsCorruption)
{
    save({10});
    std::string f = rank_file(dir, 10);
    std::string bytes;
    ASSERT_EQ(run("cat " + quote(f), &bytes), 0);
    // The rank file's global heap holds the variable-length strings of the
    // name and ckpt_dtype attributes: flip the size of its first object.
    size_t at = bytes.find("GCOL");
    ASSERT_NE(at, std::string::npos) << "no global heap found";
    flip_byte(f, at + 24);
    std::string out;
    EXPECT_EQ(cli("verify " + quote(dir), &out), 1) << out;
    EXPECT_NE(out.find("rank-00000.h5: HDF5 metadata damaged"), std::string::npos) << out;
    ASSERT_EQ(cli("list " + quote(dir), &out), 0) << out;
    EXPECT_NE(out.find("bad: rank-00000.h5: HDF5 metadata damaged"), std::string::npos) << out;
}

TEST_F(CliVerify, NothingToVerifyIsUsageError)
{
    std::string out;
    EXPECT_EQ(cli("verify " + quote(tmp.sub("nope")), &out), 2) << out;
    EXPECT_NE(out.find(tmp.sub("nope")), std::string::npos) << out;
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    EXPECT_EQ(cli("verify " + quote(dir), &out), 2) << out;
    EXPECT_NE(out.find("no checkpoints"), std::string::npos) << out;
    make_partial(dir, 5); // a partial folder is not a checkpoint
    EXPECT_EQ(cli("verify --all " + quote(dir), &out), 2) << out;
    save({10});
    EXPECT_EQ(cli("verify --step 11 " + quote(dir), &out), 2) << out;
    EXPECT_NE(out.find("step 11"), std::string::npos) << out;
}

// ---- inspect ----------------------------------------------------------------------------

TEST_F(CliInspect, TableShowsEntriesWithUnicodeNames)
{
    save({10, 20});
    std::string out;
    ASSERT_EQ(cli("inspect " + quote(dir), &out), 0) << out;
    EXPECT_NE(out.find("step        20\n"), std::string::npos) << out;
    EXPECT_NE(out.find("world size  1\n"), std::string::npos) << out;
    EXPECT_NE(out.find("chunk size  1.0 MiB (1048576 bytes)"), std::string::npos) << out;
    EXPECT_NE(out.find("(" + std::to_string(kTotal) + " bytes) in 3 tensors"), std::string::npos)
        << out;
    std::vector<std::string> ls = lines(out);
    size_t head = 0;
    while (head < ls.size() && ls[head].rfind("NAME", 0) != 0)
        head++;
    ASSERT_EQ(ls.size(), head + 5) << out; // header + 3 tensors + 1 metadata entry
    long kind = column_of(ls[head], "KIND"), dtype = column_of(ls[head], "DTYPE");
    bool seen_w = false, seen_u = false, seen_q = false, seen_m = false;
    for (size_t i = head + 1; i < ls.size(); i++) {
        const std::string &l = ls[i];
        bool meta = l.rfind("rng ", 0) == 0;
        EXPECT_EQ(column_of(l, meta ? "meta" : "tensor"), kind) << out;
        if (l.rfind("layer.0.w ", 0) == 0) {
            seen_w = true;
            EXPECT_EQ(column_of(l, "f32"), dtype) << out;
            EXPECT_NE(l.find("[1024, 1024]"), std::string::npos) << l;
            EXPECT_NE(l.find("4.0 MiB"), std::string::npos) << l;
        } else if (l.rfind(std::string(kUnicode) + " ", 0) == 0) {
            seen_u = true;
            EXPECT_EQ(column_of(l, "bf16"), dtype) << out;
            EXPECT_NE(l.find("[64, 48]"), std::string::npos) << l;
            EXPECT_NE(l.find("6.0 KiB"), std::string::npos) << l;
        } else if (l.rfind(std::string(kQuoted) + " ", 0) == 0) {
            seen_q = true;
            EXPECT_NE(l.find("[100]"), std::string::npos) << l;
            EXPECT_NE(l.find("100 B"), std::string::npos) << l;
        } else if (meta) {
            seen_m = true;
            EXPECT_NE(l.find("[8]"), std::string::npos) << l;
        }
    }
    EXPECT_TRUE(seen_w && seen_u && seen_q && seen_m) << out;
    EXPECT_EQ(cli("inspect --step 10 " + quote(dir), &out), 0) << out;
    EXPECT_NE(out.find("step        10\n"), std::string::npos) << out;
}

TEST_F(CliInspect, JsonEscapesNames)
{
    save({10});
    std::string out;
    ASSERT_EQ(cli_stdout("inspect --json " + quote(dir), &out), 0);
    EXPECT_NE(out.find(std::string("\"name\":\"") + kUnicode + "\""), std::string::npos) << out;
    EXPECT_NE(out.find("\"name\":\"odd \\\"quoted\\\" \\\\name\""), std::string::npos) << out;
    EXPECT_NE(out.find("\"shape\":[1024, 1024]"), std::string::npos) << out;
    EXPECT_NE(out.find("\"chunk_bytes\":1048576"), std::string::npos) << out;
    if (!have_python())
        GTEST_SKIP() << "python3 not found";
    std::string got;
    ASSERT_EQ(py(tmp, out,
                 "e = {x['name']: x for x in d['entries']}\n"
                 "u = e['emb/wte \\u00fcn\\u00efcode']\n"
                 "q = e['odd \"quoted\" \\\\name']\n"
                 "print(d['step'], d['world_size'], len(d['uuid']), u['dtype'], u['shape'],\n"
                 "      u['bytes'], u['kind'], q['shape'], e['layer.0.w']['chunks'],\n"
                 "      e['rng']['kind'])\n",
                 &got),
              0)
        << got;
    EXPECT_EQ(got, "10 1 32 bf16 [64, 48] 6144 tensor [100] 4 meta\n");
}

TEST_F(CliInspect, DamagedManifestIsAnError)
{
    save({10});
    ASSERT_EQ(unlink((step_dir(dir, 10) + "/manifest.h5").c_str()), 0);
    std::string out;
    EXPECT_EQ(cli("inspect " + quote(dir), &out), 2) << out;
    EXPECT_NE(out.find("manifest.h5 is missing"), std::string::npos) << out;
    EXPECT_EQ(cli("inspect --step 99 " + quote(dir), &out), 2) << out;
}

// ---- gc ---------------------------------------------------------------------------------

TEST_F(CliGc, KeepLastTwoOfFour)
{
    save({10, 20, 30, 40});
    std::string out;
    // A dry run names what would go and deletes nothing.
    ASSERT_EQ(cli("gc --keep-last 2 --dry-run " + quote(dir), &out), 0) << out;
    EXPECT_NE(out.find("would delete step 10\n"), std::string::npos) << out;
    EXPECT_NE(out.find("would delete step 20\n"), std::string::npos) << out;
    EXPECT_TRUE(exists(step_dir(dir, 10)) && exists(step_dir(dir, 20)));
    ASSERT_EQ(cli_stdout("gc --json --dry-run --keep-last 2 " + quote(dir), &out), 0);
    EXPECT_NE(out.find("\"deleted\":[20,10],\"kept\":[40,30]"), std::string::npos) << out;

    ASSERT_EQ(cli("gc --keep-last 2 " + quote(dir), &out), 0) << out;
    EXPECT_NE(out.find("deleted step 10\n"), std::string::npos) << out;
    EXPECT_NE(out.find("deleted step 20\n"), std::string::npos) << out;
    EXPECT_FALSE(exists(step_dir(dir, 10)));
    EXPECT_FALSE(exists(step_dir(dir, 20)));
    EXPECT_TRUE(exists(step_dir(dir, 30)));
    EXPECT_TRUE(exists(step_dir(dir, 40)));
    EXPECT_EQ(list_dir(dir).size(), 2u); // no trash left behind

    ASSERT_EQ(cli("list " + quote(dir), &out), 0) << out;
    std::vector<std::string> ls = lines(out);
    ASSERT_EQ(ls.size(), 3u) << out;
    EXPECT_NE(ls[1].find("40"), std::string::npos) << out;
    EXPECT_NE(ls[2].find("30"), std::string::npos) << out;
    EXPECT_EQ(cli("verify --all " + quote(dir), &out), 0) << out;
    EXPECT_EQ(restore_latest(), 40);

    // Nothing more to delete: the JSON says so.
    ASSERT_EQ(cli_stdout("gc --json --keep-last 2 " + quote(dir), &out), 0);
    EXPECT_NE(out.find("\"deleted\":[],\"kept\":[40,30]"), std::string::npos) << out;
}

TEST_F(CliGc, KeepEveryKeepsMultiples)
{
    save({10, 20, 30, 40});
    std::string out;
    ASSERT_EQ(cli("gc --keep-last 1 --keep-every 20 " + quote(dir), &out), 0) << out;
    EXPECT_FALSE(exists(step_dir(dir, 10)));
    EXPECT_TRUE(exists(step_dir(dir, 20)));
    EXPECT_FALSE(exists(step_dir(dir, 30)));
    EXPECT_TRUE(exists(step_dir(dir, 40)));
}

TEST_F(CliGc, MaxAgeDeletesOnlyOlder)
{
    save({10, 20, 30});
    age(step_dir(dir, 10), 5.0);
    age(step_dir(dir, 20), 3.0);
    std::string out;
    ASSERT_EQ(cli_stdout("gc --json --dry-run --max-age-hours 4 " + quote(dir), &out), 0);
    EXPECT_NE(out.find("\"deleted\":[10],\"kept\":[30,20]"), std::string::npos) << out;
    ASSERT_EQ(cli_stdout("gc --json --max-age-hours 2.5 " + quote(dir), &out), 0);
    EXPECT_NE(out.find("\"deleted\":[20,10],\"kept\":[30]"), std::string::npos) << out;
    EXPECT_FALSE(exists(step_dir(dir, 10)));
    EXPECT_FALSE(exists(step_dir(dir, 20)));
    EXPECT_TRUE(exists(step_dir(dir, 30)));
}

TEST_F(CliGc, NeverDeletesNewestValidByAge)
{
    save({10, 20, 30});
    for (int64_t s : {10, 20, 30})
        age(step_dir(dir, s), 2.0); // every checkpoint is older than 0.0036 s
    std::string out;
    ASSERT_EQ(cli("gc --max-age-hours 0.000001 " + quote(dir), &out), 0) << out;
    EXPECT_FALSE(exists(step_dir(dir, 10)));
    EXPECT_FALSE(exists(step_dir(dir, 20)));
    EXPECT_TRUE(exists(step_dir(dir, 30))) << out;
    EXPECT_NE(out.find("protected: step 30, the newest checkpoint verified (every chunk and the "
                       "rank files' HDF5 metadata hashed)"),
              std::string::npos)
        << out;
    EXPECT_EQ(out.find("valid"), std::string::npos) << "gc calls nothing valid: " << out;
    EXPECT_EQ(restore_latest(), 30);
}

TEST_F(CliGc, ProtectsNewestVerifiedWhenNewestIsDamaged)
{
    save({10, 20, 30});
    ASSERT_EQ(truncate(rank_file(dir, 30).c_str(), 4096), 0);
    for (int64_t s : {10, 20, 30})
        age(step_dir(dir, s), 2.0);
    std::string out;
    ASSERT_EQ(cli_stdout("gc --json --max-age-hours 0.000001 " + quote(dir), &out), 0) << out;
    // 30 is newer than the protected step: nobody verified it, it stays.
    EXPECT_NE(out.find("\"protected\":20,\"deleted\":[10],\"kept\":[30,20]"), std::string::npos)
        << out;
    EXPECT_NE(out.find("\"not_verified\":[{\"step\":30,\"error\":\"rank-00000.h5 ends early"),
              std::string::npos)
        << out;
    EXPECT_TRUE(exists(step_dir(dir, 20)));
    EXPECT_FALSE(exists(step_dir(dir, 10)));
    EXPECT_TRUE(exists(step_dir(dir, 30)));
    EXPECT_EQ(restore_latest(), 20);
}

// Issue 10, item 1: with one data byte of step 30 damaged, `gc --keep-last
// 1` deleted 20 and 10 and kept only the damaged 30 ("newest valid: 30");
// restore then found no valid checkpoint.  gc now verifies before it
// deletes: a checkpoint goes only while a newer one verified.  Damage in
// the newest, the middle and the oldest checkpoint, and in all of them.
TEST_F(CliGc, DeletesOnlyBelowTheNewestVerified)
{
    struct Case {
        std::vector<int64_t> damaged;
        std::vector<int64_t> left; // what gc --keep-last 1 leaves
        int64_t restores;           // what restore gives afterwards (-1: nothing)
    } cases[] = {
        {{30}, {30, 20}, 20},
        {{20}, {30}, 30},
        {{10}, {30}, 30},
        {{30, 20, 10}, {30, 20, 10}, -1},
    };
    for (const Case &c : cases) {
        TempDir::remove_all(dir);
        save({10, 20, 30});
        for (int64_t s : c.damaged) // the issue's data byte, at the data's offset
            flip_byte(rank_file(dir, s), data_offset(s, "layer.0.w") + 24);
        std::string out;
        ASSERT_EQ(cli("gc --keep-last 1 " + quote(dir), &out), 0) << out;
        for (int64_t s : {10, 20, 30}) {
            bool want = std::find(c.left.begin(), c.left.end(), s) != c.left.end();
            EXPECT_EQ(exists(step_dir(dir, s)), want) << "step " << s << ":\n" << out;
        }
        for (int64_t s : c.damaged) { // the ones gc tried before one verified
            if (s > c.restores) {
                EXPECT_NE(out.find("not verified, kept: step " + std::to_string(s)),
                          std::string::npos)
                    << out;
            }
        }
        if (c.restores < 0) {
            EXPECT_NE(out.find("no checkpoint verified: nothing deleted"), std::string::npos)
                << out;
            continue;
        }
        EXPECT_NE(out.find("protected: step " + std::to_string(c.restores)), std::string::npos)
            << out;
        EXPECT_EQ(restore_latest(), c.restores);
    }
}

// HDF5 metadata damage (not data) in the newest checkpoint: the old quick
// check passed it, and gc deleted every older checkpoint.
TEST_F(CliGc, MetadataDamageInTheNewestIsNotVerified)
{
    save({10, 20, 30});
    flip_byte(rank_file(dir, 30), 200);
    std::string out;
    ASSERT_EQ(cli_stdout("gc --json --keep-last 1 " + quote(dir), &out), 0) << out;
    EXPECT_NE(out.find("\"protected\":20,\"deleted\":[10],\"kept\":[30,20]"), std::string::npos)
        << out;
    EXPECT_NE(out.find("HDF5 metadata damaged"), std::string::npos) << out;
}

TEST_F(CliGc, KeepLastOneWithDamagedNewestKeepsBoth)
{
    save({10, 20, 30});
    ASSERT_EQ(unlink((step_dir(dir, 30) + "/manifest.h5").c_str()), 0);
    std::string out;
    ASSERT_EQ(cli("gc --keep-last 1 " + quote(dir), &out), 0) << out;
    EXPECT_TRUE(exists(step_dir(dir, 30)));  // the newest N by name
    EXPECT_TRUE(exists(step_dir(dir, 20)));  // the newest valid one
    EXPECT_FALSE(exists(step_dir(dir, 10)));
    EXPECT_EQ(restore_latest(), 20);
}

TEST_F(CliGc, UnknownSoundnessDeletesNothing)
{
    save({10, 20, 30});
    // A manifest that cannot be read for a reason other than damage (a
    // permission or I/O error): gc cannot tell which checkpoint is sound, so
    // it must not delete any.  Tests may run as root, whom permissions do
    // not stop, so the error here is ENAMETOOLONG: DIR spelled with enough
    // "./" that DIR itself opens but DIR/step-N/manifest.h5 is longer than
    // PATH_MAX.
    std::string longdir = tmp.path();
    while (longdir.size() + 2 + 3 < 4096 - 16)
        longdir += "/.";
    longdir += "/ck";
    ASSERT_LT(longdir.size() + 1, (size_t)4096);
    ASSERT_GT(longdir.size() + strlen("/step-000000000030/manifest.h5"), (size_t)4096);
    std::string out;
    EXPECT_EQ(cli("gc --keep-last 1 " + quote(longdir), &out), 2) << out;
    EXPECT_NE(out.find("deleting nothing"), std::string::npos) << out;
    EXPECT_TRUE(exists(step_dir(dir, 10)) && exists(step_dir(dir, 20)) &&
                exists(step_dir(dir, 30)));
}

TEST_F(CliGc, PartialFoldersOnlyWithFlag)
{
    save({10, 20});
    std::string partial = make_partial(dir, 30);
    std::string out;
    ASSERT_EQ(cli("gc --keep-last 5 " + quote(dir), &out), 0) << out;
    EXPECT_TRUE(exists(partial)) << out;
    ASSERT_EQ(cli("gc --keep-last 5 --partial --dry-run " + quote(dir), &out), 0) << out;
    EXPECT_TRUE(exists(partial)) << out;
    EXPECT_NE(out.find("would delete partial folder step-000000000030.partial-"),
              std::string::npos)
        << out;
    ASSERT_EQ(cli("gc --partial " + quote(dir), &out), 0) << out;
    EXPECT_FALSE(exists(partial)) << out;
    EXPECT_NE(out.find("deleted partial folder step-000000000030.partial-"), std::string::npos)
        << out;
    EXPECT_TRUE(exists(step_dir(dir, 10)) && exists(step_dir(dir, 20)));
}

TEST_F(CliGc, Errors)
{
    std::string out;
    EXPECT_EQ(cli("gc --keep-last 2 " + quote(tmp.sub("nope")), &out), 2) << out;
    save({10});
    EXPECT_EQ(cli("gc " + quote(dir), &out), 2) << out; // no rule given
    EXPECT_NE(out.find("nothing to do"), std::string::npos) << out;
    EXPECT_TRUE(exists(step_dir(dir, 10)));
}

// ---- arguments --------------------------------------------------------------------------

TEST_F(CliArgs, UsageErrorsExitTwo)
{
    save({10});
    const std::string d = " " + quote(dir);
    // "@" stands for the checkpoint folder.
    const char *bad[] = {
        "",                                // no command
        "frobnicate @",                    // unknown command
        "list",                            // missing DIR
        "list --bogus @",                  // unknown option
        "list --step 3 @",                 // option of another command
        "verify @ --step",                 // missing value
        "verify --step abc @",             // not a number
        "verify --step -5 @",              // negative
        "verify --step 1000000000000 @",   // past the largest step
        "verify --step 10 --all @",        // exclusive options
        "gc --keep-last 0 @",              // keeps nothing
        "gc --keep-last 2x @",             // trailing junk
        "gc --keep-every= --keep-last 1 @", // empty value
        "gc --max-age-hours -1 @",         // negative age
        "gc --max-age-hours nan @",        // not a number
        "gc --max-age-hours 0x1p3 @",      // a hex float strtod reads as 8
        "gc --max-age-hours 1e1 @",        // an exponent
        "gc --max-age-hours +8 @",         // a sign
        "gc --max-age-hours ' 8' @",       // a leading space
        "gc --max-age-hours inf @",        // infinity
        "gc --max-age-hours 8h @",         // a unit
        "gc --max-age-hours . @",          // no digit
        "gc --max-age-hours 0 @",          // not positive
        "gc --keep-last 0x10 @",           // hex
        "gc --keep-last ' 1' @",           // a leading space
        "gc --keep-last +1 @",             // a sign
        "gc --dry-run=yes --keep-last 1 @", // flag with a value
        "inspect @ extra",                 // two folders
    };
    for (const char *args : bad) {
        std::string cmd = args, out;
        size_t at = cmd.find('@');
        if (at != std::string::npos)
            cmd.replace(at, 1, quote(dir));
        EXPECT_EQ(cli(cmd, &out), 2) << "ckpt " << cmd << ":\n" << out;
        EXPECT_EQ(out.rfind("ckpt", 0), 0u) << out;
    }
    std::string out;
    EXPECT_EQ(cli("list", &out), 2);
    EXPECT_NE(out.find("missing DIR"), std::string::npos) << out;
    EXPECT_EQ(cli("list --bogus" + d, &out), 2);
    EXPECT_NE(out.find("unknown option '--bogus'"), std::string::npos) << out;
    EXPECT_EQ(cli("gc --max-age-hours 0x1p3" + d, &out), 2);
    EXPECT_NE(out.find("--max-age-hours: '0x1p3' is not a positive decimal number"),
              std::string::npos)
        << out;
    // Plain decimals are fine.
    EXPECT_EQ(cli("gc --dry-run --max-age-hours 8" + d, &out), 0) << out;
    EXPECT_EQ(cli("gc --dry-run --max-age-hours 0.5" + d, &out), 0) << out;
    EXPECT_EQ(cli("gc --dry-run --max-age-hours .5" + d, &out), 0) << out;
    EXPECT_TRUE(exists(step_dir(dir, 10))); // no gc ran
}

TEST_F(CliArgs, HelpAndVersion)
{
    std::string out;
    EXPECT_EQ(cli("--help", &out), 0);
    EXPECT_NE(out.find("usage: ckpt <command>"), std::string::npos) << out;
    for (const char *c : {"list", "verify", "inspect", "gc"}) {
        EXPECT_EQ(cli(std::string(c) + " --help", &out), 0) << c;
        EXPECT_NE(out.find(std::string("usage: ckpt ") + c), std::string::npos) << out;
    }
    EXPECT_EQ(cli("verify --help", &out), 0);
    EXPECT_NE(out.find("--step"), std::string::npos) << out;
    EXPECT_EQ(cli("--version", &out), 0);
    char v[32];
    snprintf(v, sizeof v, "ckpt %d.%d.%d", CKPT_VERSION_MAJOR, CKPT_VERSION_MINOR,
             CKPT_VERSION_PATCH);
    EXPECT_EQ(out.rfind(v, 0), 0u) << out;
}

TEST_F(CliArgs, OptionsAnywhereAndEqualsForm)
{
    save({10, 20});
    std::string out;
    EXPECT_EQ(cli(quote("verify") + " " + quote(dir) + " --step=10", &out), 0) << out;
    EXPECT_NE(out.find("step 10: ok"), std::string::npos) << out;
    EXPECT_EQ(cli("inspect -- " + quote(dir), &out), 0) << out;
}

} // namespace
