/* SPDX-License-Identifier: Apache-2.0 */
/* See bench_state.h. */
#include "bench/bench_state.h"

/*
 * Counter-based generator: byte stream `seed` holds, at word w, mix(seed +
 * w * golden) (splitmix64's finalizer).  Any range can be regenerated
 * without the ones before it, so verification needs no second copy of the
 * state.
 */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Writes bytes [off, off + n) of stream `seed` to dst; off is a multiple of 8. */
void gen_bytes(uint8_t *dst, size_t n, uint64_t seed, uint64_t off)
{
    uint64_t w = off / 8;
    size_t i = 0;
    for (; i + 8 <= n; i += 8, w++) {
        uint64_t v = mix64(seed + w * GOLDEN);
        memcpy(dst + i, &v, 8);
    }
    if (i < n) {
        uint64_t v = mix64(seed + w * GOLDEN);
        memcpy(dst + i, &v, n - i);
    }
}

static uint64_t rng_next(rng *r)
{
    r->s += GOLDEN;
    return mix64(r->s);
}

/* Uniform in [lo, hi]. */
static uint64_t rng_range(rng *r, uint64_t lo, uint64_t hi)
{
    return lo + rng_next(r) % (hi - lo + 1);
}

const char *class_names[NCLASSES] = {"large", "medium", "small"};

const ckpt_dtype mix_dtypes[] = {CKPT_F32, CKPT_BF16, CKPT_I64, CKPT_U8};

static int state_add(state *st, int cls, ckpt_dtype dtype, size_t nbytes)
{
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 256;
        tensor *v = realloc(st->v, cap * sizeof *v);
        if (!v)
            return -1;
        st->v = v;
        st->cap = cap;
    }
    tensor *t = &st->v[st->n++];
    memset(t, 0, sizeof *t);
    t->cls = cls;
    t->dtype = dtype;
    t->nbytes = nbytes;
    st->bytes += nbytes;
    st->per_class[cls]++;
    return 0;
}

/* A dtype from the mix whose element size divides nbytes (u8 always does). */
static ckpt_dtype pick_dtype(rng *r, size_t nbytes)
{
    ckpt_dtype d = mix_dtypes[rng_next(r) % NMIX];
    return nbytes % ckpt_dtype_size(d) == 0 ? d : CKPT_U8;
}

/* nbytes rounded down to whole elements of a dtype chosen from the mix. */
static size_t pick_sized(rng *r, size_t nbytes, ckpt_dtype *dtype)
{
    *dtype = mix_dtypes[rng_next(r) % NMIX];
    size_t es = ckpt_dtype_size(*dtype);
    return nbytes / es * es;
}

/*
 * Plans a state of exactly `total` bytes: up to a few hundred small tensors
 * of a few KiB (at most 1/8 of the total), medium ones of 1-16 MiB (about a
 * quarter of the rest) and large ones of 64-512 MiB (the remainder; the last
 * one takes whatever is left, so the sum is exact).  Medium sizes are not
 * rounded to 4 KiB, so tails and packing are exercised.  The registration
 * order is shuffled.
 */
int state_plan(state *st, uint64_t total, uint64_t seed)
{
    rng r = {seed};
    uint64_t left = total;
    uint64_t small_budget = total / 8;
    for (int i = 0; i < 300; i++) {
        ckpt_dtype d;
        size_t n = pick_sized(&r, (size_t)rng_range(&r, 512, 12 * KIB), &d);
        if (n > small_budget)
            break;
        if (state_add(st, CLASS_SMALL, d, n))
            return -1;
        small_budget -= n;
        left -= n;
    }
    uint64_t medium_budget = left / 4;
    while (medium_budget >= MIB) {
        ckpt_dtype d;
        uint64_t want = rng_range(&r, MIB, 16 * MIB);
        if (want > medium_budget)
            want = medium_budget;
        size_t n = pick_sized(&r, (size_t)want, &d);
        if (state_add(st, CLASS_MEDIUM, d, n))
            return -1;
        medium_budget -= n;
        left -= n;
    }
    while (left > 0) {
        uint64_t n = rng_range(&r, 64, 512) * MIB;
        if (n >= left || left - n < 64 * MIB)
            n = left; /* the last large tensor: exact remainder */
        if (state_add(st, CLASS_LARGE, pick_dtype(&r, (size_t)n), (size_t)n))
            return -1;
        left -= n;
    }
    for (size_t i = st->n; i > 1; i--) {
        size_t j = (size_t)(rng_next(&r) % i);
        tensor tmp = st->v[i - 1];
        st->v[i - 1] = st->v[j];
        st->v[j] = tmp;
    }
    size_t idx[NCLASSES] = {0, 0, 0};
    for (size_t i = 0; i < st->n; i++) {
        tensor *t = &st->v[i];
        size_t elems = t->nbytes / ckpt_dtype_size(t->dtype);
        int64_t cols = t->cls == CLASS_SMALL ? 64 : 1024;
        if (elems >= (size_t)cols && elems % (size_t)cols == 0) {
            t->ndim = 2;
            t->shape[0] = (int64_t)elems / cols;
            t->shape[1] = cols;
        } else {
            t->ndim = 1;
            t->shape[0] = (int64_t)elems;
        }
        snprintf(t->name, sizeof t->name, "%s.%03zu.%s", class_names[t->cls],
                 idx[t->cls]++, ckpt_dtype_name(t->dtype));
        t->seed = mix64(seed ^ (0x1000 + i) * GOLDEN);
    }
    return 0;
}

/* Allocates and fills every tensor; -1 when memory runs out. */
int state_alloc(state *st)
{
    for (size_t i = 0; i < st->n; i++) {
        tensor *t = &st->v[i];
        t->ptr = malloc(t->nbytes ? t->nbytes : 1);
        if (!t->ptr)
            return -1;
        gen_bytes(t->ptr, t->nbytes, t->seed, 0);
    }
    return 0;
}

void state_free(state *st)
{
    for (size_t i = 0; i < st->n; i++)
        free(st->v[i].ptr);
    free(st->v);
    memset(st, 0, sizeof *st);
}

void state_clobber(state *st)
{
    for (size_t i = 0; i < st->n; i++)
        memset(st->v[i].ptr, 0xa5, st->v[i].nbytes);
}

/* Inv. 2: every byte equals its regenerated original; else says where. */
int state_verify(const state *st, uint8_t *scratch)
{
    for (size_t i = 0; i < st->n; i++) {
        const tensor *t = &st->v[i];
        for (size_t off = 0; off < t->nbytes; off += VERIFY_PIECE) {
            size_t n = t->nbytes - off < VERIFY_PIECE ? t->nbytes - off : VERIFY_PIECE;
            gen_bytes(scratch, n, t->seed, off);
            if (memcmp(scratch, t->ptr + off, n) == 0)
                continue;
            size_t k = 0;
            while (scratch[k] == t->ptr[off + k])
                k++;
            errorf("VERIFICATION FAILED: tensor '%s' (%zu bytes) differs at byte %zu: "
                   "restored 0x%02x, saved 0x%02x",
                   t->name, t->nbytes, off + k, t->ptr[off + k], scratch[k]);
            return -1;
        }
    }
    return 0;
}
