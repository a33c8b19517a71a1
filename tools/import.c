/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `ckpt import`: safetensors files as one committed one-rank checkpoint,
 * written through the normal save path (ckpt_open, ckpt_register,
 * ckpt_save), so it restores on any number of ranks and a tensor whose
 * name, dtype or shape differs from what a job registers fails there with
 * CKPT_EMISMATCH, as for any checkpoint.
 *
 * Invariants:
 *   1. Nothing is saved unless every file parses strictly: the header
 *      length inside the file, the header one JSON object whose members are
 *      tensors {dtype, shape, data_offsets} (and "__metadata__" of
 *      strings), every dtype known, every shape's byte size equal to its
 *      offsets' span, every span inside the data, no two spans overlapping
 *      and together covering the data, names valid and unique after
 *      --rename.
 *   2. The files are mapped read-only; the save only reads them.
 *   3. An existing checkpoint of the step is never replaced, and retention
 *      is off, so importing deletes nothing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/names.h"
#include "io/paths.h"
#include "runtime/internal.h"
#include "tools/interop.h"

#define HEADER_MAX (100u << 20) /* safetensors' own limit */

static const char usage_import[] =
    "usage: ckpt import --from FILE.safetensors [--from FILE]... DIR [--step S]\n"
    "                   [--rename FROM=TO]...\n"
    "\n"
    "Writes the tensors of the safetensors files as a committed checkpoint of\n"
    "step S (default 0) in DIR, saved by one rank and restorable on any number\n"
    "of ranks.  Names map one to one; --rename FROM=TO renames tensor FROM.\n"
    "The files' text __metadata__ becomes user metadata (ckpt_get_meta).  A\n"
    "tensor whose name, dtype or shape differs from what a job registers fails\n"
    "that job's restore with CKPT_EMISMATCH.  An existing checkpoint of step S\n"
    "is not replaced.\n"
    "\n"
    "Exit status: 0 written, 2 usage error, a malformed file or another error.\n";

typedef struct itensor {
    char name[CKPT_MAX_NAME + 1];
    ckpt_dtype dt;
    int ndim;
    int64_t shape[CKPT_MAX_NDIM];
    uint64_t begin, end;
    const uint8_t *data;
} itensor;

typedef struct ifile {
    const char *path;
    uint8_t *map;
    size_t len;
} ifile;

typedef struct imeta {
    char key[CKPT_MAX_NAME + 1];
    char *val;
    size_t len;
} imeta;

typedef struct iparse {
    const char *p, *end, *path;
    ckpt__err *err;
} iparse;

/* ---- a strict JSON reader for safetensors headers ----------------------------------------- */

static void ws(iparse *q)
{
    while (q->p < q->end && (*q->p == ' ' || *q->p == '\t' || *q->p == '\n' || *q->p == '\r'))
        q->p++;
}

static int bad(iparse *q, const char *what)
{
    return ckpt__err_set(q->err, CKPT_EINVAL, "%s: malformed safetensors header: %s", q->path,
                         what);
}

static int expect(iparse *q, char c)
{
    ws(q);
    if (q->p >= q->end || *q->p != c) {
        char what[32];
        snprintf(what, sizeof what, "expected '%c'", c);
        return bad(q, what);
    }
    q->p++;
    return 0;
}

/* A JSON string into out (cap bytes, NUL-terminated; *n its length). */
static int jstring(iparse *q, char *out, size_t cap, size_t *n)
{
    if (expect(q, '"'))
        return -1;
    size_t k = 0;
    while (q->p < q->end && *q->p != '"') {
        unsigned c = (unsigned char)*q->p++;
        if (c < 0x20)
            return bad(q, "control character in a string");
        if (c == '\\') {
            if (q->p >= q->end)
                return bad(q, "cut short");
            char e = *q->p++;
            const char *map = strchr("\"\"\\\\//b\bf\fn\nr\rt\t", e);
            if (e == 'u') {
                unsigned v = 0;
                for (int i = 0; i < 4; i++, q->p++) {
                    char h = q->p < q->end ? *q->p : 'x';
                    int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                            : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                    if (d < 0)
                        return bad(q, "bad \\u escape");
                    v = v * 16 + (unsigned)d;
                }
                if (v >= 0xD800 && v < 0xE000)
                    return bad(q, "surrogate \\u escape");
                uint8_t u[3];
                size_t m = v < 0x80 ? 1 : v < 0x800 ? 2 : 3;
                if (m == 1)
                    u[0] = (uint8_t)v;
                else if (m == 2) {
                    u[0] = (uint8_t)(0xC0 | (v >> 6));
                    u[1] = (uint8_t)(0x80 | (v & 0x3F));
                } else {
                    u[0] = (uint8_t)(0xE0 | (v >> 12));
                    u[1] = (uint8_t)(0x80 | ((v >> 6) & 0x3F));
                    u[2] = (uint8_t)(0x80 | (v & 0x3F));
                }
                for (size_t i = 0; i < m; i++) {
                    if (k + 1 >= cap)
                        return bad(q, "string too long");
                    out[k++] = (char)u[i];
                }
                continue;
            }
            if (!map || (map - "\"\"\\\\//b\bf\fn\nr\rt\t") % 2)
                return bad(q, "bad escape");
            c = (unsigned char)map[1];
        }
        if (k + 1 >= cap)
            return bad(q, "string too long");
        out[k++] = (char)c;
    }
    if (q->p >= q->end)
        return bad(q, "unterminated string");
    q->p++;
    out[k] = '\0';
    *n = k;
    return 0;
}

static int juint(iparse *q, uint64_t *v)
{
    ws(q);
    if (q->p >= q->end || *q->p < '0' || *q->p > '9')
        return bad(q, "expected a non-negative integer");
    if (*q->p == '0' && q->p + 1 < q->end && q->p[1] >= '0' && q->p[1] <= '9')
        return bad(q, "leading zero");
    uint64_t x = 0;
    while (q->p < q->end && *q->p >= '0' && *q->p <= '9') {
        unsigned d = (unsigned)(*q->p++ - '0');
        if (x > (UINT64_MAX - d) / 10 || x * 10 + d > (1ull << 62))
            return bad(q, "integer too large");
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

/* [u, u, ...] of at most max values. */
static int juints(iparse *q, uint64_t *v, int max, int *n)
{
    if (expect(q, '['))
        return -1;
    *n = 0;
    ws(q);
    if (q->p < q->end && *q->p == ']') {
        q->p++;
        return 0;
    }
    for (;;) {
        if (*n >= max)
            return bad(q, "too many values");
        if (juint(q, &v[(*n)++]))
            return -1;
        ws(q);
        if (q->p < q->end && *q->p == ',') {
            q->p++;
            continue;
        }
        return expect(q, ']');
    }
}

static int tensor_obj(iparse *q, itensor *t)
{
    int have = 0;
    if (expect(q, '{'))
        return -1;
    for (;;) {
        char key[32];
        size_t n;
        if (jstring(q, key, sizeof key, &n) || expect(q, ':'))
            return -1;
        uint64_t v[CKPT_MAX_NDIM];
        int k;
        if (strcmp(key, "dtype") == 0 && !(have & 1)) {
            char dt[16];
            if (jstring(q, dt, sizeof dt, &n))
                return -1;
            t->dt = st_dtype_parse(dt, n);
            if (!t->dt)
                return ckpt__err_set(q->err, CKPT_EINVAL,
                                     "%s: tensor '%s' has dtype %s, which ckptrt has no "
                                     "dtype for", q->path, t->name, dt);
            have |= 1;
        } else if (strcmp(key, "shape") == 0 && !(have & 2)) {
            if (juints(q, v, CKPT_MAX_NDIM, &k))
                return -1;
            t->ndim = k;
            for (int d = 0; d < k; d++)
                t->shape[d] = (int64_t)v[d];
            have |= 2;
        } else if (strcmp(key, "data_offsets") == 0 && !(have & 4)) {
            if (juints(q, v, 2, &k))
                return -1;
            if (k != 2)
                return bad(q, "data_offsets needs two values");
            t->begin = v[0];
            t->end = v[1];
            have |= 4;
        } else {
            return bad(q, "unknown or repeated member of a tensor");
        }
        ws(q);
        if (q->p < q->end && *q->p == ',') {
            q->p++;
            continue;
        }
        if (expect(q, '}'))
            return -1;
        return have == 7 ? 0 : bad(q, "tensor lacks dtype, shape or data_offsets");
    }
}

/* ---- files --------------------------------------------------------------------------------- */

typedef struct iset {
    itensor *t;
    size_t nt, capt;
    imeta *m;
    size_t nm, capm;
} iset;

static int by_begin(const void *a, const void *b)
{
    const itensor *x = *(itensor *const *)a, *y = *(itensor *const *)b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

static int parse_meta(iparse *q, iset *s)
{
    if (expect(q, '{'))
        return -1;
    ws(q);
    if (q->p < q->end && *q->p == '}') {
        q->p++;
        return 0;
    }
    for (;;) {
        if (s->nm == s->capm) {
            size_t cap = s->capm ? 2 * s->capm : 8;
            imeta *m = realloc(s->m, cap * sizeof *m);
            if (!m)
                return ckpt__err_set(q->err, CKPT_ENOMEM, "import: out of memory");
            s->m = m;
            s->capm = cap;
        }
        imeta *m = &s->m[s->nm];
        size_t n;
        if (jstring(q, m->key, sizeof m->key, &n) || expect(q, ':'))
            return -1;
        m->val = malloc(CKPT_MAX_META + 1);
        if (!m->val)
            return ckpt__err_set(q->err, CKPT_ENOMEM, "import: out of memory");
        s->nm++;
        if (jstring(q, m->val, CKPT_MAX_META + 1, &m->len))
            return -1;
        ws(q);
        if (q->p < q->end && *q->p == ',') {
            q->p++;
            continue;
        }
        return expect(q, '}');
    }
}

static int parse_file(ifile *f, iset *s, ckpt__err *err)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ckpt__err_errno(err, errno, "open %s", f->path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 8) {
        close(fd);
        return ckpt__err_set(err, CKPT_EINVAL, "%s is not a safetensors file (too short)",
                             f->path);
    }
    f->len = (size_t)st.st_size;
    void *p = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return ckpt__err_errno(err, errno, "mmap %s", f->path);
    f->map = p;
    uint64_t hlen = 0;
    for (int k = 0; k < 8; k++)
        hlen |= (uint64_t)f->map[k] << (8 * k);
    if (hlen > HEADER_MAX || hlen > f->len - 8)
        return ckpt__err_set(err, CKPT_EINVAL,
                             "%s: header length %llu does not fit the file (%zu bytes)",
                             f->path, (unsigned long long)hlen, f->len);
    const uint8_t *data = f->map + 8 + hlen;
    uint64_t dlen = f->len - 8 - hlen;
    iparse q = {(const char *)f->map + 8, (const char *)f->map + 8 + hlen, f->path, err};
    size_t first = s->nt;
    int rc = expect(&q, '{');
    ws(&q);
    int empty = !rc && q.p < q.end && *q.p == '}';
    if (empty)
        q.p++;
    while (!rc && !empty) {
        char name[CKPT_MAX_NAME + 1];
        size_t n;
        rc = jstring(&q, name, sizeof name, &n) || expect(&q, ':');
        if (rc)
            break;
        if (strcmp(name, "__metadata__") == 0) {
            rc = parse_meta(&q, s);
        } else {
            if (s->nt == s->capt) {
                size_t cap = s->capt ? 2 * s->capt : 64;
                itensor *t = realloc(s->t, cap * sizeof *t);
                if (!t) {
                    rc = ckpt__err_set(err, CKPT_ENOMEM, "import: out of memory");
                    break;
                }
                s->t = t;
                s->capt = cap;
            }
            itensor *t = &s->t[s->nt++];
            memset(t, 0, sizeof *t);
            memcpy(t->name, name, n + 1);
            rc = tensor_obj(&q, t);
            uint64_t nbytes = 0;
            if (!rc && ckpt__shape_bytes(t->dt, t->ndim, t->shape, &nbytes) != 0)
                rc = ckpt__err_set(err, CKPT_EINVAL, "%s: tensor '%s': shape overflows",
                                   f->path, name);
            if (!rc && (t->begin > t->end || t->end > dlen || t->end - t->begin != nbytes))
                rc = ckpt__err_set(err, CKPT_EINVAL,
                                   "%s: tensor '%s': data_offsets [%llu, %llu] do not hold its "
                                   "%llu bytes inside the file's %llu bytes of data",
                                   f->path, name, (unsigned long long)t->begin,
                                   (unsigned long long)t->end, (unsigned long long)nbytes,
                                   (unsigned long long)dlen);
            t->data = data + t->begin;
        }
        ws(&q);
        if (!rc && q.p < q.end && *q.p == ',') {
            q.p++;
            continue;
        }
        if (!rc)
            rc = expect(&q, '}');
        break;
    }
    ws(&q);
    if (!rc && q.p != q.end)
        rc = bad(&q, "bytes after the header object");
    /* Spans must tile the data exactly: no overlap, no hole. */
    itensor **v = rc ? NULL : malloc((s->nt - first + 1) * sizeof *v);
    if (!rc && !v)
        rc = ckpt__err_set(err, CKPT_ENOMEM, "import: out of memory");
    for (size_t i = first; !rc && i < s->nt; i++)
        v[i - first] = &s->t[i];
    if (!rc)
        qsort(v, s->nt - first, sizeof *v, by_begin);
    uint64_t at = 0;
    for (size_t i = 0; !rc && i < s->nt - first; i++) {
        if (v[i]->begin != at)
            rc = ckpt__err_set(err, CKPT_EINVAL, "%s: tensor '%s' %s", f->path, v[i]->name,
                               v[i]->begin < at ? "overlaps another tensor's bytes"
                                                : "leaves a hole before its bytes");
        at = v[i]->end > at ? v[i]->end : at;
    }
    if (!rc && at != dlen)
        rc = ckpt__err_set(err, CKPT_EINVAL, "%s: %llu bytes of data after the last tensor",
                           f->path, (unsigned long long)(dlen - at));
    free(v);
    return rc < 0 ? rc : rc ? CKPT_EINVAL : 0;
}

/* ---- the command --------------------------------------------------------------------------- */

typedef struct iopts {
    const char *dir;
    const char **from, **rename;
    int nfrom, nrename;
    int64_t step;
} iopts;

/* One option of the command at argv[*i] (iop_parse's callback). */
static int option(void *user, const char *cmd, int argc, char **argv, int *i)
{
    iopts *o = user;
    const char *v;
    int r;
    if ((r = iop_opt(cmd, argc, argv, i, "--from", &v)) != 0) {
        if (r < 0 || iop_push(&o->from, &o->nfrom, v))
            return -1;
    } else if ((r = iop_opt(cmd, argc, argv, i, "--rename", &v)) != 0) {
        if (r > 0 && (!strchr(v, '=') || v[0] == '=' || !strchr(v, '=')[1])) {
            iop_usage(cmd, "--rename: '%s' is not FROM=TO", v);
            return -1;
        }
        if (r < 0 || iop_push(&o->rename, &o->nrename, v))
            return -1;
    } else if ((r = iop_opt(cmd, argc, argv, i, "--step", &v)) != 0) {
        if (r < 0 || iop_step(cmd, v, &o->step) != 0)
            return -1;
    } else {
        return 0;
    }
    return 1;
}

/* 0, 1 after --help, -1 after a usage message. */
static int parse(int argc, char **argv, iopts *o)
{
    const char *cmd = "import";
    int k = iop_parse(cmd, argc, argv, &o->dir, option, o);
    if (k != 0)
        return k;
    if (!o->dir)
        iop_usage(cmd, "import: missing DIR");
    else if (!o->nfrom)
        iop_usage(cmd, "import: --from FILE is required");
    else
        return 0;
    return -1;
}

static int apply_renames(const iopts *o, iset *s, ckpt__err *err)
{
    for (int r = 0; r < o->nrename; r++) {
        const char *eq = strchr(o->rename[r], '=');
        size_t flen = (size_t)(eq - o->rename[r]);
        int hit = 0;
        for (size_t i = 0; i < s->nt; i++)
            if (strlen(s->t[i].name) == flen && memcmp(s->t[i].name, o->rename[r], flen) == 0) {
                if (strlen(eq + 1) > CKPT_MAX_NAME)
                    return ckpt__err_set(err, CKPT_EINVAL, "--rename: '%s' is too long", eq + 1);
                snprintf(s->t[i].name, sizeof s->t[i].name, "%s", eq + 1);
                hit = 1;
                break;
            }
        if (!hit)
            return ckpt__err_set(err, CKPT_EINVAL, "--rename %s: no tensor '%.*s'",
                                 o->rename[r], (int)flen, o->rename[r]);
    }
    for (size_t i = 0; i < s->nt; i++) {
        int rc = ckpt__name_check(s->t[i].name, "tensor name", err);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(s->t[i].name, s->t[j].name) == 0)
                return ckpt__err_set(err, CKPT_EINVAL,
                                     "tensor '%s' is in the input twice (use --rename)",
                                     s->t[i].name);
    }
    return 0;
}

static int save_all(const iopts *o, iset *s, ckpt__err *err)
{
    char path[CKPT__PATH_MAX];
    struct stat st;
    int rc = ckpt__path_step(path, o->dir, o->step, NULL, err);
    if (rc)
        return rc;
    if (lstat(path, &st) == 0)
        return ckpt__err_set(err, CKPT_EEXIST, "%s exists; import does not replace it", path);
    ckpt_config cfg;
    ckpt_config_init(&cfg);
    cfg.dir = o->dir;
    cfg.keep_last = 0; /* Inv. 3: an import deletes nothing */
    cfg.keep_every = 0;
    cfg.max_age_hours = 0;
    cfg.log_level = CKPT_LOG_WARN;
    ckpt_ctx *ck = NULL;
    rc = ckpt_open(&cfg, NULL, &ck);
    if (rc)
        return ckpt__err_set(err, rc, "%s", ckpt_last_error(NULL));
    for (size_t i = 0; i < s->nt && !rc; i++) {
        itensor *t = &s->t[i];
        /* Inv. 2: registered memory is only read by a save. */
        rc = ckpt_register(ck, t->name, t->end > t->begin ? (void *)(uintptr_t)t->data : NULL,
                           t->dt, t->ndim, t->shape);
    }
    for (size_t i = 0; i < s->nm && !rc; i++)
        if (ckpt__name_check(s->m[i].key, "metadata key", err) == 0)
            rc = ckpt_set_meta(ck, s->m[i].key, s->m[i].val, s->m[i].len);
        else
            fprintf(stderr, "ckpt import: left out metadata: %s\n", err->msg);
    ckpt_ticket tk;
    if (!rc)
        rc = ckpt_save(ck, o->step, NULL, &tk);
    if (!rc)
        rc = ckpt_wait(ck, tk, -1);
    if (rc)
        ckpt__err_set(err, rc, "%s", ckpt_last_error(ck));
    int crc = ckpt_close(ck);
    if (!rc && crc)
        rc = ckpt__err_set(err, crc, "%s", ckpt_last_error(NULL));
    return rc;
}

int import_main(int argc, char **argv)
{
    iopts o;
    memset(&o, 0, sizeof o);
    int p = parse(argc, argv, &o);
    if (p != 0) {
        if (p > 0)
            fputs(usage_import, stdout);
        free(o.from);
        free(o.rename);
        return p > 0 ? IOP_EXIT_OK : IOP_EXIT_ERROR;
    }
    ckpt__err err;
    ckpt__err_clear(&err);
    iset s;
    memset(&s, 0, sizeof s);
    ifile *files = calloc((size_t)o.nfrom, sizeof *files);
    int rc = files ? 0 : ckpt__err_set(&err, CKPT_ENOMEM, "import: out of memory");
    for (int i = 0; i < o.nfrom && !rc; i++) {
        files[i].path = o.from[i];
        rc = parse_file(&files[i], &s, &err);
    }
    if (!rc)
        rc = apply_renames(&o, &s, &err);
    if (!rc)
        rc = save_all(&o, &s, &err);
    if (rc)
        fprintf(stderr, "ckpt import: %s\n", err.msg);
    else
        fprintf(stderr, "ckpt import: wrote %zu tensors as step %lld of %s\n", s.nt,
                (long long)o.step, o.dir);
    for (int i = 0; files && i < o.nfrom; i++)
        if (files[i].map)
            munmap(files[i].map, files[i].len);
    for (size_t i = 0; i < s.nm; i++)
        free(s.m[i].val);
    free(s.m);
    free(s.t);
    free(files);
    free(o.from);
    free(o.rename);
    return rc ? IOP_EXIT_ERROR : IOP_EXIT_OK;
}
