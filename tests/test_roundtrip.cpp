// SPDX-License-Identifier: Apache-2.0
// Round trips through the public API, on every writer backend: every dtype,
// odd shapes (scalars, zero-length dimensions, sizes around the 4 KiB block,
// the 64 KiB alignment threshold and the chunk size, a tensor larger than
// the staging pool), user metadata, 10,000 small tensors, snapshot
// semantics of the fence, replacing a step, explicit steps, retention, and
// two contexts in one process; metadata providers called at each save;
// tensors registered after the restore and restored by name.  Every file
// written is read back by h5dump.  The cudasim build runs the same on the
// CUDA backend with the tensors in device memory (tensor_mem.h).
#include <map>
#include <memory>
#include <thread>

#include "tensor_mem.h"
#include "test_util.h"

using namespace ckt;

namespace {

struct Tensor {
    std::string name;
    ckpt_dtype dtype;
    std::vector<int64_t> shape;
    TensorMem data;
    uint64_t seed;

    size_t nbytes() const { return data.size(); }
};

size_t bytes_of(ckpt_dtype dt, const std::vector<int64_t> &shape)
{
    size_t n = ckpt_dtype_size(dt);
    for (int64_t d : shape)
        n *= (size_t)d;
    return n;
}

Tensor make(const std::string &name, ckpt_dtype dt, std::vector<int64_t> shape, uint64_t seed)
{
    Tensor t{name, dt, shape, TensorMem(bytes_of(dt, shape)), seed};
    t.data.fill(seed);
    return t;
}

// Tensors hold device memory in the cudasim build: moved, never copied.
template <class... T> std::vector<Tensor> tensors(T &&...t)
{
    std::vector<Tensor> v;
    (v.push_back(std::move(t)), ...);
    return v;
}

class RoundTrip : public WriterTest {
  protected:
    TempDir tmp;
    std::string dir = tmp.sub("ckpt");
    ckpt_config cfg = config(dir, GetParam());

    void register_all(ckpt_ctx *ctx, std::vector<Tensor> &ts)
    {
        for (auto &t : ts) {
            void *p = t.data.empty() ? nullptr : t.data.data();
            ASSERT_EQ(ckpt_register(ctx, t.name.c_str(), p, t.dtype, (int)t.shape.size(),
                                    t.shape.data()),
                      0)
                << t.name << ": " << ckpt_last_error(ctx);
        }
    }

    // Saves ts at step, clobbers the buffers, restores, compares.
    void round_trip(std::vector<Tensor> &ts, int64_t step = 7)
    {
        ckpt_ctx *ctx = open_ctx(cfg);
        ASSERT_NE(ctx, nullptr);
        register_all(ctx, ts);
        ASSERT_EQ(save_wait(ctx, step), 0) << ckpt_last_error(ctx);
        for (auto &t : ts)
            t.data.set(0xA5);
        int64_t got = -1;
        ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
        EXPECT_EQ(got, step);
        for (auto &t : ts)
            EXPECT_TRUE(t.data.matches(t.seed)) << t.name;
        EXPECT_EQ(ckpt_close(ctx), 0);
        EXPECT_GE(expect_h5dump_all(dir), 2);
    }
};

TEST_P(RoundTrip, EveryDtype)
{
    std::vector<Tensor> ts;
    ckpt_dtype all[] = {CKPT_F64, CKPT_F32,  CKPT_F16, CKPT_BF16, CKPT_FP8_E4M3,
                        CKPT_FP8_E5M2, CKPT_I64, CKPT_I32, CKPT_I16, CKPT_I8,
                        CKPT_U8,  CKPT_BOOL, CKPT_BYTES};
    uint64_t seed = 1;
    for (ckpt_dtype dt : all)
        ts.push_back(make(std::string("t_") + ckpt_dtype_name(dt), dt, {3, 5, 7}, seed++));
    round_trip(ts);
}

TEST_P(RoundTrip, OddShapes)
{
    const int64_t chunk = (int64_t)cfg.chunk_bytes;
    std::vector<Tensor> ts;
    ts.push_back(make("scalar_f64", CKPT_F64, {}, 11));
    ts.push_back(make("scalar_u8", CKPT_U8, {}, 12));
    ts.push_back(make("empty_1d", CKPT_F32, {0}, 13));
    ts.push_back(make("empty_3d", CKPT_I16, {3, 0, 5}, 14));
    ts.push_back(make("one_byte", CKPT_U8, {1}, 15));
    ts.push_back(make("block_minus_1", CKPT_U8, {4095}, 16));
    ts.push_back(make("block", CKPT_U8, {4096}, 17));
    ts.push_back(make("block_plus_1", CKPT_U8, {4097}, 18));
    ts.push_back(make("odd_f32", CKPT_F32, {3, 1237}, 19));
    ts.push_back(make("align_threshold_minus_1", CKPT_U8, {65535}, 20));
    ts.push_back(make("align_threshold", CKPT_U8, {65536}, 21));
    ts.push_back(make("align_threshold_plus_1", CKPT_U8, {65537}, 22));
    ts.push_back(make("chunk_minus_1", CKPT_U8, {chunk - 1}, 23));
    ts.push_back(make("chunk", CKPT_U8, {chunk}, 24));
    ts.push_back(make("chunk_plus_1", CKPT_U8, {chunk + 1}, 25));
    ts.push_back(make("eight_dims", CKPT_I8, {2, 1, 3, 1, 2, 1, 1, 5}, 26));
    // Larger than the whole staging pool: must pipeline through it.
    int64_t big = (int64_t)cfg.staging_bytes * 2 + 12345;
    ts.push_back(make("bigger_than_staging", CKPT_BF16, {big / 2}, 27));
    round_trip(ts);
}

TEST_P(RoundTrip, MetadataIsCapturedAtSave)
{
    ckpt_ctx *ctx = open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    std::vector<Tensor> ts = tensors(make("w", CKPT_F32, {1000}, 3));
    register_all(ctx, ts);
    uint64_t rng[4] = {1, 2, 3, 4};
    ASSERT_EQ(ckpt_set_meta(ctx, "rng", rng, sizeof rng), 0);
    ASSERT_EQ(ckpt_set_meta(ctx, "empty", nullptr, 0), 0);
    std::vector<uint8_t> big(CKPT_MAX_META);
    fill(big.data(), big.size(), 99);
    ASSERT_EQ(ckpt_set_meta(ctx, "loader position", big.data(), big.size()), 0);
    ckpt_ticket t;
    ASSERT_EQ(ckpt_save(ctx, 3, nullptr, &t), 0);
    // Changed after the save call: the checkpoint must hold the old values.
    rng[0] = 42;
    ASSERT_EQ(ckpt_set_meta(ctx, "rng", rng, sizeof rng), 0);
    ASSERT_EQ(ckpt_set_meta(ctx, "later", "x", 1), 0);
    ASSERT_EQ(ckpt_fence(ctx, nullptr), 0);
    ASSERT_EQ(ckpt_wait(ctx, t, -1), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, nullptr), 0) << ckpt_last_error(ctx);
    uint64_t got[4] = {};
    size_t len = 0;
    ASSERT_EQ(ckpt_get_meta(ctx, "rng", got, sizeof got, &len), 0);
    EXPECT_EQ(len, sizeof got);
    EXPECT_EQ(got[0], 1u);
    EXPECT_EQ(got[3], 4u);
    ASSERT_EQ(ckpt_get_meta(ctx, "empty", nullptr, 0, &len), 0);
    EXPECT_EQ(len, 0u);
    std::vector<uint8_t> back(CKPT_MAX_META);
    ASSERT_EQ(ckpt_get_meta(ctx, "loader position", back.data(), back.size(), &len), 0);
    EXPECT_EQ(back, big);
    // Restore replaces the whole store: a key set after the save is gone.
    EXPECT_EQ(ckpt_get_meta(ctx, "later", nullptr, 0, &len), CKPT_ENOTFOUND);
    EXPECT_EQ(ckpt_close(ctx), 0);
    expect_h5dump_all(dir);
}

TEST_P(RoundTrip, TenThousandSmallTensors)
{
    std::vector<Tensor> ts;
    ts.reserve(10000);
    for (int i = 0; i < 10000; i++) {
        char name[64];
        snprintf(name, sizeof name, "layers.%d.param", i);
        ckpt_dtype dt = i % 3 == 0 ? CKPT_F32 : i % 3 == 1 ? CKPT_BF16 : CKPT_U8;
        ts.push_back(make(name, dt, {1 + i % 37}, (uint64_t)i + 1000));
    }
    round_trip(ts);
}

TEST_P(RoundTrip, FenceMakesMutationSafe)
{
    // State three times the staging pool: the fence covers a pipelined copy.
    cfg.staging_bytes = 4u << 20;
    ckpt_ctx *ctx = open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    std::vector<Tensor> ts =
        tensors(make("a", CKPT_F32, {3 << 20}, 5), make("b", CKPT_U8, {777}, 6));
    register_all(ctx, ts);
    ckpt_ticket t;
    ASSERT_EQ(ckpt_save(ctx, 1, nullptr, &t), 0);
    ASSERT_EQ(ckpt_fence(ctx, nullptr), 0);
    // The optimizer step: mutate everything right after the fence.
    for (auto &tt : ts)
        tt.data.set(0x3C);
    ASSERT_EQ(ckpt_wait(ctx, t, -1), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_restore(ctx, 1, nullptr, nullptr), 0) << ckpt_last_error(ctx);
    for (auto &tt : ts)
        EXPECT_TRUE(tt.data.matches(tt.seed)) << tt.name;
    EXPECT_EQ(ckpt_close(ctx), 0);
}

TEST_P(RoundTrip, ReplacingAStepIsAtomicAndLeavesNothingBehind)
{
    ckpt_ctx *ctx = open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    std::vector<Tensor> ts = tensors(make("w", CKPT_F32, {100000}, 1));
    register_all(ctx, ts);
    ASSERT_EQ(save_wait(ctx, 5), 0) << ckpt_last_error(ctx);
    ts[0].data.fill(2);
    ASSERT_EQ(save_wait(ctx, 5), 0) << ckpt_last_error(ctx);
    ts[0].data.set(0);
    int64_t got;
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(got, 5);
    EXPECT_TRUE(ts[0].data.matches(2));
    auto names = list_dir(dir);
    ASSERT_EQ(names.size(), 1u);
    EXPECT_EQ(names[0], "step-000000000005");
    EXPECT_EQ(ckpt_close(ctx), 0);
}

TEST_P(RoundTrip, ExplicitStepAndListing)
{
    ckpt_ctx *ctx = open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    std::vector<Tensor> ts = tensors(make("w", CKPT_I64, {5000}, 0));
    register_all(ctx, ts);
    for (int64_t s : {10, 20, 30}) {
        ts[0].data.fill((uint64_t)s);
        ASSERT_EQ(save_wait(ctx, s), 0) << ckpt_last_error(ctx);
    }
    ckpt_info info[8];
    size_t n = 0;
    ASSERT_EQ(ckpt_list(ctx, info, 8, &n), 0);
    ASSERT_EQ(n, 3u);
    EXPECT_EQ(info[0].step, 30);
    EXPECT_EQ(info[2].step, 10);
    EXPECT_EQ(info[0].nbytes, ts[0].nbytes());
    EXPECT_EQ(info[0].ntensors, 1);
    EXPECT_EQ(info[0].world_size, 1);
    EXPECT_EQ(strlen(info[0].uuid), 32u);
    ASSERT_EQ(ckpt_list(ctx, info, 1, &n), 0);
    EXPECT_EQ(n, 3u);
    int64_t got;
    ASSERT_EQ(ckpt_restore(ctx, 20, nullptr, &got), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(got, 20);
    EXPECT_TRUE(ts[0].data.matches(20));
    EXPECT_EQ(ckpt_restore(ctx, 25, nullptr, &got), CKPT_ENOTFOUND);
    EXPECT_EQ(ckpt_close(ctx), 0);
}

TEST_P(RoundTrip, RetentionKeepsNewestAndEveryKth)
{
    cfg.keep_last = 2;
    cfg.keep_every = 4;
    ckpt_ctx *ctx = open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    std::vector<Tensor> ts = tensors(make("w", CKPT_U8, {4096}, 0));
    register_all(ctx, ts);
    for (int64_t s = 1; s <= 9; s++)
        ASSERT_EQ(save_wait(ctx, s), 0) << ckpt_last_error(ctx);
    ckpt_info info[16];
    size_t n = 0;
    ASSERT_EQ(ckpt_list(ctx, info, 16, &n), 0);
    std::vector<int64_t> steps;
    for (size_t i = 0; i < n; i++)
        steps.push_back(info[i].step);
    EXPECT_EQ(steps, (std::vector<int64_t>{9, 8, 4}));
    EXPECT_EQ(list_dir(dir).size(), 3u); // no trash or partial folders left
    EXPECT_EQ(ckpt_close(ctx), 0);
}

TEST_P(RoundTrip, TicketsPollAndWait)
{
    ckpt_ctx *ctx = open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    std::vector<Tensor> ts = tensors(make("w", CKPT_F32, {1 << 20}, 8));
    register_all(ctx, ts);
    ckpt_ticket t = 0;
    ASSERT_EQ(ckpt_save(ctx, 1, nullptr, &t), 0);
    EXPECT_NE(t, 0u);
    int rc;
    while ((rc = ckpt_poll(ctx, t)) == CKPT_INPROGRESS)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(rc, 0) << ckpt_last_error(ctx);
    EXPECT_EQ(ckpt_poll(ctx, t), 0); // poll does not consume
    EXPECT_EQ(ckpt_wait(ctx, t, 0), 0);
    EXPECT_EQ(ckpt_wait(ctx, t, -1), CKPT_ESTATE); // wait does
    EXPECT_EQ(ckpt_poll(ctx, t), CKPT_ESTATE);
    // Fire and forget: no ticket, the save still commits; close reports 0.
    ASSERT_EQ(ckpt_save(ctx, 2, nullptr, nullptr), 0);
    EXPECT_EQ(ckpt_close(ctx), 0);
    EXPECT_TRUE(exists(step_dir(dir, 2) + "/manifest.h5"));
}

TEST_P(RoundTrip, BusyPolicies)
{
    cfg.busy = CKPT_BUSY_REFUSE;
    ckpt_ctx *ctx = open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    std::vector<Tensor> ts = tensors(make("w", CKPT_U8, {64 << 20}, 4));
    register_all(ctx, ts);
    ckpt_ticket t;
    ASSERT_EQ(ckpt_save(ctx, 1, nullptr, &t), 0);
    // 64 MiB through a 16 MiB pool takes far longer than this call.
    int rc = ckpt_save(ctx, 2, nullptr, nullptr);
    if (ckpt_poll(ctx, t) == CKPT_INPROGRESS || rc == CKPT_EBUSY) {
        EXPECT_EQ(rc, CKPT_EBUSY);
        EXPECT_NE(std::string(ckpt_last_error(ctx)).find("refused"), std::string::npos);
    }
    EXPECT_EQ(ckpt_wait(ctx, t, -1), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(ckpt_close(ctx), 0);
}

TEST_P(RoundTrip, TwoContextsInOneProcess)
{
    std::string d2 = tmp.sub("other");
    ckpt_config c2 = config(d2, GetParam());
    std::vector<Tensor> a = tensors(make("w", CKPT_F32, {2 << 20}, 100));
    std::vector<Tensor> b = tensors(make("w", CKPT_F32, {2 << 20}, 200));
    auto worker = [&](ckpt_config c, std::vector<Tensor> *ts, int64_t step, int *rc) {
        ckpt_ctx *ctx = nullptr;
        *rc = ckpt_open(&c, nullptr, &ctx);
        if (*rc)
            return;
        for (auto &t : *ts)
            ckpt_register(ctx, t.name.c_str(), t.data.data(), t.dtype, (int)t.shape.size(),
                          t.shape.data());
        for (int i = 0; i < 3 && !*rc; i++)
            *rc = save_wait(ctx, step + i);
        int c_rc = ckpt_close(ctx);
        if (!*rc)
            *rc = c_rc;
    };
    int r1 = -1, r2 = -1;
    std::thread t1(worker, cfg, &a, 1, &r1), t2(worker, c2, &b, 100, &r2);
    t1.join();
    t2.join();
    EXPECT_EQ(r1, 0);
    EXPECT_EQ(r2, 0);
    ckpt_ctx *ctx = open_ctx(c2);
    ASSERT_NE(ctx, nullptr);
    register_all(ctx, b);
    b[0].data.set(0);
    int64_t got;
    ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(got, 102);
    EXPECT_TRUE(b[0].data.matches(200));
    EXPECT_EQ(ckpt_close(ctx), 0);
}

TEST_P(RoundTrip, EventsReportEveryStageInOrder)
{
    Events events;
    cfg.event_fn = Events::fn;
    cfg.event_user = &events;
    ckpt_ctx *ctx = open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    std::vector<Tensor> ts =
        tensors(make("w", CKPT_F32, {3 << 20}, 1), make("b", CKPT_U8, {100}, 2));
    register_all(ctx, ts);
    ASSERT_EQ(ckpt_set_meta(ctx, "m", "abc", 3), 0);
    ckpt_ticket t;
    ASSERT_EQ(ckpt_save(ctx, 4, nullptr, &t), 0);
    ASSERT_EQ(ckpt_fence(ctx, nullptr), 0);
    ASSERT_EQ(ckpt_wait(ctx, t, -1), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_close(ctx), 0);
    using K = std::vector<ckpt_event_kind>;
    EXPECT_EQ(events.kinds(4), (K{CKPT_EVENT_STARTED, CKPT_EVENT_SNAPSHOT, CKPT_EVENT_DURABLE,
                                  CKPT_EVENT_COMMITTED}));
    double prev = 0;
    for (const auto &e : events.ev) {
        EXPECT_EQ(e.ticket, t);
        EXPECT_EQ(e.bytes, ts[0].nbytes() + ts[1].nbytes() + 3);
        EXPECT_GE(e.since_save_s, prev);
        EXPECT_GE(e.stage_s, 0.0);
        EXPECT_EQ(e.error, 0);
        prev = e.since_save_s;
    }
}

TEST_P(RoundTrip, StagingRingWrapsWithAwkwardSizes)
{
    // Tensors just over half a chunk, interleaved with small ones, through
    // a pool that is not a multiple of any of them: batches wrap around the
    // ring and free out of order.
    cfg.staging_bytes = 5u << 20;
    std::vector<Tensor> ts;
    for (int i = 0; i < 24; i++) {
        int64_t n = i % 3 == 2 ? 3001 : (int64_t)(cfg.chunk_bytes / 2 + 4096 + 17 * i);
        ts.push_back(make("t" + std::to_string(i), CKPT_U8, {n}, 500 + (uint64_t)i));
    }
    round_trip(ts);
}

TEST_P(RoundTrip, RestoreWithoutVerification)
{
    cfg.verify = 0;
    std::vector<Tensor> ts =
        tensors(make("w", CKPT_F32, {300000}, 9), make("s", CKPT_I32, {}, 10));
    round_trip(ts);
}

// A data-loader position that must never be saved stale: its provider is
// called on the caller's thread at every save, and restore gives back the
// value of that save.  ckpt_set_meta of the key replaces the provider (the
// last call wins); removing the provider removes the key from later saves.
struct Loader {
    uint64_t pos = 0;
    int calls = 0;
    std::thread::id thread;
    static int fn(void *user, void *buf, size_t cap, size_t *len)
    {
        auto *l = static_cast<Loader *>(user);
        l->calls++;
        l->thread = std::this_thread::get_id();
        if (cap < sizeof l->pos)
            return -1;
        memcpy(buf, &l->pos, sizeof l->pos);
        *len = sizeof l->pos;
        return 0;
    }
};

std::string meta_of(ckpt_ctx *ctx, const char *key)
{
    char buf[64];
    size_t len = 0;
    int rc = ckpt_get_meta(ctx, key, buf, sizeof buf, &len);
    return rc ? std::string(ckpt_err_name(rc)) : std::string(buf, len);
}

std::string u64(uint64_t v)
{
    return std::string(reinterpret_cast<const char *>(&v), sizeof v);
}

TEST_P(RoundTrip, MetadataProviderGivesTheValueAtEachSave)
{
    ckpt_ctx *ctx = open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    std::vector<Tensor> ts = tensors(make("w", CKPT_F32, {1000}, 3));
    register_all(ctx, ts);
    Loader ld;
    ASSERT_EQ(ckpt_set_meta(ctx, "loader", "stale", 5), 0);
    ASSERT_EQ(ckpt_set_meta_fn(ctx, "loader", Loader::fn, &ld), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_set_meta_fn(ctx, "other", Loader::fn, &ld), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_set_meta_fn(ctx, "other", nullptr, nullptr), 0) << ckpt_last_error(ctx);
    ld.pos = 100;
    ASSERT_EQ(save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(ld.thread, std::this_thread::get_id()) << "providers run on the caller's thread";
    ld.pos = 200; // nobody calls ckpt_set_meta: the save still takes it
    ASSERT_EQ(save_wait(ctx, 2), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_set_meta(ctx, "loader", "static", 6), 0); // replaces the provider
    ld.pos = 300;
    ASSERT_EQ(save_wait(ctx, 3), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_set_meta_fn(ctx, "loader", Loader::fn, &ld), 0);
    ld.pos = 400;
    ASSERT_EQ(save_wait(ctx, 4), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_set_meta_fn(ctx, "loader", nullptr, nullptr), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(ckpt_set_meta_fn(ctx, "loader", nullptr, nullptr), CKPT_ENOTFOUND);
    ASSERT_EQ(save_wait(ctx, 5), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(ld.calls, 3) << "called once per save while it was the key's provider";

    const std::pair<int64_t, std::string> want[] = {
        {1, u64(100)}, {2, u64(200)}, {3, "static"}, {4, u64(400)}, {5, "CKPT_ENOTFOUND"}};
    for (const auto &w : want) {
        ASSERT_EQ(ckpt_restore(ctx, w.first, nullptr, nullptr), 0) << ckpt_last_error(ctx);
        EXPECT_EQ(meta_of(ctx, "loader"), w.second) << "step " << w.first;
        EXPECT_EQ(meta_of(ctx, "other"), "CKPT_ENOTFOUND") << "a removed provider saved";
    }
    // A restored value stays readable while a provider is set; the next
    // save takes the provider's value.
    ASSERT_EQ(ckpt_restore(ctx, 2, nullptr, nullptr), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_set_meta_fn(ctx, "loader", Loader::fn, &ld), 0);
    EXPECT_EQ(meta_of(ctx, "loader"), u64(200));
    ld.pos = 600;
    ASSERT_EQ(save_wait(ctx, 6), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_restore(ctx, 6, nullptr, nullptr), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(meta_of(ctx, "loader"), u64(600));
    EXPECT_EQ(ckpt_close(ctx), 0);
    expect_h5dump_all(dir);
}

// Optimizer moments allocated on the first update, after the restore: they
// are registered then and restored by name from the step ckpt_restore
// chose (not the newest one), leaving the other tensors and the metadata
// alone.  The restore warns once about what it left out, pointing at the
// by-name restore.
TEST_P(RoundTrip, TensorsRegisteredAfterTheRestoreAreRestoredByName)
{
    std::vector<Tensor> ts = tensors(make("w", CKPT_F32, {3000}, 1),
                                     make("adam.m", CKPT_F32, {3000}, 2),
                                     make("adam.v", CKPT_BF16, {70, 33}, 3));
    {
        ckpt_ctx *ctx = open_ctx(cfg);
        ASSERT_NE(ctx, nullptr);
        register_all(ctx, ts);
        ASSERT_EQ(save_wait(ctx, 5), 0) << ckpt_last_error(ctx);
        for (auto &t : ts)
            t.data.fill(t.seed + 10);
        ASSERT_EQ(save_wait(ctx, 6), 0) << ckpt_last_error(ctx);
        ASSERT_EQ(ckpt_close(ctx), 0);
    }
    Logs logs;
    logs.attach(&cfg);
    ckpt_ctx *ctx = open_ctx(cfg);
    ASSERT_NE(ctx, nullptr);
    std::vector<Tensor> w = tensors(make("w", CKPT_F32, {3000}, 0));
    register_all(ctx, w);
    ASSERT_EQ(ckpt_restore(ctx, 5, nullptr, nullptr), 0) << ckpt_last_error(ctx);
    EXPECT_TRUE(w[0].data.matches(1));
    EXPECT_EQ(logs.count("not registered"), 1);
    EXPECT_TRUE(logs.has("2 tensor(s)", "'adam.m', 'adam.v'")) << "no warning names them";
    EXPECT_TRUE(logs.has("not registered", "ckpt_restore_tensors"));
    // The first update allocates the moments.
    std::vector<Tensor> moments = tensors(make("adam.m", CKPT_F32, {3000}, 0),
                                          make("adam.v", CKPT_BF16, {70, 33}, 0));
    for (auto &t : moments)
        t.data.set(0);
    register_all(ctx, moments);
    w[0].data.fill(77); // the update changed w too
    ASSERT_EQ(ckpt_set_meta(ctx, "k", "after", 5), 0);
    const char *names[] = {"adam.v", "adam.m"};
    ASSERT_EQ(ckpt_restore_tensors(ctx, names, 2, nullptr), 0) << ckpt_last_error(ctx);
    EXPECT_TRUE(moments[0].data.matches(2)) << "adam.m";
    EXPECT_TRUE(moments[1].data.matches(3)) << "adam.v";
    EXPECT_TRUE(w[0].data.matches(77)) << "w was not named";
    EXPECT_EQ(meta_of(ctx, "k"), "after") << "metadata is not restored by name";
    EXPECT_EQ(ckpt_restore_tensors(ctx, nullptr, 0, nullptr), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(logs.count("not registered"), 1) << "the by-name restore warned again";
    EXPECT_EQ(ckpt_close(ctx), 0);
}

INSTANTIATE_TEST_SUITE_P(Writers, RoundTrip, ::testing::ValuesIn(writers()),
                         [](const ::testing::TestParamInfo<ckpt_io> &i) {
                             return std::string(writer_name(i.param));
                         });

} // namespace
