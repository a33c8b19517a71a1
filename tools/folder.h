/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint folder as the `ckpt` tool sees it: the quick health check that `list` reports, the full verification that
 * `verify`, `list --verify` and `gc` run (verify_one), and the partial and
 * trash folders that saves and deletions leave behind.
 * Committed folders are found by the runtime's own catalog scan
 * (ckpt__catalog_scan); this file only adds what the runtime does not
 * expose; names and paths come from io/paths.h.
 *
 * Invariants: nothing here writes to the folder; a damaged checkpoint is
 * reported as CKPT_ECORRUPT and anything else that stops a check (a
 * permission, an I/O error) keeps its own code, so callers can tell
 * "known bad" from "unknown".
 */
#ifndef CKPT_TOOLS_FOLDER_H
#define CKPT_TOOLS_FOLDER_H

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/manifest.h"
#include "io/paths.h"
#include "runtime/internal.h"
#include "runtime/verify.h"

/* A leftover folder: "step-N.partial-HEX32" or "step-N.trash-HEX32". */
typedef struct leftover {
    char name[CKPT__FNAME_MAX];
    int64_t step;
    int trash;
} leftover;

/* The outcome of verifying one step fully (verify_one). */
typedef struct vresult {
    int64_t step;
    int rc;
    ckpt__err err;
    double seconds;
    ckpt__verify_report rep;
} vresult;


int quick_check(const char *dir, int64_t step, ckpt__index *idx, int *hashed, ckpt__err *err);
void verify_one(const char *dir, int64_t step, ckpt__log *log, vresult *v);
void totals(const ckpt__index *idx, uint64_t *bytes, uint32_t *ntensors);
int parse_leftover(const char *name, leftover *out);
int scan_leftovers(const char *dir, leftover **out, size_t *n, ckpt__err *err);

#endif
