/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckpt-fuzz-corpus OUT: writes the seed corpora of the fuzz targets from a
 * real checkpoint (the seed checkpoint of fuzz_util.c, saved through the
 * public API into a scratch folder):
 *
 *   OUT/index/     done-00000.rec and the manifest's /index blob
 *   OUT/manifest/  manifest.h5
 *   OUT/rankfile/  the first FUZZ_RANK_HEAD bytes of rank-00000.h5 (the
 *                  target supplies the rest, see fuzz_util.h)
 *
 * Nothing binary is committed: scripts/fuzz.sh runs this at fuzz time.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/index.h"
#include "io/manifest.h"
#include "tests/fuzz/fuzz_util.h"

/* Writes the first `max` bytes of `from` (all of it when max is 0) to `to`. */
static int copy_file(const char *from, const char *to, size_t max)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = fuzz_read_file(from, &data, &len);
    if (!rc)
        rc = fuzz_write_file(to, data, max && len > max ? max : len);
    free(data);
    if (rc)
        fprintf(stderr, "ckpt-fuzz-corpus: copy %s to %s failed\n", from, to);
    return rc;
}

/* Re-encodes the manifest's index: the bytes of its /index dataset. */
static int write_manifest_index(const char *manifest, const char *to)
{
    ckpt__index idx;
    ckpt__err err;
    ckpt__err_clear(&err);
    uint8_t *blob = NULL;
    size_t len = 0;
    int rc = ckpt__manifest_read(manifest, &idx, &err);
    if (!rc) {
        rc = ckpt__index_encode(&idx, &blob, &len, &err);
        ckpt__index_free(&idx);
    }
    if (!rc)
        rc = fuzz_write_file(to, blob, len);
    free(blob);
    if (rc)
        fprintf(stderr, "ckpt-fuzz-corpus: %s: %s\n", manifest, err.msg);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: ckpt-fuzz-corpus OUT\n");
        return 2;
    }
    const char *out = argv[1];
    const char *tmp = fuzz_tmpdir();
    if (!tmp)
        return 1;
    char dir[4200], step[4300], from[4400], to[4400];
    snprintf(dir, sizeof dir, "%s/ckpt", tmp);
    if (fuzz_seed_checkpoint(dir) != 0)
        return 1;
    snprintf(step, sizeof step, "%s/step-%012d", dir, FUZZ_SEED_STEP);
    const char *sub[] = {"index", "manifest", "rankfile"};
    mkdir(out, 0755);
    for (size_t i = 0; i < sizeof sub / sizeof *sub; i++) {
        snprintf(to, sizeof to, "%s/%s", out, sub[i]);
        if (mkdir(to, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "ckpt-fuzz-corpus: mkdir %s: %s\n", to, strerror(errno));
            return 1;
        }
    }
    int rc = 0;
    snprintf(from, sizeof from, "%s/done-00000.rec", step);
    snprintf(to, sizeof to, "%s/index/done-00000.rec", out);
    rc |= copy_file(from, to, 0);
    snprintf(from, sizeof from, "%s/manifest.h5", step);
    snprintf(to, sizeof to, "%s/index/manifest-index.bin", out);
    rc |= write_manifest_index(from, to);
    snprintf(to, sizeof to, "%s/manifest/manifest.h5", out);
    rc |= copy_file(from, to, 0);
    snprintf(from, sizeof from, "%s/rank-00000.h5", step);
    snprintf(to, sizeof to, "%s/rankfile/rank-00000.head", out);
    rc |= copy_file(from, to, FUZZ_RANK_HEAD);
    return rc ? 1 : 0;
}
