// SPDX-License-Identifier: Apache-2.0
// The kernels of gpu_step.h.  Every kernel is a grid-stride loop over
// size_t indices with a fixed launch shape, so one launch covers tensors of
// any size (32 GiB of floats is 2^33 elements, past a 32-bit grid index).
#include "bench/gpu_step.h"

namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 4096; // enough to fill an H100/H200 several times

unsigned blocks_for(size_t n)
{
    size_t b = (n + kThreads - 1) / kThreads;
    return b == 0 ? 1u : b < kMaxBlocks ? static_cast<unsigned>(b) : kMaxBlocks;
}

__device__ uint64_t mix64(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    x ^= x >> 33;
    return x;
}

__global__ void fill_kernel(float *p, size_t n, uint64_t seed, int positive)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float u = static_cast<float>(mix64(seed * 0x9e3779b97f4a7c15ull + i) >> 40) *
                  (1.0f / 16777216.0f); // [0, 1)
        p[i] = positive ? u : 2.0f * u - 1.0f;
    }
}

__global__ void fwd_bwd_kernel(const float *__restrict__ w, float *__restrict__ g, size_t n,
                               int iters)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float x = w[i];
        float acc = x;
        // A dependent chain the compiler cannot fold (floats do not
        // reassociate): the arithmetic of the step, on the weights.
        for (int k = 0; k < iters; k++)
            acc = fmaf(acc, 0.9999f, x * 1e-4f);
        g[i] = acc * 1e-3f;
    }
}

__global__ void adam_kernel(float *__restrict__ w, float *__restrict__ m, float *__restrict__ v,
                            const float *__restrict__ g, size_t n)
{
    const float lr = 1e-4f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] -= lr * mi / (sqrtf(vi) + eps);
    }
}

__global__ void checksum_kernel(const uint32_t *p, size_t n, unsigned long long *sum)
{
    uint64_t acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        acc += mix64((static_cast<uint64_t>(p[i]) << 32 | 1u) ^ (i * 0xbf58476d1ce4e5b9ull));
    // Wrapping sums commute: the result does not depend on the order.
    for (int off = 16; off > 0; off /= 2)
        acc += __shfl_down_sync(0xffffffffu, acc, off);
    if ((threadIdx.x & 31) == 0)
        atomicAdd(sum, static_cast<unsigned long long>(acc));
}

} // namespace

extern "C" cudaError_t gpu_fill(float *p, size_t n, uint64_t seed, int positive,
                                cudaStream_t stream)
{
    fill_kernel<<<blocks_for(n), kThreads, 0, stream>>>(p, n, seed, positive);
    return cudaGetLastError();
}

extern "C" cudaError_t gpu_forward_backward(const float *w, float *g, size_t n, int iters,
                                            cudaStream_t stream)
{
    fwd_bwd_kernel<<<blocks_for(n), kThreads, 0, stream>>>(w, g, n, iters);
    return cudaGetLastError();
}

extern "C" cudaError_t gpu_adam(float *w, float *m, float *v, const float *g, size_t n,
                                cudaStream_t stream)
{
    adam_kernel<<<blocks_for(n), kThreads, 0, stream>>>(w, m, v, g, n);
    return cudaGetLastError();
}

extern "C" cudaError_t gpu_checksum(const void *p, size_t nbytes, unsigned long long *sum,
                                    cudaStream_t stream)
{
    size_t n = nbytes / 4;
    checksum_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const uint32_t *>(p), n,
                                                            sum);
    return cudaGetLastError();
}
