/* SPDX-License-Identifier: Apache-2.0 */
/* See bench_util.h. */
#include "bench/bench_util.h"

#include "base/clock.h"

const char *prog = "ckpt-bench";

double now_s(void)
{
    return ckpt__now_s();
}

/* CPU time of the calling thread: set against wall time, it tells work
 * from waiting (for a lock, or for a core on a busy machine). */
double thread_cpu_s(void)
{
    return ckpt__thread_cpu_s();
}

void errorf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* A failed API call: the runtime's own message names what failed. */
int api_fail(const char *call, int rc, const ckpt_ctx *ctx)
{
    errorf("%s failed: %s (%s): %s", call, ckpt_err_name(rc), ckpt_strerror(rc),
           ckpt_last_error(ctx));
    return 1;
}

/*
 * Parses a byte count: digits with an optional K, M, G or T suffix (powers
 * of 1024, either case, optionally followed by "iB" or "B").  Returns -1 on
 * anything else, including overflow.
 */
int parse_size(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return -1;
    uint64_t v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    unsigned shift = 0;
    switch (*p) {
    case 'k': case 'K': shift = 10; p++; break;
    case 'm': case 'M': shift = 20; p++; break;
    case 'g': case 'G': shift = 30; p++; break;
    case 't': case 'T': shift = 40; p++; break;
    default: break;
    }
    if (shift && (p[0] == 'i' || p[0] == 'I') && (p[1] == 'b' || p[1] == 'B'))
        p += 2;
    else if (*p == 'b' || *p == 'B')
        p++;
    if (*p != '\0')
        return -1;
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    *out = v << shift;
    return 0;
}

int parse_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int parse_u64(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end != '\0')
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* "256 MiB", "4 KiB", "2.00 GiB" or "123 B" for human output. */
const char *fmt_bytes(uint64_t n, char *buf, size_t cap)
{
    if (n >= GIB && n % GIB == 0)
        snprintf(buf, cap, "%" PRIu64 " GiB", n / GIB);
    else if (n >= GIB)
        snprintf(buf, cap, "%.2f GiB", (double)n / (double)GIB);
    else if (n >= MIB && n % MIB == 0)
        snprintf(buf, cap, "%" PRIu64 " MiB", n / MIB);
    else if (n >= MIB)
        snprintf(buf, cap, "%.2f MiB", (double)n / (double)MIB);
    else if (n >= KIB && n % KIB == 0)
        snprintf(buf, cap, "%" PRIu64 " KiB", n / KIB);
    else
        snprintf(buf, cap, "%" PRIu64 " B", n);
    return buf;
}


/* "--name value" or "--name=value": 1 matched (*val set), 0 not, -1 no value. */
int opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *val = argv[++*i];
    return 1;
}

int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s %s: ", prog, cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry '%s %s --help'.\n", prog, cmd);
    va_end(ap);
    return 2;
}

int common_opt(int argc, char **argv, int *i, const char *cmd, common_opts *c)
{
    const char *a = argv[*i], *v = NULL;
    int m;
    if (strcmp(a, "--json") == 0) {
        c->json = 1;
    } else if ((m = opt_value(argc, argv, i, "--dir", &v)) != 0) {
        if (m < 0 || !*v)
            return usage_error(cmd, "--dir needs a folder");
        c->dir = v;
    } else if ((m = opt_value(argc, argv, i, "--staging", &v)) != 0) {
        if (m < 0 || parse_size(v, &c->staging_bytes) != 0 || c->staging_bytes < 4 * MIB)
            return usage_error(cmd, "--staging: expected a size >= 4M");
    } else if ((m = opt_value(argc, argv, i, "--writer", &v)) != 0) {
        static const struct {
            const char *name;
            ckpt_io io;
        } kinds[] = {{"uring", CKPT_IO_URING}, {"pwrite", CKPT_IO_PWRITE}, {"auto", CKPT_IO_AUTO}};
        size_t k = 0;
        while (m > 0 && k < 3 && strcmp(v, kinds[k].name) != 0)
            k++;
        if (m < 0 || k == 3)
            return usage_error(cmd, "--writer: expected uring, pwrite or auto");
        c->io = kinds[k].io;
    } else {
        return 0;
    }
    return 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median, min and max of v[0..n) (n >= 1); sorts v. */
stat3 stat3_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    stat3 r;
    r.min = v[0];
    r.max = v[n - 1];
    r.med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    return r;
}
