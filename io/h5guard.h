/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checksums of a rank file's HDF5 object headers, checked before libhdf5
 * reads them.  HDF5 1.10 loses memory whenever an object header fails its
 * own checksum (the header it began to decode in H5O_protect, 424 bytes,
 * or 56 for a continuation chunk), and the lost block keeps the library
 * from closing at exit ("HDF5: infinite loop closing library").  No
 * HDF5 call gets it back, so a damaged header must never reach HDF5: the
 * structure check of a rank file first verifies, with its own reads, the
 * superblock and every object header (chunk 0 and its continuation chunks)
 * that HDF5 is about to load, and reports a mismatch as damage.
 *
 * The files this guards are ckptrt's own: an HDF5 superblock at offset 0
 * (a rank file) or after the 512-byte user block (a manifest), of version 2
 * or 3 with version 2 object headers (the newest format, ckpt__h5_fapl),
 * which carry Jenkins lookup3 checksums.  Anything else is damage: the
 * older formats have no checksums, and HDF5 1.10 loses memory just the same
 * on a version 1 header it cannot decode.
 *
 * Invariant: an object header passes only if every chunk HDF5 would read
 * for it matches its checksum and lies inside the file.
 */
#ifndef CKPT_IO_H5GUARD_H
#define CKPT_IO_H5GUARD_H

#include <stdint.h>

#include <hdf5.h>

#include "base/err.h"

typedef struct ckpt__h5_guard {
    int fd;             /* the file, or -1 for an image in memory */
    const uint8_t *img; /* the image (borrowed) */
    uint64_t size;      /* of the file or image */
    uint64_t base;      /* where the superblock is: HDF5 addresses count from it */
    const char *path;
} ckpt__h5_guard;

/* Opens path (a rank file: superblock at offset 0) and checks its
 * superblock and the object headers it names (the root group, a superblock
 * extension).  CKPT_ECORRUPT when damaged, naming path. */
int ckpt__h5_guard_open(ckpt__h5_guard *g, const char *path, ckpt__err *err);
/* The same for a file image in memory (borrowed until close) whose
 * superblock follows a user block of `base` bytes (a manifest). */
int ckpt__h5_guard_image(ckpt__h5_guard *g, const uint8_t *img, size_t len, uint64_t base,
                         const char *path, ckpt__err *err);
/* Checks the object header that link `name` (from loc, a hard link) points
 * to.  `what` names it in messages.  CKPT_ECORRUPT when damaged or not a
 * hard link. */
int ckpt__h5_guard_link(ckpt__h5_guard *g, hid_t loc, const char *name, const char *what,
                        ckpt__err *err);
void ckpt__h5_guard_close(ckpt__h5_guard *g);

/* Bob Jenkins' lookup3 hashlittle(), HDF5's metadata checksum. */
uint32_t ckpt__lookup3(const void *data, size_t len, uint32_t initval);

#endif
