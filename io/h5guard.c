/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See h5guard.h.  The layouts read here are those of the HDF5 file format
 * specification, version 3: the superblock of versions 2 and 3 (IV.A.1.b),
 * version 2 object headers (IV.A.1.b "OHDR") with their continuation
 * chunks ("OCHK", named by continuation messages, type 0x10).  Every read
 * is bounded by the file's size, and a header may not name more than
 * MAX_CHUNKS chunks, so a hostile file (chunks naming each other in a
 * cycle) costs a bounded number of reads.  Messages name no file: the
 * caller prefixes the path.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/h5guard.h"
#include "io/h5util.h"

#define SB_BYTES 48      /* superblock v2/3 with 8-byte offsets and lengths */
#define MAX_CHUNKS 65536 /* chunks one object header may name */
#define UNDEF_ADDR UINT64_MAX

/* ---- lookup3 ------------------------------------------------------------- */

static uint32_t rot(uint32_t x, int k)
{
    return (x << k) | (x >> (32 - k));
}

static void mix(uint32_t *a, uint32_t *b, uint32_t *c)
{
    *a -= *c;
    *a ^= rot(*c, 4);
    *c += *b;
    *b -= *a;
    *b ^= rot(*a, 6);
    *a += *c;
    *c -= *b;
    *c ^= rot(*b, 8);
    *b += *a;
    *a -= *c;
    *a ^= rot(*c, 16);
    *c += *b;
    *b -= *a;
    *b ^= rot(*a, 19);
    *a += *c;
    *c -= *b;
    *c ^= rot(*b, 4);
    *b += *a;
}

static void final(uint32_t *a, uint32_t *b, uint32_t *c)
{
    *c ^= *b;
    *c -= rot(*b, 14);
    *a ^= *c;
    *a -= rot(*c, 11);
    *b ^= *a;
    *b -= rot(*a, 25);
    *c ^= *b;
    *c -= rot(*b, 16);
    *a ^= *c;
    *a -= rot(*c, 4);
    *b ^= *a;
    *b -= rot(*a, 14);
    *c ^= *b;
    *c -= rot(*b, 24);
}

/* Little-endian word of up to four bytes. */
static uint32_t word(const uint8_t *k, size_t n)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n && i < 4; i++)
        v |= (uint32_t)k[i] << (8 * i);
    return v;
}

uint32_t ckpt__lookup3(const void *data, size_t len, uint32_t initval)
{
    const uint8_t *k = data;
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)len + initval;
    while (len > 12) {
        a += word(k, 4);
        b += word(k + 4, 4);
        c += word(k + 8, 4);
        mix(&a, &b, &c);
        len -= 12;
        k += 12;
    }
    if (len == 0)
        return c;
    /* The last 1..12 bytes, the missing ones counting as zero. */
    a += word(k, len);
    b += len > 4 ? word(k + 4, len - 4) : 0;
    c += len > 8 ? word(k + 8, len - 8) : 0;
    final(&a, &b, &c);
    return c;
}

/* ---- reading ------------------------------------------------------------- */

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Reads [off, off + n), which the caller has checked lies in the file. */
static int read_at(const ckpt__h5_guard *g, uint64_t off, uint8_t *buf, size_t n,
                   ckpt__err *err)
{
    if (g->img) {
        memcpy(buf, g->img + off, n);
        return 0;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(g->fd, buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return ckpt__err_errno(err, r < 0 ? errno : EIO, "read at offset %llu",
                                   (unsigned long long)(off + got));
        got += (size_t)r;
    }
    return 0;
}

static int inside(const ckpt__h5_guard *g, uint64_t off, uint64_t n)
{
    return off < g->size && n <= g->size - off;
}

/* A chunk's bytes, read whole, with its trailing checksum verified. */
static int read_chunk(const ckpt__h5_guard *g, uint64_t off, uint64_t n, const char *what,
                      uint8_t **out, ckpt__err *err)
{
    *out = NULL;
    if (n < 8 || !inside(g, off, n))
        return ckpt__err_set(
            err, CKPT_ECORRUPT,
            "object header of %s: a chunk of %llu bytes at %llu lies outside "
            "the file",
            what, (unsigned long long)n, (unsigned long long)off);
    uint8_t *buf = malloc((size_t)n);
    if (!buf)
        return ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", g->path);
    int rc = read_at(g, off, buf, (size_t)n, err);
    if (!rc && ckpt__lookup3(buf, (size_t)n - 4, 0) != (uint32_t)le(buf + n - 4, 4))
        rc = ckpt__err_set(err, CKPT_ECORRUPT,
                           "object header of %s (at %llu) fails its checksum", what,
                           (unsigned long long)off);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

typedef struct chunk_list {
    uint64_t (*v)[2]; /* offset, length */
    int n, cap;
} chunk_list;

static int push_chunk(chunk_list *l, uint64_t off, uint64_t len)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        void *v = cap <= MAX_CHUNKS ? realloc(l->v, (size_t)cap * sizeof *l->v) : NULL;
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n][0] = off;
    l->v[l->n][1] = len;
    l->n++;
    return 0;
}

/* Adds the continuation chunks that messages in p[0..n) name. */
static int scan_messages(const uint8_t *p, uint64_t n, int crt_order, chunk_list *todo,
                         const char *what, ckpt__err *err)
{
    const uint64_t head = crt_order ? 6 : 4; /* type, size, flags[, creation order] */
    uint64_t pos = 0;
    while (n - pos >= head) { /* less than a message header: the gap at the end */
        unsigned type = p[pos];
        uint64_t size = le(p + pos + 1, 2);
        pos += head;
        if (size > n - pos)
            return ckpt__err_set(err, CKPT_ECORRUPT,
                                 "object header of %s: a message runs past its chunk", what);
        if (type == 0x10 &&
            (size < 16 || push_chunk(todo, le(p + pos, 8), le(p + pos + 8, 8)) != 0))
            return ckpt__err_set(err, CKPT_ECORRUPT,
                                 "object header of %s: bad continuation message", what);
        pos += size;
    }
    return 0;
}

/* Checks the object header at addr (in the file, base included): its chunk
 * 0, then every continuation chunk, each against its checksum. */
static int check_header(const ckpt__h5_guard *g, uint64_t addr, const char *what,
                        ckpt__err *err)
{
    uint8_t pre[6 + 16 + 4 + 8];
    if (!inside(g, addr, 6))
        return ckpt__err_set(err, CKPT_ECORRUPT,
                             "object header of %s (at %llu) lies outside the file", what,
                             (unsigned long long)addr);
    int rc = read_at(g, addr, pre, 6, err);
    if (rc)
        return rc;
    if (memcmp(pre, "OHDR", 4) != 0 || pre[4] != 2 || (pre[5] & 0xc0))
        return ckpt__err_set(err, CKPT_ECORRUPT,
                             "object header of %s (at %llu) is not a version 2 header", what,
                             (unsigned long long)addr);
    unsigned flags = pre[5];
    uint64_t lead = 6 + (flags & 0x20 ? 16 : 0) + (flags & 0x10 ? 4 : 0);
    int width = 1 << (flags & 3);
    if (!inside(g, addr, lead + (uint64_t)width))
        return ckpt__err_set(err, CKPT_ECORRUPT,
                             "object header of %s (at %llu) lies outside the file", what,
                             (unsigned long long)addr);
    rc = read_at(g, addr, pre, (size_t)(lead + (uint64_t)width), err);
    if (rc)
        return rc;
    uint64_t chunk0 = le(pre + lead, width), prefix = lead + (uint64_t)width;
    if (chunk0 > g->size)
        return ckpt__err_set(err, CKPT_ECORRUPT,
                             "object header of %s (at %llu) lies outside the file", what,
                             (unsigned long long)addr);
    chunk_list todo = {NULL, 0, 0};
    uint8_t *buf = NULL;
    rc = read_chunk(g, addr, prefix + chunk0 + 4, what, &buf, err);
    int crt_order = (flags & 0x04) != 0;
    if (!rc)
        rc = scan_messages(buf + prefix, chunk0, crt_order, &todo, what, err);
    free(buf);
    for (int i = 0; !rc && i < todo.n; i++) {
        uint64_t off = g->base + todo.v[i][0], len = todo.v[i][1];
        rc = read_chunk(g, off, len, what, &buf, err);
        if (!rc && memcmp(buf, "OCHK", 4) != 0)
            rc = ckpt__err_set(err, CKPT_ECORRUPT,
                               "object header of %s: no continuation chunk at %llu", what,
                               (unsigned long long)off);
        if (!rc)
            rc = scan_messages(buf + 4, len - 8, crt_order, &todo, what, err);
        free(buf);
    }
    free(todo.v);
    return rc;
}

/* ---- the guard ------------------------------------------------------------ */

/* Checks the superblock at g->base and the object headers it names. */
static int check_superblock(ckpt__h5_guard *g, ckpt__err *err)
{
    static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    uint8_t sb[SB_BYTES];
    if (!inside(g, g->base, SB_BYTES))
        return ckpt__err_set(err, CKPT_ECORRUPT, "too short for an HDF5 file");
    int rc = read_at(g, g->base, sb, sizeof sb, err);
    if (rc)
        return rc;
    if (memcmp(sb, sig, 8) != 0 || (sb[8] != 2 && sb[8] != 3) || sb[9] != 8 || sb[10] != 8)
        return ckpt__err_set(err, CKPT_ECORRUPT,
                             "no HDF5 superblock of version 2 or 3 at offset %llu",
                             (unsigned long long)g->base);
    if (ckpt__lookup3(sb, SB_BYTES - 4, 0) != (uint32_t)le(sb + SB_BYTES - 4, 4))
        return ckpt__err_set(err, CKPT_ECORRUPT, "the HDF5 superblock fails its checksum");
    if (le(sb + 12, 8) != g->base)
        return ckpt__err_set(err, CKPT_ECORRUPT,
                             "the HDF5 superblock records a base address of %llu",
                             (unsigned long long)le(sb + 12, 8));
    uint64_t ext = le(sb + 20, 8), root = le(sb + 36, 8);
    if (ext != UNDEF_ADDR)
        rc = check_header(g, g->base + ext, "the superblock extension", err);
    if (!rc)
        rc = check_header(g, g->base + root, "the root group", err);
    return rc;
}

int ckpt__h5_guard_open(ckpt__h5_guard *g, const char *path, ckpt__err *err)
{
    g->path = path;
    g->img = NULL;
    g->size = g->base = 0;
    /* O_NONBLOCK: a FIFO under the name is refused below, never waited on. */
    g->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (g->fd < 0)
        return ckpt__err_errno(err, errno, "open %s", path);
    struct stat st;
    int rc = 0;
    if (fstat(g->fd, &st) != 0)
        rc = ckpt__err_errno(err, errno, "stat %s", path);
    else if (!S_ISREG(st.st_mode))
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s is not a regular file", path);
    g->size = rc ? 0 : (uint64_t)st.st_size;
    if (!rc) {
        rc = check_superblock(g, err);
        if (rc && rc != CKPT_ENOMEM)
            ckpt__err_prefix(err, "%s", path);
    }
    if (rc)
        ckpt__h5_guard_close(g);
    return rc;
}

int ckpt__h5_guard_image(ckpt__h5_guard *g, const uint8_t *img, size_t len, uint64_t base,
                         const char *path, ckpt__err *err)
{
    g->fd = -1;
    g->img = img;
    g->size = len;
    g->base = base;
    g->path = path;
    int rc = check_superblock(g, err);
    if (rc && rc != CKPT_ENOMEM)
        ckpt__err_prefix(err, "%s", path);
    return rc;
}

int ckpt__h5_guard_link(ckpt__h5_guard *g, hid_t loc, const char *name, const char *what,
                        ckpt__err *err)
{
    /* The link only: HDF5 reads the group holding it (checked before),
     * not the object it points to. */
#if H5_VERSION_GE(1, 12, 0)
    H5L_info1_t li;
    herr_t got = H5Lget_info1(loc, name, &li, H5P_DEFAULT);
#else
    H5L_info_t li;
    herr_t got = H5Lget_info(loc, name, &li, H5P_DEFAULT);
#endif
    if (got < 0)
        return ckpt__h5_fail(err, CKPT_ECORRUPT, "%s is missing", what);
    if (li.type != H5L_TYPE_HARD)
        return ckpt__err_set(err, CKPT_ECORRUPT,
                             "%s is a link to elsewhere, not an object of this file", what);
    return check_header(g, g->base + (uint64_t)li.u.address, what, err);
}

void ckpt__h5_guard_close(ckpt__h5_guard *g)
{
    if (g->fd >= 0)
        close(g->fd);
    g->fd = -1;
}
