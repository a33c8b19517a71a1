/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CUDA example's kernels (see cuda_mlp.h).  Weights are row-major
 * [out][in], activations [BATCH][width].  One thread per output element
 * sums its terms in index order, the batch loss too: there are no atomics
 * and no shared partial sums, so the results depend on the state alone,
 * never on scheduling.
 */
#include <stdio.h>
#include <string.h>

#include "examples/cuda_mlp.h"

#define THREADS 256 /* per block, for the element-wise launches */

int cmlp_check(cudaError_t e, const char *call)
{
    if (e == cudaSuccess)
        return 0;
    fprintf(stderr, "ckpt-cuda-train: %s: %s: %s\n", call, cudaGetErrorName(e),
            cudaGetErrorString(e));
    return -1;
}

/* A launch's configuration errors show at once; faults inside the kernel
 * show at the next synchronizing call, which is checked too. */
static int launched(const char *kernel)
{
    return cmlp_check(cudaGetLastError(), kernel);
}

static unsigned blocks(size_t n)
{
    return (unsigned)((n + THREADS - 1) / THREADS);
}

/* ---- kernels ------------------------------------------------------------------- */

/* splitmix64's output function: a counter-based source of noise, so the
 * noise of a step is a function of its key and nothing else. */
__device__ static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* xb[s][j] = x[row[s]][j] + uniform noise in [-AUG_NOISE, AUG_NOISE). */
__global__ static void gather(const float *x, const uint8_t *y, cmlp_batch b, float *xb,
                              uint8_t *yb)
{
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= BATCH * DIM_IN)
        return;
    unsigned s = i / DIM_IN, j = i % DIM_IN;
    uint32_t row = b.row[s];
    uint64_t h = mix64(b.noise_key + 0x9e3779b97f4a7c15ull * (i + 1ull));
    float u = (float)(h >> 40) * 0x1.0p-24f;
    xb[i] = x[(size_t)row * DIM_IN + j] + AUG_NOISE * (2.0f * u - 1.0f);
    if (j == 0)
        yb[s] = y[row];
}

/* out[s][o] = bias[o] + sum_k w[o][k] x[s][k]; ReLU when relu. */
__global__ static void dense_fwd(const float *w, const float *bias, const float *x, float *out,
                                 int in, int nout, int relu)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= BATCH * nout)
        return;
    int s = i / nout, o = i % nout;
    const float *wr = w + (size_t)o * in, *xr = x + (size_t)s * in;
    float acc = 0.0f;
    for (int k = 0; k < in; k++)
        acc += wr[k] * xr[k];
    float z = bias[o] + acc;
    out[i] = relu && z < 0.0f ? 0.0f : z;
}

/* Softmax cross-entropy, one thread per sample: the gradient of the
 * batch's mean loss into delta, the sample's loss into loss[s]. */
__global__ static void softmax_xent(const float *z, const uint8_t *y, float *delta, float *loss)
{
    int s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= BATCH)
        return;
    const float *zs = z + s * NCLASS;
    float zmax = zs[0], sum = 0.0f;
    for (int c = 1; c < NCLASS; c++)
        zmax = fmaxf(zmax, zs[c]);
    for (int c = 0; c < NCLASS; c++)
        sum += expf(zs[c] - zmax);
    for (int c = 0; c < NCLASS; c++) {
        float p = expf(zs[c] - zmax) / sum;
        delta[s * NCLASS + c] = (p - (c == y[s] ? 1.0f : 0.0f)) * (1.0f / BATCH);
    }
    loss[s] = logf(sum) - (zs[y[s]] - zmax);
}

/* One thread adds the batch's losses, in sample order. */
__global__ static void add_loss(const float *loss, double *loss_sum)
{
    double total = 0.0;
    for (int s = 0; s < BATCH; s++)
        total += (double)loss[s];
    *loss_sum += total;
}

/* One layer's gradients: thread (o, k) sums delta[s][o] x[s][k] over the
 * batch; k == in is the bias (x taken as 1). */
__global__ static void dense_grad(const float *delta, const float *x, float *gw, float *gb, int in,
                                  int nout)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nout * (in + 1))
        return;
    int o = i / (in + 1), k = i % (in + 1);
    float acc = 0.0f;
    for (int s = 0; s < BATCH; s++)
        acc += delta[s * nout + o] * (k < in ? x[s * in + k] : 1.0f);
    if (k < in)
        gw[o * in + k] = acc;
    else
        gb[o] = acc;
}

/* dx[s][k] = sum_o delta[s][o] w[o][k] where the ReLU let x[s][k] pass (x
 * is the layer's input, itself a ReLU output), else 0. */
__global__ static void dense_back(const float *delta, const float *w, const float *x, float *dx,
                                  int in, int nout)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= BATCH * in)
        return;
    int s = i / in, k = i % in;
    float acc = 0.0f;
    for (int o = 0; o < nout; o++)
        acc += delta[s * nout + o] * w[o * in + k];
    dx[i] = x[i] > 0.0f ? acc : 0.0f;
}

/* t += 1 and this update's step size and bias correction, as mlp.c's
 * adam_step computes them (in double, once). */
__global__ static void adam_begin(int64_t *t, float *coef)
{
    int64_t n = ++*t;
    double bc1 = 1.0 - pow((double)BETA1, (double)n);
    double bc2 = 1.0 - pow((double)BETA2, (double)n);
    coef[0] = (float)(LR / bc1);
    coef[1] = (float)(1.0 / bc2);
}

__global__ static void adam_update(float *w, float *m, float *v, const float *grad,
                                   const float *coef, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float g = grad[i];
    float mm = BETA1 * m[i] + (1.0f - BETA1) * g;
    float vv = BETA2 * v[i] + (1.0f - BETA2) * g * g;
    m[i] = mm;
    v[i] = vv;
    w[i] -= coef[0] * mm / (sqrtf(vv * coef[1]) + ADAM_EPS);
}

/* ---- host side ------------------------------------------------------------------- */

/* Hands out n bytes of the arena, 256-aligned; with base NULL only counts. */
static void *carve(char *base, size_t *used, size_t n)
{
    void *p = base ? base + *used : NULL;
    *used += (n + 255) & ~(size_t)255;
    return p;
}

static size_t layout(cmlp *g, char *base, size_t ntrain)
{
    size_t used = 0, pb = g->nparam * sizeof(float);
    g->val = (float *)carve(base, &used, pb);
    g->m = (float *)carve(base, &used, pb);
    g->v = (float *)carve(base, &used, pb);
    g->grad = (float *)carve(base, &used, pb);
    g->t = (int64_t *)carve(base, &used, sizeof *g->t);
    g->loss_sum = (double *)carve(base, &used, sizeof *g->loss_sum);
    g->loss = (float *)carve(base, &used, BATCH * sizeof *g->loss);
    g->coef = (float *)carve(base, &used, 2 * sizeof *g->coef);
    for (int l = 0; l <= NLAYER; l++) {
        size_t n = (size_t)BATCH * (size_t)dims[l] * sizeof(float);
        g->act[l] = (float *)carve(base, &used, n);
        g->delta[l] = (float *)carve(base, &used, n);
    }
    g->train_x = (float *)carve(base, &used, ntrain * DIM_IN * sizeof(float));
    g->train_y = (uint8_t *)carve(base, &used, ntrain);
    g->yb = (uint8_t *)carve(base, &used, BATCH);
    return used;
}

int cmlp_alloc(cmlp *g, const dataset *train, cudaStream_t stream)
{
    memset(g, 0, sizeof *g);
    for (int l = 0; l < NLAYER; l++) {
        g->off[2 * l] = g->nparam;
        g->nparam += (size_t)dims[l + 1] * (size_t)dims[l];
        g->off[2 * l + 1] = g->nparam;
        g->nparam += (size_t)dims[l + 1];
    }
    size_t ntrain = (size_t)train->n;
    if (cmlp_check(cudaMalloc(&g->arena, layout(g, NULL, ntrain)), "cudaMalloc"))
        return -1;
    layout(g, (char *)g->arena, ntrain);
    if (cmlp_check(cudaMemcpyAsync(g->train_x, train->x, ntrain * DIM_IN * sizeof(float),
                                   cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync(train.x)") ||
        cmlp_check(cudaMemcpyAsync(g->train_y, train->y, ntrain, cudaMemcpyHostToDevice, stream),
                   "cudaMemcpyAsync(train.y)") ||
        cmlp_check(cudaMemsetAsync(g->loss_sum, 0, sizeof *g->loss_sum, stream),
                   "cudaMemsetAsync") ||
        cmlp_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize"))
        return -1;
    return 0;
}

void cmlp_free(cmlp *g)
{
    if (g->arena)
        (void)cudaFree(g->arena); /* at exit: nothing is left to report to */
    g->arena = NULL;
}

int cmlp_grads(cmlp *g, const cmlp_batch *b, cudaStream_t stream)
{
    gather<<<blocks((size_t)BATCH * DIM_IN), THREADS, 0, stream>>>(g->train_x, g->train_y, *b,
                                                                  g->act[0], g->yb);
    if (launched("gather"))
        return -1;
    for (int l = 0; l < NLAYER; l++) {
        int in = dims[l], out = dims[l + 1];
        dense_fwd<<<blocks((size_t)BATCH * (size_t)out), THREADS, 0, stream>>>(
            g->val + g->off[2 * l], g->val + g->off[2 * l + 1], g->act[l], g->act[l + 1], in, out,
            l + 1 < NLAYER);
        if (launched("dense_fwd"))
            return -1;
    }
    softmax_xent<<<blocks(BATCH), THREADS, 0, stream>>>(g->act[NLAYER], g->yb, g->delta[NLAYER],
                                                        g->loss);
    if (launched("softmax_xent"))
        return -1;
    add_loss<<<1, 1, 0, stream>>>(g->loss, g->loss_sum);
    if (launched("add_loss"))
        return -1;
    for (int l = NLAYER - 1; l >= 0; l--) {
        int in = dims[l], out = dims[l + 1];
        dense_grad<<<blocks((size_t)out * (size_t)(in + 1)), THREADS, 0, stream>>>(
            g->delta[l + 1], g->act[l], g->grad + g->off[2 * l], g->grad + g->off[2 * l + 1], in,
            out);
        if (launched("dense_grad"))
            return -1;
        if (l == 0)
            break; /* no gradient for the input */
        dense_back<<<blocks((size_t)BATCH * (size_t)in), THREADS, 0, stream>>>(
            g->delta[l + 1], g->val + g->off[2 * l], g->act[l], g->delta[l], in, out);
        if (launched("dense_back"))
            return -1;
    }
    return 0;
}

int cmlp_adam(cmlp *g, cudaStream_t stream)
{
    adam_begin<<<1, 1, 0, stream>>>(g->t, g->coef);
    if (launched("adam_begin"))
        return -1;
    adam_update<<<blocks(g->nparam), THREADS, 0, stream>>>(g->val, g->m, g->v, g->grad, g->coef,
                                                           g->nparam);
    return launched("adam_update");
}

int cmlp_take_loss(cmlp *g, cudaStream_t stream, double *sum)
{
    if (cmlp_check(cudaMemcpyAsync(sum, g->loss_sum, sizeof *sum, cudaMemcpyDeviceToHost, stream),
                   "cudaMemcpyAsync(loss)") ||
        cmlp_check(cudaMemsetAsync(g->loss_sum, 0, sizeof *g->loss_sum, stream),
                   "cudaMemsetAsync(loss)"))
        return -1;
    return cmlp_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}
