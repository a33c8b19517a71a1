/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Open addressing with linear probing and tombstones; grows at 1/2 load.
 * Invariant: every live key appears once; a probe for a key stops at the
 * first empty (never-used) slot.
 */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "io/strmap.h"

static const char tombstone[1];

static uint64_t hkey(const char *key, uint32_t tag)
{
    return XXH3_64bits_withSeed(key, strlen(key), tag);
}

/* Slot of key, or of the first reusable slot on its probe path (*found 0). */
static size_t probe(const ckpt__strmap *m, const char *key, uint32_t tag, int *found)
{
    size_t mask = m->cap - 1, i = (size_t)hkey(key, tag) & mask, reuse = (size_t)-1;
    for (;;) {
        const char *k = m->keys[i];
        if (!k) {
            *found = 0;
            return reuse != (size_t)-1 ? reuse : i;
        }
        if (k == tombstone) {
            if (reuse == (size_t)-1)
                reuse = i;
        } else if (m->tags[i] == tag && strcmp(k, key) == 0) {
            *found = 1;
            return i;
        }
        i = (i + 1) & mask;
    }
}

static int grow(ckpt__strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    if (m->len * 4 < m->cap) /* mostly tombstones: rehash at the same size */
        cap = m->cap;
    ckpt__strmap n = {0};
    n.cap = cap;
    n.keys = calloc(cap, sizeof *n.keys);
    n.vals = malloc(cap * sizeof *n.vals);
    n.tags = malloc(cap * sizeof *n.tags);
    if (!n.keys || !n.vals || !n.tags) {
        ckpt__strmap_free(&n);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        const char *k = m->keys[i];
        if (k && k != tombstone) {
            int found;
            size_t j = probe(&n, k, m->tags[i], &found);
            n.keys[j] = k;
            n.vals[j] = m->vals[i];
            n.tags[j] = m->tags[i];
            n.len++;
        }
    }
    ckpt__strmap_free(m);
    *m = n;
    return 0;
}

int ckpt__strmap_put(ckpt__strmap *m, const char *key, uint32_t tag, uint32_t val)
{
    if ((m->len + m->tomb + 1) * 2 > m->cap && grow(m) != 0)
        return -1;
    int found;
    size_t i = probe(m, key, tag, &found);
    if (!found) {
        if (m->keys[i] == tombstone)
            m->tomb--;
        m->len++;
    }
    m->keys[i] = key;
    m->tags[i] = tag;
    m->vals[i] = val;
    return 0;
}

int ckpt__strmap_get(const ckpt__strmap *m, const char *key, uint32_t tag, uint32_t *val)
{
    if (m->cap == 0)
        return 0;
    int found;
    size_t i = probe(m, key, tag, &found);
    if (found && val)
        *val = m->vals[i];
    return found;
}

int ckpt__strmap_set(ckpt__strmap *m, const char *key, uint32_t tag, uint32_t val)
{
    if (m->cap == 0)
        return 0;
    int found;
    size_t i = probe(m, key, tag, &found);
    if (found)
        m->vals[i] = val;
    return found;
}

int ckpt__strmap_del(ckpt__strmap *m, const char *key, uint32_t tag)
{
    if (m->cap == 0)
        return 0;
    int found;
    size_t i = probe(m, key, tag, &found);
    if (!found)
        return 0;
    m->keys[i] = tombstone;
    m->len--;
    m->tomb++;
    return 1;
}

void ckpt__strmap_free(ckpt__strmap *m)
{
    free(m->keys);
    free(m->vals);
    free(m->tags);
    memset(m, 0, sizeof *m);
}
