// SPDX-License-Identifier: Apache-2.0
// The interop suite's job: a model of every dtype, with odd shapes, split
// along different dimensions over any number of MPI ranks, whose bytes
// depend only on (tensor name, global byte offset, step), so that a reader
// that assembles the tensors (ckpt export, the Python package) can be
// checked byte for byte (tests/interop/expected.py computes the same).
//
//   interop_job save DIR STEP      save the model at STEP on every rank
//   interop_job check DIR STEP     restore it on this job's ranks; every
//                                  tensor bit-exact
//   interop_job check-imported DIR STEP
//                                  the same for a checkpoint `ckpt import`
//                                  made from an export (BYTES comes back as
//                                  U8, which is what safetensors holds)
//   interop_job size DIR STEP MIB  save MIB MiB of bf16 and f32 (benchmarks)
//
// Exit status 0 when every rank succeeded, else 1 (on every rank).
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ckpt/ckpt.h"
#include "ckpt/ckpt_mpi.h"

namespace {

struct Spec {
    const char *name;
    ckpt_dtype dtype;
    int ndim;
    int64_t shape[4];
    int split; // dimension split over the ranks, -1 replicated
};

// Every dtype; scalars, an empty tensor, names with '/' and non-ASCII.
const Spec kModel[] = {
    {"w.f32", CKPT_F32, 2, {37, 19}, 0},
    {"w.f64", CKPT_F64, 1, {1001}, 0},
    {"w.f16", CKPT_F16, 3, {5, 7, 9}, 1},
    {"w.bf16", CKPT_BF16, 2, {300, 131}, 0},
    {"w.bf16.cols", CKPT_BF16, 2, {400, 515}, 1},
    {"fp8.e4m3", CKPT_FP8_E4M3, 2, {33, 65}, 1},
    {"fp8.e5m2", CKPT_FP8_E5M2, 1, {129}, -1},
    {"i64", CKPT_I64, 2, {3, 4}, -1},
    {"i32", CKPT_I32, 2, {77, 3}, 0},
    {"i16", CKPT_I16, 1, {70001}, -1},
    {"i8", CKPT_I8, 4, {2, 3, 5, 7}, 2},
    {"u8", CKPT_U8, 2, {1000, 301}, 0},
    {"mask", CKPT_BOOL, 2, {41, 3}, 0},
    {"blob", CKPT_BYTES, 1, {1000}, -1},
    {"scalar", CKPT_F32, 0, {0}, -1},
    {"empty", CKPT_F32, 2, {0, 4}, -1},
    {"layer.0/attn.q \xc3\xbc", CKPT_F32, 2, {8, 8}, 0},
};

int rank_of()
{
    int r;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int world_of()
{
    int w;
    MPI_Comm_size(MPI_COMM_WORLD, &w);
    return w;
}

uint64_t seed(const char *name, int64_t step)
{
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return (uint64_t)h ^ (uint64_t)step;
}

// The byte at global offset o (expected.py has the same formula).
uint8_t byte_at(uint64_t s, uint64_t o, ckpt_dtype dt)
{
    uint8_t b = (uint8_t)(((o * 0x9E3779B1ull + s) >> 11) & 0xff);
    return dt == CKPT_BOOL ? (uint8_t)(b & 1) : b;
}

struct Part {
    Spec spec;
    int64_t start[4] = {0, 0, 0, 0}, count[4] = {0, 0, 0, 0};
    std::vector<uint8_t> data;

    Part(const Spec &sp, int w, int r) : spec(sp)
    {
        for (int d = 0; d < sp.ndim; d++)
            count[d] = sp.shape[d];
        if (sp.split >= 0) {
            int64_t n = sp.shape[sp.split];
            start[sp.split] = n * r / w;
            count[sp.split] = n * (r + 1) / w - start[sp.split];
        }
        uint64_t el = 1;
        for (int d = 0; d < sp.ndim; d++)
            el *= (uint64_t)count[d];
        data.resize(el * ckpt_dtype_size(sp.dtype));
    }
    // The bytes this rank's slice must hold at step.
    std::vector<uint8_t> expected(int64_t step) const
    {
        std::vector<uint8_t> v(data.size());
        size_t es = ckpt_dtype_size(spec.dtype);
        uint64_t s = seed(spec.name, step), nel = v.size() / es;
        int64_t idx[4] = {0, 0, 0, 0};
        for (uint64_t i = 0; i < nel; i++) {
            uint64_t g = 0;
            for (int d = 0; d < spec.ndim; d++)
                g = g * (uint64_t)spec.shape[d] + (uint64_t)(start[d] + idx[d]);
            for (size_t b = 0; b < es; b++)
                v[i * es + b] = byte_at(s, g * es + b, spec.dtype);
            for (int d = spec.ndim - 1; d >= 0; d--) {
                if (++idx[d] < count[d])
                    break;
                idx[d] = 0;
            }
        }
        return v;
    }
    int reg(ckpt_ctx *ck, ckpt_dtype as)
    {
        void *p = data.empty() ? nullptr : data.data();
        return spec.split < 0 ? ckpt_register(ck, spec.name, p, as, spec.ndim, spec.shape)
                              : ckpt_register_shard(ck, spec.name, p, as, spec.ndim,
                                                    spec.shape, start, count);
    }
};

int fail(const char *what, ckpt_ctx *ck)
{
    fprintf(stderr, "rank %d: %s: %s\n", rank_of(), what,
            ck ? ckpt_last_error(ck) : ckpt_last_error(nullptr));
    return 1;
}

ckpt_ctx *open_dir(const char *dir, uint64_t chunk)
{
    ckpt_config cfg;
    ckpt_config_init(&cfg);
    cfg.dir = dir;
    cfg.staging_bytes = 8u << 20;
    cfg.chunk_bytes = chunk;
    cfg.commit_timeout_s = 60;
    cfg.log_level = CKPT_LOG_ERROR;
    ckpt_ctx *ck = nullptr;
    return ckpt_open(&cfg, ckpt_comm_mpi(MPI_COMM_WORLD), &ck) == 0 ? ck : nullptr;
}

int save_parts(ckpt_ctx *ck, int64_t step)
{
    ckpt_ticket t;
    if (ckpt_save(ck, step, nullptr, &t) != 0 || ckpt_wait(ck, t, -1) != 0)
        return fail("save", ck);
    return ckpt_close(ck) == 0 ? 0 : fail("close", nullptr);
}

std::vector<Part> model()
{
    std::vector<Part> m;
    for (const Spec &s : kModel)
        m.emplace_back(s, world_of(), rank_of());
    return m;
}

int save(const char *dir, int64_t step)
{
    ckpt_ctx *ck = open_dir(dir, 64u << 10); // small chunks: tensors span several
    if (!ck)
        return fail("open", nullptr);
    std::vector<Part> m = model();
    for (Part &p : m) {
        p.data = p.expected(step);
        if (p.reg(ck, p.spec.dtype) != 0)
            return fail("register", ck);
    }
    // Text on every rank, the same; text that differs per rank; binary.
    const char cfg[] = "{\"lr\": 0.001, \"note\": \"caf\xc3\xa9 \\\"q\\\"\\n\"}";
    char who[32];
    snprintf(who, sizeof who, "rank %d of %d", rank_of(), world_of());
    const uint8_t rng[8] = {0, 1, 2, 0xff, 0xfe, 0, 7, 9};
    if (ckpt_set_meta(ck, "config", cfg, strlen(cfg)) != 0 ||
        ckpt_set_meta(ck, "who", who, strlen(who)) != 0 ||
        ckpt_set_meta(ck, "rng", rng, sizeof rng) != 0)
        return fail("meta", ck);
    return save_parts(ck, step);
}

int check(const char *dir, int64_t step, bool imported)
{
    ckpt_ctx *ck = open_dir(dir, 1u << 20);
    if (!ck)
        return fail("open", nullptr);
    std::vector<Part> m = model();
    for (Part &p : m) {
        ckpt_dtype as = imported && p.spec.dtype == CKPT_BYTES ? CKPT_U8 : p.spec.dtype;
        if (p.reg(ck, as) != 0)
            return fail("register", ck);
    }
    int64_t got = -1;
    if (ckpt_restore(ck, CKPT_LATEST, nullptr, &got) != 0)
        return fail("restore", ck);
    int bad = got != step;
    if (bad)
        fprintf(stderr, "rank %d: restored step %lld, not %lld\n", rank_of(), (long long)got,
                (long long)step);
    for (const Part &p : m)
        if (p.data != p.expected(step)) {
            fprintf(stderr, "rank %d: tensor '%s' differs\n", rank_of(), p.spec.name);
            bad = 1;
        }
    if (ckpt_close(ck) != 0)
        return fail("close", nullptr);
    return bad;
}

// MIB MiB in eight tensors, half bf16 and half f32, row-split over the ranks.
int save_size(const char *dir, int64_t step, uint64_t mib)
{
    ckpt_ctx *ck = open_dir(dir, 4u << 20);
    if (!ck)
        return fail("open", nullptr);
    std::vector<std::vector<uint8_t>> bufs;
    uint64_t per = (mib << 20) / 8;
    for (int i = 0; i < 8; i++) {
        ckpt_dtype dt = i % 2 ? CKPT_F32 : CKPT_BF16;
        int64_t cols = 4096, rows = (int64_t)(per / ckpt_dtype_size(dt) / (uint64_t)cols);
        int64_t shape[2] = {rows, cols}, start[2] = {rows * rank_of() / world_of(), 0};
        int64_t count[2] = {rows * (rank_of() + 1) / world_of() - start[0], cols};
        bufs.emplace_back((size_t)(count[0] * cols) * ckpt_dtype_size(dt));
        for (size_t k = 0; k < bufs.back().size(); k++)
            bufs.back()[k] = (uint8_t)(k * 131 + (size_t)i);
        char name[32];
        snprintf(name, sizeof name, "layer.%d.w", i);
        if (ckpt_register_shard(ck, name, bufs.back().data(), dt, 2, shape, start, count) != 0)
            return fail("register", ck);
    }
    return save_parts(ck, step);
}

} // namespace

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rc = 2;
    if (argc == 4 && strcmp(argv[1], "save") == 0)
        rc = save(argv[2], atoll(argv[3]));
    else if (argc == 4 && strcmp(argv[1], "check") == 0)
        rc = check(argv[2], atoll(argv[3]), false);
    else if (argc == 4 && strcmp(argv[1], "check-imported") == 0)
        rc = check(argv[2], atoll(argv[3]), true);
    else if (argc == 5 && strcmp(argv[1], "size") == 0)
        rc = save_size(argv[2], atoll(argv[3]), strtoull(argv[4], nullptr, 10));
    else
        fprintf(stderr, "usage: interop_job save|check|check-imported DIR STEP | size DIR STEP MIB\n");
    int any = 0;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any ? 1 : 0;
}
