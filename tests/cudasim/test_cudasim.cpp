// SPDX-License-Identifier: Apache-2.0
// The CUDA device backend (cuda/device_cuda.c, as libckpt_cuda_sim) over the
// CUDA-runtime stand-in (cudasim.c), with tensors in stand-in device memory
// the host cannot touch: the stand-in's own strictness first (so a lenient
// stand-in cannot pass the rest), then round trips of every dtype and odd
// shapes, the fence (and the same without it, caught wrong), a copy fault at
// each copy of a save, and the error modes of a machine without a GPU.
// What this proves is the backend's logic, ordering and error paths; real
// driver behaviour and every figure come from scripts/gpu-check.sh only.
#include <sys/wait.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cudasim.h"
#include "test_util.h"

namespace {

using namespace ckt;

#define CUDA_OK(call)                                                                       \
    do {                                                                                    \
        cudaError_t e_ = (call);                                                            \
        ASSERT_EQ(e_, cudaSuccess) << #call << ": " << cudaGetErrorName(e_);                \
    } while (0)

// ---- the stand-in itself ----------------------------------------------------

TEST(StandIn, PointerKindsAreReportedAsCuda12And13Do)
{
    void *dev = nullptr, *pinned = nullptr, *managed = nullptr;
    CUDA_OK(cudaMalloc(&dev, 1000));
    CUDA_OK(cudaMallocHost(&pinned, 1000));
    CUDA_OK(cudaMallocManaged(&managed, 1000, cudaMemAttachGlobal));
    std::vector<char> pageable(1000);
    std::vector<char> registered(1 << 16);
    CUDA_OK(cudaHostRegister(registered.data(), registered.size(), cudaHostRegisterDefault));
    struct cudaPointerAttributes a;
    CUDA_OK(cudaPointerGetAttributes(&a, dev));
    EXPECT_EQ(a.type, cudaMemoryTypeDevice);
    CUDA_OK(cudaPointerGetAttributes(&a, (char *)dev + 999));
    EXPECT_EQ(a.type, cudaMemoryTypeDevice);
    CUDA_OK(cudaPointerGetAttributes(&a, pinned));
    EXPECT_EQ(a.type, cudaMemoryTypeHost);
    CUDA_OK(cudaPointerGetAttributes(&a, registered.data() + 5));
    EXPECT_EQ(a.type, cudaMemoryTypeHost);
    CUDA_OK(cudaPointerGetAttributes(&a, managed));
    EXPECT_EQ(a.type, cudaMemoryTypeManaged);
    CUDA_OK(cudaPointerGetAttributes(&a, pageable.data())); // no error since CUDA 11
    EXPECT_EQ(a.type, cudaMemoryTypeUnregistered);
    EXPECT_EQ(cudaHostRegister(registered.data(), 10, 0), cudaErrorHostMemoryAlreadyRegistered);
    CUDA_OK(cudaHostUnregister(registered.data()));
    EXPECT_EQ(cudaHostUnregister(registered.data()), cudaErrorHostMemoryNotRegistered);
    CUDA_OK(cudaFree(dev));
    CUDA_OK(cudaFreeHost(pinned));
    CUDA_OK(cudaFree(managed));
    (void)cudaGetLastError();
}

TEST(StandIn, RejectsWhatTheRuntimeRejects)
{
    void *dev = nullptr;
    CUDA_OK(cudaMalloc(&dev, 1000));
    std::vector<char> host(2000);
    EXPECT_EQ(cudaMemcpy(host.data(), dev, 1001, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
    EXPECT_EQ(cudaMemcpy((char *)dev + 1, host.data(), 1000, cudaMemcpyHostToDevice),
              cudaErrorInvalidValue);
    EXPECT_EQ(cudaMemcpy(dev, host.data(), 10, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
    CUDA_OK(cudaMemcpy(dev, host.data(), 1000, cudaMemcpyHostToDevice));
    cudaStream_t s;
    cudaEvent_t ev;
    CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CUDA_OK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    CUDA_OK(cudaStreamDestroy(s));
    CUDA_OK(cudaEventDestroy(ev));
    EXPECT_EQ(cudaMemcpyAsync(host.data(), dev, 10, cudaMemcpyDefault, s),
              cudaErrorInvalidResourceHandle);
    EXPECT_EQ(cudaStreamSynchronize(s), cudaErrorInvalidResourceHandle);
    EXPECT_EQ(cudaEventRecord(ev, nullptr), cudaErrorInvalidResourceHandle);
    EXPECT_EQ(cudaEventSynchronize(ev), cudaErrorInvalidResourceHandle);
    CUDA_OK(cudaFree(dev));
    EXPECT_EQ(cudaFree(dev), cudaErrorInvalidValue); // freed twice
    (void)cudaGetLastError();
}

TEST(StandInDeathTest, AHostDereferenceOfDeviceMemoryCrashes)
{
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            void *dev = nullptr;
            if (cudaMalloc(&dev, 64) == cudaSuccess)
                fprintf(stderr, "read %d\n", *(volatile char *)dev);
        },
        "");
}

// CUDA does not survive fork: in a child of a process that used it, every
// call fails with cudaErrorInitializationError, and none hangs on the
// parent's stream threads, which the child does not have; ckpt_open on
// device=cuda names the error.  (Before the stand-in knew, the child's
// first copy waited for ever on the parent's legacy stream.)
TEST(StandIn, CudaDoesNotSurviveFork)
{
    void *dev = nullptr;
    CUDA_OK(cudaMalloc(&dev, 4096));
    CUDA_OK(cudaMemsetAsync(dev, 7, 4096, nullptr));
    // The stream threads idle at the fork: one forked inside malloc would
    // leave ASan's allocator locked in the child (a hang that is not the
    // stand-in's).  The child's calls below still queue new work that no
    // thread of the child runs.
    CUDA_OK(cudaDeviceSynchronize());
    TempDir tmp;
    std::string dir = tmp.sub("ck");
    fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20); // a hang ends the child with SIGALRM
        std::vector<char> host(4096);
        void *p = nullptr;
        int bad = 0;
        bad |= (cudaMalloc(&p, 64) != cudaErrorInitializationError) << 0;
        bad |= (cudaMemcpy(host.data(), dev, 4096, cudaMemcpyDeviceToHost) !=
                cudaErrorInitializationError)
               << 1;
        bad |= (cudaStreamSynchronize(nullptr) != cudaErrorInitializationError) << 2;
        bad |= (cudaDeviceSynchronize() != cudaErrorInitializationError) << 3;
        ckpt_config cfg = config(dir);
        cfg.device = CKPT_DEVICE_CUDA;
        ckpt_ctx *ctx = nullptr;
        bad |= (ckpt_open(&cfg, nullptr, &ctx) != CKPT_EDEVICE) << 4;
        bad |= !strstr(ckpt_last_error(nullptr), "cudaErrorInitializationError") << 5;
        _exit(bad);
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    EXPECT_TRUE(WIFEXITED(st)) << "the child hung or crashed: status " << st;
    EXPECT_EQ(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0) << "bit mask of the calls that failed";
    // The parent's CUDA is unaffected.
    std::vector<unsigned char> back(4096);
    CUDA_OK(cudaMemcpy(back.data(), dev, 4096, cudaMemcpyDeviceToHost));
    EXPECT_EQ(back[4095], 7);
    CUDA_OK(cudaFree(dev));
}

// A copy on a non-blocking stream is not ordered after the legacy stream's
// work unless the caller waits: the delays make the missing wait visible.
TEST(StandIn, UnorderedStreamsRaceAndEventsOrderThem)
{
    const size_t n = 4096;
    void *dev = nullptr;
    CUDA_OK(cudaMalloc(&dev, n));
    cudaStream_t side;
    cudaEvent_t ev;
    CUDA_OK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
    CUDA_OK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    void *pinned = nullptr;
    CUDA_OK(cudaMallocHost(&pinned, n));
    int stale = 0, ordered_wrong = 0;
    for (int i = 0; i < 200; i++) {
        CUDA_OK(cudaMemset(dev, 1, n));
        CUDA_OK(cudaMemsetAsync(dev, 2, n, nullptr));
        CUDA_OK(cudaMemcpyAsync(pinned, dev, n, cudaMemcpyDeviceToHost, side));
        CUDA_OK(cudaStreamSynchronize(side));
        stale += ((unsigned char *)pinned)[0] != 2;
        CUDA_OK(cudaMemset(dev, 1, n));
        CUDA_OK(cudaMemsetAsync(dev, 3, n, nullptr));
        CUDA_OK(cudaEventRecord(ev, nullptr));
        CUDA_OK(cudaStreamWaitEvent(side, ev, 0));
        CUDA_OK(cudaMemcpyAsync(pinned, dev, n, cudaMemcpyDeviceToHost, side));
        CUDA_OK(cudaStreamSynchronize(side));
        ordered_wrong += ((unsigned char *)pinned)[0] != 3;
    }
    EXPECT_GT(stale, 0) << "seed " << cudasim_seed();
    EXPECT_EQ(ordered_wrong, 0) << "seed " << cudasim_seed();
    CUDA_OK(cudaStreamDestroy(side));
    CUDA_OK(cudaEventDestroy(ev));
    CUDA_OK(cudaFreeHost(pinned));
    CUDA_OK(cudaFree(dev));
}

// ---- the CUDA backend over it --------------------------------------------------

struct DevTensor {
    std::string name;
    ckpt_dtype dtype;
    std::vector<int64_t> shape;
    size_t nbytes;
    uint64_t seed;
    void *dev;
};

size_t bytes_of(ckpt_dtype dt, const std::vector<int64_t> &shape)
{
    size_t n = ckpt_dtype_size(dt);
    for (int64_t d : shape)
        n *= (size_t)d;
    return n;
}

class CudaSim : public ::testing::Test {
  protected:
    TempDir tmp;
    std::string dir = tmp.sub("ck");
    std::vector<DevTensor> ts;
    ckpt_config cfg = cuda_config();

    ckpt_config cuda_config()
    {
        ckpt_config c = config(dir);
        c.device = CKPT_DEVICE_CUDA;
        return c;
    }

    void TearDown() override
    {
        cudasim_reset();
        for (auto &t : ts)
            EXPECT_EQ(cudaFree(t.dev), cudaSuccess);
    }

    void add(const std::string &name, ckpt_dtype dt, std::vector<int64_t> shape, uint64_t seed)
    {
        DevTensor t{name, dt, shape, bytes_of(dt, shape), seed, nullptr};
        ASSERT_EQ(cudaMalloc(&t.dev, t.nbytes), cudaSuccess);
        ts.push_back(t);
        fill_dev(ts.back(), seed);
    }

    void fill_dev(const DevTensor &t, uint64_t seed)
    {
        std::vector<uint8_t> h(t.nbytes);
        fill(h.data(), h.size(), seed);
        if (t.nbytes) {
            ASSERT_EQ(cudaMemcpy(t.dev, h.data(), t.nbytes, cudaMemcpyHostToDevice), cudaSuccess);
        }
    }

    bool dev_matches(const DevTensor &t, uint64_t seed)
    {
        std::vector<uint8_t> h(t.nbytes);
        if (t.nbytes && cudaMemcpy(h.data(), t.dev, t.nbytes, cudaMemcpyDeviceToHost))
            return false;
        return matches(h.data(), h.size(), seed);
    }

    ckpt_ctx *open_registered()
    {
        ckpt_ctx *ctx = open_ctx(cfg);
        if (!ctx)
            return nullptr;
        EXPECT_STREQ(ckpt_device_name(ctx), "cuda");
        for (auto &t : ts)
            EXPECT_EQ(ckpt_register(ctx, t.name.c_str(), t.dev, t.dtype, (int)t.shape.size(),
                                    t.shape.data()),
                      0)
                << t.name << ": " << ckpt_last_error(ctx);
        return ctx;
    }

    void scribble()
    {
        for (auto &t : ts) {
            if (t.nbytes) {
                ASSERT_EQ(cudaMemset(t.dev, 0xA5, t.nbytes), cudaSuccess);
            }
        }
    }

    void round_trip()
    {
        ckpt_ctx *ctx = open_registered();
        ASSERT_NE(ctx, nullptr);
        ASSERT_EQ(save_wait(ctx, 7), 0) << ckpt_last_error(ctx);
        scribble();
        int64_t got = -1;
        ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
        EXPECT_EQ(got, 7);
        for (auto &t : ts)
            EXPECT_TRUE(dev_matches(t, t.seed)) << t.name;
        EXPECT_EQ(ckpt_close(ctx), 0);
        EXPECT_GE(expect_h5dump_all(dir), 2);
    }
};

TEST_F(CudaSim, EveryDtypeInDeviceMemory)
{
    ckpt_dtype all[] = {CKPT_F64, CKPT_F32,  CKPT_F16, CKPT_BF16, CKPT_FP8_E4M3,
                        CKPT_FP8_E5M2, CKPT_I64, CKPT_I32, CKPT_I16, CKPT_I8,
                        CKPT_U8,  CKPT_BOOL, CKPT_BYTES};
    uint64_t seed = 1;
    for (ckpt_dtype dt : all)
        add(std::string("t_") + ckpt_dtype_name(dt), dt, {3, 5, 7}, seed++);
    round_trip();
}

TEST_F(CudaSim, OddShapesInDeviceMemory)
{
    const int64_t chunk = (int64_t)cfg.chunk_bytes;
    add("scalar_f64", CKPT_F64, {}, 11);
    add("empty_1d", CKPT_F32, {0}, 13);
    add("empty_3d", CKPT_I16, {3, 0, 5}, 14);
    add("one_byte", CKPT_U8, {1}, 15);
    add("block_plus_1", CKPT_U8, {4097}, 18);
    add("odd_f32", CKPT_F32, {3, 1237}, 19);
    add("align_threshold_plus_1", CKPT_U8, {65537}, 22);
    add("chunk_minus_1", CKPT_U8, {chunk - 1}, 23);
    add("chunk_plus_1", CKPT_U8, {chunk + 1}, 25);
    add("eight_dims", CKPT_I8, {2, 1, 3, 1, 2, 1, 1, 5}, 26);
    // Larger than the whole staging pool: slabs are reused mid-snapshot.
    int64_t big = (int64_t)cfg.staging_bytes * 2 + 12345;
    add("bigger_than_staging", CKPT_BF16, {big / 2}, 27);
    round_trip();
}

TEST_F(CudaSim, PinnedManagedAndPageableTensorsNextToDeviceOnes)
{
    add("dev", CKPT_F32, {1000, 3}, 41);
    const size_t n = 100003;
    void *pinned = nullptr, *managed = nullptr;
    ASSERT_EQ(cudaMallocHost(&pinned, n), cudaSuccess);
    ASSERT_EQ(cudaMallocManaged(&managed, n, cudaMemAttachGlobal), cudaSuccess);
    std::vector<uint8_t> pageable(n);
    fill(pinned, n, 42);
    fill(managed, n, 43);
    fill(pageable.data(), n, 44);
    ckpt_ctx *ctx = open_registered();
    ASSERT_NE(ctx, nullptr);
    int64_t shape[] = {(int64_t)n};
    ASSERT_EQ(ckpt_register(ctx, "pinned", pinned, CKPT_U8, 1, shape), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(ckpt_register(ctx, "managed", managed, CKPT_U8, 1, shape), 0);
    ASSERT_EQ(ckpt_register(ctx, "pageable", pageable.data(), CKPT_U8, 1, shape), 0);
    ASSERT_EQ(save_wait(ctx, 3), 0) << ckpt_last_error(ctx);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    memset(pinned, 0, n);
    memset(managed, 0, n);
    std::fill(pageable.begin(), pageable.end(), 0);
    scribble();
    ASSERT_EQ(ckpt_restore(ctx, 3, nullptr, nullptr), 0) << ckpt_last_error(ctx);
    EXPECT_TRUE(matches(pinned, n, 42));
    EXPECT_TRUE(matches(managed, n, 43));
    EXPECT_TRUE(matches(pageable.data(), n, 44));
    EXPECT_TRUE(dev_matches(ts[0], 41));
    EXPECT_EQ(ckpt_close(ctx), 0);
    EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);
    EXPECT_EQ(cudaFree(managed), cudaSuccess);
}

// The fence: the training stream mutates the tensors right after
// ckpt_fence; the checkpoint must hold the bytes from before.  Without the
// fence the same loop must be caught holding mutated bytes, or this test
// could not fail.  Returns the iterations whose checkpoint was wrong.
class Fence : public CudaSim {
  protected:
    int iterations(bool fence, int n)
    {
        add("a", CKPT_F32, {257, 129}, 61);
        add("b", CKPT_U8, {70001}, 62);
        add("c", CKPT_I64, {3, 1001}, 63);
        cudaStream_t train;
        EXPECT_EQ(cudaStreamCreate(&train), cudaSuccess);
        ckpt_ctx *ctx = open_registered();
        EXPECT_NE(ctx, nullptr);
        int wrong = 0;
        for (int i = 0; ctx && i < n; i++) {
            uint64_t seed = 100 + (uint64_t)i;
            for (auto &t : ts)
                fill_dev(t, seed + t.seed);
            ckpt_ticket tk = 0;
            EXPECT_EQ(ckpt_save(ctx, i, train, &tk), 0) << ckpt_last_error(ctx);
            if (fence) {
                EXPECT_EQ(ckpt_fence(ctx, train), 0) << ckpt_last_error(ctx);
            }
            for (auto &t : ts) // the next training step, on the same stream
                EXPECT_EQ(cudaMemsetAsync(t.dev, 0xEE, t.nbytes, train), cudaSuccess);
            EXPECT_EQ(ckpt_wait(ctx, tk, -1), 0) << ckpt_last_error(ctx);
            EXPECT_EQ(cudaStreamSynchronize(train), cudaSuccess);
            EXPECT_EQ(ckpt_restore(ctx, i, train, nullptr), 0) << ckpt_last_error(ctx);
            bool ok = true;
            for (auto &t : ts)
                ok = dev_matches(t, seed + t.seed) && ok;
            wrong += !ok;
        }
        EXPECT_EQ(ckpt_close(ctx), 0);
        EXPECT_EQ(cudaStreamDestroy(train), cudaSuccess);
        return wrong;
    }
};

TEST_F(Fence, MutationRightAfterTheFenceNeverReachesTheCheckpoint)
{
    cfg.keep_last = 2;
    EXPECT_EQ(iterations(true, 40), 0) << "seed " << cudasim_seed();
}

TEST_F(Fence, WithoutTheFenceTheMutationIsCaught)
{
    cfg.keep_last = 2;
    EXPECT_GT(iterations(false, 10), 0) << "seed " << cudasim_seed();
}

// A copy fault at each copy of a save: the ticket names the CUDA call and
// the fault, nothing is committed, the previous checkpoint is intact, and
// after the fault is cleared (a new process, for a real sticky fault) the
// next save succeeds.
TEST_F(CudaSim, ACopyFaultAtEachCopyOfASave)
{
    cfg.staging_bytes = 1u << 20;
    add("a", CKPT_F32, {100000}, 71); // 400 kB
    add("b", CKPT_U8, {3u << 20}, 72);  // three times the staging pool
    add("c", CKPT_I16, {17}, 73);
    ckpt_ctx *ctx = open_registered();
    ASSERT_NE(ctx, nullptr);
    uint64_t before = cudasim_copies();
    ASSERT_EQ(save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
    uint64_t per_save = cudasim_copies() - before;
    ASSERT_EQ(ckpt_close(ctx), 0);
    ASSERT_GE(per_save, 4u);
    for (uint64_t k = 1; k <= per_save; k++) {
        SCOPED_TRACE("fault at copy " + std::to_string(k) + " of " + std::to_string(per_save));
        ctx = open_registered();
        ASSERT_NE(ctx, nullptr);
        cudasim_fail_copy_at(k);
        ckpt_ticket tk = 0;
        ASSERT_EQ(ckpt_save(ctx, 2, nullptr, &tk), 0) << ckpt_last_error(ctx);
        (void)ckpt_fence(ctx, nullptr);
        EXPECT_EQ(ckpt_wait(ctx, tk, -1), CKPT_EDEVICE);
        std::string why = ckpt_last_error(ctx);
        EXPECT_NE(why.find("cudaErrorIllegalAddress"), std::string::npos) << why;
        EXPECT_NE(why.find("cuda"), std::string::npos) << why;
        (void)ckpt_close(ctx); // the device is gone: teardown is best effort
        EXPECT_FALSE(exists(step_dir(dir, 2))) << "committed after a fault";
        cudasim_reset();
        scribble();
        ctx = open_registered();
        ASSERT_NE(ctx, nullptr);
        int64_t got = -1;
        ASSERT_EQ(ckpt_restore(ctx, CKPT_LATEST, nullptr, &got), 0) << ckpt_last_error(ctx);
        EXPECT_EQ(got, 1);
        for (auto &t : ts)
            EXPECT_TRUE(dev_matches(t, t.seed)) << t.name;
        ASSERT_EQ(save_wait(ctx, 3), 0) << ckpt_last_error(ctx);
        ASSERT_EQ(ckpt_close(ctx), 0);
        ASSERT_EQ(run("rm -rf " + quote(step_dir(dir, 3))), 0);
    }
}

// Bad input that reaches the device backend: a shape larger than the
// device allocation behind the pointer.  The runtime API cannot tell an
// allocation's size at ckpt_register, so the save fails with the CUDA
// call named, nothing is committed, and the context keeps working.
TEST_F(CudaSim, AShapeLargerThanTheAllocationFailsTheSaveCleanly)
{
    add("ok", CKPT_U8, {5000}, 81);
    ckpt_ctx *ctx = open_registered();
    ASSERT_NE(ctx, nullptr);
    ASSERT_EQ(save_wait(ctx, 1), 0) << ckpt_last_error(ctx);
    void *small = nullptr;
    ASSERT_EQ(cudaMalloc(&small, 1000), cudaSuccess);
    int64_t shape[] = {4000};
    int rc = ckpt_register(ctx, "too_big", small, CKPT_U8, 1, shape);
    if (rc == 0) {
        ckpt_ticket tk = 0;
        ASSERT_EQ(ckpt_save(ctx, 2, nullptr, &tk), 0) << ckpt_last_error(ctx);
        (void)ckpt_fence(ctx, nullptr);
        EXPECT_EQ(ckpt_wait(ctx, tk, -1), CKPT_EDEVICE);
        std::string why = ckpt_last_error(ctx);
        EXPECT_NE(why.find("cudaMemcpyAsync: cudaErrorInvalidValue"), std::string::npos) << why;
        EXPECT_FALSE(exists(step_dir(dir, 2)));
        ASSERT_EQ(ckpt_unregister(ctx, "too_big"), 0);
    } else {
        EXPECT_EQ(rc, CKPT_EINVAL) << ckpt_last_error(ctx);
    }
    ASSERT_EQ(save_wait(ctx, 3), 0) << ckpt_last_error(ctx);
    EXPECT_EQ(ckpt_close(ctx), 0);
    EXPECT_EQ(cudaFree(small), cudaSuccess);
}

// The machines CI has: no driver, or an old one.  device=cuda names the
// CUDA error; device=auto falls back to the host backend.
TEST_F(CudaSim, NoDeviceAndOldDriverAreNamed)
{
    const char *modes[][2] = {{"no_device", "cudaErrorNoDevice"},
                              {"insufficient_driver", "cudaErrorInsufficientDriver"}};
    for (auto &m : modes) {
        setenv("CUDASIM_ERROR", m[0], 1);
        ckpt_ctx *ctx = nullptr;
        EXPECT_EQ(ckpt_open(&cfg, nullptr, &ctx), CKPT_EDEVICE);
        std::string msg = ckpt_last_error(nullptr);
        EXPECT_NE(msg.find(m[1]), std::string::npos) << msg;
        EXPECT_NE(msg.find("cudaGetDeviceCount"), std::string::npos) << msg;
        ckpt_config a = cfg;
        a.device = CKPT_DEVICE_AUTO;
        ASSERT_EQ(ckpt_open(&a, nullptr, &ctx), 0) << ckpt_last_error(nullptr);
        EXPECT_STREQ(ckpt_device_name(ctx), "host");
        EXPECT_EQ(ckpt_close(ctx), 0);
        unsetenv("CUDASIM_ERROR");
    }
}

} // namespace
