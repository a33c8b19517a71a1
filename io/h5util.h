/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers around the HDF5 library: one process-wide lock (libhdf5 keeps
 * global state and may be built without thread safety), silencing of its
 * error printing while the runtime holds the lock, the HDF5 error stack
 * turned into a ckpt__err message, the dtype -> HDF5 type map, and the
 * file-access settings every ckpt file uses.
 *
 * Invariant: every HDF5 call of the runtime is made between
 * ckpt__h5_enter() and ckpt__h5_leave() on the same thread.
 */
#ifndef CKPT_IO_H5UTIL_H
#define CKPT_IO_H5UTIL_H

#include <hdf5.h>

#include "base/err.h"

void ckpt__h5_enter(void);
void ckpt__h5_leave(void);
/* Turns HDF5's error printing off for the calling thread for good, outside
 * enter/leave too: for the project's programs (the CLI, the fuzz targets),
 * whose messages are the runtime's, so that HDF5 prints nothing even in its
 * clean-up at exit, which runs on this thread.  The library itself never
 * calls it: a program's own HDF5 settings are its own. */
void ckpt__h5_quiet(void);
/*
 * Sets err from the calling thread's HDF5 error stack (then clears it) and
 * returns its code: one line, "<fmt...>: <failing HDF5 call>: <its
 * innermost message>: <strerror of the errno HDF5 recorded>".  The code is
 * mapped from that errno (ENOSPC, EDQUOT -> CKPT_ENOSPC, EIO -> CKPT_EIO,
 * others by ckpt__code_from_errno); without one it is `code`.
 */
int ckpt__h5_fail(ckpt__err *err, int code, const char *fmt, ...) CKPT__PRINTF(3, 4);
/* The line ckpt__h5_fail makes, into out[cap]: no control characters from
 * HDF5, nothing cut inside a word; when it must be shortened, `what` goes
 * first, then the end of head is replaced by "...".  For the unit tests. */
void ckpt__h5_format(char *out, size_t cap, const char *head, const char *call,
                     const char *what, int errnum);
/* A new HDF5 type for dtype (close with H5Tclose), or H5I_INVALID_HID. */
hid_t ckpt__h5_type(ckpt_dtype dtype);
/* File access list: newest format, no file locking, and for rank files
 * (aligned = 1) 4 KiB-aligned big datasets.  The rank file's metadata
 * block size is set by its creator (ckpt__rankfile_meta_block). */
hid_t ckpt__h5_fapl(int aligned);

/* Dataset access list for reading files we did not just write: following an
 * external link fails instead of opening the file it names, so a hostile
 * manifest or rank file cannot make a reader open paths outside DIR (or
 * block on a FIFO there).  H5I_INVALID_HID on failure. */
hid_t ckpt__h5_dapl(void);
/* 1 when ds keeps its raw data in its own file: not virtual (mapped from
 * other files) and without external storage files; else 0. */
int ckpt__h5_data_is_local(hid_t ds);

#define CKPT__H5_ALIGN_THRESHOLD 65536 /* datasets this big start 4 KiB-aligned */

#endif
