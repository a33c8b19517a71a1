/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rank files (rank-NNNNN.h5): plain HDF5 whose bulk bytes bypass the HDF5
 * library.  The layout (one contiguous dataset per entry, allocated early,
 * never filled, big ones 4 KiB-aligned) is created through HDF5; the data
 * is then written by the writer backend at each dataset's file offset;
 * finally the hash attributes are added and HDF5 closes the file.
 *
 *   /                    ckpt_format_version, step, rank, world_size, uuid,
 *                        chunk_bytes, root
 *   /tensors/<escaped>   one dataset per tensor: name, ckpt_dtype, shape,
 *                        [start], chunk_hashes, hash
 *   /meta/<escaped>      one u8 dataset per metadata blob, same attributes
 *
 * Invariant: between create and finish nothing but the writer touches the
 * dataset ranges, and HDF5 writes nothing inside them (fill time NEVER).
 */
#ifndef CKPT_IO_RANKFILE_H
#define CKPT_IO_RANKFILE_H

#include "io/index.h"

typedef struct ckpt__rankfile ckpt__rankfile;

/*
 * Creates `path` (which must not exist) with a dataset per entry of `rank`
 * in idx, writes metadata entries' bytes (meta_data[i] for entry i) through
 * HDF5, and sets every entry's file_off.  *data_end gets the end of the
 * last data byte (for preallocation).  The file stays open.
 */
int ckpt__rankfile_create(const char *path, ckpt__index *idx, uint32_t rank,
                          const void *const *meta_data, uint64_t *data_end,
                          ckpt__rankfile **out, ckpt__err *err);
/* Writes chunk hashes, node hashes and root attributes, then closes. */
int ckpt__rankfile_finish(ckpt__rankfile *rf, const ckpt__index *idx, uint32_t rank,
                          ckpt__err *err);
/* Closes without finishing (after a failed save). NULL is a no-op. */
void ckpt__rankfile_abort(ckpt__rankfile *rf);
/*
 * Checks the HDF5 structure of a finished rank file against idx: every
 * entry's dataset exists with the right type, shape, offset and hash
 * attributes.  Data bytes are not read here.
 */
int ckpt__rankfile_check(const char *path, const ckpt__index *idx, uint32_t rank,
                         ckpt__err *err);

#endif
