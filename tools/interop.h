/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `ckpt export` and `ckpt import`: a checkpoint to and from the files other
 * tools read (safetensors, numpy's npz).  tools/ckpt.c dispatches to these
 * before its own argument parsing; they follow its conventions: exit 0 on
 * success, 1 when a checkpoint proves corrupt, 2 for usage and every other
 * error, messages "ckpt: ..." on stderr and "Try 'ckpt CMD --help'." after
 * a usage error.
 *
 * Shared here: the safetensors dtype names, the option scanner both
 * commands use, and writing a file under a temporary name in its folder
 * that becomes the file only when it is complete (no partial FILE is ever
 * left behind).
 */
#ifndef CKPT_TOOLS_INTEROP_H
#define CKPT_TOOLS_INTEROP_H

#include <stdarg.h>
#include <stdint.h>

#include "ckpt/ckpt.h"
#include "io/paths.h"
#include "base/err.h"

enum { IOP_EXIT_OK = 0, IOP_EXIT_CORRUPT = 1, IOP_EXIT_ERROR = 2 };

int export_main(int argc, char **argv);
int import_main(int argc, char **argv);

/* The safetensors name of a dtype ("BF16", "F8_E4M3"; BYTES is "U8"), and
 * back (0 for a name the runtime has no dtype for). */
const char *st_dtype_name(ckpt_dtype dt);
ckpt_dtype st_dtype_parse(const char *s, size_t len);

/* "ckpt: <message>" and the hint to the command's help, on stderr. */
void iop_usage(const char *cmd, const char *fmt, ...) CKPT__PRINTF(2, 3);
/* The same from a va_list; cmd NULL leaves out the hint. */
void iop_vusage(const char *cmd, const char *fmt, va_list ap) CKPT__PRINTF(2, 0);

/* One option of a command at argv[*i] (advancing *i past its value): 1
 * taken, 0 not one of the command's, -1 after a usage message. */
typedef int (*iop_option_fn)(void *user, const char *cmd, int argc, char **argv, int *i);
/* Scans a command's arguments: --help or -h (returns 1), one DIR (*dir),
 * every option through fn; an unknown option or a second DIR is a usage
 * error (-1 after the message).  0 when all were taken. */
int iop_parse(const char *cmd, int argc, char **argv, const char **dir, iop_option_fn fn,
              void *user);

/* Option scanning: at argv[*i], option `name` (exact, or "name=value");
 * 1 with *val set (taking the next argument when needed), 0 when argv[*i]
 * is another option, -1 after a usage message (missing value). */
int iop_opt(const char *cmd, int argc, char **argv, int *i, const char *name, const char **val);

/* Appends s to the array *v of *n strings; -1 when out of memory. */
int iop_push(const char ***v, int *n, const char *s);
/* --step's value: a decimal step in 0..999999999999; -1 after a message. */
int iop_step(const char *cmd, const char *v, int64_t *step);

/* A file written under a temporary name in the folder of its final path. */
typedef struct iop_out {
    char path[CKPT__PATH_MAX]; /* the final name */
    char tmp[CKPT__PATH_MAX];  /* the temporary name while open */
    int fd;
} iop_out;

/* Creates the temporary file (mode 0666 less the umask). */
int iop_out_open(iop_out *o, const char *path, ckpt__err *err);
/* fsync, rename onto the final name (replacing it only with force), fsync
 * of the folder. */
int iop_out_commit(iop_out *o, int force, ckpt__err *err);
/* Closes and removes the temporary file (after a failure; no-op after
 * commit). */
void iop_out_abandon(iop_out *o);
/* pwrite of all n bytes at off. */
int iop_pwrite(int fd, const void *buf, size_t n, uint64_t off, const char *path, ckpt__err *err);

#endif
