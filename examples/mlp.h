/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The demo's model and data: a 64-256-256-10 MLP with softmax cross-entropy
 * and Adam on a generated classification set, single-threaded in a fixed
 * order so that equal state in gives equal bits out.  Nothing here knows
 * about checkpoints; examples/demo.c drives it.
 */
#ifndef CKPT_EXAMPLES_MLP_H
#define CKPT_EXAMPLES_MLP_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

/* C++ too: the CUDA example (examples/cuda_train.cu) reuses the data set,
 * the initialisation and the evaluation. */
#ifdef __cplusplus
extern "C" {
#endif

/* ---- the problem ------------------------------------------------------------ */

#define NLAYER 3
#define DIM_IN 64
#define DIM_HIDDEN 256
#define NCLASS 10
extern const int dims[NLAYER + 1]; /* layer widths, input first */

/* The kernels walk a layer's inputs in blocks of LANES. */
#define LANES 8 /* dot() spells out eight */
static_assert(DIM_IN % LANES == 0 && DIM_HIDDEN % LANES == 0, "input widths: LANES");

#define NSUB 4             /* Gaussian sub-clusters per class */
#define CENTER_SCALE 0.6f /* spread of the cluster centres, per dimension */
#define NTRAIN 8192
#define NTEST 2048
#define BATCH 64
#define EVAL_BATCH 256 /* activations are sized for the larger of the two */
#define AUG_NOISE 0.10f /* input noise added to every training sample */

#define LR 1e-3
#define BETA1 0.9f
#define BETA2 0.999f
#define ADAM_EPS 1e-8f

/* The checkpoint metadata of a training run on this problem (both
 * examples): only uint64_t fields, so no padding bytes. */
typedef struct meta_hparams {
    uint64_t magic, seed, dims[NLAYER + 1], ntrain, batch, lr_ppb;
} meta_hparams;

typedef struct meta_loader {
    uint64_t epoch, index; /* the next batch starts at perm[index] */
} meta_loader;

typedef struct dataset {
    int n;
    float *x;   /* n rows of dims[0] */
    uint8_t *y; /* class of each row */
} dataset;

/* One learnable tensor with its gradient and Adam moments. */
typedef struct param {
    char name[24]; /* "fc1.weight" */
    int ndim;
    int64_t shape[2];
    size_t n;
    float *val, *grad, *m, *v;
} param;

typedef struct model {
    param p[2 * NLAYER]; /* fc1.weight, fc1.bias, fc2.weight, ... */
    int64_t t;           /* Adam updates applied; equals the step */
    float *act[NLAYER + 1];   /* act[0] input, act[NLAYER] probabilities */
    float *delta[NLAYER + 1]; /* d loss / d pre-activation of each layer */
    float *arena;
} model;

uint64_t rng_next(uint64_t *s);
double rng_unit(uint64_t *s);
float rng_normal(uint64_t *s);
void data_free(dataset *d);
int data_make(uint64_t seed, dataset *train, dataset *test);
/* The order of epoch `epoch`: a permutation of 0..n-1, a pure function of
 * (seed, epoch), so a loader's position is two words (epoch, index). */
void data_order(uint32_t *perm, int n, uint64_t seed, uint64_t epoch);
/* The hyper-parameters blob; magic names the program that trains. */
meta_hparams hparams_of(uint64_t magic, uint64_t seed);
int model_alloc(model *m);
void model_init(model *m, uint64_t seed);
void forward(model *m, int B, const uint8_t *y, double *loss_sum, int *correct);
void backward(model *m, int B, const uint8_t *y);
void adam_step(model *m);
void evaluate(model *m, const dataset *d, double *loss, double *acc);

#ifdef __cplusplus
}
#endif
#endif
