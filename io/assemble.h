/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading saved slices back: one chunk of an entry checked against its
 * leaf (read here, or read elsewhere asynchronously), the walk over the
 * part of a saved slice that overlaps a box (the chunks it touches and the
 * pieces of each, without reading), and the copy of that part built on
 * the two.  Restore's resharding read (runtime/reshard.c, which reads
 * through the writer) and `ckpt export` (whole tensors from any number of
 * ranks, with pread) share it, so both verify exactly the same bytes the
 * same way.
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

/* The check of ckpt__chunk_read for a read done elsewhere (an asynchronous
 * one): res is what the read of chunk c into buf returned, its byte count
 * or a negative errno (-ENODATA: end of file).  Fewer bytes than the chunk
 * holds is the file cut short.  Same codes and messages. */
int ckpt__chunk_check(const ckpt__index *idx, const ckpt__entry *e, uint32_t c, int verify,
                      const uint8_t *buf, int64_t res, const char *path, ckpt__err *err);

/*
 * A walk over the part of saved entry e that lies inside a box, in
 * increasing source order, reading nothing: the chunks it touches (each
 * once, in increasing order) and the pieces that come from each.  A walk
 * is used one way, so a reader that reads ahead lists chunks with one walk
 * and copies with a second one set up the same way.
 */
typedef struct ckpt__overlap {
    ckpt__runs runs;
    uint64_t chunk_bytes;
    uint64_t so, dof, len; /* what is left of the current run */
    uint32_t chunk;        /* the last chunk listed; UINT32_MAX: none yet */
} ckpt__overlap;

/* Sets up a walk of e inside box dst (whose bytes are row-major, elements
 * of e's dtype): 1, or 0 when they do not overlap (nothing to walk). */
int ckpt__overlap_init(ckpt__overlap *o, const ckpt__index *idx, const ckpt__entry *e,
                       const ckpt__box *dst);
/* The next chunk the part touches: 1 and *c, 0 when none is left. */
int ckpt__overlap_next_chunk(ckpt__overlap *o, uint32_t *c);
/* The next piece, when it comes from chunk c (the chunk the last piece
 * came from or the next one the part touches): 1 with its offset inside
 * the chunk, its offset in the box's bytes and its length; 0 when the next
 * piece lies in a later chunk or none is left. */
int ckpt__overlap_next_piece(ckpt__overlap *o, uint32_t c, uint64_t *chunk_off,
                             uint64_t *dst_off, uint64_t *len);

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
