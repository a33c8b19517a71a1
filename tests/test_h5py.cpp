// SPDX-License-Identifier: Apache-2.0
// Cross-reader test: a checkpoint with one tensor of every dtype, a scalar,
// an empty tensor, a 3-D tensor, a tensor spanning several chunks, awkward
// names and metadata is read back by h5py (tests/h5py_check.py), which must
// find every tensor by its `name` attribute and see exactly the bytes that
// were saved, and by h5dump.
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using ckt::TempDir;

// One saved tensor or metadata blob and the bytes h5py must find.
struct Item {
    std::string name;
    ckpt_dtype dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
    bool meta = false;
};

template <typename T> std::vector<uint8_t> raw(const std::vector<T> &v)
{
    std::vector<uint8_t> b(v.size() * sizeof(T));
    if (!b.empty())
        memcpy(b.data(), v.data(), b.size());
    return b;
}

std::string json_str(const std::string &s)
{
    std::string o = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            o += '\\';
            o += (char)c;
        } else if (c < 0x20) {
            char b[8];
            snprintf(b, sizeof b, "\\u%04x", c);
            o += b;
        } else {
            o += (char)c;
        }
    }
    return o + "\"";
}

// Writes expected/<i>.bin and expected/expected.json for the script.
void write_expected(const std::string &dir, int64_t step, const std::vector<Item> &items)
{
    std::ostringstream js;
    js << "{\"step\": " << step << ", \"world_size\": 1, \"items\": [\n";
    for (size_t i = 0; i < items.size(); i++) {
        const Item &it = items[i];
        std::string file = std::to_string(i) + ".bin";
        std::ofstream(dir + "/" + file, std::ios::binary)
            .write(reinterpret_cast<const char *>(it.bytes.data()),
                   (std::streamsize)it.bytes.size());
        js << "  {\"name\": " << json_str(it.name) << ", \"kind\": \""
           << (it.meta ? "meta" : "tensor") << "\", \"dtype\": \""
           << ckpt_dtype_name(it.dtype) << "\", \"shape\": [";
        for (size_t d = 0; d < it.shape.size(); d++)
            js << (d ? ", " : "") << it.shape[d];
        js << "], \"file\": \"" << file << "\"}" << (i + 1 < items.size() ? "," : "") << "\n";
    }
    js << "]}\n";
    std::ofstream(dir + "/expected.json") << js.str();
}

std::vector<Item> every_dtype()
{
    std::vector<Item> v;
    const double dinf = std::numeric_limits<double>::infinity();
    const float finf = std::numeric_limits<float>::infinity();
    v.push_back({"f64", CKPT_F64, {9},
                 raw(std::vector<double>{1.5, -2.25, 0.0, -0.0, 1e300, -1e-300, dinf,
                                         std::numeric_limits<double>::denorm_min(),
                                         3.141592653589793})});
    v.push_back({"f32", CKPT_F32, {8},
                 raw(std::vector<float>{1.5f, -2.25f, 0.0f, -0.0f, FLT_MAX,
                                        std::numeric_limits<float>::denorm_min(), -finf,
                                        0.1f})});
    // Half-precision types as bit patterns: 1.5, -2.25, +0, -0, max, the
    // smallest subnormal, infinity and one value with a full mantissa.
    v.push_back({"f16", CKPT_F16, {8},
                 raw(std::vector<uint16_t>{0x3E00, 0xC080, 0x0000, 0x8000, 0x7BFF, 0x0001,
                                           0x7C00, 0x3555})});
    v.push_back({"bf16", CKPT_BF16, {2, 4},
                 raw(std::vector<uint16_t>{0x3FC0, 0xC010, 0x0000, 0x8000, 0x7F7F, 0x0001,
                                           0xFF80, 0x3EAB})});
    // e4m3 is stored as u8, so every pattern (NaN ones included) must survive.
    std::vector<uint8_t> e4m3(256);
    for (int i = 0; i < 256; i++)
        e4m3[i] = (uint8_t)i;
    v.push_back({"fp8_e4m3", CKPT_FP8_E4M3, {16, 16}, e4m3});
    // e5m2: 1.5, -2.5, +0, -0, max, smallest subnormal, +inf, -inf, min normal.
    v.push_back({"fp8_e5m2", CKPT_FP8_E5M2, {9},
                 std::vector<uint8_t>{0x3E, 0xC1, 0x00, 0x80, 0x7B, 0x01, 0x7C, 0xFC, 0x04}});
    v.push_back({"i64", CKPT_I64, {6},
                 raw(std::vector<int64_t>{INT64_MIN, -1, 0, 1, INT64_MAX,
                                          0x0123456789ABCDEFll})});
    v.push_back({"i32", CKPT_I32, {5}, raw(std::vector<int32_t>{INT32_MIN, -7, 0, 42, INT32_MAX})});
    v.push_back({"i16", CKPT_I16, {5}, raw(std::vector<int16_t>{INT16_MIN, -300, 0, 1, INT16_MAX})});
    v.push_back({"i8", CKPT_I8, {5}, raw(std::vector<int8_t>{INT8_MIN, -1, 0, 1, INT8_MAX})});
    std::vector<uint8_t> u8(256);
    for (int i = 0; i < 256; i++)
        u8[i] = (uint8_t)(255 - i);
    v.push_back({"u8", CKPT_U8, {256}, u8});
    v.push_back({"bool", CKPT_BOOL, {7}, std::vector<uint8_t>{1, 0, 1, 1, 0, 0, 1}});
    std::vector<uint8_t> bytes(300);
    ckt::fill(bytes.data(), bytes.size(), 7);
    v.push_back({"bytes", CKPT_BYTES, {300}, bytes});

    v.push_back({"scalar", CKPT_F64, {}, raw(std::vector<double>{2.718281828459045})});
    v.push_back({"empty", CKPT_F32, {3, 0}, {}});
    std::vector<int16_t> cube(2 * 3 * 4);
    for (size_t i = 0; i < cube.size(); i++)
        cube[i] = (int16_t)(i * 1000 - 5000);
    v.push_back({"cube", CKPT_I16, {2, 3, 4}, raw(cube)});
    // 2.4 MB: three 1 MiB chunks, the last one partial.
    std::vector<uint8_t> big(600 * 1024 * 4);
    ckt::fill(big.data(), big.size(), 11);
    v.push_back({"big", CKPT_F32, {600, 1024}, big});
    v.push_back({"model.layers 0/ünïcødé 日本語 100%", CKPT_F32, {2},
                 raw(std::vector<float>{1.5f, -2.25f})});
    v.push_back({".hidden/../x", CKPT_I32, {1}, raw(std::vector<int32_t>{77})});

    std::vector<uint8_t> rng(16);
    ckt::fill(rng.data(), rng.size(), 3);
    v.push_back({"rng", CKPT_BYTES, {16}, rng, true});
    v.push_back({"data position", CKPT_BYTES, {8},
                 raw(std::vector<uint64_t>{123456789012345ull}), true});
    v.push_back({"empty meta", CKPT_BYTES, {0}, {}, true});
    v.push_back({"日本/meta%", CKPT_BYTES, {3}, std::vector<uint8_t>{0, 0xFF, 0x7F}, true});
    return v;
}

// Registers the tensors, sets the metadata, saves `step - 1` and `step` and
// closes: the rank file of `step` is the one written from the layout cached
// at the first save (format 1.2), not built by HDF5 again.
void save_items(const std::string &dir, int64_t step, std::vector<Item> &items)
{
    ckpt_config cfg = ckt::config(dir);
    ckpt_ctx *ctx = ckt::open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    for (Item &it : items) {
        int rc;
        if (it.meta)
            rc = ckpt_set_meta(ctx, it.name.c_str(), it.bytes.data(), it.bytes.size());
        else
            rc = ckpt_register(ctx, it.name.c_str(), it.bytes.empty() ? nullptr : it.bytes.data(),
                               it.dtype, (int)it.shape.size(),
                               it.shape.empty() ? nullptr : it.shape.data());
        EXPECT_EQ(rc, 0) << it.name << ": " << ckpt_last_error(ctx);
    }
    EXPECT_EQ(ckt::save_wait(ctx, step - 1), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(ckt::save_wait(ctx, step), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(ckpt_close(ctx), 0) << ckpt_last_error(nullptr);
}

TEST(H5py, EveryDtypeReadsBackExactly)
{
    if (std::string(CKPT_H5PY_PYTHON).empty())
        GTEST_SKIP() << "no python3 with h5py (CKPT_H5PY_PYTHON is empty)";
    TempDir tmp;
    std::string dir = tmp.sub("ckpt"), exp = tmp.sub("expected");
    ASSERT_EQ(mkdir(exp.c_str(), 0755), 0);
    std::vector<Item> items = every_dtype();
    const int64_t step = 42;

    save_items(dir, step, items);
    if (HasFatalFailure())
        return;

    write_expected(exp, step, items);
    std::string sdir = ckt::step_dir(dir, step);
    ASSERT_TRUE(ckt::exists(sdir + "/rank-00000.h5"));
    ASSERT_TRUE(ckt::exists(sdir + "/manifest.h5"));

    std::string out;
    int rc = ckt::run(std::string(CKPT_H5PY_PYTHON) + " " +
                          ckt::quote(std::string(CKPT_SOURCE_DIR) + "/tests/h5py_check.py") +
                          " " + ckt::quote(sdir) + " " + ckt::quote(exp),
                      &out);
    EXPECT_EQ(rc, 0) << "h5py_check.py failed:\n" << out;
    // The script says what it checked; a silent pass would prove nothing.
    EXPECT_NE(out.find("checked " + std::to_string(items.size()) + " items"), std::string::npos)
        << out;
    EXPECT_EQ(ckt::expect_h5dump_all(sdir), 2);
}

// The checker itself must be able to fail: a byte differing from what was
// saved makes it exit non-zero and name the tensor.
TEST(H5py, CheckerReportsAWrongByte)
{
    if (std::string(CKPT_H5PY_PYTHON).empty())
        GTEST_SKIP() << "no python3 with h5py (CKPT_H5PY_PYTHON is empty)";
    TempDir tmp;
    std::string dir = tmp.sub("ckpt"), exp = tmp.sub("expected");
    ASSERT_EQ(mkdir(exp.c_str(), 0755), 0);
    std::vector<Item> items = every_dtype();
    save_items(dir, 7, items);
    if (HasFatalFailure())
        return;
    for (Item &it : items) {
        if (it.name == "bf16")
            it.bytes[3] ^= 0x01; // element 1: 0xC010 -> 0xC110
    }
    write_expected(exp, 7, items);
    std::string out;
    int rc = ckt::run(std::string(CKPT_H5PY_PYTHON) + " " +
                          ckt::quote(std::string(CKPT_SOURCE_DIR) + "/tests/h5py_check.py") +
                          " " + ckt::quote(ckt::step_dir(dir, 7)) + " " + ckt::quote(exp),
                      &out);
    EXPECT_EQ(rc, 1) << out;
    EXPECT_NE(out.find("bf16"), std::string::npos) << out;
}

} // namespace
