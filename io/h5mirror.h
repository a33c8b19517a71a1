/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HDF5 files whose writes land in memory, copied to the disk by the
 * runtime.  In HDF5 1.10 one failed write (a full disk) poisons a file:
 * every later flush of it fails ("slist already enabled?"), so does its
 * close, and a file whose close failed crashes the process when the library
 * cleans up at exit; even a failed H5Fcreate loses memory and makes the
 * library print "infinite loop closing library" at exit.  A mirrored file
 * lets HDF5 meet the disk only for the superblock H5Fcreate writes, into a
 * page taken beforehand; the descriptor HDF5 writes through is then
 * replaced (dup2 onto its number) by an anonymous memory file holding the
 * same bytes, and ckpt__h5_mirror_sync copies what HDF5 wrote there into
 * the file with pwrite(2), where a full disk is an errno and an ordinary
 * error.
 *
 * Invariants: between create and end HDF5 reads and writes only the memory
 * file, which holds every byte HDF5 wrote; sync writes those bytes to the
 * file except inside the caller's `skip` ranges (the tensor data its writer
 * puts there), so it never overwrites them, and leaves the file as long as
 * HDF5 made it.
 */
#ifndef CKPT_IO_H5MIRROR_H
#define CKPT_IO_H5MIRROR_H

#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

#include "base/err.h"

typedef struct ckpt__h5_mirror {
    int mem;  /* the memory file (ours); -1: not mirrored */
    int file; /* the file on disk (our own descriptor of it) */
} ckpt__h5_mirror;

typedef struct ckpt__range {
    uint64_t off, len;
} ckpt__range;

/*
 * Creates the HDF5 file for path as H5Fcreate(path, ..., fcpl, fapl) would
 * with the sec2 driver, mirrored: *out gets the file.  path is created here
 * exclusively (never through a link) and its first page taken before
 * H5Fcreate writes the superblock there; after that HDF5 writes only to
 * memory (without memfd, to path itself).  0, or the code with *out
 * invalid.
 */
int ckpt__h5_mirror_create(ckpt__h5_mirror *m, const char *path, hid_t fcpl, hid_t fapl,
                           hid_t *out, ckpt__err *err);
/* Copies what HDF5 wrote, except skip[0..nskip) (sorted by off, disjoint),
 * into the file and gives it HDF5's length.  Call after H5Fflush or
 * H5Fclose of f.  Errors name path and map errno (ENOSPC -> CKPT_ENOSPC). */
int ckpt__h5_mirror_sync(const ckpt__h5_mirror *m, const ckpt__range *skip, size_t nskip,
                         const char *path, ckpt__err *err);
/* Releases the mirror's descriptors (after H5Fclose of f). */
void ckpt__h5_mirror_end(ckpt__h5_mirror *m);

#endif
