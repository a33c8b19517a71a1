/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The layout cache (layout.h).  The key is a packed copy of the layout
 * fields of this rank's entries, in index order: per entry kind, dtype and
 * ndim (a byte each), nbytes, then ndim values each of shape, start and
 * count (little-endian as in memory: the key never leaves the process),
 * then the name and its NUL.  Compared in full on every save: one pass over
 * a few dozen bytes per entry (about a millisecond at 10,000 tensors, most
 * of it reading the index's entries), against the hundreds of
 * milliseconds HDF5 takes to build that layout.
 */
#include <stdlib.h>
#include <string.h>

#include "runtime/fault_hooks.h"
#include "runtime/layout.h"

#define KEY_FIXED 11u /* kind, dtype, ndim, nbytes */

struct ckpt__layout {
    uint32_t rank, world_size;
    uint16_t minor;
    uint64_t chunk_bytes;
    uint32_t n;     /* entries of this rank */
    uint8_t *key;   /* n packed entries (file comment) */
    size_t key_len;
    uint64_t *offs; /* [n]: the file_off the build gave each entry */
    ckpt__rankfile_image img;
};

static size_t key_len(const ckpt__entry *e)
{
    return KEY_FIXED + 3 * (size_t)e->ndim * sizeof(int64_t) + strlen(e->name) + 1;
}

static void key_put(uint8_t *b, const ckpt__entry *e)
{
    size_t dims = (size_t)e->ndim * sizeof(int64_t);
    b[0] = (uint8_t)e->kind;
    b[1] = (uint8_t)e->dtype;
    b[2] = (uint8_t)e->ndim;
    memcpy(b + 3, &e->nbytes, 8);
    memcpy(b + KEY_FIXED, e->shape, dims);
    memcpy(b + KEY_FIXED + dims, e->start, dims);
    memcpy(b + KEY_FIXED + 2 * dims, e->count, dims);
    strcpy((char *)b + KEY_FIXED + 3 * dims, e->name);
}

/* 1 when the key at b (left bytes remain) is e's; *used gets its length. */
static int key_same(const uint8_t *b, size_t left, const ckpt__entry *e, size_t *used)
{
    size_t dims = (size_t)e->ndim * sizeof(int64_t), fixed = KEY_FIXED + 3 * dims;
    if (left <= fixed || b[0] != (uint8_t)e->kind || b[1] != (uint8_t)e->dtype ||
        b[2] != (uint8_t)e->ndim || memcmp(b + 3, &e->nbytes, 8) != 0 ||
        memcmp(b + KEY_FIXED, e->shape, dims) != 0 ||
        memcmp(b + KEY_FIXED + dims, e->start, dims) != 0 ||
        memcmp(b + KEY_FIXED + 2 * dims, e->count, dims) != 0)
        return 0;
    /* Every name in the key ends with its NUL inside the key. */
    const char *name = (const char *)b + fixed;
    if (strcmp(name, e->name) != 0)
        return 0;
    *used = fixed + strlen(name) + 1;
    return 1;
}

const ckpt__rankfile_image *ckpt__layout_find(ckpt__layout *c, ckpt__index *idx, uint32_t rank)
{
    if (!c || c->rank != rank || c->world_size != idx->world_size || c->minor != idx->minor ||
        c->chunk_bytes != idx->chunk_bytes)
        return NULL;
    uint32_t k = 0;
    size_t at = 0;
    for (uint32_t i = 0; i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        size_t used;
        if ((uint32_t)e->rank != rank)
            continue;
        if (k == c->n || !key_same(c->key + at, c->key_len - at, e, &used))
            return NULL;
        at += used;
        k++;
    }
    if (k != c->n)
        return NULL;
    k = 0;
    for (uint32_t i = 0; i < idx->nentries; i++)
        if ((uint32_t)idx->entries[i].rank == rank)
            idx->entries[i].file_off = c->offs[k++];
    return &c->img;
}

void ckpt__layout_drop(ckpt__layout **c)
{
    if (!*c)
        return;
    free((*c)->key);
    free((*c)->offs);
    ckpt__rankfile_image_free(&(*c)->img);
    free(*c);
    *c = NULL;
}

int ckpt__layout_keep(ckpt__layout **c, const ckpt__index *idx, uint32_t rank,
                      ckpt__rankfile_image *img, ckpt__err *err)
{
    ckpt__layout_drop(c);
    uint32_t n = 0;
    size_t len = 0;
    for (uint32_t i = 0; i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        if ((uint32_t)e->rank == rank) {
            n++;
            len += key_len(e);
        }
    }
    ckpt__layout *l = calloc(1, sizeof *l);
    if (l) {
        l->key = malloc(len ? len : 1);
        l->offs = malloc((n ? n : 1) * sizeof *l->offs);
    }
    if (!l || !l->key || !l->offs) {
        ckpt__layout_drop(&l);
        ckpt__rankfile_image_free(img);
        return ckpt__err_set(err, CKPT_ENOMEM, "out of memory keeping the layout of %u entries",
                             n);
    }
    for (uint32_t i = 0, k = 0; i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        if ((uint32_t)e->rank != rank)
            continue;
        key_put(l->key + l->key_len, e);
        l->key_len += key_len(e);
        l->offs[k++] = e->file_off;
    }
    l->n = n;
    l->rank = rank;
    l->world_size = idx->world_size;
    l->minor = idx->minor;
    l->chunk_bytes = idx->chunk_bytes;
    l->img = *img;
    memset(img, 0, sizeof *img);
    *c = l;
    return 0;
}

int ckpt__layout_test_damage(ckpt__layout *c, int what, uint64_t k)
{
    if (!c)
        return CKPT_ENOTFOUND;
    if (what == CKPT__LAYOUT_DAMAGE_IMAGE && c->img.nbytes) {
        c->img.bytes[k % c->img.nbytes] ^= 1;
        return 0;
    }
    if (what == CKPT__LAYOUT_DAMAGE_HASH) {
        c->img.meta_hash ^= 1;
        return 0;
    }
    uint32_t with_data = 0;
    for (uint32_t i = 0; i < c->n; i++)
        with_data += c->offs[i] != CKPT__NO_OFFSET;
    if (what != CKPT__LAYOUT_DAMAGE_OFFSET || !with_data)
        return CKPT_EINVAL;
    uint64_t want = k % with_data;
    for (uint32_t i = 0; i < c->n; i++)
        if (c->offs[i] != CKPT__NO_OFFSET && want-- == 0)
            c->offs[i] += 8;
    return 0;
}
