/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `ckpt export`: one checkpoint as one safetensors or npz file, every
 * selected tensor whole, assembled from the slices any number of ranks
 * saved.
 *
 * Invariants:
 *   1. Every byte written comes from a chunk that was hashed against its
 *      leaf first (io/assemble.h), after the manifest verified and its
 *      layout checked (the slices of each tensor tile it); a damaged chunk
 *      ends the export with CKPT_ECORRUPT naming the tensor and chunk.
 *   2. Memory is bounded whatever the checkpoint's size: the layout (names,
 *      dtypes, shapes, hence every offset) is known from the index before
 *      a byte of data is read, so the file's header is written first and
 *      each tensor goes to its place piece by piece; at most one chunk, one
 *      write buffer and one assembly window (WINDOW) are held.
 *   3. FILE appears complete or not at all (interop.h), and an existing
 *      FILE is replaced only with --force.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/assemble.h"
#include "io/manifest.h"
#include "io/paths.h"
#include "runtime/internal.h"
#include "tools/interop.h"

#define WINDOW (64u << 20) /* a tensor up to this size is assembled in memory */
#define PEND (4u << 20)    /* write-combining buffer */

static const char usage_export[] =
    "usage: ckpt export DIR [--step S] --format safetensors|npz --out FILE\n"
    "                   [--include GLOB]... [--exclude GLOB]... [--dtype keep|f32|bf16]\n"
    "                   [--force]\n"
    "\n"
    "Writes the newest checkpoint of DIR (or step S) as one file: every tensor\n"
    "whole, assembled from the slices the ranks saved, every chunk read verified\n"
    "against the manifest.\n"
    "  --format F      safetensors (dtypes kept: BF16, F8_E4M3, F8_E5M2, BOOL,\n"
    "                  integers; BYTES as U8), or npz (numpy; bf16 and fp8 as\n"
    "                  their raw uint16 / uint8 bits unless --dtype converts)\n"
    "  --out FILE      the file to write; written under a temporary name next\n"
    "                  to it and renamed when complete\n"
    "  --include GLOB  only tensors whose name matches (fnmatch; '*' matches\n"
    "                  '/'); repeatable; default every tensor\n"
    "  --exclude GLOB  leave out tensors whose name matches; repeatable\n"
    "  --dtype D       keep (default); f32 or bf16 convert floating-point\n"
    "                  tensors (bf16 rounds to nearest even); others are kept\n"
    "  --force         replace FILE when it exists\n"
    "User metadata that is text (UTF-8) goes to safetensors' __metadata__\n"
    "(with \"format\": \"pt\" unless a key of that name exists); other metadata is\n"
    "left out, each with a note on stderr.  Progress is shown on a terminal.\n"
    "\n"
    "Exit status: 0 written, 1 the checkpoint is corrupt (a chunk failed its\n"
    "checksum: no FILE is written), 2 usage or other error.\n";

typedef enum { FMT_SAFETENSORS = 1, FMT_NPZ } xformat;
typedef enum { DT_KEEP, DT_F32, DT_BF16 } xdtype;

typedef struct xopts {
    const char *dir, *out;
    xformat format;
    xdtype dtype;
    int64_t step;
    const char **inc, **exc;
    int ninc, nexc, force;
} xopts;

/* One tensor of the output. */
typedef struct xtensor {
    const char *name;
    uint32_t first, n; /* its entries: order[first .. first + n) */
    ckpt_dtype src, dst;
    int ndim;
    int64_t shape[CKPT_MAX_NDIM];
    uint64_t nbytes;   /* in the output */
    uint64_t off;      /* of its data in the output file */
    uint64_t hdr_off;  /* npz: its local file header */
    uint32_t crc;      /* npz */
} xtensor;

typedef struct xctx {
    const xopts *o;
    ckpt__index idx;
    int have_idx;
    char stepdir[CKPT__PATH_MAX];
    uint32_t *order; /* tensor entries sorted by (name, rank) */
    xtensor *t;
    uint32_t nt;
    int *fds;        /* per saved rank, opened when first needed */
    iop_out out;
    uint8_t *chunk, *window, *pend;
    uint64_t pend_off, pend_n;
    uint64_t done, total;
    double last_progress;
    int tty;
    ckpt__err err;
} xctx;

/* ---- dtypes ---------------------------------------------------------------------- */

static int is_float(ckpt_dtype d)
{
    return d == CKPT_F64 || d == CKPT_F32 || d == CKPT_F16 || d == CKPT_BF16 ||
           d == CKPT_FP8_E4M3 || d == CKPT_FP8_E5M2;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE half (and fp8 e5m2, its top byte) to float. */
static float half_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31u, man = h & 0x3FFu;
    if (exp == 31)
        return bits_f32(sign | 0x7F800000u | (man << 13));
    if (exp == 0) {
        float v = (float)man / 16777216.0f; /* man * 2^-24 */
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* fp8 e4m3 (the "fn" variant: no infinities, S.1111.111 is NaN). */
static float e4m3_f32(uint8_t b)
{
    uint32_t exp = (b >> 3) & 15u, man = b & 7u;
    float v;
    if (exp == 15 && man == 7)
        v = bits_f32(0x7FC00000u);
    else if (exp == 0)
        v = (float)man / 512.0f; /* man * 2^-9 */
    else
        v = bits_f32(((exp + 120) << 23) | (man << 20));
    return b & 0x80 ? -v : v;
}

static float load_f32(ckpt_dtype d, const uint8_t *p)
{
    uint16_t h;
    uint32_t u;
    double x;
    switch (d) {
    case CKPT_F64:
        memcpy(&x, p, 8);
        return (float)x;
    case CKPT_F32:
        memcpy(&u, p, 4);
        return bits_f32(u);
    case CKPT_F16:
        memcpy(&h, p, 2);
        return half_f32(h);
    case CKPT_BF16:
        memcpy(&h, p, 2);
        return bits_f32((uint32_t)h << 16);
    case CKPT_FP8_E5M2:
        return half_f32((uint16_t)(p[0] << 8));
    default:
        return e4m3_f32(p[0]);
    }
}

static void store(ckpt_dtype d, float v, uint8_t *p)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    if (d == CKPT_F32) {
        memcpy(p, &u, 4);
        return;
    }
    /* bf16: round to nearest even; a NaN stays a (quiet) NaN. */
    uint16_t h = (u & 0x7FFFFFFFu) > 0x7F800000u
                     ? (uint16_t)((u >> 16) | 0x40)
                     : (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    memcpy(p, &h, 2);
}

/* n elements from src (dtype s) to dst (dtype d). */
static void convert(ckpt_dtype s, ckpt_dtype d, const uint8_t *src, uint8_t *dst, uint64_t n)
{
    if (s == d) {
        memcpy(dst, src, (size_t)(n * ckpt_dtype_size(s)));
        return;
    }
    size_t is = ckpt_dtype_size(s), os = ckpt_dtype_size(d);
    for (uint64_t i = 0; i < n; i++)
        store(d, load_f32(s, src + i * is), dst + i * os);
}

static ckpt_dtype out_dtype(xdtype mode, ckpt_dtype d)
{
    if (mode == DT_KEEP || !is_float(d))
        return d;
    return mode == DT_F32 ? CKPT_F32 : CKPT_BF16;
}

/* ---- text: JSON strings and a growing buffer ------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_fmt(sbuf *b, const char *fmt, unsigned long long v)
{
    char tmp[48];
    int n = snprintf(tmp, sizeof tmp, fmt, v);
    sb_put(b, tmp, (size_t)n);
}

/* A JSON string of n bytes of UTF-8 (checked by the caller). */
static void sb_json(sbuf *b, const char *s, size_t n)
{
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20 || c == 0x7F) {
            sb_fmt(b, "\\u%04llx", c);
        } else {
            sb_put(b, s + i, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* Well-formed UTF-8 without NUL: what safetensors' metadata can hold. */
static int is_text(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                            : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (c == 0 || k == 0 || i + k > n || (k == 2 && c < 0xC2) || (k == 4 && c > 0xF4))
            return 0;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
        if ((k == 3 && c == 0xE0 && s[i + 1] < 0xA0) || (k == 3 && c == 0xED && s[i + 1] > 0x9F) ||
            (k == 4 && c == 0xF0 && s[i + 1] < 0x90) || (k == 4 && c == 0xF4 && s[i + 1] > 0x8F))
            return 0;
        i += k;
    }
    return 1;
}

/* ---- arguments --------------------------------------------------------------------------- */

/* 0, 1 after --help, -1 after a usage message. */
/* One option of the command at argv[*i] (iop_parse's callback). */
static int option(void *user, const char *cmd, int argc, char **argv, int *i)
{
    xopts *o = user;
    const char *a = argv[*i], *v;
    int r;
    if (strcmp(a, "--force") == 0) {
        o->force = 1;
    } else if ((r = iop_opt(cmd, argc, argv, i, "--step", &v)) != 0) {
        if (r < 0 || iop_step(cmd, v, &o->step) != 0)
            return -1;
    } else if ((r = iop_opt(cmd, argc, argv, i, "--format", &v)) != 0) {
        if (r > 0)
            o->format = strcmp(v, "safetensors") == 0 ? FMT_SAFETENSORS
                        : strcmp(v, "npz") == 0       ? FMT_NPZ
                                                      : 0;
        if (r > 0 && !o->format)
            iop_usage(cmd, "--format: '%s' is not safetensors or npz", v);
        if (r < 0 || !o->format)
            return -1;
    } else if ((r = iop_opt(cmd, argc, argv, i, "--dtype", &v)) != 0) {
        int ok = r > 0 && (strcmp(v, "keep") == 0 || strcmp(v, "f32") == 0 ||
                           strcmp(v, "bf16") == 0);
        if (r > 0 && !ok)
            iop_usage(cmd, "--dtype: '%s' is not keep, f32 or bf16", v);
        if (!ok)
            return -1;
        o->dtype = v[0] == 'k' ? DT_KEEP : v[0] == 'f' ? DT_F32 : DT_BF16;
    } else if ((r = iop_opt(cmd, argc, argv, i, "--out", &v)) != 0) {
        if (r < 0)
            return -1;
        o->out = v;
    } else if ((r = iop_opt(cmd, argc, argv, i, "--include", &v)) != 0) {
        if (r < 0 || iop_push(&o->inc, &o->ninc, v) != 0)
            return -1;
    } else if ((r = iop_opt(cmd, argc, argv, i, "--exclude", &v)) != 0) {
        if (r < 0 || iop_push(&o->exc, &o->nexc, v) != 0)
            return -1;
    } else {
        return 0;
    }
    return 1;
}

/* 0, 1 after --help, -1 after a usage message. */
static int parse(int argc, char **argv, xopts *o)
{
    const char *cmd = "export";
    int k = iop_parse(cmd, argc, argv, &o->dir, option, o);
    if (k != 0)
        return k;
    if (!o->dir)
        iop_usage(cmd, "export: missing DIR");
    else if (!o->format)
        iop_usage(cmd, "export: --format safetensors|npz is required");
    else if (!o->out || !*o->out)
        iop_usage(cmd, "export: --out FILE is required");
    else
        return 0;
    return -1;
}

/* ---- the plan: which tensors, where each goes ------------------------------------------- */

static int by_name_rank(const void *a, const void *b, void *user)
{
    const ckpt__index *idx = user;
    const ckpt__entry *x = &idx->entries[*(const uint32_t *)a];
    const ckpt__entry *y = &idx->entries[*(const uint32_t *)b];
    int c = strcmp(x->name, y->name);
    return c ? c : (x->rank > y->rank) - (x->rank < y->rank);
}

static int selected(const xopts *o, const char *name)
{
    int in = o->ninc == 0;
    for (int i = 0; i < o->ninc && !in; i++)
        in = fnmatch(o->inc[i], name, 0) == 0;
    for (int i = 0; i < o->nexc && in; i++)
        in = fnmatch(o->exc[i], name, 0) != 0;
    return in;
}

static int plan(xctx *x)
{
    const ckpt__index *idx = &x->idx;
    uint32_t n = 0;
    x->order = malloc((idx->nentries ? idx->nentries : 1) * sizeof *x->order);
    x->t = calloc(idx->nentries ? idx->nentries : 1, sizeof *x->t);
    if (!x->order || !x->t)
        return ckpt__err_set(&x->err, CKPT_ENOMEM, "export: out of memory");
    for (uint32_t i = 0; i < idx->nentries; i++)
        if (idx->entries[i].kind == CKPT__ENTRY_TENSOR && selected(x->o, idx->entries[i].name))
            x->order[n++] = i;
    qsort_r(x->order, n, sizeof *x->order, by_name_rank, (void *)idx);
    for (uint32_t i = 0; i < n; i++) {
        const ckpt__entry *e = &idx->entries[x->order[i]];
        xtensor *t = x->nt ? &x->t[x->nt - 1] : NULL;
        if (t && strcmp(t->name, e->name) == 0) {
            t->n++;
            continue;
        }
        t = &x->t[x->nt++];
        t->name = e->name;
        t->first = i;
        t->n = 1;
        t->src = e->dtype;
        t->dst = out_dtype(x->o->dtype, e->dtype);
        t->ndim = e->ndim;
        memcpy(t->shape, e->shape, sizeof t->shape);
        if (ckpt__shape_bytes(t->dst, t->ndim, t->shape, &t->nbytes) != 0)
            return ckpt__err_set(&x->err, CKPT_ECORRUPT, "tensor '%s': shape overflows",
                                 e->name);
        x->total += t->nbytes / ckpt_dtype_size(t->dst) * ckpt_dtype_size(t->src);
    }
    return 0;
}

/* ---- safetensors ---------------------------------------------------------------------- */

static void shape_json(sbuf *b, const xtensor *t, const char *open, const char *close)
{
    sb_str(b, open);
    for (int d = 0; d < t->ndim; d++)
        sb_fmt(b, d ? ", %llu" : "%llu", (unsigned long long)t->shape[d]);
    sb_str(b, t->ndim == 1 && open[0] == '(' ? ",)" : close);
}

/* The user metadata that is text, as "__metadata__" members; notes the rest. */
static int meta_json(xctx *x, sbuf *b)
{
    const ckpt__index *idx = &x->idx;
    int have_format = 0, rc = 0;
    uint8_t *buf = malloc(CKPT_MAX_META + idx->chunk_bytes);
    if (!buf)
        return ckpt__err_set(&x->err, CKPT_ENOMEM, "export: out of memory");
    sb_str(b, "\"__metadata__\":{");
    size_t open_at = b->n;
    for (uint32_t i = 0; i < idx->nentries && !rc; i++) {
        const ckpt__entry *e = &idx->entries[i];
        if (e->kind != CKPT__ENTRY_META)
            continue;
        char path[CKPT__PATH_MAX], fname[CKPT__FNAME_MAX];
        ckpt__rank_file_name((uint32_t)e->rank, fname);
        rc = ckpt__path_join(path, x->stepdir, fname, &x->err);
        uint64_t got;
        for (uint32_t c = 0; !rc && c < e->nchunks; c++)
            rc = ckpt__chunk_read(x->fds[e->rank], idx, e, c, 1,
                                  buf + (uint64_t)c * idx->chunk_bytes, &got, path, &x->err);
        if (rc)
            break;
        /* Rank 0's blobs under their key; another rank's only where it
         * differs from rank 0's, under "rank<R>/<key>". */
        const ckpt__entry *zero = e->rank ? ckpt__index_find(idx, CKPT__ENTRY_META, 0, e->name)
                                          : NULL;
        if (zero && zero->nbytes == e->nbytes && zero->nchunks == e->nchunks &&
            memcmp(&idx->hashes[zero->chunk0], &idx->hashes[e->chunk0],
                   e->nchunks * sizeof(uint64_t)) == 0)
            continue;
        if (!is_text(buf, (size_t)e->nbytes)) {
            fprintf(stderr, "ckpt export: left out metadata '%s' of rank %d (%llu bytes, not "
                            "UTF-8 text)\n",
                    e->name, e->rank, (unsigned long long)e->nbytes);
            continue;
        }
        if (b->n > open_at)
            sb_str(b, ",");
        if (e->rank) {
            char key[300];
            int k = snprintf(key, sizeof key, "rank%d/%s", e->rank, e->name);
            sb_json(b, key, (size_t)k);
        } else {
            sb_json(b, e->name, strlen(e->name));
            have_format |= strcmp(e->name, "format") == 0;
        }
        sb_str(b, ":");
        sb_json(b, (const char *)buf, (size_t)e->nbytes);
    }
    free(buf);
    /* Hugging Face's loaders refuse a file whose metadata lacks "format". */
    if (!have_format)
        sb_str(b, b->n > open_at ? ",\"format\":\"pt\"" : "\"format\":\"pt\"");
    sb_str(b, "}");
    return rc;
}

static int st_header(xctx *x, uint64_t *data_off)
{
    sbuf b = {0};
    int rc = 0;
    sb_str(&b, "{");
    uint64_t off = 0;
    for (uint32_t i = 0; i < x->nt; i++) {
        xtensor *t = &x->t[i];
        sb_json(&b, t->name, strlen(t->name));
        sb_str(&b, ":{\"dtype\":\"");
        sb_str(&b, st_dtype_name(t->dst));
        sb_str(&b, "\",\"shape\":");
        shape_json(&b, t, "[", "]");
        sb_fmt(&b, ",\"data_offsets\":[%llu,", (unsigned long long)off);
        sb_fmt(&b, "%llu]},", (unsigned long long)(off + t->nbytes));
        t->off = off;
        off += t->nbytes;
    }
    rc = meta_json(x, &b);
    sb_str(&b, "}");
    while ((8 + b.n) % 8)
        sb_str(&b, " ");
    if (!rc && b.oom)
        rc = ckpt__err_set(&x->err, CKPT_ENOMEM, "export: out of memory");
    uint8_t len[8];
    for (int k = 0; k < 8; k++)
        len[k] = (uint8_t)((uint64_t)b.n >> (8 * k));
    if (!rc)
        rc = iop_pwrite(x->out.fd, len, 8, 0, x->out.tmp, &x->err);
    if (!rc)
        rc = iop_pwrite(x->out.fd, b.p, b.n, 8, x->out.tmp, &x->err);
    *data_off = 8 + b.n;
    for (uint32_t i = 0; i < x->nt; i++)
        x->t[i].off += *data_off;
    free(b.p);
    return rc;
}

/* ---- npz: a zip (stored, zip64) of .npy files ------------------------------------------- */

static void le(uint8_t *p, uint64_t v, int n)
{
    for (int k = 0; k < n; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static const char *npy_descr(ckpt_dtype d)
{
    static const char *const v[] = {[CKPT_F64] = "<f8", [CKPT_F32] = "<f4", [CKPT_F16] = "<f2",
                                    [CKPT_BF16] = "<u2", [CKPT_FP8_E4M3] = "|u1",
                                    [CKPT_FP8_E5M2] = "|u1", [CKPT_I64] = "<i8",
                                    [CKPT_I32] = "<i4", [CKPT_I16] = "<i2", [CKPT_I8] = "|i1",
                                    [CKPT_U8] = "|u1", [CKPT_BOOL] = "|b1", [CKPT_BYTES] = "|u1"};
    return v[d];
}

/* The .npy header of t: magic, version 1.0 or 2.0, the dict, padded to 64. */
static void npy_header(const xtensor *t, sbuf *b)
{
    sbuf d = {0};
    sb_str(&d, "{'descr': '");
    sb_str(&d, npy_descr(t->dst));
    sb_str(&d, "', 'fortran_order': False, 'shape': ");
    shape_json(&d, t, "(", ")");
    sb_str(&d, ", }");
    size_t pre = d.n + 1 + 10 > 65535 ? 12 : 10;
    while ((pre + d.n + 1) % 64)
        sb_str(&d, " ");
    sb_str(&d, "\n");
    uint8_t h[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', pre == 10 ? 1 : 2, 0};
    le(h + 8, d.n, pre == 10 ? 2 : 4);
    sb_put(b, (const char *)h, pre);
    sb_put(b, d.p ? d.p : "", d.n);
    b->oom |= d.oom;
    free(d.p);
}

enum { ZIP_LOCAL = 30, ZIP_X64L = 20, ZIP_CENTRAL = 46, ZIP_X64C = 28 };

static void zip_local(uint8_t *h, size_t namelen, uint32_t crc)
{
    memset(h, 0, ZIP_LOCAL + ZIP_X64L);
    le(h, 0x04034b50u, 4);
    le(h + 4, 45, 2);      /* version needed: zip64 */
    le(h + 6, 0x0800, 2);  /* UTF-8 names */
    le(h + 12, 0x0021, 2); /* 1980-01-01 */
    le(h + 14, crc, 4);
    le(h + 18, 0xFFFFFFFFu, 4);
    le(h + 22, 0xFFFFFFFFu, 4);
    le(h + 26, namelen, 2);
    le(h + 28, ZIP_X64L, 2);
}

static int npz_layout(xctx *x)
{
    uint64_t off = 0;
    sbuf b = {0};
    int rc = 0;
    for (uint32_t i = 0; i < x->nt && !rc; i++) {
        xtensor *t = &x->t[i];
        b.n = 0;
        npy_header(t, &b);
        if (b.oom)
            return ckpt__err_set(&x->err, CKPT_ENOMEM, "export: out of memory");
        size_t namelen = strlen(t->name) + 4;
        t->hdr_off = off;
        uint64_t npy_off = off + ZIP_LOCAL + namelen + ZIP_X64L;
        t->off = npy_off + b.n;
        rc = iop_pwrite(x->out.fd, b.p, b.n, npy_off, x->out.tmp, &x->err);
        off = t->off + t->nbytes;
    }
    free(b.p);
    return rc;
}

/* After the data: each entry's CRC (read back) in its local header, then
 * the central directory and the zip64 end records. */
static int npz_finish(xctx *x)
{
    sbuf cd = {0};
    uint8_t h[ZIP_CENTRAL + ZIP_X64C + 16];
    int rc = 0;
    for (uint32_t i = 0; i < x->nt && !rc; i++) {
        xtensor *t = &x->t[i];
        size_t namelen = strlen(t->name) + 4;
        uint64_t npy_off = t->hdr_off + ZIP_LOCAL + namelen + ZIP_X64L;
        uint64_t size = t->off + t->nbytes - npy_off;
        uint32_t crc = 0;
        for (uint64_t at = npy_off; at < npy_off + size && !rc;) {
            size_t n = (size_t)(npy_off + size - at < PEND ? npy_off + size - at : PEND);
            int r = ckpt__pread_full(x->out.fd, x->pend, n, at);
            if (r < 0)
                rc = ckpt__err_errno(&x->err, r == -ENODATA ? EIO : -r, "read back %s",
                                     x->out.tmp);
            else
                crc = crc32_update(crc, x->pend, n);
            at += n;
        }
        zip_local(h, namelen, crc);
        le(h + ZIP_LOCAL, 1, 2);
        le(h + ZIP_LOCAL + 2, 16, 2);
        le(h + ZIP_LOCAL + 4, size, 8);
        le(h + ZIP_LOCAL + 12, size, 8);
        char name[CKPT_MAX_NAME + 8];
        snprintf(name, sizeof name, "%s.npy", t->name);
        if (!rc)
            rc = iop_pwrite(x->out.fd, h, ZIP_LOCAL, t->hdr_off, x->out.tmp, &x->err);
        if (!rc)
            rc = iop_pwrite(x->out.fd, name, namelen, t->hdr_off + ZIP_LOCAL, x->out.tmp,
                            &x->err);
        if (!rc)
            rc = iop_pwrite(x->out.fd, h + ZIP_LOCAL, ZIP_X64L,
                            t->hdr_off + ZIP_LOCAL + namelen, x->out.tmp, &x->err);
        memset(h, 0, sizeof h);
        le(h, 0x02014b50u, 4);
        le(h + 4, 45 | (3 << 8), 2); /* made by: Unix */
        le(h + 6, 45, 2);
        le(h + 8, 0x0800, 2);
        le(h + 14, 0x0021, 2);
        le(h + 16, crc, 4);
        le(h + 20, 0xFFFFFFFFu, 4);
        le(h + 24, 0xFFFFFFFFu, 4);
        le(h + 28, namelen, 2);
        le(h + 30, ZIP_X64C, 2);
        le(h + 38, (uint64_t)0100644 << 16, 4);
        le(h + 42, 0xFFFFFFFFu, 4);
        sb_put(&cd, (const char *)h, ZIP_CENTRAL);
        sb_put(&cd, name, namelen);
        le(h, 1, 2);
        le(h + 2, 24, 2);
        le(h + 4, size, 8);
        le(h + 12, size, 8);
        le(h + 20, t->hdr_off, 8);
        sb_put(&cd, (const char *)h, ZIP_X64C);
    }
    uint64_t cd_off = x->nt ? x->t[x->nt - 1].off + x->t[x->nt - 1].nbytes : 0;
    uint8_t end[56 + 20 + 22] = {0};
    le(end, 0x06064b50u, 4);
    le(end + 4, 44, 8);
    le(end + 12, 45 | (3 << 8), 2);
    le(end + 14, 45, 2);
    le(end + 24, x->nt, 8);
    le(end + 32, x->nt, 8);
    le(end + 40, cd.n, 8);
    le(end + 48, cd_off, 8);
    le(end + 56, 0x07064b50u, 4);
    le(end + 64, cd_off + cd.n, 8);
    le(end + 72, 1, 4);
    le(end + 76, 0x06054b50u, 4);
    le(end + 84, 0xFFFF, 2);
    le(end + 86, 0xFFFF, 2);
    le(end + 88, 0xFFFFFFFFu, 4);
    le(end + 92, 0xFFFFFFFFu, 4);
    if (!rc && cd.oom)
        rc = ckpt__err_set(&x->err, CKPT_ENOMEM, "export: out of memory");
    if (!rc && cd.n)
        rc = iop_pwrite(x->out.fd, cd.p, cd.n, cd_off, x->out.tmp, &x->err);
    if (!rc)
        rc = iop_pwrite(x->out.fd, end, sizeof end, cd_off + cd.n, x->out.tmp, &x->err);
    free(cd.p);
    return rc;
}

/* ---- data ------------------------------------------------------------------------------ */

static void progress(xctx *x, const char *name, int last)
{
    if (!x->tty)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    if (!last && now - x->last_progress < 0.2)
        return;
    x->last_progress = now;
    if (last) {
        fputs("\r\033[K", stderr);
        return;
    }
    fprintf(stderr, "\r\033[Kexport: %3.0f%% of %.1f MiB  %.60s",
            x->total ? 100.0 * (double)x->done / (double)x->total : 100.0,
            (double)x->total / 1048576.0, name);
}

typedef struct xsink {
    xctx *x;
    const xtensor *t;
    const ckpt__entry *e;
    int fd;
    const char *path;
} xsink;

static int pend_flush(xctx *x)
{
    int rc = x->pend_n ? iop_pwrite(x->out.fd, x->pend, (size_t)x->pend_n, x->pend_off,
                                    x->out.tmp, &x->err)
                       : 0;
    x->pend_n = 0;
    return rc;
}

static int sink_load(void *user, uint32_t c, uint8_t *buf, uint64_t *n, ckpt__err *err)
{
    xsink *s = user;
    int rc = ckpt__chunk_read(s->fd, &s->x->idx, s->e, c, 1, buf, n, s->path, err);
    s->x->done += rc ? 0 : *n;
    progress(s->x, s->t->name, 0);
    return rc;
}

/* len source bytes that go to element dof / size of the tensor. */
static int sink_piece(void *user, uint64_t dof, const uint8_t *src, uint64_t len,
                      ckpt__err *err)
{
    xsink *s = user;
    xctx *x = s->x;
    const xtensor *t = s->t;
    uint64_t is = ckpt_dtype_size(t->src), os = ckpt_dtype_size(t->dst);
    uint64_t out = dof / is * os, nel = len / is;
    if (t->nbytes <= WINDOW) {
        convert(t->src, t->dst, src, x->window + out, nel);
        return 0;
    }
    while (nel > 0) {
        if (x->pend_n && (x->pend_off + x->pend_n != t->off + out || x->pend_n + os > PEND)) {
            int rc = pend_flush(x);
            if (rc)
                return rc;
        }
        if (!x->pend_n)
            x->pend_off = t->off + out;
        uint64_t fit = (PEND - x->pend_n) / os;
        uint64_t k = nel < fit ? nel : fit;
        convert(t->src, t->dst, src, x->pend + x->pend_n, k);
        x->pend_n += k * os;
        src += k * is;
        out += k * os;
        nel -= k;
    }
    (void)err;
    return 0;
}

/* Opens rank file `rank` (once) into x->fds, its path in
 * path[CKPT__PATH_MAX]: a regular file of the size the manifest records. */
static int open_rank(xctx *x, int32_t rank, char *path)
{
    char fname[CKPT__FNAME_MAX];
    ckpt__rank_file_name((uint32_t)rank, fname);
    int rc = ckpt__path_join(path, x->stepdir, fname, &x->err);
    if (rc || x->fds[rank] >= 0)
        return rc;
    const ckpt__rankrec *rr = NULL;
    for (uint32_t r = 0; r < x->idx.nranks; r++)
        if (x->idx.ranks[r].rank == (uint32_t)rank)
            rr = &x->idx.ranks[r];
    if (!rr)
        return ckpt__err_set(&x->err, CKPT_ECORRUPT, "%s: no record of rank %d", x->stepdir,
                             rank);
    /* O_NONBLOCK: a FIFO planted under this name must not hang the open. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd < 0)
        return errno == ENOENT || errno == ELOOP
                   ? ckpt__err_set(&x->err, CKPT_ECORRUPT, "%s is missing or a link", path)
                   : ckpt__err_errno(&x->err, errno, "open %s", path);
    x->fds[rank] = fd;
    if (fstat(fd, &st) != 0)
        return ckpt__err_errno(&x->err, errno, "stat %s", path);
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != rr->file_bytes)
        return ckpt__err_set(&x->err, CKPT_ECORRUPT,
                             "%s is not a regular file of %llu bytes (the manifest's size)",
                             path, (unsigned long long)rr->file_bytes);
    return 0;
}

static int write_tensor(xctx *x, const xtensor *t)
{
    static const ckpt__overlap_fns fns = {sink_load, NULL, sink_piece};
    ckpt__box whole;
    memset(&whole, 0, sizeof whole);
    whole.ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++)
        whole.count[d] = t->shape[d];
    int rc = 0;
    char path[CKPT__PATH_MAX];
    for (uint32_t k = 0; k < t->n && !rc; k++) {
        const ckpt__entry *e = &x->idx.entries[x->order[t->first + k]];
        rc = open_rank(x, e->rank, path);
        xsink s = {x, t, e, x->fds[e->rank], path};
        if (!rc)
            rc = ckpt__overlap_copy(&x->idx, e, &whole, x->chunk, &fns, &s, &x->err);
    }
    if (!rc && t->nbytes <= WINDOW)
        rc = iop_pwrite(x->out.fd, x->window, (size_t)t->nbytes, t->off, x->out.tmp, &x->err);
    if (!rc)
        rc = pend_flush(x);
    return rc;
}

/* ---- the command ----------------------------------------------------------------------- */

static int pick(xctx *x)
{
    const xopts *o = x->o;
    int64_t *steps = NULL, step = -1;
    size_t n = 0;
    int rc = ckpt__catalog_scan(o->dir, &steps, &n, &x->err);
    for (size_t i = 0; !rc && i < n && step < 0; i++)
        if (o->step < 0 || steps[i] == o->step)
            step = steps[i];
    free(steps);
    if (!rc && step < 0)
        rc = o->step < 0 ? ckpt__err_set(&x->err, CKPT_ENOTFOUND, "no checkpoints in %s", o->dir)
                         : ckpt__err_set(&x->err, CKPT_ENOTFOUND,
                                         "no committed checkpoint for step %lld in %s",
                                         (long long)o->step, o->dir);
    char name[CKPT__FNAME_MAX], path[CKPT__PATH_MAX];
    if (!rc) {
        ckpt__step_name(step, name);
        rc = ckpt__path_step(x->stepdir, o->dir, step, NULL, &x->err);
    }
    if (!rc)
        rc = ckpt__path_join(path, x->stepdir, CKPT__MANIFEST_NAME, &x->err);
    if (!rc) {
        rc = ckpt__manifest_read(path, &x->idx, &x->err);
        x->have_idx = rc == 0;
    }
    if (!rc)
        rc = ckpt__layout_check(&x->idx, CKPT_ECORRUPT, name, &x->err);
    return rc;
}

static int run_export(xctx *x)
{
    const xopts *o = x->o;
    struct stat st;
    if (!o->force && lstat(o->out, &st) == 0)
        return ckpt__err_set(&x->err, CKPT_EEXIST, "%s exists; --force replaces it", o->out);
    int rc = pick(x);
    if (!rc)
        rc = plan(x);
    if (!rc && x->nt == 0 && (o->ninc || o->nexc))
        rc = ckpt__err_set(&x->err, CKPT_ENOTFOUND,
                           "no tensor of %s matches --include / --exclude", x->stepdir);
    if (rc)
        return rc;
    x->fds = malloc((x->idx.world_size ? x->idx.world_size : 1) * sizeof *x->fds);
    x->chunk = malloc(x->idx.chunk_bytes);
    x->pend = malloc(PEND);
    uint64_t win = 0;
    for (uint32_t i = 0; i < x->nt; i++)
        if (x->t[i].nbytes <= WINDOW && x->t[i].nbytes > win)
            win = x->t[i].nbytes;
    x->window = malloc(win ? win : 1);
    if (!x->fds || !x->chunk || !x->pend || !x->window)
        return ckpt__err_set(&x->err, CKPT_ENOMEM, "export: out of memory");
    for (uint32_t r = 0; r < x->idx.world_size; r++)
        x->fds[r] = -1;
    /* Every rank file with metadata is opened (and its size checked) for
     * the header. */
    char path[CKPT__PATH_MAX];
    for (uint32_t i = 0; i < x->idx.nentries && !rc; i++)
        if (x->idx.entries[i].kind == CKPT__ENTRY_META)
            rc = open_rank(x, x->idx.entries[i].rank, path);
    if (!rc)
        rc = iop_out_open(&x->out, o->out, &x->err);
    uint64_t data_off = 0;
    if (!rc && o->format == FMT_SAFETENSORS)
        rc = st_header(x, &data_off);
    if (!rc && o->format == FMT_NPZ) {
        rc = npz_layout(x);
        uint32_t nmeta = 0;
        for (uint32_t i = 0; i < x->idx.nentries; i++)
            nmeta += x->idx.entries[i].kind == CKPT__ENTRY_META;
        if (nmeta)
            fprintf(stderr, "ckpt export: npz holds no metadata: left out %u metadata "
                            "entr%s\n", nmeta, nmeta == 1 ? "y" : "ies");
        uint32_t nraw = 0;
        for (uint32_t i = 0; i < x->nt; i++)
            nraw += x->t[i].dst == CKPT_BF16 || x->t[i].dst == CKPT_FP8_E4M3 ||
                    x->t[i].dst == CKPT_FP8_E5M2;
        if (nraw)
            fprintf(stderr, "ckpt export: numpy has no bf16 or fp8: %u tensor(s) stored as "
                            "their raw uint16 / uint8 bits (--dtype f32 converts)\n", nraw);
    }
    for (uint32_t i = 0; i < x->nt && !rc; i++)
        rc = write_tensor(x, &x->t[i]);
    progress(x, "", 1);
    if (!rc && o->format == FMT_NPZ)
        rc = npz_finish(x);
    if (!rc)
        rc = iop_out_commit(&x->out, o->force, &x->err);
    return rc;
}

int export_main(int argc, char **argv)
{
    xopts o;
    memset(&o, 0, sizeof o);
    o.step = -1;
    int p = parse(argc, argv, &o);
    if (p != 0) {
        if (p > 0)
            fputs(usage_export, stdout);
        free(o.inc);
        free(o.exc);
        return p > 0 ? IOP_EXIT_OK : IOP_EXIT_ERROR;
    }
    xctx x;
    memset(&x, 0, sizeof x);
    x.o = &o;
    x.out.fd = -1;
    x.tty = isatty(STDERR_FILENO);
    ckpt__err_clear(&x.err);
    int rc = run_export(&x);
    if (rc) {
        iop_out_abandon(&x.out);
        fprintf(stderr, "ckpt export: %s\n", x.err.msg);
    } else {
        uint64_t bytes = 0;
        for (uint32_t i = 0; i < x.nt; i++)
            bytes += x.t[i].nbytes;
        fprintf(stderr, "ckpt export: wrote %u tensors (%llu bytes of data) of %s to %s\n",
                x.nt, (unsigned long long)bytes, x.stepdir, o.out);
    }
    for (uint32_t r = 0; x.fds && r < x.idx.world_size; r++)
        if (x.fds[r] >= 0)
            close(x.fds[r]);
    if (x.have_idx)
        ckpt__index_free(&x.idx);
    free(x.fds);
    free(x.chunk);
    free(x.pend);
    free(x.window);
    free(x.order);
    free(x.t);
    free(o.inc);
    free(o.exc);
    return rc == 0 ? IOP_EXIT_OK : rc == CKPT_ECORRUPT ? IOP_EXIT_CORRUPT : IOP_EXIT_ERROR;
}
