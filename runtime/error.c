/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ckpt__err helpers of err.h: formatting a CKPT_E* code and a message
 * into a caller's buffer, and the errno mapping.  Pure functions with no
 * state and no dependency on the rest of the runtime, so that every backend
 * library (libckpt_cuda, libckpt_mpi, libckpt_nccl) compiles its own hidden
 * copy of this file and needs no symbol of libckpt.  Keep it that way:
 * nothing here may call into the core, log, or touch a global.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/err.h"

void ckpt__err_clear(ckpt__err *e)
{
    if (e) {
        e->code = 0;
        e->msg[0] = '\0';
    }
}

static void vset(ckpt__err *e, int code, const char *fmt, va_list ap)
{
    e->code = code;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
}

int ckpt__err_set(ckpt__err *e, int code, const char *fmt, ...)
{
    if (!e)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vset(e, code, fmt, ap);
    va_end(ap);
    return code;
}

int ckpt__code_from_errno(int errnum)
{
    switch (errnum) {
    case 0:
        return CKPT_OK;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return CKPT_ENOSPC;
    case ENOMEM:
        return CKPT_ENOMEM;
    case EACCES:
    case EPERM:
    case EROFS:
        return CKPT_EPERM;
    case ENOENT:
        return CKPT_ENOTFOUND;
    case EINVAL:
    case ENOTDIR:
    case ELOOP:
    case ENAMETOOLONG:
        return CKPT_EINVAL;
    case ETIMEDOUT:
        return CKPT_ETIMEDOUT;
    case EEXIST:
        return CKPT_EEXIST;
    default:
        return CKPT_EIO;
    }
}

int ckpt__err_errno(ckpt__err *e, int errnum, const char *fmt, ...)
{
    int code = ckpt__code_from_errno(errnum);
    if (!e)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vset(e, code, fmt, ap);
    va_end(ap);
    size_t len = strlen(e->msg);
    if (len < sizeof e->msg)
        snprintf(e->msg + len, sizeof e->msg - len, ": %s", strerror(errnum));
    return code;
}

int ckpt__err_prefix(ckpt__err *e, const char *fmt, ...)
{
    char head[CKPT__ERR_MSG / 2];
    char old[CKPT__ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    int n = snprintf(e->msg, sizeof e->msg, "%s: ", head);
    if (n > 0 && (size_t)n < sizeof e->msg)
        snprintf(e->msg + n, sizeof e->msg - (size_t)n, "%s", old);
    return e->code;
}

int ckpt__err_append(ckpt__err *e, int code, const char *fmt, ...)
{
    if (!e)
        return code;
    if (e->code == 0) {
        e->code = code;
        e->msg[0] = '\0';
    }
    size_t len = strlen(e->msg);
    if (len && len + 2 < sizeof e->msg) {
        memcpy(e->msg + len, "; ", 3);
        len += 2;
    }
    if (len < sizeof e->msg) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg + len, sizeof e->msg - len, fmt, ap);
        va_end(ap);
    }
    return e->code;
}

void ckpt__err_keep(ckpt__err *dst, const ckpt__err *src)
{
    if (dst->code == 0 && src->code != 0)
        *dst = *src;
}
