/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The staging pool: one mmap(MAP_ANONYMOUS) region allocated and faulted in
 * at open (its size is a budget the caller chose: resident from the start,
 * no page faults during a snapshot), so the device backend can pin it and
 * io_uring can register it.  The pipeline uses it as a ring (pipeline.c):
 * each batch takes exactly its own length, 4 KiB-aligned.
 */
#ifndef CKPT_RUNTIME_STAGING_H
#define CKPT_RUNTIME_STAGING_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define CKPT__STAGE_ALIGN 4096u

typedef struct ckpt__staging {
    uint8_t *base;
    size_t bytes; /* a multiple of CKPT__STAGE_ALIGN */
} ckpt__staging;

int ckpt__staging_init(ckpt__staging *s, uint64_t bytes, ckpt__err *err);
void ckpt__staging_destroy(ckpt__staging *s);

#endif
