/* SPDX-License-Identifier: Apache-2.0 */
#ifndef CKPT_BENCH_BENCH_STATE_H
#define CKPT_BENCH_BENCH_STATE_H

/*
 * The synthetic state of ckpt-bench: tensors of mixed sizes and dtypes whose
 * contents come from a counter-based PRNG, so any byte range can be
 * regenerated to verify a restore without keeping a second copy.  Included
 * once, by ckpt_bench.c, after bench_util.h.
 *
 * Invariants: a planned state holds exactly the requested number of bytes;
 * the plan, the order and the contents depend on the seed only.
 */

#include "bench/bench_util.h"

#define VERIFY_PIECE MIB /* verification regenerates this much at a time */

#define GOLDEN 0x9e3779b97f4a7c15ull
void gen_bytes(uint8_t *dst, size_t n, uint64_t seed, uint64_t off);

/* A small sequential PRNG for choosing sizes, dtypes and the order. */
typedef struct rng {
    uint64_t s;
} rng;

/* ---- the synthetic state ------------------------------------------------- */

enum { CLASS_LARGE, CLASS_MEDIUM, CLASS_SMALL, NCLASSES };
extern const char *class_names[NCLASSES];

typedef struct tensor {
    char name[64];
    ckpt_dtype dtype;
    int ndim;
    int64_t shape[2];
    size_t nbytes;
    uint64_t seed;
    uint8_t *ptr;
    int cls;
} tensor;

typedef struct state {
    tensor *v;
    size_t n, cap;
    uint64_t bytes;
    size_t per_class[NCLASSES];
} state;
extern const ckpt_dtype mix_dtypes[];
#define NMIX (sizeof mix_dtypes / sizeof mix_dtypes[0])
int state_plan(state *st, uint64_t total, uint64_t seed);
int state_alloc(state *st);
void state_free(state *st);
void state_clobber(state *st);
int state_verify(const state *st, uint8_t *scratch);

#endif
