/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_rankfile: libFuzzer target over the structure check of a rank file.  At
 * start-up it saves the seed checkpoint (fuzz_util.c) into the scratch
 * folder and keeps its manifest's index; the corpus generator saves the
 * same checkpoint, so the seed rank-00000.h5 matches that index exactly.
 * An input is the head of a rank file: it overlays the seed's first bytes
 * (the seed supplies the rest, see FUZZ_RANK_HEAD), or is the whole file
 * when it is at least as long as the seed.  The result replaces
 * rank-00000.h5 of that checkpoint and goes through ckpt__rankfile_check
 * (io/rankfile.c): the object headers' own checksums are checked first
 * (io/h5guard.c, since HDF5 1.10 loses memory on a header that fails
 * them, which LeakSanitizer reports: nothing is suppressed), then HDF5
 * opens the file and our code compares every dataset's type, shape and
 * offset (and, for files older than format 1.2, the hash attributes) with
 * the index.  That is the only part of
 * ckpt__verify_step that parses the rank file; its
 * size check is trivial and its data pass reads the ranges the verified
 * manifest names (the corruption suites cover damaged data), so it is not
 * run per input.  Since format 1.1 verify runs this check only after the
 * file's metadata hash matched; the target still runs it on every input,
 * as verify does for 1.0 checkpoints, which have no such hash.
 *
 * Start-up aborts if the unmodified seed fails the check, since a target
 * whose seed fails would only ever test refusals.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "io/h5util.h"
#include "io/manifest.h"
#include "io/rankfile.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char rank_path[4400];
static ckpt__index idx;
static uint8_t *seed; /* the seed rank file */
static size_t seed_len;
/* The file on disk is the seed with at most its first `dirty` bytes
 * changed (SIZE_MAX: unknown), so that an input costs a write of its own
 * size instead of a copy of the whole file. */
static size_t dirty = SIZE_MAX;

static void die(const char *what, const ckpt__err *err)
{
    fprintf(stderr, "fuzz_rankfile: %s: %s\n", what, err ? err->msg : "");
    abort();
}

static int check(ckpt__err *err)
{
    ckpt__h5_enter();
    int rc = ckpt__rankfile_check(rank_path, &idx, 0, err);
    ckpt__h5_leave();
    return rc;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = fuzz_setup();
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/ckpt", tmp);
    if (fuzz_seed_checkpoint(dir) != 0)
        abort();
    char step[4300], manifest[4400];
    snprintf(step, sizeof step, "%s/step-%012d", dir, FUZZ_SEED_STEP);
    snprintf(manifest, sizeof manifest, "%s/%s", step, CKPT__MANIFEST_NAME);
    snprintf(rank_path, sizeof rank_path, "%s/rank-00000.h5", step);
    ckpt__err err;
    ckpt__err_clear(&err);
    if (ckpt__manifest_read(manifest, &idx, &err) != 0)
        die("read the seed manifest", &err);
    if (fuzz_read_file(rank_path, &seed, &seed_len) != 0)
        die("read the seed rank file", NULL);
    if (check(&err) != 0)
        die("the seed rank file fails ckpt__rankfile_check", &err);
    return 0;
}

/* Makes the file on disk the input overlaid on the seed. */
static int put_input(const uint8_t *data, size_t size)
{
    int rc = 0;
    if (size >= seed_len) {
        dirty = SIZE_MAX;
        return fuzz_write_file(rank_path, data, size);
    }
    if (dirty == SIZE_MAX) {
        rc = fuzz_write_file(rank_path, seed, seed_len);
        dirty = 0;
    }
    /* Give back the seed's bytes the last input changed past this one's end. */
    if (!rc && dirty > size)
        rc = fuzz_patch_file(rank_path, size, seed + size, dirty - size);
    if (!rc)
        rc = fuzz_patch_file(rank_path, 0, data, size);
    dirty = rc ? SIZE_MAX : size;
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (put_input(data, size) != 0)
        abort(); /* the scratch folder is gone: nothing below would be tested */
    ckpt__err err;
    (void)check(&err);
    return 0;
}
