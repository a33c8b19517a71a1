/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tensor names and metadata keys: what is accepted, and how a name becomes
 * one HDF5 link name.  Names never reach the file system (files are named
 * rank-NNNNN.h5), so no name can make the runtime write outside DIR.
 *
 * Accepted: 1..CKPT_MAX_NAME bytes of well-formed UTF-8 without control
 * characters (U+0000..U+001F, U+007F).  '/', '.', '%', spaces and non-ASCII
 * letters are allowed and escaped: '%' -> "%25", '/' -> "%2F", and a
 * leading '.' -> "%2E", so every name maps to a distinct, legal link name.
 */
#ifndef CKPT_IO_NAMES_H
#define CKPT_IO_NAMES_H

#include <stddef.h>

#include "base/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Worst case of ckpt__name_escape's output, NUL included. */
#define CKPT__ESCAPED_MAX (3 * CKPT_MAX_NAME + 1)

/* 0 if acceptable; else CKPT_EINVAL with a message naming `what`. */
int ckpt__name_check(const char *name, const char *what, ckpt__err *err);
/* Same for a (data, len) string that need not be NUL-terminated. */
int ckpt__name_check_n(const char *name, size_t len, const char *what, ckpt__err *err);
/* Escapes a checked name into out[CKPT__ESCAPED_MAX]. */
void ckpt__name_escape(const char *name, char *out);
/* Copies up to cap-1 bytes of name, replacing bytes that would garble a
 * log line (controls, invalid UTF-8) with '?', for messages. */
const char *ckpt__name_printable(const char *name, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
