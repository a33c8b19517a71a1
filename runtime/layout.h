/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The layout cache of a context: the image of the last rank file whose
 * HDF5 layout this rank built (io/rankfile.h, format 1.2), kept with the
 * layout it describes, so that the next save of the same layout writes the
 * file from the image instead of building it through HDF5 again, and takes
 * its metadata hash from the cache instead of reading the file back.
 *
 * The key is the layout itself, compared field by field (no hash that
 * could collide): for every entry of this rank in index order its kind,
 * name, dtype, ndim, shape, start, count and nbytes, and the index's rank,
 * world size, chunk size and format minor.  Anything else about a save
 * (its step, uuid, data, hashes) is not part of the file's metadata.
 * Registering or unregistering a tensor, another shape or slice, another
 * metadata blob size or a different world: the key differs and the next
 * save builds through HDF5, which replaces the cache.
 *
 * Why a wrong cache cannot pass for a good checkpoint: the image and its
 * metadata hash are read back from the built file on disk after its fsync,
 * so an image that differs from what the file should hold makes a file
 * whose metadata hash or structure differs from the index; verify reports
 * the file damaged, restore (which reads by the manifest's offsets) still
 * reads only verified chunks.
 *
 * Owned by the coordinator thread (saves run one at a time); freed by
 * ckpt_close.  Not thread-safe.
 */
#ifndef CKPT_RUNTIME_LAYOUT_H
#define CKPT_RUNTIME_LAYOUT_H

#include <stdint.h>

#include "base/err.h"
#include "io/index.h"
#include "io/rankfile.h"

typedef struct ckpt__layout ckpt__layout;

/* The cached image when idx's layout for `rank` equals the cached one
 * (then every entry's file_off is set from the cache), else NULL (c may be
 * NULL). */
const ckpt__rankfile_image *ckpt__layout_find(ckpt__layout *c, ckpt__index *idx,
                                              uint32_t rank);
/* Replaces *c by idx's layout for `rank` (file_off set) and img, whose
 * contents it takes (img is left empty).  On failure (out of memory) *c is
 * emptied and img freed: the next save builds again, nothing else fails. */
int ckpt__layout_keep(ckpt__layout **c, const ckpt__index *idx, uint32_t rank,
                      ckpt__rankfile_image *img, ckpt__err *err);
/* For the test hook ckpt__layout_damage (fault_hooks.h). */
int ckpt__layout_test_damage(ckpt__layout *c, int what, uint64_t k);
/* Forgets the cache (NULL is a no-op); *c becomes NULL. */
void ckpt__layout_drop(ckpt__layout **c);

#endif
