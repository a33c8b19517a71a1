/* SPDX-License-Identifier: Apache-2.0 */
/* The demo's model, data and optimizer (see mlp.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "examples/mlp.h"

const int dims[NLAYER + 1] = {DIM_IN, DIM_HIDDEN, DIM_HIDDEN, NCLASS};

uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A uniform double in (0, 1]: never 0, so log() below is finite. */
double rng_unit(uint64_t *s)
{
    return (double)((rng_next(s) >> 11) + 1) * 0x1.0p-53;
}

/* Box-Muller without a cached second value, so the state stays one word. */
float rng_normal(uint64_t *s)
{
    double u = rng_unit(s), v = rng_unit(s);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* ---- data ------------------------------------------------------------------- */


void data_free(dataset *d)
{
    free(d->x);
    free(d->y);
    d->x = NULL;
    d->y = NULL;
}

static int data_fill(dataset *d, int n, const float *centers, uint64_t *r)
{
    const int in = dims[0];
    d->n = n;
    d->x = malloc((size_t)n * (size_t)in * sizeof *d->x);
    d->y = malloc((size_t)n);
    if (!d->x || !d->y)
        return -1;
    for (int i = 0; i < n; i++) {
        int c = (int)(rng_next(r) % NCLASS), k = (int)(rng_next(r) % NSUB);
        const float *mu = centers + (size_t)(c * NSUB + k) * (size_t)in;
        for (int j = 0; j < in; j++)
            d->x[(size_t)i * (size_t)in + (size_t)j] = mu[j] + rng_normal(r);
        d->y[i] = (uint8_t)c;
    }
    return 0;
}

/* Train and test sets drawn from the same clusters, a pure function of seed. */
int data_make(uint64_t seed, dataset *train, dataset *test)
{
    uint64_t r = seed ^ 0x5eed0da7a5e7ull;
    size_t nc = (size_t)NCLASS * NSUB * (size_t)dims[0];
    float *centers = malloc(nc * sizeof *centers);
    if (!centers)
        return -1;
    for (size_t i = 0; i < nc; i++)
        centers[i] = CENTER_SCALE * rng_normal(&r);
    int rc = data_fill(train, NTRAIN, centers, &r);
    if (!rc)
        rc = data_fill(test, NTEST, centers, &r);
    free(centers);
    return rc;
}

void data_order(uint32_t *perm, int n, uint64_t seed, uint64_t epoch)
{
    uint64_t r = seed ^ (0x5eedf00dull * (epoch + 1));
    for (int i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (int i = n - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(rng_next(&r) % (uint64_t)(i + 1));
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

meta_hparams hparams_of(uint64_t magic, uint64_t seed)
{
    meta_hparams h = {magic, seed, {0}, NTRAIN, BATCH, (uint64_t)(LR * 1e9 + 0.5)};
    for (int l = 0; l <= NLAYER; l++)
        h.dims[l] = (uint64_t)dims[l];
    return h;
}

/* ---- the model ----------------------------------------------------------------- */



int model_alloc(model *m)
{
    memset(m, 0, sizeof *m);
    size_t total = 0;
    for (int l = 0; l < NLAYER; l++) {
        param *w = &m->p[2 * l], *b = &m->p[2 * l + 1];
        snprintf(w->name, sizeof w->name, "fc%d.weight", l + 1);
        snprintf(b->name, sizeof b->name, "fc%d.bias", l + 1);
        w->ndim = 2;
        w->shape[0] = dims[l + 1];
        w->shape[1] = dims[l];
        w->n = (size_t)dims[l + 1] * (size_t)dims[l];
        b->ndim = 1;
        b->shape[0] = dims[l + 1];
        b->n = (size_t)dims[l + 1];
        total += 4 * (w->n + b->n);
    }
    for (int l = 0; l <= NLAYER; l++)
        total += 2 * (size_t)EVAL_BATCH * (size_t)dims[l];
    m->arena = calloc(total, sizeof *m->arena);
    if (!m->arena)
        return -1;
    float *f = m->arena;
    for (int i = 0; i < 2 * NLAYER; i++) {
        param *q = &m->p[i];
        float **bufs[4] = {&q->val, &q->grad, &q->m, &q->v};
        for (int k = 0; k < 4; k++) {
            *bufs[k] = f;
            f += q->n;
        }
    }
    for (int l = 0; l <= NLAYER; l++) {
        size_t n = (size_t)EVAL_BATCH * (size_t)dims[l];
        m->act[l] = f;
        m->delta[l] = f + n;
        f += 2 * n;
    }
    return 0;
}

/* He-normal weights, zero biases and moments: the state at step 0. */
void model_init(model *m, uint64_t seed)
{
    uint64_t r = seed ^ 0x1417a11ull;
    for (int l = 0; l < NLAYER; l++) {
        param *w = &m->p[2 * l], *b = &m->p[2 * l + 1];
        float sd = sqrtf(2.0f / (float)dims[l]);
        for (size_t i = 0; i < w->n; i++)
            w->val[i] = sd * rng_normal(&r);
        memset(b->val, 0, b->n * sizeof *b->val);
    }
    for (int i = 0; i < 2 * NLAYER; i++) {
        memset(m->p[i].m, 0, m->p[i].n * sizeof(float));
        memset(m->p[i].v, 0, m->p[i].n * sizeof(float));
    }
    m->t = 0;
}

/* Eight partial sums (LANES), added in a fixed order: fast without
 * -ffast-math, and every run adds in the same order.  Scalars, not an
 * array, so that sanitizer builds keep them in registers too. */
static float dot(const float *restrict a, const float *restrict b, int n)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (int i = 0; i < n; i += 8) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
        s4 += a[i + 4] * b[i + 4];
        s5 += a[i + 5] * b[i + 5];
        s6 += a[i + 6] * b[i + 6];
        s7 += a[i + 7] * b[i + 7];
    }
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}

/* y += a * x, n a multiple of LANES. */
static void axpy(float *restrict y, float a, const float *restrict x, int n)
{
    for (int i = 0; i < n; i += LANES)
        for (int k = 0; k < LANES; k++)
            y[i + k] += a * x[i + k];
}

/* Forward pass over act[0][0..B); leaves softmax probabilities in
 * act[NLAYER].  Adds the batch's summed loss and correct count. */
void forward(model *m, int B, const uint8_t *y, double *loss_sum, int *correct)
{
    for (int l = 0; l < NLAYER; l++) {
        int in = dims[l], out = dims[l + 1];
        const param *w = &m->p[2 * l], *b = &m->p[2 * l + 1];
        for (int s = 0; s < B; s++) {
            const float *x = m->act[l] + (size_t)s * (size_t)in;
            float *z = m->act[l + 1] + (size_t)s * (size_t)out;
            for (int o = 0; o < out; o++) {
                float v = b->val[o] + dot(w->val + (size_t)o * (size_t)in, x, in);
                z[o] = (l + 1 < NLAYER && v < 0.0f) ? 0.0f : v;
            }
        }
    }
    const int C = dims[NLAYER];
    for (int s = 0; s < B; s++) {
        float *z = m->act[NLAYER] + (size_t)s * (size_t)C;
        int best = 0;
        for (int c = 1; c < C; c++)
            if (z[c] > z[best])
                best = c;
        float zmax = z[best], sum = 0.0f;
        for (int c = 0; c < C; c++) {
            z[c] = expf(z[c] - zmax);
            sum += z[c];
        }
        for (int c = 0; c < C; c++)
            z[c] /= sum;
        *loss_sum -= log((double)z[y[s]] + 1e-30);
        *correct += best == y[s];
    }
}

/* Gradients of the mean loss into every param's grad; reads weights only. */
void backward(model *m, int B, const uint8_t *y)
{
    const int C = dims[NLAYER];
    const float inv = 1.0f / (float)B;
    for (int s = 0; s < B; s++)
        for (int c = 0; c < C; c++) {
            size_t k = (size_t)s * (size_t)C + (size_t)c;
            m->delta[NLAYER][k] = (m->act[NLAYER][k] - (c == y[s] ? 1.0f : 0.0f)) * inv;
        }
    for (int l = NLAYER - 1; l >= 0; l--) {
        int in = dims[l], out = dims[l + 1];
        param *w = &m->p[2 * l], *b = &m->p[2 * l + 1];
        memset(w->grad, 0, w->n * sizeof *w->grad);
        memset(b->grad, 0, b->n * sizeof *b->grad);
        for (int s = 0; s < B; s++) {
            const float *x = m->act[l] + (size_t)s * (size_t)in;
            const float *d = m->delta[l + 1] + (size_t)s * (size_t)out;
            float *dx = l > 0 ? m->delta[l] + (size_t)s * (size_t)in : NULL;
            if (dx)
                memset(dx, 0, (size_t)in * sizeof *dx);
            for (int o = 0; o < out; o++) {
                b->grad[o] += d[o];
                axpy(w->grad + (size_t)o * (size_t)in, d[o], x, in);
                if (dx)
                    axpy(dx, d[o], w->val + (size_t)o * (size_t)in, in);
            }
            /* ReLU: x is the layer's output, positive exactly where it passed. */
            for (int i = 0; dx && i < in; i++)
                if (x[i] <= 0.0f)
                    dx[i] = 0.0f;
        }
    }
}

/* Mutates weights and both moments: only after ckpt_fence. */
void adam_step(model *m)
{
    m->t++;
    double bc1 = 1.0 - pow((double)BETA1, (double)m->t);
    double bc2 = 1.0 - pow((double)BETA2, (double)m->t);
    const float alpha = (float)(LR / bc1), rbc2 = (float)(1.0 / bc2);
    for (int k = 0; k < 2 * NLAYER; k++) {
        param *q = &m->p[k];
        for (size_t i = 0; i < q->n; i++) {
            float g = q->grad[i];
            float mm = BETA1 * q->m[i] + (1.0f - BETA1) * g;
            float vv = BETA2 * q->v[i] + (1.0f - BETA2) * g * g;
            q->m[i] = mm;
            q->v[i] = vv;
            q->val[i] -= alpha * mm / (sqrtf(vv * rbc2) + ADAM_EPS);
        }
    }
}

void evaluate(model *m, const dataset *d, double *loss, double *acc)
{
    double sum = 0.0;
    int correct = 0;
    for (int at = 0; at < d->n; at += EVAL_BATCH) {
        int B = d->n - at < EVAL_BATCH ? d->n - at : EVAL_BATCH;
        memcpy(m->act[0], d->x + (size_t)at * (size_t)dims[0],
               (size_t)B * (size_t)dims[0] * sizeof(float));
        forward(m, B, d->y + at, &sum, &correct);
    }
    *loss = sum / d->n;
    *acc = 100.0 * correct / d->n;
}
