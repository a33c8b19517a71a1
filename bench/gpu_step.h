/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device kernels of ckpt-bench's GPU modes (gpu_step.cu), callable from
 * C: filling tensors, the synthetic training step ("forward/backward" that
 * only reads the weights, an Adam-like optimizer that writes weights and
 * moments) and a checksum that verifies a restore without a second copy of
 * the state.  Each function queues its kernel on `stream` and returns the
 * launch's error (cudaGetLastError), so the caller reports it by name.
 * Counts are elements (floats) unless the name says bytes; sizes above
 * 2^31 elements are fine (grid-stride loops over size_t).
 */
#ifndef CKPT_BENCH_GPU_STEP_H
#define CKPT_BENCH_GPU_STEP_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* p[i] = a value in [-1, 1) (positive != 0: [0, 1)) from (seed, i). */
cudaError_t gpu_fill(float *p, size_t n, uint64_t seed, int positive, cudaStream_t stream);

/* "Forward/backward": g[i] = f(w[i]) after `iters` dependent FMAs per
 * element; reads w, writes g only.  Time grows linearly with iters. */
cudaError_t gpu_forward_backward(const float *w, float *g, size_t n, int iters,
                                 cudaStream_t stream);

/* "Optimizer": an Adam update of w, m, v from g (mutates the weights and
 * the moments, so it must come after ckpt_fence). */
cudaError_t gpu_adam(float *w, float *m, float *v, const float *g, size_t n,
                     cudaStream_t stream);

/* *sum += an order-independent 64-bit checksum of nbytes (a multiple of 4)
 * at p; sum is device memory (zero it first). */
cudaError_t gpu_checksum(const void *p, size_t nbytes, unsigned long long *sum,
                         cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
