/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command-line rules the examples share: ckpt-demo (examples/demo.c) and
 * ckpt-cuda-train (examples/cuda_train.cu) take the same options with the
 * same meaning.
 */
#ifndef CKPT_EXAMPLES_CLI_H
#define CKPT_EXAMPLES_CLI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A decimal integer in lo..hi, the whole string: 0, else -1. */
int cli_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);

/* --kill-at: a step in 1..steps-1, or "auto": past the middle, half an
 * interval after a checkpoint and never on one, so that the steps since the
 * last commit are really lost and re-run.  0, else -1. */
int cli_kill_at(const char *arg, int64_t steps, int64_t every, int64_t *out);

/* Reads one record of n bytes from a child's pipe, waiting at most
 * timeout_ms for each piece: 1 read, 0 end of file (a partial record is
 * dropped), -1 failed or timed out (errno says which: ETIMEDOUT). */
int cli_read_record(int fd, void *buf, size_t n, int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
