/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tensor registry, the metadata store and the metadata providers of a
 * context (registry.c).  Owned by the caller's thread; the coordinator
 * reads the registry while saves are in flight, so it is frozen then
 * (ckpt_register -> CKPT_ESTATE).
 */
#ifndef CKPT_RUNTIME_REGISTRY_H
#define CKPT_RUNTIME_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt/ckpt.h"
#include "io/strmap.h"
#include "base/err.h"

typedef struct ckpt__tensor {
    char *name;
    void *ptr;
    ckpt_dtype dtype;
    int ndim;
    int sharded;                   /* 0: replicated on every rank */
    int64_t shape[CKPT_MAX_NDIM];  /* local shape (the count of the slice) */
    int64_t gshape[CKPT_MAX_NDIM]; /* global shape; = shape when replicated */
    int64_t start[CKPT_MAX_NDIM];  /* the slice's offsets; 0 when replicated */
    uint64_t nbytes;               /* local bytes */
} ckpt__tensor;

typedef struct ckpt__registry {
    ckpt__tensor *v;
    uint32_t n, cap;
    ckpt__strmap map;
} ckpt__registry;

/* shape is the local shape; gshape and start are NULL for a replicated
 * tensor, else the global shape and the slice's offsets. */
int ckpt__registry_add(ckpt__registry *r, const char *name, void *ptr, ckpt_dtype dtype,
                       int ndim, const int64_t *shape, const int64_t *gshape,
                       const int64_t *start, ckpt__err *err);
int ckpt__registry_remove(ckpt__registry *r, const char *name, ckpt__err *err);
void ckpt__registry_free(ckpt__registry *r);

typedef struct ckpt__kv {
    char *key;
    uint8_t *val;
    size_t len;
} ckpt__kv;

typedef struct ckpt__metastore {
    ckpt__kv *v;
    uint32_t n, cap;
    ckpt__strmap map;
} ckpt__metastore;

/* Copies data; replaces an existing key. */
int ckpt__meta_put(ckpt__metastore *m, const char *key, const void *data, size_t len,
                   ckpt__err *err);
const ckpt__kv *ckpt__meta_get(const ckpt__metastore *m, const char *key);
int ckpt__meta_copy(ckpt__metastore *dst, const ckpt__metastore *src, ckpt__err *err);
/* Removes a key; 1 when it was there, else 0. */
int ckpt__meta_del(ckpt__metastore *m, const char *key);
void ckpt__meta_free(ckpt__metastore *m);

/* Metadata providers (ckpt_set_meta_fn), in the order their keys were
 * first given one; the caller's thread only. */
typedef struct ckpt__provider {
    char *key;
    ckpt_meta_fn fn;
    void *user;
} ckpt__provider;

typedef struct ckpt__providers {
    ckpt__provider *v;
    uint32_t n, cap;
    uint8_t *buf; /* CKPT_MAX_META bytes the providers write into; from the first */
} ckpt__providers;

/* Sets, replaces or (fn NULL) removes the provider of key. */
int ckpt__provider_set(ckpt__providers *p, const char *key, ckpt_meta_fn fn, void *user,
                       ckpt__err *err);
/* Whether key has a provider; removes it when so (ckpt_set_meta wins). */
int ckpt__provider_drop(ckpt__providers *p, const char *key);
void ckpt__providers_free(ckpt__providers *p);
/* The metadata of a save: a copy of m, then every provider's value in its
 * place (dst is empty on failure, and err names the key). */
int ckpt__meta_capture(ckpt__metastore *dst, const ckpt__metastore *m, ckpt__providers *p,
                       ckpt__err *err);

#endif
