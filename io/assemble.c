/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading saved slices back (assemble.h): chunk reads checked against their
 * leaves, and the copy of one slice's overlap with a box.
 */
#include "io/assemble.h"

#include <errno.h>
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

int ckpt__chunk_read(int fd, const ckpt__index *idx, const ckpt__entry *e, uint32_t c,
                     int verify, uint8_t *buf, uint64_t *n, const char *path, ckpt__err *err)
{
    const char *kind = e->kind == CKPT__ENTRY_META ? "metadata" : "tensor";
    *n = ckpt__chunk_len(idx, e, c);
    int r = ckpt__pread_full(fd, buf, (size_t)*n, e->file_off + (uint64_t)c * idx->chunk_bytes);
    if (r == -ENODATA)
        return ckpt__err_set(err, CKPT_ECORRUPT, "%s: %s '%s' is cut short", path, kind,
                             e->name);
    if (r < 0)
        return ckpt__err_errno(err, -r, "read %s '%s' from %s", kind, e->name, path);
    if (verify && XXH3_64bits(buf, (size_t)*n) != idx->hashes[e->chunk0 + c])
        return ckpt__err_set(err, CKPT_ECORRUPT, "%s: %s '%s' chunk %u failed its checksum",
                             path, kind, e->name, c);
    return 0;
}

int ckpt__overlap_copy(const ckpt__index *idx, const ckpt__entry *e, const ckpt__box *dst,
                       uint8_t *buf, const ckpt__overlap_fns *fns, void *user, ckpt__err *err)
{
    ckpt__box have, part;
    ckpt__box_of_entry(e, &have);
    if (!ckpt__box_intersect(dst, &have, &part) || ckpt__box_volume(&part) == 0)
        return 0;
    ckpt__runs runs;
    ckpt__runs_init(&runs, &part, &have, dst, ckpt_dtype_size(e->dtype));
    uint32_t loaded = UINT32_MAX;
    uint64_t have_n = 0, so, dof, len;
    int rc = 0;
    while (!rc && ckpt__runs_next(&runs, &so, &dof, &len)) {
        while (!rc && len > 0) {
            uint32_t c = (uint32_t)(so / idx->chunk_bytes);
            if (c != loaded) {
                /* Pieces from the old chunk are used up before it is reused. */
                if (loaded != UINT32_MAX && fns->flush)
                    rc = fns->flush(user, err);
                if (!rc)
                    rc = fns->load(user, c, buf, &have_n, err);
                loaded = rc ? UINT32_MAX : c;
                if (rc)
                    break;
            }
            uint64_t in = so - (uint64_t)c * idx->chunk_bytes;
            uint64_t piece = have_n - in < len ? have_n - in : len;
            rc = fns->piece(user, dof, buf + in, piece, err);
            so += piece;
            dof += piece;
            len -= piece;
        }
    }
    if (!rc && loaded != UINT32_MAX && fns->flush)
        rc = fns->flush(user, err);
    return rc;
}
