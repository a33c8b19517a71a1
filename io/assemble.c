/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading saved slices back (assemble.h): chunk reads checked against their
 * leaves, the walk over one slice's overlap with a box, and its copy.
 */
#include "io/assemble.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

int ckpt__pread_full(int fd, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ENODATA;
        got += (size_t)r;
    }
    return 0;
}

uint64_t ckpt__chunk_len(const ckpt__index *idx, const ckpt__entry *e, uint32_t c)
{
    uint64_t off = (uint64_t)c * idx->chunk_bytes;
    return e->nbytes - off < idx->chunk_bytes ? e->nbytes - off : idx->chunk_bytes;
}

int ckpt__chunk_check(const ckpt__index *idx, const ckpt__entry *e, uint32_t c, int verify,
                      const uint8_t *buf, int64_t res, const char *path, ckpt__err *err)
{
    const char *kind = e->kind == CKPT__ENTRY_META ? "metadata" : "tensor";
    uint64_t n = ckpt__chunk_len(idx, e, c);
    if (res == -ENODATA || (res >= 0 && (uint64_t)res < n))
        return ckpt__err_set(err, CKPT_ECORRUPT, "%s: %s '%s' is cut short", path, kind,
                             e->name);
    if (res < 0)
        return ckpt__err_errno(err, (int)-res, "read %s '%s' from %s", kind, e->name, path);
    if (verify && XXH3_64bits(buf, (size_t)n) != idx->hashes[e->chunk0 + c])
        return ckpt__err_set(err, CKPT_ECORRUPT, "%s: %s '%s' chunk %u failed its checksum",
                             path, kind, e->name, c);
    return 0;
}

int ckpt__chunk_read(int fd, const ckpt__index *idx, const ckpt__entry *e, uint32_t c,
                     int verify, uint8_t *buf, uint64_t *n, const char *path, ckpt__err *err)
{
    *n = ckpt__chunk_len(idx, e, c);
    int r = ckpt__pread_full(fd, buf, (size_t)*n, e->file_off + (uint64_t)c * idx->chunk_bytes);
    return ckpt__chunk_check(idx, e, c, verify, buf, r < 0 ? r : (int64_t)*n, path, err);
}

int ckpt__overlap_init(ckpt__overlap *o, const ckpt__index *idx, const ckpt__entry *e,
                       const ckpt__box *dst)
{
    ckpt__box have, part;
    memset(o, 0, sizeof *o);
    ckpt__box_of_entry(e, &have);
    if (!ckpt__box_intersect(dst, &have, &part) || ckpt__box_volume(&part) == 0)
        return 0;
    ckpt__runs_init(&o->runs, &part, &have, dst, ckpt_dtype_size(e->dtype));
    o->chunk_bytes = idx->chunk_bytes;
    o->chunk = UINT32_MAX;
    return 1;
}

/* The current run, the next one when it is used up: 0 when none is left. */
static int have_run(ckpt__overlap *o)
{
    return o->len > 0 || ckpt__runs_next(&o->runs, &o->so, &o->dof, &o->len);
}

/* Moves past the rest of the current run's piece in chunk c. */
static uint64_t take(ckpt__overlap *o, uint64_t c)
{
    uint64_t end = (c + 1) * o->chunk_bytes;
    uint64_t n = end - o->so < o->len ? end - o->so : o->len;
    o->so += n;
    o->dof += n;
    o->len -= n;
    return n;
}

int ckpt__overlap_next_chunk(ckpt__overlap *o, uint32_t *c)
{
    /* Runs go up in source order, so the chunks of successive pieces never
     * go down: a chunk is new exactly when it differs from the last. */
    while (have_run(o)) {
        uint32_t k = (uint32_t)(o->so / o->chunk_bytes);
        take(o, k);
        if (k != o->chunk) {
            o->chunk = k;
            *c = k;
            return 1;
        }
    }
    return 0;
}

int ckpt__overlap_next_piece(ckpt__overlap *o, uint32_t c, uint64_t *chunk_off,
                             uint64_t *dst_off, uint64_t *len)
{
    if (!have_run(o) || o->so / o->chunk_bytes != c)
        return 0;
    *chunk_off = o->so - (uint64_t)c * o->chunk_bytes;
    *dst_off = o->dof;
    *len = take(o, c);
    return 1;
}

int ckpt__overlap_copy(const ckpt__index *idx, const ckpt__entry *e, const ckpt__box *dst,
                       uint8_t *buf, const ckpt__overlap_fns *fns, void *user, ckpt__err *err)
{
    ckpt__overlap chunks, pieces;
    if (!ckpt__overlap_init(&chunks, idx, e, dst))
        return 0;
    pieces = chunks;
    uint32_t c;
    uint64_t n, in, dof, len;
    int rc = 0, loaded = 0;
    while (!rc && ckpt__overlap_next_chunk(&chunks, &c)) {
        /* Pieces from the old chunk are used up before it is reused. */
        if (loaded && fns->flush)
            rc = fns->flush(user, err);
        if (!rc)
            rc = fns->load(user, c, buf, &n, err);
        loaded = !rc;
        while (!rc && ckpt__overlap_next_piece(&pieces, c, &in, &dof, &len))
            rc = fns->piece(user, dof, buf + in, len, err);
    }
    if (!rc && loaded && fns->flush)
        rc = fns->flush(user, err);
    return rc;
}
