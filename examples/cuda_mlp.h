/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CUDA example's model on the GPU: the demo's 64-256-256-10 MLP
 * (examples/mlp.h gives the sizes, the data set and the initial weights),
 * with forward, backward and Adam as this file's own kernels.  Nothing here
 * knows about checkpoints; examples/cuda_train.cu drives it.
 *
 * Determinism: every output element is computed by one thread that sums
 * its terms in a fixed order; there are no atomics and no library calls, so
 * equal state in gives equal bits out on the same GPU and binary.
 *
 * Every function queues its work on the caller's stream and returns 0, or
 * prints the failed CUDA call (cmlp_check) and returns -1.
 */
#ifndef CKPT_EXAMPLES_CUDA_MLP_H
#define CKPT_EXAMPLES_CUDA_MLP_H

#include <cuda_runtime_api.h>

#include "examples/mlp.h"

/* One step's input: which training rows form the batch (by value, so no
 * host buffer must outlive the launch) and the key of its input noise. */
typedef struct cmlp_batch {
    uint32_t row[BATCH];
    uint64_t noise_key;
} cmlp_batch;

/* Device memory.  The checkpointed state: val, m, v (P floats each, the
 * weights and biases of every layer back to back, param i at off[i], in
 * mlp.h's order fc1.weight, fc1.bias, ...) and t.  The rest is scratch. */
typedef struct cmlp {
    size_t nparam;                       /* P */
    size_t off[2 * NLAYER];
    float *val, *m, *v;                  /* weights, Adam's moments */
    int64_t *t;                          /* Adam updates applied */
    float *grad;                         /* P floats */
    float *coef;                         /* Adam's step size and 1 / bias2 */
    float *act[NLAYER + 1];              /* BATCH rows; act[0] the input */
    float *delta[NLAYER + 1];            /* d loss / d pre-activation */
    float *train_x;                      /* the training set */
    uint8_t *train_y, *yb;               /* its labels, the batch's labels */
    float *loss;                         /* each sample's, this step */
    double *loss_sum;                    /* summed since cmlp_take_loss */
    void *arena;                         /* all of the above */
} cmlp;

/* 0 for cudaSuccess; otherwise prints "<prog>: <call>: <name>: <text>" to
 * stderr and returns -1.  Every CUDA call of the example goes through it. */
int cmlp_check(cudaError_t e, const char *call);

/* Allocates everything and uploads the training set; the state is left
 * undefined (restore it or upload initial weights).  cmlp_free on failure
 * too; a zeroed cmlp may be freed. */
int cmlp_alloc(cmlp *g, const dataset *train, cudaStream_t stream);
void cmlp_free(cmlp *g);

/* Forward and backward on one batch: reads the state, writes scratch. */
int cmlp_grads(cmlp *g, const cmlp_batch *b, cudaStream_t stream);

/* One Adam update: mutates val, m, v and t (after ckpt_fence). */
int cmlp_adam(cmlp *g, cudaStream_t stream);

/* The loss summed since the last call, in *sum; zeroes it.  Blocks. */
int cmlp_take_loss(cmlp *g, cudaStream_t stream, double *sum);

#endif
