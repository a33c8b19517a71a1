/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the libFuzzer targets and the corpus generator: a
 * per-process scratch folder (under $TMPDIR or /tmp, removed at exit),
 * file reads and writes, and the seed checkpoint: one small, deterministic
 * checkpoint made through the public API, so that the generator's rank file
 * and the index the rank-file target checks it against always agree.
 */
#ifndef CKPT_FUZZ_UTIL_H
#define CKPT_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define FUZZ_SEED_STEP 7
/* How many leading bytes of a rank file fuzz_rankfile takes from its input:
 * a rank file is HDF5 metadata in its first metadata block (a few KiB,
 * sized to its entries), then tensor data; metadata allocated later (often
 * the global heap) lies after the data.  The seed file supplies the rest,
 * so mutations land in the first block's metadata. */
#define FUZZ_RANK_HEAD 8192

/* The process's scratch folder, created on the first call; NULL (after a
 * message on stderr) when it cannot be created.  Removed by atexit. */
const char *fuzz_tmpdir(void);
/* A target's start: HDF5's error printing off (bad files are the inputs)
 * and the scratch folder; aborts when the folder cannot be made. */
const char *fuzz_setup(void);
/* Reads a whole file into *data (malloc'd, owned by the caller); 0 or -1. */
int fuzz_read_file(const char *path, uint8_t **data, size_t *len);
/* Replaces path with data[0..len); 0 or -1. */
int fuzz_write_file(const char *path, const uint8_t *data, size_t len);
/* Writes data[0..len) at offset off of an existing file; 0 or -1. */
int fuzz_patch_file(const char *path, size_t off, const uint8_t *data, size_t len);
/* Saves the seed checkpoint (step FUZZ_SEED_STEP, one rank) into dir, which
 * is created if missing; 0, or -1 after a message on stderr. */
int fuzz_seed_checkpoint(const char *dir);

#endif
