/* SPDX-License-Identifier: Apache-2.0 */
/*
 * manifest.h5: the file whose presence inside a committed folder makes a
 * checkpoint.  It is HDF5 with a 512-byte user block:
 *
 *   user block  "CKPTMAN1", u32 version (1), u32 flags (1: header hashed),
 *               u64 file length, u64 XXH3-64 of bytes [512, length),
 *               u64 header hash (XXH3-64 of the 512 bytes, this field as
 *               zero), zeros to 512
 *   (a 1.0 manifest has flags 0 and zeros from byte 32)
 *   /           ckpt_format_version, step, world_size, uuid, created_unix,
 *               chunk_bytes, root (checkpoint Merkle root)
 *   /index      u8[]: the binary index (index.h) of every rank
 *   /tensors    compound table of the entries, for people and h5py
 *
 * The reader checks the user block (header hash, reserved bytes zero) and
 * the checksum over the whole file before HDF5 parses a byte of it, then
 * decodes /index with the hardened decoder, so a damaged manifest is
 * reported as such (CKPT_ECORRUPT) and never reaches HDF5's parser.
 */
#ifndef CKPT_IO_MANIFEST_H
#define CKPT_IO_MANIFEST_H

#include "io/index.h"
#include "io/paths.h" /* CKPT__MANIFEST_NAME */

#ifdef __cplusplus
extern "C" {
#endif

#define CKPT__MANIFEST_MAX (1ull << 30) /* bytes; a larger file is refused */

/* Creates path (must not exist), writes it and makes it durable (fsync). */
int ckpt__manifest_write(const char *path, const ckpt__index *idx, ckpt__err *err);
/* Reads and fully validates (user block, index, hash tree, attributes).
 * CKPT_ECORRUPT for any damage, a missing file or one that is not a regular
 * file (a symlink); CKPT_EFORMAT only for an intact newer format. */
int ckpt__manifest_read(const char *path, ckpt__index *out, ckpt__err *err);
/* The same for a node's local checkpoint (docs/FORMAT.md, "The local
 * tier"): its index may list fewer rank files than world_size. */
int ckpt__manifest_read_part(const char *path, ckpt__index *out, ckpt__err *err);

#ifdef __cplusplus
}
#endif
#endif
