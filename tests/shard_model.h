// SPDX-License-Identifier: Apache-2.0
// The sharded test model: tensors split by rows, by columns and in 1-D over
// any number of ranks, plus replicated ones, with values that depend only on
// (tensor, global element, step), so a slice restored on any number of
// ranks can be checked element by element.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ckpt/ckpt.h"

namespace ckm {

// The value of element g (global row-major index) of tensor `name` at `step`.
inline uint32_t value(const std::string &name, uint64_t g, int64_t step)
{
    uint64_t h = 1469598103934665603ull;
    for (char c : name)
        h = (h ^ (uint8_t)c) * 1099511628211ull;
    uint64_t x = h ^ (g * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)step << 40);
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    return (uint32_t)(x ^ (x >> 32));
}

// Rows [lo, hi) of n split as evenly as possible over w ranks.
inline void split(int64_t n, int w, int r, int64_t *start, int64_t *count)
{
    *start = n * r / w;
    *count = n * (r + 1) / w - *start;
}

// One tensor of the test model, as this rank holds it.
struct Part {
    std::string name;
    int ndim;
    int64_t gshape[2];
    int64_t start[2];
    int64_t count[2];
    bool sharded;
    std::vector<uint32_t> data;

    uint64_t global_index(uint64_t local) const
    {
        if (ndim == 1)
            return (uint64_t)start[0] + local;
        uint64_t row = local / (uint64_t)count[1], col = local % (uint64_t)count[1];
        return ((uint64_t)start[0] + row) * (uint64_t)gshape[1] + (uint64_t)start[1] + col;
    }
    void fill(int64_t step)
    {
        for (size_t i = 0; i < data.size(); i++)
            data[i] = value(name, global_index(i), step);
    }
    // The first element that differs from step's values, or -1.
    int64_t first_bad(int64_t step) const
    {
        for (size_t i = 0; i < data.size(); i++)
            if (data[i] != value(name, global_index(i), step))
                return (int64_t)i;
        return -1;
    }
};

// The model on w ranks, as rank r holds it: row, column and 1-D splits,
// a wide tensor whose rows cross chunk boundaries, and replicated tensors.
inline std::vector<Part> model(int w, int r)
{
    std::vector<Part> v;
    auto add2 = [&](const char *name, int64_t rows, int64_t cols, int how) {
        Part p{name, 2, {rows, cols}, {0, 0}, {rows, cols}, how != 0, {}};
        if (how == 1)
            split(rows, w, r, &p.start[0], &p.count[0]);
        if (how == 2)
            split(cols, w, r, &p.start[1], &p.count[1]);
        p.data.resize((size_t)(p.count[0] * p.count[1]));
        v.push_back(p);
    };
    auto add1 = [&](const char *name, int64_t n, bool sharded) {
        Part p{name, 1, {n, 0}, {0, 0}, {n, 0}, sharded, {}};
        if (sharded)
            split(n, w, r, &p.start[0], &p.count[0]);
        p.data.resize((size_t)p.count[0]);
        v.push_back(p);
    };
    add2("emb", 37, 8, 1);          // row split (tensor parallel, vocab)
    add2("proj", 16, 13, 2);        // column split
    add2("wide", 300, 70, 2);       // column split, 84 KB: runs cross chunks
    add1("bias", 101, true);        // 1-D split
    add1("ln.weight", 8, false);    // replicated
    add1("table", 40000, false);    // replicated, 160 KB: several chunks
    add2("adam.m.emb", 37, 8, 1);
    return v;
}

// Registers one part: its slice, or the whole tensor when replicated.
inline int register_part(ckpt_ctx *ck, Part &p)
{
    return p.sharded ? ckpt_register_shard(ck, p.name.c_str(), p.data.data(), CKPT_I32, p.ndim,
                                           p.gshape, p.start, p.count)
                     : ckpt_register(ck, p.name.c_str(), p.data.data(), CKPT_I32, p.ndim,
                                     p.gshape);
}

inline void register_model(ckpt_ctx *ck, std::vector<Part> &m)
{
    for (Part &p : m)
        ASSERT_EQ(register_part(ck, p), 0) << ckpt_last_error(ck);
}

// The suites' config: small staging and chunks, so the model spans chunks.
// cfg.dir borrows dir.
inline ckpt_config config(const std::string &dir)
{
    ckpt_config cfg;
    ckpt_config_init(&cfg);
    cfg.dir = dir.c_str();
    cfg.staging_bytes = 1u << 20;
    cfg.chunk_bytes = 64u << 10;
    cfg.commit_timeout_s = 60;
    cfg.log_level = CKPT_LOG_ERROR;
    return cfg;
}

} // namespace ckm
