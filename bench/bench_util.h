/* SPDX-License-Identifier: Apache-2.0 */
#ifndef CKPT_BENCH_BENCH_UTIL_H
#define CKPT_BENCH_BENCH_UTIL_H

/*
 * ckpt-bench helpers shared by every subcommand: time, messages, parsing of
 * sizes and options, JSON strings, and median/min/max.
 *
 * JSON strings come from tools/table.c, shared with the `ckpt` tool.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckpt/ckpt.h"
#include "base/err.h"
#include "tools/table.h" /* json_str */

#define KIB ((uint64_t)1 << 10)
#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)
extern const char *prog;
double now_s(void);
double thread_cpu_s(void);
void errorf(const char *fmt, ...) CKPT__PRINTF(1, 2);
int api_fail(const char *call, int rc, const ckpt_ctx *ctx);
int parse_size(const char *s, uint64_t *out);
int parse_int(const char *s, long lo, long hi, long *out);
int parse_u64(const char *s, uint64_t *out);
const char *fmt_bytes(uint64_t n, char *buf, size_t cap);
int opt_value(int argc, char **argv, int *i, const char *name, const char **val);
int usage_error(const char *cmd, const char *fmt, ...) CKPT__PRINTF(2, 3);

/* The options train and d2h share: --json, --dir D, --staging SIZE (>= 4M)
 * and --writer uring|pwrite|auto.  Returns 1 when argv[*i] was one of them
 * (stored, *i past its value), 0 when not, 2 after a usage error for cmd. */
typedef struct common_opts {
    const char *dir;
    int json;
    uint64_t staging_bytes;
    ckpt_io io;
} common_opts;
int common_opt(int argc, char **argv, int *i, const char *cmd, common_opts *c);

typedef struct stat3 {
    double med, min, max;
} stat3;
stat3 stat3_of(double *v, int n);

#endif
