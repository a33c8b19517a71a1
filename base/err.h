/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error buffers: a CKPT_E* code plus a message that names what failed and
 * where.  This leaf header is part of every backend interface (device.h,
 * comm.h, io/writer.h), so backends report errors the same way the core
 * does without including anything else of the core.
 *
 * Invariants: a ckpt__err with code 0 has an empty message; helpers return
 * the code they stored so callers can `return ckpt__err_set(...)`; a
 * message is one line of at most CKPT__ERR_MSG - 1 bytes: a longer one (a
 * 4 KiB path) loses a piece of its middle, cut at a '/' or blank and
 * marked "...", so that what failed (its start) and why (its end, the
 * errno text) both stay.  The helpers (error.c) are pure: each backend
 * library compiles its own copy.
 */
#ifndef CKPT_BASE_ERR_H
#define CKPT_BASE_ERR_H

#include <stddef.h>

#include "ckpt/ckpt.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CKPT__ERR_MSG 512

typedef struct ckpt__err {
    int code;
    char msg[CKPT__ERR_MSG];
} ckpt__err;

#if defined(__GNUC__)
#define CKPT__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CKPT__PRINTF(f, a)
#endif

/* Clears *e. */
void ckpt__err_clear(ckpt__err *e);
/* Stores code and message (overwriting); returns code.  e may be NULL. */
int ckpt__err_set(ckpt__err *e, int code, const char *fmt, ...) CKPT__PRINTF(3, 4);
/* As ckpt__err_set, with ": strerror(errnum)" appended and the code mapped
 * from errnum by ckpt__code_from_errno. */
int ckpt__err_errno(ckpt__err *e, int errnum, const char *fmt, ...) CKPT__PRINTF(3, 4);
/* Prepends "prefix: " to an existing message; returns e->code. */
int ckpt__err_prefix(ckpt__err *e, const char *fmt, ...) CKPT__PRINTF(2, 3);
/* Adds "; message" to an error (or sets it when e is clear); the first
 * code stays.  Returns e->code. */
int ckpt__err_append(ckpt__err *e, int code, const char *fmt, ...) CKPT__PRINTF(3, 4);
/* Copies src into dst unless dst already holds an error (first wins). */
void ckpt__err_keep(ckpt__err *dst, const ckpt__err *src);
/* Maps an errno value to a CKPT_E* code: ENOSPC, EDQUOT, EFBIG ->
 * CKPT_ENOSPC; ENOMEM -> CKPT_ENOMEM; EACCES, EPERM, EROFS -> CKPT_EPERM;
 * ENOENT -> CKPT_ENOTFOUND; EINVAL, ENOTDIR, ELOOP, ENAMETOOLONG ->
 * CKPT_EINVAL; ETIMEDOUT -> CKPT_ETIMEDOUT; EEXIST -> CKPT_EEXIST; any
 * other -> CKPT_EIO. */
int ckpt__code_from_errno(int errnum);
/* The negative CKPT_E* code whose ckpt_err_name is name[0..len), else 0. */
int ckpt__code_from_name(const char *name, size_t len);

#ifdef __cplusplus
}
#endif
#endif
