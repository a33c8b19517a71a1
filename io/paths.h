/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every name in a checkpoint folder, and how long a path to one may be.
 * This file alone knows how the runtime and the tools spell and recognise
 * what lies in DIR (docs/FORMAT.md, "Folder"):
 *
 *   DIR/step-NNNNNNNNNNNN/                 committed (12 decimal digits)
 *       manifest.h5, rank-RRRRR.h5, done-RRRRR.rec
 *   DIR/step-NNNNNNNNNNNN.partial-HEX32/   a save in progress or abandoned;
 *       also done-RRRRR.tmp, failed-RRRRR.rec, abandoned.rec, and a mark's
 *       temporary NAME.tmp
 *   DIR/step-NNNNNNNNNNNN.trash-HEX32/     a checkpoint being deleted
 *   LOCAL/replica-of-RRRRR/                rank R's replicas on a partner's
 *       node (docs/FORMAT.md, "Replicas"): a folder of the same catalog
 *       layout, each step-S holding manifest.h5, rank-R.h5, done-R.rec
 *
 * HEX32 is 16 bytes in lowercase hex (ckpt__uuid_hex), the same text the
 * manifest and rank files store as their "uuid" attribute.  Anything else
 * in DIR is foreign (CKPT__FOLDER_FOREIGN) and never touched.
 *
 * Path lengths: a name from this file fits CKPT__FNAME_MAX bytes, a DIR the
 * runtime accepts has at most CKPT__DIR_MAX bytes (ckpt__path_dir_check, at
 * open), so every path the runtime builds, DIR/folder/file, fits a
 * CKPT__PATH_MAX buffer (checked at compile time in paths.c).  The `ckpt` tool
 * takes any DIR: ckpt__path_join refuses a path that does not fit instead
 * of cutting it short.
 */
#ifndef CKPT_IO_PATHS_H
#define CKPT_IO_PATHS_H

#include <stdint.h>

#include "base/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Steps have 12 decimal digits in a folder name. */
#define CKPT__STEP_MAX 999999999999LL

/* Bytes of a buffer for any one name below, NUL included (the longest,
 * "step-NNNNNNNNNNNN.partial-HEX32", has 58 and the NUL). */
#define CKPT__FNAME_MAX 64
/* Bytes of a uuid's hex text, NUL included. */
#define CKPT__UUID_HEX 33
/* The longest DIR a context opens on, in bytes without the NUL. */
#define CKPT__DIR_MAX 3000
/* Bytes of a path buffer.  More than the kernel's PATH_MAX (4096): a path
 * the file system refuses reaches it and fails with ENAMETOOLONG. */
#define CKPT__PATH_MAX 4200

#define CKPT__MANIFEST_NAME "manifest.h5"
#define CKPT__ABANDONED_NAME "abandoned.rec" /* rank 0 gave the save up (why) */

/* 0 if dir is short enough for the runtime; else CKPT_EINVAL. */
int ckpt__path_dir_check(const char *dir, ckpt__err *err);
/* out[CKPT__PATH_MAX] = dir/name; CKPT_EINVAL (out holds "") when it does
 * not fit.  err may be NULL. */
int ckpt__path_join(char *out, const char *dir, const char *name, ckpt__err *err);
/* out[CKPT__PATH_MAX] = dir/step-S, or dir/step-S/file when file is not
 * NULL; as ckpt__path_join. */
int ckpt__path_step(char *out, const char *dir, int64_t step, const char *file,
                    ckpt__err *err);

/* Names, each into out[CKPT__FNAME_MAX]. */
void ckpt__step_name(int64_t step, char *out);                           /* step-S */
void ckpt__partial_name(int64_t step, const uint8_t uuid[16], char *out); /* step-S.partial-U */
void ckpt__trash_name(int64_t step, const uint8_t rnd[16], char *out);    /* step-S.trash-R */
void ckpt__rank_file_name(uint32_t rank, char *out);                      /* rank-R.h5 */
void ckpt__done_name(uint32_t rank, char *out);                           /* done-R.rec */
void ckpt__done_tmp_name(uint32_t rank, char *out);                       /* done-R.tmp */
void ckpt__failed_name(uint32_t rank, char *out);                         /* failed-R.rec */
/* A partner's copy of rank R's local files, in its node's local folder
 * (docs/FORMAT.md, "The local tier"): a folder laid out like a tier. */
void ckpt__replica_name(uint32_t rank, char *out);                        /* replica-of-R */
/* 1 when name is exactly a replica folder's (replica-of-R), with R in
 * *rank; 0 for anything else. */
int ckpt__replica_dir_parse(const char *name, uint32_t *rank);
/* What a name inside a save's folder is to the commit: a rank's
 * done-record (done-R.rec) or failure mark (failed-R.rec), exactly as the
 * functions above spell them, with R in *rank; anything else is OTHER. */
typedef enum ckpt__record_kind {
    CKPT__RECORD_OTHER = 0,
    CKPT__RECORD_DONE,
    CKPT__RECORD_FAILED,
} ckpt__record_kind;
ckpt__record_kind ckpt__record_parse(const char *name, uint32_t *rank);
/* A mark's temporary name while it is written: NAME.tmp. */
void ckpt__mark_tmp_name(const char *mark, char *out);
/* A uuid's text into out[CKPT__UUID_HEX]: 32 lowercase hex digits. */
void ckpt__uuid_hex(const uint8_t uuid[16], char *out);

/* What an entry of DIR is, by its name alone. */
typedef enum ckpt__folder_kind {
    CKPT__FOLDER_FOREIGN = 0, /* not ours: never touched */
    CKPT__FOLDER_COMMITTED,   /* step-S */
    CKPT__FOLDER_PARTIAL,     /* step-S.partial-HEX32 */
    CKPT__FOLDER_TRASH,       /* step-S.trash-HEX32 */
} ckpt__folder_kind;
/* The kind of entry `name`, and its step in *step (when not foreign). */
ckpt__folder_kind ckpt__folder_parse(const char *name, int64_t *step);
/* 1 when a name the user picks for an entry of DIR (the policy request
 * file) could be taken for a checkpoint's: it starts like a step folder. */
int ckpt__folder_reserved(const char *name);

#ifdef __cplusplus
}
#endif
#endif
