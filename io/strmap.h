/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A string-keyed open-addressing map to uint32 values (indices into the
 * caller's own arrays).  Keys are borrowed: the caller keeps them alive and
 * unchanged while they are in the map.  Used for the tensor registry, the
 * metadata store and index lookups, where 10,000+ names are common.
 */
#ifndef CKPT_IO_STRMAP_H
#define CKPT_IO_STRMAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ckpt__strmap {
    const char **keys;
    uint32_t *vals;
    uint32_t *tags; /* extra key part (rank, kind); compared with the string */
    size_t cap;     /* power of two, 0 when empty */
    size_t len;
    size_t tomb;
} ckpt__strmap;

/* All return 0, or -1 when out of memory. */
int ckpt__strmap_put(ckpt__strmap *m, const char *key, uint32_t tag, uint32_t val);
/* 1 and *val when found, else 0. */
int ckpt__strmap_get(const ckpt__strmap *m, const char *key, uint32_t tag, uint32_t *val);
/* 1 when removed, else 0. */
int ckpt__strmap_del(ckpt__strmap *m, const char *key, uint32_t tag);
/* Replaces the value stored for an existing key; 0 when absent. */
int ckpt__strmap_set(ckpt__strmap *m, const char *key, uint32_t tag, uint32_t val);
void ckpt__strmap_free(ckpt__strmap *m);

#ifdef __cplusplus
}
#endif
#endif
