/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The staging pool: one mmap(MAP_ANONYMOUS) region allocated and faulted in
 * at open (its size is a budget the caller chose: resident from the start,
 * no page faults during a snapshot), cut into slabs of chunk_bytes, so the
 * device backend can pin it and io_uring can register it.  Slabs are handed
 * out LIFO, so a small state keeps reusing the same, cache-warm slabs.
 *
 * Invariant: only the pipeline coordinator (one thread at a time) acquires
 * and releases slabs; a slab is owned by at most one batch.
 */
#ifndef CKPT_RUNTIME_STAGING_H
#define CKPT_RUNTIME_STAGING_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/err.h"

typedef struct ckpt__staging {
    uint8_t *base;
    size_t bytes;
    size_t slab_bytes;
    uint32_t nslabs;
    uint32_t nfree;
    uint32_t *free_stack;
} ckpt__staging;

int ckpt__staging_init(ckpt__staging *s, uint64_t bytes, uint64_t slab_bytes, ckpt__err *err);
void ckpt__staging_destroy(ckpt__staging *s);
/* A free slab index, or -1 when all are in use. */
int32_t ckpt__staging_get(ckpt__staging *s);
void ckpt__staging_put(ckpt__staging *s, int32_t slab);
static inline uint8_t *ckpt__slab(const ckpt__staging *s, int32_t slab)
{
    return s->base + (size_t)slab * s->slab_bytes;
}

#endif
