/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_index: libFuzzer target over ckpt__index_decode (io/index.c), the
 * one decoder behind done-records and the manifest's /index dataset.  Each
 * input is decoded twice: as given, where the XXH3 trailer must refuse
 * nearly every mutation, and with its last 8 bytes replaced by the XXH3 of
 * the rest, so that mutations reach the field checks behind the trailer.
 * When a resealed input decodes, the target checks what a decoded index
 * promises (io/index.h): the hash-tree check stays in bounds, every entry
 * is found under its (kind, rank, name), and the index re-encodes into
 * bytes that decode and re-encode to the same bytes.  A broken promise
 * aborts, which libFuzzer reports as a crash.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "io/index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void broken(const char *why)
{
    fprintf(stderr, "fuzz_index: %s\n", why);
    abort();
}

static void check_decoded(const ckpt__index *idx)
{
    ckpt__err err;
    (void)ckpt__index_check_tree(idx, "fuzz", &err);
    for (uint32_t i = 0; i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        if (ckpt__index_find(idx, e->kind, e->rank, e->name) != e)
            broken("an entry is not found under its own key");
    }
    uint8_t *once = NULL, *twice = NULL;
    size_t n1 = 0, n2 = 0;
    if (ckpt__index_encode(idx, &once, &n1, &err) != 0)
        return; /* out of memory */
    ckpt__index again;
    if (ckpt__index_decode(once, n1, "fuzz re-encoded", &again, &err) != 0) {
        fprintf(stderr, "fuzz_index: %s\n", err.msg);
        broken("a decoded index re-encodes into bytes the decoder refuses");
    }
    if (ckpt__index_encode(&again, &twice, &n2, &err) == 0 &&
        (n1 != n2 || memcmp(once, twice, n1) != 0))
        broken("encode(decode(encode(x))) differs from encode(x)");
    ckpt__index_free(&again);
    free(once);
    free(twice);
}

static void decode(const uint8_t *buf, size_t len)
{
    ckpt__index idx;
    ckpt__err err;
    if (ckpt__index_decode(buf, len, "fuzz", &idx, &err) != 0)
        return;
    check_decoded(&idx);
    ckpt__index_free(&idx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode(data, size);
    if (size < 8)
        return 0;
    uint8_t *sealed = malloc(size);
    if (!sealed)
        return 0;
    memcpy(sealed, data, size);
    uint64_t h = XXH3_64bits(sealed, size - 8);
    for (int k = 0; k < 8; k++)
        sealed[size - 8 + k] = (uint8_t)(h >> (8 * k));
    decode(sealed, size);
    free(sealed);
    return 0;
}
