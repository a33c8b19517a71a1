/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_manifest and fuzz_manifest_sealed: libFuzzer targets over
 * ckpt__manifest_read (io/manifest.c).  The input is written as a file in
 * the process's scratch folder (one path, rewritten for every input) and
 * read the way restore, list and verify read a manifest.
 *
 * fuzz_manifest takes the bytes as they are, so it exercises the user-block
 * gate (magic, version, sealed length, XXH3), which must stop almost every
 * mutation before HDF5 sees a byte.  fuzz_manifest_sealed (this file built
 * with FUZZ_RESEAL=1) first writes the input's true length and XXH3 into
 * its user block, as a writer would, so mutations get past the gate into
 * HDF5's parsing of the image, our reads of its attributes and /index, and
 * the index decoder and hash-tree check behind them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>
#include <xxhash.h>

#include "io/manifest.h"
#include "tests/fuzz/fuzz_util.h"

#ifndef FUZZ_RESEAL
#define FUZZ_RESEAL 0
#endif

#define UB_BYTES 512u /* docs/FORMAT.md, manifest.h5 */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[4200];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = fuzz_setup();
    snprintf(path, sizeof path, "%s/manifest.h5", tmp);
    return 0;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *img = malloc(size ? size : 1);
    if (!img)
        return 0;
    memcpy(img, data, size);
    if (FUZZ_RESEAL && size >= UB_BYTES) {
        put_le64(img + 16, size);
        put_le64(img + 24, XXH3_64bits(img + UB_BYTES, size - UB_BYTES));
    }
    int wrote = fuzz_write_file(path, img, size);
    free(img);
    if (wrote != 0)
        abort(); /* the scratch folder is gone: nothing below would be tested */
    ckpt__index idx;
    ckpt__err err;
    if (ckpt__manifest_read(path, &idx, &err) == 0)
        ckpt__index_free(&idx);
    return 0;
}
