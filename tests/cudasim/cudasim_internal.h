/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the NCCL stand-in (nccl_sim.c) uses of the CUDA stand-in
 * (cudasim.c); both are libcudasim, and none of this is exported.
 */
#ifndef CKPT_TESTS_CUDASIM_INTERNAL_H
#define CKPT_TESTS_CUDASIM_INTERNAL_H

#include <stddef.h>

#include <cuda_runtime_api.h>

/* The calling thread's current device. */
int cudasim__device(void);
/* Where the stand-in reaches [p, p+n) of device or managed memory;
 * cudaErrorInvalidValue for other memory or a range past an allocation. */
cudaError_t cudasim__resolve_device(const void *p, size_t n, char **out);
/* Queues fn(arg, run) on stream, in order with its copies; run is 0 after
 * a sticky fault (fn must still release arg). */
cudaError_t cudasim__enqueue_fn(cudaStream_t stream, void (*fn)(void *arg, int run), void *arg);

/* Held while the stand-in moves device bytes (see cudasim.c). */
void cudasim__lock_memory(void);
void cudasim__unlock_memory(void);

#endif
