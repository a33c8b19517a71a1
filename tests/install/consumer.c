/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A program outside the tree, built against an installed ckptrt (by
 * tests/install/run.sh, once through find_package and once through
 * pkg-config): it links libckpt alone, saves two tensors, scribbles over
 * them, restores them and compares every byte.  It prints the device
 * backend ckpt_open chose and why, so the test can tell whether the
 * installed CUDA plugin was found next to the installed libckpt.
 * Usage: consumer DIR.  Exit 0 only if every byte came back.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <ckpt/ckpt.h>

#define NW 1000
#define NB 777

typedef struct device_line {
    char text[1024];
} device_line;

/* Keeps the line that says which device backend was chosen (ckpt_open
 * logs it on the calling thread; other lines may come from any thread). */
static void on_log(void *user, ckpt_log_level level, const char *msg)
{
    device_line *d = user;
    (void)level;
    if (strncmp(msg, "device: ", 8) == 0)
        snprintf(d->text, sizeof d->text, "%s", msg);
}

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "consumer: %s: %s\n", what, why);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: consumer DIR\n");
        return 2;
    }
    static float w[NW], w0[NW];
    static uint8_t b[NB], b0[NB];
    for (int i = 0; i < NW; i++)
        w[i] = w0[i] = (float)i * 0.25f - 17.0f;
    for (int i = 0; i < NB; i++)
        b[i] = b0[i] = (uint8_t)(i * 131 + 7);

    device_line dev = {""};
    ckpt_config cfg;
    if (ckpt_config_init(&cfg) != 0)
        return fail("ckpt_config_init", ckpt_last_error(NULL));
    cfg.dir = argv[1];
    cfg.device = CKPT_DEVICE_AUTO;
    cfg.log_level = CKPT_LOG_INFO;
    cfg.log_fn = on_log;
    cfg.log_user = &dev;
    ckpt_ctx *ck = NULL;
    if (ckpt_open(&cfg, NULL, &ck) != 0)
        return fail("ckpt_open", ckpt_last_error(NULL));
    int64_t wshape[] = {NW}, bshape[] = {NB};
    if (ckpt_register(ck, "w", w, CKPT_F32, 1, wshape) != 0 ||
        ckpt_register(ck, "b", b, CKPT_U8, 1, bshape) != 0)
        return fail("ckpt_register", ckpt_last_error(ck));
    ckpt_ticket t = 0;
    if (ckpt_save(ck, 5, NULL, &t) != 0 || ckpt_fence(ck, NULL) != 0 ||
        ckpt_wait(ck, t, -1) != 0)
        return fail("save", ckpt_last_error(ck));
    memset(w, 0xAB, sizeof w);
    memset(b, 0xCD, sizeof b);
    int64_t step = -1;
    if (ckpt_restore(ck, CKPT_LATEST, NULL, &step) != 0)
        return fail("ckpt_restore", ckpt_last_error(ck));
    if (step != 5)
        return fail("ckpt_restore", "restored the wrong step");
    if (memcmp(w, w0, sizeof w) != 0 || memcmp(b, b0, sizeof b) != 0)
        return fail("compare", "the restored bytes differ from the saved ones");
    printf("consumer: device %s (%s)\n", ckpt_device_name(ck), dev.text);
    if (ckpt_close(ck) != 0)
        return fail("ckpt_close", ckpt_last_error(NULL));
    printf("consumer: %zu bytes restored bit-exact\n", sizeof w + sizeof b);
    return 0;
}
