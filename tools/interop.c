/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What `ckpt export` and `ckpt import` share (interop.h): dtype names,
 * option scanning, and output files that appear whole or not at all.
 *
 * Invariant: the final name of an output file refers to a complete,
 * durable file or to nothing new: bytes go to a temporary name in the same
 * folder, which is fsync'd and renamed (without replacing an existing
 * file unless forced), and removed on any failure.
 */
#define _GNU_SOURCE
#include "tools/interop.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    ckpt_dtype dt;
    const char *name;
} st_names[] = {
    {CKPT_F64, "F64"},        {CKPT_F32, "F32"},        {CKPT_F16, "F16"},
    {CKPT_BF16, "BF16"},      {CKPT_FP8_E4M3, "F8_E4M3"}, {CKPT_FP8_E5M2, "F8_E5M2"},
    {CKPT_I64, "I64"},        {CKPT_I32, "I32"},        {CKPT_I16, "I16"},
    {CKPT_I8, "I8"},          {CKPT_U8, "U8"},          {CKPT_BOOL, "BOOL"},
};

const char *st_dtype_name(ckpt_dtype dt)
{
    if (dt == CKPT_BYTES)
        return "U8";
    for (size_t i = 0; i < sizeof st_names / sizeof st_names[0]; i++)
        if (st_names[i].dt == dt)
            return st_names[i].name;
    return NULL;
}

ckpt_dtype st_dtype_parse(const char *s, size_t len)
{
    for (size_t i = 0; i < sizeof st_names / sizeof st_names[0]; i++)
        if (strlen(st_names[i].name) == len && memcmp(st_names[i].name, s, len) == 0)
            return st_names[i].dt;
    return (ckpt_dtype)0;
}

void iop_vusage(const char *cmd, const char *fmt, va_list ap)
{
    fputs("ckpt: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n", stderr);
    if (cmd)
        fprintf(stderr, "Try 'ckpt %s --help'.\n", cmd);
}

void iop_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    iop_vusage(cmd, fmt, ap);
    va_end(ap);
}

int iop_parse(const char *cmd, int argc, char **argv, const char **dir, iop_option_fn fn,
              void *user)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (a[0] != '-' || a[1] == '\0') {
            if (*dir) {
                iop_usage(cmd, "unexpected argument '%s' (DIR is already '%s')", a, *dir);
                return -1;
            }
            *dir = a;
            continue;
        }
        int r = fn(user, cmd, argc, argv, &i);
        if (r < 0)
            return -1;
        if (r == 0) {
            iop_usage(cmd, "%s: unknown option '%s'", cmd, a);
            return -1;
        }
    }
    return 0;
}

int iop_opt(const char *cmd, int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i], *eq = strchr(a, '=');
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    if (len != strlen(name) || memcmp(a, name, len) != 0)
        return 0;
    *val = eq ? eq + 1 : *i + 1 < argc ? argv[++*i] : NULL;
    if (!*val)
        iop_usage(cmd, "%s needs a value", name);
    return *val ? 1 : -1;
}

int iop_out_open(iop_out *o, const char *path, ckpt__err *err)
{
    o->fd = -1;
    o->tmp[0] = '\0';
    const char *slash = strrchr(path, '/');
    int dlen = slash ? (int)(slash - path) + 1 : 0;
    int n = snprintf(o->path, sizeof o->path, "%s", path);
    int m = snprintf(o->tmp, sizeof o->tmp, "%.*s.%s.tmp-XXXXXX", dlen, path,
                     slash ? slash + 1 : path);
    if (n < 0 || (size_t)n >= sizeof o->path || m < 0 || (size_t)m >= sizeof o->tmp) {
        o->tmp[0] = '\0';
        return ckpt__err_set(err, CKPT_EINVAL, "%s: path too long", path);
    }
    o->fd = mkostemp(o->tmp, O_CLOEXEC);
    if (o->fd < 0) {
        int e = errno;
        o->tmp[0] = '\0';
        return ckpt__err_errno(err, e, "create a temporary file next to %s", path);
    }
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(o->fd, 0666 & ~mask) != 0) {
        int e = errno;
        iop_out_abandon(o);
        return ckpt__err_errno(err, e, "chmod %s", o->tmp);
    }
    return 0;
}

int iop_out_commit(iop_out *o, int force, ckpt__err *err)
{
    if (fsync(o->fd) != 0)
        return ckpt__err_errno(err, errno, "fsync %s", o->tmp);
    if (close(o->fd) != 0) {
        o->fd = -1;
        return ckpt__err_errno(err, errno, "close %s", o->tmp);
    }
    o->fd = -1;
    int r = force ? rename(o->tmp, o->path)
                  : renameat2(AT_FDCWD, o->tmp, AT_FDCWD, o->path, RENAME_NOREPLACE);
    if (r != 0 && !force && errno == EEXIST)
        return ckpt__err_set(err, CKPT_EEXIST, "%s appeared while it was written; --force "
                                               "replaces it", o->path);
    if (r != 0)
        return ckpt__err_errno(err, errno, "rename %s to %s", o->tmp, o->path);
    o->tmp[0] = '\0';
    char dir[CKPT__PATH_MAX];
    const char *slash = strrchr(o->path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - o->path) + 1 : 1,
             slash ? o->path : ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return ckpt__err_errno(err, errno, "open %s", dir);
    r = fsync(dfd);
    int e = errno;
    close(dfd);
    return r != 0 ? ckpt__err_errno(err, e, "fsync %s", dir) : 0;
}

void iop_out_abandon(iop_out *o)
{
    if (o->fd >= 0)
        close(o->fd);
    o->fd = -1;
    if (o->tmp[0])
        unlink(o->tmp);
    o->tmp[0] = '\0';
}

int iop_pwrite(int fd, const void *buf, size_t n, uint64_t off, const char *path, ckpt__err *err)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(fd, (const char *)buf + done, n - done, (off_t)(off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return ckpt__err_errno(err, errno, "write %s", path);
        done += (size_t)w;
    }
    return 0;
}

int iop_push(const char ***v, int *n, const char *s)
{
    const char **p = realloc(*v, (size_t)(*n + 1) * sizeof *p);
    if (!p)
        return -1;
    p[(*n)++] = s;
    *v = p;
    return 0;
}

int iop_step(const char *cmd, const char *v, int64_t *step)
{
    char *end = NULL;
    errno = 0;
    long long s = *v >= '0' && *v <= '9' ? strtoll(v, &end, 10) : -1;
    if (s < 0 || errno || *end || s > CKPT__STEP_MAX) {
        iop_usage(cmd, "--step: '%s' is not a whole number in 0..%lld", v,
                  CKPT__STEP_MAX);
        return -1;
    }
    *step = s;
    return 0;
}
