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

#include "base/err.h"

void ckpt__err_clear(ckpt__err *e)
{
    if (e) {
        e->code = 0;
        e->msg[0] = '\0';
    }
}

/* Room for a message before it is fitted into CKPT__ERR_MSG. */
#define LONG_MSG (3 * 4096)

static int is_sep(char c)
{
    return c == '/' || c == ' ';
}

/* Stores text in e->msg.  Too long a text (paths can be 4 KiB) loses a
 * piece of its middle, cut at a '/' or blank on both sides and marked
 * "...": its start says what failed and its end why (the errno text), so
 * both stay, and no word is cut in two. */
static void put_line(ckpt__err *e, const char *text)
{
    size_t n = strlen(text), cap = sizeof e->msg;
    if (n < cap) {
        memcpy(e->msg, text, n + 1);
        return;
    }
    size_t keep = cap - 1 - 3, head = keep / 3, tail = keep - head;
    /* The head ends with a separator, the tail starts with one. */
    while (head > 0 && !is_sep(text[head - 1]))
        head--;
    size_t from = n - tail;
    while (from < n && !is_sep(text[from]))
        from++;
    if (head == 0 || from == n) { /* no separator: cut where it fits */
        head = keep / 3;
        from = n - (keep - head);
    }
    memcpy(e->msg, text, head);
    memcpy(e->msg + head, "...", 3);
    memcpy(e->msg + head + 3, text + from, n - from + 1);
}

static void vset(ckpt__err *e, int code, const char *fmt, va_list ap)
{
    char text[LONG_MSG];
    e->code = code;
    vsnprintf(text, sizeof text, fmt, ap);
    put_line(e, text);
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

int ckpt__code_from_name(const char *name, size_t len)
{
#define CKPT_X_FIND(n, value, msg)                                              \
    if ((value) < 0 && len == sizeof("CKPT_" #n) - 1 &&                        \
        memcmp(name, "CKPT_" #n, len) == 0)                                     \
        return value;
    CKPT_ERRORS(CKPT_X_FIND)
#undef CKPT_X_FIND
    return 0;
}

int ckpt__err_errno(ckpt__err *e, int errnum, const char *fmt, ...)
{
    int code = ckpt__code_from_errno(errnum);
    if (!e)
        return code;
    char text[LONG_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text - 128, fmt, ap);
    va_end(ap);
    size_t len = strlen(text);
    snprintf(text + len, sizeof text - len, ": %s", strerror(errnum));
    e->code = code;
    put_line(e, text);
    return code;
}

int ckpt__err_prefix(ckpt__err *e, const char *fmt, ...)
{
    char text[LONG_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text - CKPT__ERR_MSG - 2, fmt, ap);
    va_end(ap);
    size_t len = strlen(text);
    snprintf(text + len, sizeof text - len, ": %s", e->msg);
    put_line(e, text);
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
