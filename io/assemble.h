/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading saved slices back: one chunk of an entry read and checked
 * against its leaf, and the part of a saved slice that overlaps a box
 * copied out piece by piece, each chunk it touches read once.  Restore
 * (resharding) and `ckpt export` (whole tensors from any number of ranks)
 * share it, so both verify exactly the same bytes the same way.
 *
 * Invariant: no byte reaches a caller's piece callback before the chunk it
 * came from was hashed against its leaf (unless the caller turned
 * verification off).
 */
#ifndef CKPT_IO_ASSEMBLE_H
#define CKPT_IO_ASSEMBLE_H

#include <stddef.h>
#include <stdint.h>

#include "io/index.h"
#include "io/shard.h"

#ifdef __cplusplus
extern "C" {
#endif

/* pread of exactly n bytes at off: 0, -errno, or -ENODATA at end of file. */
int ckpt__pread_full(int fd, void *buf, size_t n, uint64_t off);

/* Bytes in chunk c of e (chunk_bytes, the last one shorter). */
uint64_t ckpt__chunk_len(const ckpt__index *idx, const ckpt__entry *e, uint32_t c);

/* Reads chunk c of e from fd (the rank file `path` names, for messages)
 * into buf (at least chunk_bytes), *n = its length, and with verify checks
 * it against its leaf: CKPT_ECORRUPT naming the entry and chunk when it
 * differs or the file is cut short, the errno's code otherwise. */
int ckpt__chunk_read(int fd, const ckpt__index *idx, const ckpt__entry *e, uint32_t c,
                     int verify, uint8_t *buf, uint64_t *n, const char *path, ckpt__err *err);

/* What ckpt__overlap_copy calls; every function returns 0 or an error. */
typedef struct ckpt__overlap_fns {
    /* Reads (and verifies) chunk c of the entry into buf, *n its length. */
    int (*load)(void *user, uint32_t c, uint8_t *buf, uint64_t *n, ckpt__err *err);
    /* buf is about to be refilled: pieces handed out so far must be used
     * up (NULL when the piece callback copies at once). */
    int (*flush)(void *user, ckpt__err *err);
    /* len bytes at src belong at byte dst_off of the destination box. */
    int (*piece)(void *user, uint64_t dst_off, const uint8_t *src, uint64_t len,
                 ckpt__err *err);
} ckpt__overlap_fns;

/* Hands out the part of saved entry e that lies inside box dst (whose
 * bytes are row-major, elements of e's dtype), in increasing source order,
 * loading each chunk it touches once into buf (chunk_bytes).  Nothing when
 * they do not overlap. */
int ckpt__overlap_copy(const ckpt__index *idx, const ckpt__entry *e, const ckpt__box *dst,
                       uint8_t *buf, const ckpt__overlap_fns *fns, void *user, ckpt__err *err);

#ifdef __cplusplus
}
#endif
#endif
