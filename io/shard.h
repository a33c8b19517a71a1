/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Slices of sharded tensors: boxes in a tensor's global index space, the
 * check that the slices saved under one name tile the tensor exactly, and
 * the copy runs between two slices that overlap (resharding restore).
 *
 * A box is start[d] .. start[d] + count[d] - 1 in each of ndim dimensions,
 * its elements stored row-major.  ndim 0 is one element.
 */
#ifndef CKPT_IO_SHARD_H
#define CKPT_IO_SHARD_H

#include <stdint.h>

#include "io/index.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ckpt__box {
    int ndim;
    int64_t start[CKPT_MAX_NDIM];
    int64_t count[CKPT_MAX_NDIM];
} ckpt__box;

/* The box of an index entry. */
void ckpt__box_of_entry(const ckpt__entry *e, ckpt__box *out);
/* Elements in the box. */
uint64_t ckpt__box_volume(const ckpt__box *b);
/* 1 and *out = a ∩ b when they share an element (same ndim), else 0. */
int ckpt__box_intersect(const ckpt__box *a, const ckpt__box *b, ckpt__box *out);

/*
 * For every tensor name of idx: all its entries agree on dtype, ndim and
 * global shape, lie inside it, do not overlap, and together cover it.
 * Returns `code` (CKPT_EMISMATCH when sealing a save, CKPT_ECORRUPT when
 * reading) naming the tensor and ranks on the first violation, else 0.
 */
int ckpt__layout_check(const ckpt__index *idx, int code, const char *what, ckpt__err *err);
/* The same without "cover it": the part of a layout that one node's local
 * checkpoint holds (its ranks' slices, docs/FORMAT.md, "The local tier"). */
int ckpt__layout_check_part(const ckpt__index *idx, int code, const char *what, ckpt__err *err);

/*
 * The contiguous runs that copy box `part` (inside both src and dst) from
 * src's row-major bytes to dst's, in increasing source order; trailing
 * dimensions that both boxes hold whole are merged into one run.
 */
typedef struct ckpt__runs {
    int outer;                     /* dimensions iterated one by one */
    int64_t idx[CKPT_MAX_NDIM];    /* odometer over part's outer dims */
    int64_t cnt[CKPT_MAX_NDIM];
    uint64_t sstride[CKPT_MAX_NDIM], dstride[CKPT_MAX_NDIM]; /* bytes */
    uint64_t sbase, dbase;         /* bytes of part's first element */
    uint64_t run;                  /* bytes per run */
    int done;
} ckpt__runs;

void ckpt__runs_init(ckpt__runs *r, const ckpt__box *part, const ckpt__box *src,
                     const ckpt__box *dst, uint64_t elem);
/* The next run: 1 with offsets and length in bytes, 0 when none is left. */
int ckpt__runs_next(ckpt__runs *r, uint64_t *src_off, uint64_t *dst_off, uint64_t *len);

#ifdef __cplusplus
}
#endif
#endif
