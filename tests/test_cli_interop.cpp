// SPDX-License-Identifier: Apache-2.0
// `ckpt export` and `ckpt import` end to end without Python: real
// checkpoints made through the public API, the real binary run on them,
// assertions on exit status, messages, the bytes of the safetensors file
// and the folders left behind.  The cross-checks with the safetensors
// package and numpy are tests/interop/export.sh (label `python`).
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "io/manifest.h"
}

namespace {

using namespace ckt;

int cli(const std::string &args, std::string *out)
{
    return run(quote(std::string(CKPT_BIN_DIR) + "/ckpt") + " " + args, out);
}

// The member `"name":{...}` of a safetensors header, or "".
std::string member(const std::string &header, const std::string &name)
{
    size_t at = header.find("\"" + name + "\":{");
    if (at == std::string::npos)
        return "";
    return header.substr(at, header.find('}', at) - at + 1);
}

class Interop : public ::testing::Test {
  protected:
    TempDir tmp;
    std::string dir = tmp.sub("ck");
    std::vector<float> w = std::vector<float>(1024 * 1024); // 4 chunks of 1 MiB
    std::vector<uint16_t> emb = std::vector<uint16_t>(64 * 48);
    std::vector<uint8_t> mask = std::vector<uint8_t>(100);

    void add(ckpt_ctx *ctx, int64_t emb_rows = 64)
    {
        const int64_t ws[] = {1024, 1024}, es[] = {emb_rows, 48}, ms[] = {100};
        ASSERT_EQ(ckpt_register(ctx, "layer.0.w", w.data(), CKPT_F32, 2, ws), 0)
            << ckpt_last_error(ctx);
        ASSERT_EQ(ckpt_register(ctx, "emb", emb.data(), CKPT_BF16, 2, es), 0)
            << ckpt_last_error(ctx);
        ASSERT_EQ(ckpt_register(ctx, "mask", mask.data(), CKPT_BOOL, 1, ms), 0)
            << ckpt_last_error(ctx);
    }

    void save(int64_t step)
    {
        ckpt_config c = config(dir);
        ckpt_ctx *ctx = open_ctx(c);
        ASSERT_NE(ctx, nullptr);
        add(ctx);
        fill(w.data(), w.size() * 4, 1);
        fill(emb.data(), emb.size() * 2, 2);
        for (size_t i = 0; i < mask.size(); i++)
            mask[i] = (uint8_t)(i % 3 == 0);
        const char note[] = "lr=0.1 \"quoted\"\n";
        const uint8_t rng[] = {0, 0xff, 1};
        ASSERT_EQ(ckpt_set_meta(ctx, "note", note, strlen(note)), 0);
        ASSERT_EQ(ckpt_set_meta(ctx, "rng", rng, sizeof rng), 0);
        ASSERT_EQ(save_wait(ctx, step), 0) << ckpt_last_error(ctx);
        ASSERT_EQ(ckpt_close(ctx), 0);
    }

    uint64_t data_offset(int64_t step, const char *name)
    {
        ckpt__index idx;
        ckpt__err err;
        std::string path = step_dir(dir, step) + "/manifest.h5";
        EXPECT_EQ(ckpt__manifest_read(path.c_str(), &idx, &err), 0) << err.msg;
        const ckpt__entry *e = ckpt__index_find(&idx, CKPT__ENTRY_TENSOR, 0, name);
        uint64_t off = e ? e->file_off : 0;
        ckpt__index_free(&idx);
        return off;
    }
};

TEST_F(Interop, ExportWritesTheHeaderFirstThenEveryTensorsBytes)
{
    save(5);
    std::string out, file = tmp.sub("m.safetensors");
    ASSERT_EQ(cli("export " + quote(dir) + " --format safetensors --out " + quote(file), &out), 0)
        << out;
    EXPECT_NE(out.find("left out metadata 'rng'"), std::string::npos) << out;
    std::string bytes = read_file(file);
    ASSERT_GE(bytes.size(), 8u);
    uint64_t n = 0;
    memcpy(&n, bytes.data(), 8);
    ASSERT_LE(8 + n, bytes.size());
    EXPECT_EQ((8 + n) % 8, 0u) << "the data starts 8-byte aligned";
    std::string header = bytes.substr(8, n);
    EXPECT_NE(header.find("\"__metadata__\":{\"note\":\"lr=0.1 \\\"quoted\\\"\\u000a\""),
              std::string::npos)
        << header;
    EXPECT_NE(header.find("\"format\":\"pt\""), std::string::npos) << header;
    struct Want {
        const char *name, *dtype, *shape;
        const void *data;
        size_t nbytes;
    } want[] = {{"layer.0.w", "F32", "[1024, 1024]", w.data(), w.size() * 4},
                {"emb", "BF16", "[64, 48]", emb.data(), emb.size() * 2},
                {"mask", "BOOL", "[100]", mask.data(), mask.size()}};
    for (const Want &t : want) {
        std::string m = member(header, t.name);
        ASSERT_FALSE(m.empty()) << t.name << " in " << header;
        EXPECT_NE(m.find(std::string("\"dtype\":\"") + t.dtype + "\""), std::string::npos) << m;
        EXPECT_NE(m.find(std::string("\"shape\":") + t.shape), std::string::npos) << m;
        unsigned long long b = 0, e = 0;
        ASSERT_EQ(sscanf(m.c_str() + m.find("data_offsets"), "data_offsets\":[%llu,%llu]", &b, &e),
                  2)
            << m;
        ASSERT_EQ(e - b, t.nbytes) << t.name;
        ASSERT_LE(8 + n + e, bytes.size());
        EXPECT_EQ(memcmp(bytes.data() + 8 + n + b, t.data, t.nbytes), 0) << t.name;
    }
}

// Progress only on a terminal: script(1) gives the command one.
TEST_F(Interop, ProgressShowsOnATerminalOnly)
{
    save(5);
    if (run("command -v script >/dev/null") != 0)
        GTEST_SKIP() << "script(1) is not installed: no way to give the command a terminal";
    std::string out, file = tmp.sub("m.npz");
    std::string cmd = quote(std::string(CKPT_BIN_DIR) + "/ckpt") + " export " + quote(dir) +
                      " --format npz --out " + quote(file);
    ASSERT_EQ(run("script -qec " + quote(cmd) + " /dev/null", &out), 0) << out;
    EXPECT_NE(out.find("\033[Kexport: "), std::string::npos) << out;
    EXPECT_NE(out.find("stored as their raw uint16 / uint8 bits"), std::string::npos) << out;
    ASSERT_EQ(cli("export " + quote(dir) + " --format npz --force --out " + quote(file), &out), 0);
    EXPECT_EQ(out.find("\033[Kexport: "), std::string::npos) << out;
}

TEST_F(Interop, BadArgumentsExit2WithAMessageAndWriteNothing)
{
    save(5);
    std::string x = quote(tmp.sub("x"));
    const std::vector<std::string> bad = {
        "export " + quote(dir) + " --out " + x,
        "export " + quote(dir) + " --format safetensors",
        "export " + quote(dir) + " --format onnx --out " + x,
        "export " + quote(dir) + " --format npz --out " + x + " --dtype f8",
        "export " + quote(dir) + " --format npz --out " + x + " --step 4",
        "export " + quote(dir) + " --format npz --out " + x + " --step=-1",
        "export " + quote(dir) + " --format npz --out " + x + " --what",
        "export " + quote(dir) + " " + quote(dir) + " --format npz --out " + x,
        "export " + quote(tmp.sub("none")) + " --format npz --out " + x,
        "export " + quote(dir) + " --format npz --out",
        "export " + quote(dir) + " --format npz --out " + x + " --include 'nothing*'",
        "import " + quote(tmp.sub("im")),
        "import --from " + x + " " + quote(tmp.sub("im")),
        "import --from " + x + " " + quote(tmp.sub("im")) + " --rename a",
        "import --from " + x + " " + quote(tmp.sub("im")) + " --step x",
    };
    for (const std::string &args : bad) {
        std::string out;
        EXPECT_EQ(cli(args, &out), 2) << args << ": " << out;
        EXPECT_EQ(out.rfind("ckpt", 0), 0u) << args << ": " << out;
    }
    EXPECT_FALSE(exists(tmp.sub("x")));
    EXPECT_FALSE(exists(tmp.sub("im")));
    std::string help;
    EXPECT_EQ(cli("export --help", &help), 0);
    EXPECT_NE(help.find("usage: ckpt export"), std::string::npos) << help;
    EXPECT_EQ(cli("import --help", &help), 0);
    EXPECT_NE(help.find("usage: ckpt import"), std::string::npos) << help;
}

TEST_F(Interop, AnExistingFileIsReplacedOnlyWithForce)
{
    save(5);
    std::string file = tmp.sub("m.safetensors"), out;
    write_file(file, "mine");
    std::string args = "export " + quote(dir) + " --format safetensors --out " + quote(file);
    EXPECT_EQ(cli(args, &out), 2) << out;
    EXPECT_NE(out.find("exists; --force replaces it"), std::string::npos) << out;
    EXPECT_EQ(read_file(file), "mine");
    EXPECT_EQ(cli(args + " --force", &out), 0) << out;
    EXPECT_NE(read_file(file), "mine");
}

TEST_F(Interop, ADamagedChunkExits1NamingTensorAndChunkAndLeavesNoFile)
{
    save(5);
    int fd = open((step_dir(dir, 5) + "/rank-00000.h5").c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint64_t off = data_offset(5, "layer.0.w") + 2 * (1u << 20) + 17;
    unsigned char b;
    ASSERT_EQ(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x10;
    ASSERT_EQ(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
    for (const char *fmt : {"safetensors", "npz"}) {
        std::string out, file = tmp.sub(std::string("bad.") + fmt);
        EXPECT_EQ(cli("export " + quote(dir) + " --format " + fmt + " --out " + quote(file), &out),
                  1)
            << out;
        EXPECT_NE(out.find("tensor 'layer.0.w' chunk 2 failed its checksum"), std::string::npos)
            << out;
        EXPECT_FALSE(exists(file));
    }
    std::vector<std::string> left = list_dir(tmp.path());
    EXPECT_EQ(left, std::vector<std::string>{"ck"}) << "a temporary file was left behind";
}

TEST_F(Interop, ImportedCheckpointRestoresBitEqualAndMismatchesAsToday)
{
    save(5);
    std::string out, file = tmp.sub("m.safetensors"), dir2 = tmp.sub("im");
    ASSERT_EQ(cli("export " + quote(dir) + " --format safetensors --out " + quote(file), &out), 0)
        << out;
    ASSERT_EQ(cli("import --from " + quote(file) + " " + quote(dir2) + " --step 9", &out), 0)
        << out;
    EXPECT_EQ(cli("verify " + quote(dir2), &out), 0) << out;
    EXPECT_EQ(cli("import --from " + quote(file) + " " + quote(dir2) + " --step 9", &out), 2)
        << "an existing step is not replaced: " << out;
    std::vector<float> w0 = w;
    std::vector<uint16_t> e0 = emb;
    std::vector<uint8_t> m0 = mask;
    std::fill(w.begin(), w.end(), 0.0f);
    std::fill(emb.begin(), emb.end(), 0);
    std::fill(mask.begin(), mask.end(), 0);
    ckpt_config c = config(dir2);
    ckpt_ctx *ctx = open_ctx(c);
    ASSERT_NE(ctx, nullptr);
    add(ctx);
    int64_t step = -1;
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &step), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(step, 9);
    // Bytes, not floats: random bit patterns include NaNs.
    EXPECT_EQ(memcmp(w.data(), w0.data(), w.size() * 4), 0);
    EXPECT_EQ(emb, e0);
    EXPECT_EQ(mask, m0);
    char note[64];
    size_t len = 0;
    ASSERT_EQ(ckpt_get_meta(ctx, "note", note, sizeof note, &len), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(std::string(note, len), "lr=0.1 \"quoted\"\n");
    ASSERT_EQ(ckpt_close(ctx), 0);
    // A job that registers another shape gets today's CKPT_EMISMATCH.
    ctx = open_ctx(c);
    ASSERT_NE(ctx, nullptr);
    add(ctx, 32);
    EXPECT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &step), CKPT_EMISMATCH);
    EXPECT_NE(std::string(ckpt_last_error(ctx)).find("tensor 'emb' has shape [64, 48]"),
              std::string::npos)
        << ckpt_last_error(ctx);
    ckpt_close(ctx);
}

// A safetensors file from a header and data.
std::string st_file(const std::string &header, const std::string &data, int64_t hlen = -1)
{
    uint64_t n = hlen < 0 ? header.size() : (uint64_t)hlen;
    std::string s(8, '\0');
    memcpy(&s[0], &n, 8);
    return s + header + data;
}

TEST_F(Interop, ImportRefusesMalformedFilesAndCommitsNothing)
{
    const std::string d8(8, '\0');
    const std::vector<std::pair<std::string, std::string>> bad = {
        {st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", d8, 1 << 30),
         "does not fit"},
        {st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 d8),
         "overlaps"},
        {st_file("{\"a\":{\"dtype\":\"U32\",\"shape\":[2],\"data_offsets\":[0,8]}}", d8),
         "dtype U32"},
        {st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", d8),
         "do not hold"},
        {st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", d8), "hole"},
        {st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", d8),
         "malformed"},
        {st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", d8),
         "unknown or repeated"},
        {st_file("{\"a\\u0001\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", d8),
         "tensor name"},
        {std::string("abc"), "too short"},
    };
    for (const auto &b : bad) {
        std::string file = tmp.sub("bad.safetensors"), out;
        write_file(file, b.first);
        EXPECT_EQ(cli("import --from " + quote(file) + " " + quote(dir), &out), 2) << out;
        EXPECT_NE(out.find(b.second), std::string::npos) << b.second << ": " << out;
        EXPECT_FALSE(exists(dir)) << out;
    }
}

} // namespace
