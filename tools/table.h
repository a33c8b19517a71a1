/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Text output of the `ckpt` tool: aligned tables, JSON strings, sizes in
 * binary units, local times and shapes.  Nothing here knows about
 * checkpoints. 
 *
 * Invariants: names are validated UTF-8 without control characters (the
 * runtime refuses others), so a table prints them as they are and counts
 * one column per code point; json_str() always produces valid JSON, even
 * for bytes that are not UTF-8 (a user's path), which become U+FFFD.
 */
#ifndef CKPT_TOOLS_TABLE_H
#define CKPT_TOOLS_TABLE_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/err.h"

#define TABLE_MAX_COLS 16

/* A text table: a header row, then cells added left to right, row by row;
 * printed with each column padded to its widest cell and two spaces
 * between columns.  The table owns its cells. */
typedef struct table {
    int ncols; /* 1..TABLE_MAX_COLS */
    const char *const *head;
    const char *align; /* per column: 'l' or 'r' */
    char **cells;
    size_t n, cap;
} table;

size_t columns(const char *s);
void json_str(FILE *f, const char *s);
void human(uint64_t n, char out[32]);
void local_time(int64_t unix_s, char out[32]);
void shape_text(int ndim, const int64_t *shape, char *out, size_t cap);
int cell(table *t, const char *fmt, ...) CKPT__PRINTF(2, 3);
void table_free(table *t);
void table_print(FILE *f, const table *t);

#endif
