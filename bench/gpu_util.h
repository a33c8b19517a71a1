/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What ckpt-bench's GPU modes share (CUDA builds only, gpu_util.c): CUDA
 * error reporting by call name, the device and its stream, a device state
 * of float tensors carved from a few cudaMalloc slabs, the context on the
 * CUDA backend, and a free-space check.
 *
 * Invariants: every CUDA call goes through CU(), which prints the call as
 * written and the CUDA error's name and text; every helper returns 0 or 1
 * (after printing), and its free/close counterpart accepts what a failed
 * or partial setup left (NULLs and zeroed structs).
 */
#ifndef CKPT_BENCH_GPU_UTIL_H
#define CKPT_BENCH_GPU_UTIL_H

#include <cuda_runtime_api.h>

#include "bench/bench_gpu.h"
#include "bench/gpu_step.h"

/* 0 for cudaSuccess; else prints "ckpt-bench: CALL: cudaErrorX: text", 1. */
int cu_fail(cudaError_t e, const char *call);
#define CU(call) cu_fail((call), #call)

typedef struct gpu_dev {
    int id;
    char name[256];
    cudaStream_t stream; /* the "training" stream the bench queues on */
} gpu_dev;

/* Finds a usable GPU (or says why there is none, with the CUDA error) and
 * creates the stream.  `cmd` prefixes the messages. */
int gpu_open(const char *cmd, gpu_dev *d);
void gpu_close(gpu_dev *d);

#define GPU_MAX_KINDS 4

/*
 * nkinds slabs of kind_bytes each (cudaMalloc), each split into per_kind
 * f32 tensors named "<kind>.<i>" of tensor_bytes (the last of a kind takes
 * the rest); every size is a multiple of 4 KiB.
 */
typedef struct gpu_state {
    int nkinds, per_kind;
    const char *kind[GPU_MAX_KINDS];
    float *slab[GPU_MAX_KINDS];
    uint64_t kind_bytes, tensor_bytes;
} gpu_state;

/* Allocates and fills (a kind named "*.v" gets positive values). */
int gpu_state_alloc(gpu_state *s, const char *const *kinds, int nkinds, uint64_t total,
                    int ntensors, cudaStream_t stream);
void gpu_state_free(gpu_state *s);
uint64_t gpu_state_bytes(const gpu_state *s);
/* Tensor i (0 <= i < per_kind) of kind k: its bytes and offset in the slab. */
uint64_t gpu_tensor_bytes(const gpu_state *s, int i);
static inline uint64_t gpu_tensor_off(const gpu_state *s, int i)
{
    return (uint64_t)i * s->tensor_bytes;
}
int gpu_state_register(const gpu_state *s, ckpt_ctx *ctx);
/* The checksum of the first nkinds_sum slabs (gpu_checksum), on the
 * stream, waited for; sum is device scratch of one unsigned long long. */
int gpu_state_checksum(const gpu_state *s, int nkinds_sum, unsigned long long *sum,
                       cudaStream_t stream, uint64_t *out);

/* A context on the CUDA backend over dir; retention keep_last (0 off). */
int gpu_open_ctx(const char *dir, uint64_t staging_bytes, uint64_t chunk_bytes, ckpt_io io,
                 int keep_last, ckpt_event_fn fn, void *user, ckpt_ctx **out);

/* 1 (after saying how much is missing) when dir's file system has less
 * than need bytes free. */
int disk_room(const char *cmd, const char *dir, uint64_t need, const char *hint);

/* Milliseconds between two completed events. */
int ev_ms(cudaEvent_t a, cudaEvent_t b, double *ms);

#endif
