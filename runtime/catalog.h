/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint folder's contents (catalog.c): committed step folders,
 * leftovers of crashed saves and deletions, removal without following
 * symlinks.
 */
#ifndef CKPT_RUNTIME_CATALOG_H
#define CKPT_RUNTIME_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/log.h"

/* Committed step folders of dir, newest first (*steps malloc'd). */
int ckpt__catalog_scan(const char *dir, int64_t **steps, size_t *n, ckpt__err *err);
/* Removes leftovers of crashed saves and deletions (rank 0 at open). */
int ckpt__catalog_cleanup(const char *dir, ckpt__log *log, ckpt__err *err);
/* Removes dir/name recursively without following symlinks. */
int ckpt__remove_tree(const char *dir, const char *name, ckpt__err *err);
/* Deletes a committed checkpoint: rename to a trash name, then remove. */
int ckpt__catalog_delete(const char *dir, int64_t step, ckpt__err *err);
/* fsync of a folder. */
int ckpt__fsync_dir(const char *path, ckpt__err *err);

#endif
