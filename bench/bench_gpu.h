/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckpt-bench on device tensors: `ckpt-bench d2h` (bench_d2h.c parses and
 * reports; d2h_measure runs) and `ckpt-bench train --device cuda`
 * (train_gpu).  The measuring halves live in bench_gpu.c and
 * bench_train_gpu.c, built only with the CUDA backend and nvcc-built
 * kernels (CKPT_WITH_CUDA_KERNELS, gpu_step.cu); other builds link
 * bench_gpu_none.c, whose functions say so and fail.  Either way a machine
 * without a usable GPU gets a message naming the reason and exit status 1,
 * never a crash.
 */
#ifndef CKPT_BENCH_BENCH_GPU_H
#define CKPT_BENCH_BENCH_GPU_H

#include "bench/bench_train.h"
#include "bench/bench_util.h"

#define D2H_MAX_REPS 100

typedef struct d2h_opts {
    common_opts c;        /* dir, json, writer; staging_bytes 0: the state + 64 MiB */
    uint64_t bytes;       /* device state, split into `tensors` tensors */
    uint64_t chunk_bytes; /* the runtime's chunk, and the raw copy's piece */
    int tensors, reps;
} d2h_opts;

/* One repetition; seconds unless the name says otherwise. */
typedef struct d2h_rep {
    double raw_piece_s;     /* cudaMemcpyAsync D2H in chunk_bytes pieces, events */
    double raw_whole_s;     /* one cudaMemcpyAsync per tensor, events */
    double snapshot_s;      /* event before ckpt_save .. event after ckpt_fence */
    double snapshot_event_s; /* the runtime's SNAPSHOT event, since ckpt_save */
    double save_call_us, fence_call_ms; /* host time inside the calls */
    double durable_s, committed_s;      /* the runtime's events, since ckpt_save */
} d2h_rep;

typedef struct d2h_result {
    char gpu[256];    /* cudaGetDeviceProperties name */
    char writer[32];  /* the writer backend the context chose */
    uint64_t bytes;   /* registered (equal to d2h_opts.bytes) */
    int ntensors;
    d2h_rep rep[D2H_MAX_REPS];
} d2h_result;

/* ckpt-bench d2h (bench_d2h.c): exit status 0, 1 or 2 (usage). */
int cmd_d2h(int argc, char **argv);

/* Runs the measurement: 0, or 1 after printing what failed (no GPU, a
 * CUDA call, an API call). */
int d2h_measure(const d2h_opts *o, d2h_result *r);

/* ckpt-bench train --device cuda: runs and reports; exit status 0 or 1. */
int train_gpu(const train_opts *o);

/* The "this build cannot" message of both modes (bench_gpu_none.c). */
#define GPU_BUILD_HINT                                                                     \
    "this ckpt-bench was built without the CUDA backend and nvcc-built kernels "          \
    "(configure where the CUDA toolkit and its nvcc are installed: CKPT_WITH_CUDA=ON, "   \
    "CKPT_WITH_CUDA_KERNELS=ON)"

#endif
