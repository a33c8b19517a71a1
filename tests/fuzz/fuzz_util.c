/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See fuzz_util.h.  The seed checkpoint covers what the readers must
 * handle: several dtypes (HDF5 custom floats and the bool enum included), a
 * scalar, an empty tensor, a tensor of two chunks (so leaves and chunk0
 * matter), names that need escaping, and metadata blobs.  Every byte of it
 * is a function of the code alone, so the rank file the generator writes
 * matches the index that fuzz_rankfile rebuilds at start-up.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "io/h5util.h"
#include "tests/fuzz/fuzz_util.h"

static char tmp_path[4096];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Removes the scratch folder and everything below it, following no link. */
static void rm_tmpdir(void)
{
    if (tmp_path[0])
        nftw(tmp_path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_tmpdir(void)
{
    if (tmp_path[0])
        return tmp_path;
    const char *base = getenv("TMPDIR");
    if (!base || !base[0])
        base = "/tmp";
    char tmpl[sizeof tmp_path];
    snprintf(tmpl, sizeof tmpl, "%s/ckpt-fuzz-XXXXXX", base);
    if (!mkdtemp(tmpl)) {
        fprintf(stderr, "fuzz: mkdtemp %s: %s\n", tmpl, strerror(errno));
        return NULL;
    }
    memcpy(tmp_path, tmpl, sizeof tmp_path);
    atexit(rm_tmpdir);
    return tmp_path;
}

const char *fuzz_setup(void)
{
    ckpt__h5_quiet();
    const char *tmp = fuzz_tmpdir();
    if (!tmp)
        abort();
    return tmp;
}

int fuzz_read_file(const char *path, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 1 << 16;
            uint8_t *p = realloc(buf, cap);
            if (!p) {
                rc = -1;
                break;
            }
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f))
        rc = -1;
    fclose(f);
    if (rc) {
        free(buf);
        return -1;
    }
    *data = buf;
    *len = n;
    return 0;
}

static int pwrite_all(int fd, const uint8_t *data, size_t len, size_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, data + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

/* Overwrites in place and then sets the length: on ext4, truncating a file
 * to zero and rewriting it makes close() start writeback (auto_da_alloc),
 * which cost ~3 ms per input, a hundred times the work being fuzzed. */
int fuzz_write_file(const char *path, const uint8_t *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (pwrite_all(fd, data, len, 0) != 0 || ftruncate(fd, (off_t)len) != 0) {
        close(fd);
        return -1;
    }
    return close(fd);
}

int fuzz_patch_file(const char *path, size_t off, const uint8_t *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (pwrite_all(fd, data, len, off) != 0) {
        close(fd);
        return -1;
    }
    return close(fd);
}

/* The tensors and blobs of the seed checkpoint, filled by fill(). */
static float w0[16][8], b0[8];
static int64_t counter;
static uint16_t emb[4][4];  /* bf16 bits */
static uint8_t mask[10];    /* bool */
static uint16_t empty[1];   /* f16, shape [0, 3]: holds nothing */
static uint8_t big[70000];  /* two chunks of 64 KiB */

static void fill(void)
{
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 8; j++)
            w0[i][j] = (float)(i * 8 + j) / 7.0f;
    for (int j = 0; j < 8; j++)
        b0[j] = -(float)j;
    counter = 123456789;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            emb[i][j] = (uint16_t)(0x3f80 + 16 * i + j);
    for (int i = 0; i < 10; i++)
        mask[i] = (uint8_t)(i % 3 == 0);
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 131u >> 3);
}

static int fail(ckpt_ctx *ctx, int rc, const char *what)
{
    fprintf(stderr, "fuzz: seed checkpoint: %s: %s: %s\n", what, ckpt_err_name(rc),
            ckpt_last_error(ctx));
    return -1;
}

int fuzz_seed_checkpoint(const char *dir)
{
    fill();
    ckpt_config cfg;
    ckpt_config_init(&cfg);
    cfg.dir = dir;
    cfg.chunk_bytes = 64 * 1024;
    cfg.staging_bytes = 1024 * 1024;
    cfg.io = CKPT_IO_PWRITE;
    cfg.direct_io = 0;
    cfg.io_threads = 1;
    cfg.hash_threads = 1;
    cfg.log_level = CKPT_LOG_OFF;
    ckpt_ctx *ctx = NULL;
    int rc = ckpt_open(&cfg, NULL, &ctx);
    if (rc)
        return fail(NULL, rc, "open");
    const int64_t s_w0[] = {16, 8}, s_b0[] = {8}, s_emb[] = {4, 4}, s_mask[] = {10},
                  s_empty[] = {0, 3}, s_big[] = {(int64_t)sizeof big};
    static const uint8_t rng[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    static const char loader[] = "epoch=3 pos=1024";
    if ((rc = ckpt_register(ctx, "layer0/weight", w0, CKPT_F32, 2, s_w0)) ||
        (rc = ckpt_register(ctx, "layer0/bias", b0, CKPT_F32, 1, s_b0)) ||
        (rc = ckpt_register(ctx, "step_count", &counter, CKPT_I64, 0, NULL)) ||
        (rc = ckpt_register(ctx, ".emb%bf16", emb, CKPT_BF16, 2, s_emb)) ||
        (rc = ckpt_register(ctx, "mask", mask, CKPT_BOOL, 1, s_mask)) ||
        (rc = ckpt_register(ctx, "empty", empty, CKPT_F16, 2, s_empty)) ||
        (rc = ckpt_register(ctx, "big", big, CKPT_U8, 1, s_big)) ||
        (rc = ckpt_set_meta(ctx, "rng", rng, sizeof rng)) ||
        (rc = ckpt_set_meta(ctx, "loader", loader, sizeof loader - 1))) {
        fail(ctx, rc, "register");
        ckpt_close(ctx);
        return -1;
    }
    ckpt_ticket t = 0;
    rc = ckpt_save(ctx, FUZZ_SEED_STEP, NULL, &t);
    if (!rc)
        rc = ckpt_wait(ctx, t, -1);
    if (rc) {
        fail(ctx, rc, "save");
        ckpt_close(ctx);
        return -1;
    }
    rc = ckpt_close(ctx);
    return rc ? fail(NULL, rc, "close") : 0;
}
