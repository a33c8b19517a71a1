/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rank file layout through HDF5 (see rankfile.h).  Every function here runs
 * inside ckpt__h5_enter/leave, except the metadata hash and the image
 * (read, write), which use plain pread/pwrite: damaged metadata never
 * reaches HDF5's parser, and a file written from an image needs no HDF5.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "io/h5guard.h"
#include "io/h5mirror.h"
#include "io/h5util.h"
#include "io/names.h"
#include "io/paths.h"
#include "io/rankfile.h"

/* Attribute types and the scalar dataspace, made once per file: a save
 * writes five or six attributes per entry, and copying a type and making a
 * dataspace for each of them was a visible part of the per-entry cost. */
typedef struct attr_kit {
    hid_t str;    /* variable-length UTF-8 string */
    hid_t scalar; /* H5S_SCALAR */
} attr_kit;

struct ckpt__rankfile {
    hid_t file;
    ckpt__h5_mirror mirror; /* HDF5 writes to memory; synced into path */
    attr_kit kit;
    char path[CKPT__PATH_MAX];
};

static int by_off(const void *a, const void *b)
{
    const ckpt__range *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Copies what HDF5 wrote (in memory) into the file, around the tensor
 * data of `rank`, which the writer puts there (rankfile.h invariant). */
static int sync_file(const ckpt__rankfile *rf, const ckpt__index *idx, uint32_t rank,
                     ckpt__err *err)
{
    ckpt__range *skip = malloc((idx->nentries ? idx->nentries : 1) * sizeof *skip);
    if (!skip)
        return ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", rf->path);
    size_t n = 0;
    for (uint32_t i = 0; i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        if ((uint32_t)e->rank == rank && e->kind == CKPT__ENTRY_TENSOR && e->nbytes)
            skip[n++] = (ckpt__range){e->file_off, e->nbytes};
    }
    qsort(skip, n, sizeof *skip, by_off);
    int rc = ckpt__h5_mirror_sync(&rf->mirror, skip, n, rf->path, err);
    free(skip);
    return rc;
}

static void entry_path(const ckpt__entry *e, char *out, size_t cap)
{
    char esc[CKPT__ESCAPED_MAX];
    ckpt__name_escape(e->name, esc);
    snprintf(out, cap, "%s/%s", e->kind == CKPT__ENTRY_META ? "/meta" : "/tensors", esc);
}

static void kit_close(attr_kit *k)
{
    if (k->str >= 0)
        H5Tclose(k->str);
    if (k->scalar >= 0)
        H5Sclose(k->scalar);
    k->str = k->scalar = H5I_INVALID_HID;
}

static int kit_open(attr_kit *k)
{
    k->str = H5Tcopy(H5T_C_S1);
    k->scalar = H5Screate(H5S_SCALAR);
    if (k->str < 0 || k->scalar < 0 || H5Tset_size(k->str, H5T_VARIABLE) < 0 ||
        H5Tset_cset(k->str, H5T_CSET_UTF8) < 0) {
        kit_close(k);
        return -1;
    }
    return 0;
}

/* Creates attribute `name` on obj and writes data into it; rank 0 is a
 * scalar, else n elements. */
static int attr_write(hid_t obj, const attr_kit *k, const char *name, hid_t type, int rank,
                      hsize_t n, const void *data)
{
    hid_t sp = rank ? H5Screate_simple(1, &n, NULL) : k->scalar;
    if (sp < 0)
        return -1;
    hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, type, data) < 0 ? -1 : 0;
    if (a >= 0)
        H5Aclose(a);
    if (rank)
        H5Sclose(sp);
    return rc;
}

static int attr_str(hid_t obj, const attr_kit *k, const char *name, const char *value)
{
    return attr_write(obj, k, name, k->str, 0, 1, &value);
}

static int attr_i64(hid_t obj, const attr_kit *k, const char *name, int64_t v)
{
    return attr_write(obj, k, name, H5T_NATIVE_INT64, 0, 1, &v);
}

static int attr_read_u64(hid_t obj, const char *name, uint64_t *v, hsize_t n)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    hid_t sp = H5Aget_space(a);
    hssize_t have = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int rc = have == (hssize_t)n && H5Aread(a, H5T_NATIVE_UINT64, v) >= 0 ? 0 : -1;
    if (sp >= 0)
        H5Sclose(sp);
    H5Aclose(a);
    return rc;
}

/* HDF5 types for the dtypes of one file, made on first use. */
typedef struct type_cache {
    hid_t t[CKPT_BYTES + 1];
} type_cache;

static hid_t cached_type(type_cache *tc, ckpt_dtype dtype)
{
    if ((int)dtype < 0 || (int)dtype > CKPT_BYTES)
        return H5I_INVALID_HID;
    if (tc->t[dtype] < 0)
        tc->t[dtype] = ckpt__h5_type(dtype);
    return tc->t[dtype];
}

/* Creates the dataset of e as link `esc` (its escaped name) in group grp:
 * naming the group by handle saves a lookup from the root per entry. */
static int make_dataset(hid_t grp, ckpt__entry *e, const void *meta, hid_t dcpl, hid_t lcpl,
                        type_cache *tc, const attr_kit *k, ckpt__err *err)
{
    char esc[CKPT__ESCAPED_MAX];
    ckpt__name_escape(e->name, esc);
    hsize_t dims[CKPT_MAX_NDIM];
    for (int d = 0; d < e->ndim; d++)
        dims[d] = (hsize_t)e->count[d];
    hid_t type = cached_type(tc, e->dtype);
    hid_t sp = e->ndim ? H5Screate_simple(e->ndim, dims, NULL) : k->scalar;
    hid_t ds = type >= 0 && sp >= 0
                   ? H5Dcreate2(grp, esc, type, sp, lcpl, dcpl, H5P_DEFAULT)
                   : H5I_INVALID_HID;
    int rc = 0;
    if (ds < 0) {
        rc = ckpt__h5_fail(err, CKPT_EIO, "create dataset for '%s'", e->name);
        goto out;
    }
    haddr_t off = H5Dget_offset(ds);
    if (e->nbytes == 0) {
        e->file_off = CKPT__NO_OFFSET;
    } else if (off == HADDR_UNDEF) {
        rc = ckpt__h5_fail(err, CKPT_EIO, "no storage allocated for '%s'", e->name);
        goto out;
    } else {
        e->file_off = (uint64_t)off;
    }
    const char *dname = ckpt_dtype_name(e->dtype);
    int bad = attr_str(ds, k, "name", e->name) < 0 || attr_str(ds, k, "ckpt_dtype", dname) < 0;
    if (!bad && e->ndim > 0) {
        bad = attr_write(ds, k, "shape", H5T_NATIVE_INT64, 1, (hsize_t)e->ndim, e->shape) < 0;
        int sharded = 0;
        for (int d = 0; d < e->ndim; d++)
            sharded |= e->start[d] != 0 || e->count[d] != e->shape[d];
        if (!bad && sharded)
            bad = attr_write(ds, k, "start", H5T_NATIVE_INT64, 1, (hsize_t)e->ndim,
                             e->start) < 0;
    }
    if (!bad && meta && e->nbytes > 0)
        bad = H5Dwrite(ds, H5T_STD_U8LE, H5S_ALL, H5S_ALL, H5P_DEFAULT, meta) < 0;
    if (bad)
        rc = ckpt__h5_fail(err, CKPT_EIO, "write attributes of '%s'", e->name);
out:
    if (ds >= 0)
        H5Dclose(ds);
    if (sp >= 0 && sp != k->scalar)
        H5Sclose(sp);
    return rc;
}

#define META_BLOCK_BASE 4096u
#define META_BLOCK_PER_ENTRY 1024u  /* measured: 450..550 bytes with names up to 130 */
#define META_BLOCK_MAX (1u << 20)

uint64_t ckpt__rankfile_meta_block(const ckpt__index *idx, uint32_t rank)
{
    uint64_t n = META_BLOCK_BASE;
    for (uint32_t i = 0; i < idx->nentries && n < META_BLOCK_MAX; i++)
        if ((uint32_t)idx->entries[i].rank == rank)
            n += META_BLOCK_PER_ENTRY + 8u * idx->entries[i].nchunks;
    n = (n + 4095) / 4096 * 4096;
    return n < META_BLOCK_MAX ? n : META_BLOCK_MAX;
}

int ckpt__rankfile_create(const char *path, ckpt__index *idx, uint32_t rank,
                          const void *const *meta_data, uint64_t *data_end,
                          ckpt__rankfile **out, ckpt__err *err)
{
    *out = NULL;
    *data_end = 0;
    ckpt__rankfile *rf = calloc(1, sizeof *rf);
    if (!rf)
        return ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", path);
    snprintf(rf->path, sizeof rf->path, "%s", path);
    int rc = 0;
    hid_t fapl = ckpt__h5_fapl(CKPT__RANKFILE_ALIGN_MIN);
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t g1 = H5I_INVALID_HID, g2 = H5I_INVALID_HID;
    type_cache tc;
    for (size_t t = 0; t < sizeof tc.t / sizeof tc.t[0]; t++)
        tc.t[t] = H5I_INVALID_HID;
    rf->file = H5I_INVALID_HID;
    rf->mirror.mem = rf->mirror.file = -1;
    rf->kit.str = rf->kit.scalar = H5I_INVALID_HID;
    /* No access and modification times in any object header (the root
     * group's, the groups', the datasets'): the rank file of a given layout
     * is the same bytes on every save (format 1.2, rankfile.h). */
    /* The metadata block sized to the entries: a fixed 1 MiB was most of a
     * small rank file (a hole, but in its size), and one too small spreads
     * object headers between the data. */
    if (fapl < 0 || fcpl < 0 || gcpl < 0 || dcpl < 0 || lcpl < 0 || kit_open(&rf->kit) < 0 ||
        H5Pset_obj_track_times(fcpl, 0) < 0 || H5Pset_obj_track_times(gcpl, 0) < 0 ||
        H5Pset_meta_block_size(fapl, ckpt__rankfile_meta_block(idx, rank)) < 0 ||
        H5Pset_layout(dcpl, H5D_CONTIGUOUS) < 0 ||
        H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) < 0 ||
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 || H5Pset_obj_track_times(dcpl, 0) < 0 ||
        H5Pset_char_encoding(lcpl, H5T_CSET_UTF8) < 0) {
        rc = ckpt__h5_fail(err, CKPT_EIO, "%s: property lists", path);
        goto out;
    }
    rc = ckpt__h5_mirror_create(&rf->mirror, path, fcpl, fapl, &rf->file, err);
    if (rc)
        goto out;
    g1 = H5Gcreate2(rf->file, "tensors", H5P_DEFAULT, gcpl, H5P_DEFAULT);
    g2 = H5Gcreate2(rf->file, "meta", H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (g1 < 0 || g2 < 0) {
        rc = ckpt__h5_fail(err, CKPT_EIO, "%s: create groups", path);
        goto out;
    }
    /* The root's attributes: all of them constant for the layout. */
    int32_t ver[2] = {CKPT__FORMAT_MAJOR, (int32_t)idx->minor};
    const attr_kit *kit = &rf->kit;
    if (attr_write(rf->file, kit, "ckpt_format_version", H5T_NATIVE_INT32, 1, 2, ver) < 0 ||
        attr_i64(rf->file, kit, "rank", rank) < 0 ||
        attr_i64(rf->file, kit, "world_size", idx->world_size) < 0 ||
        attr_i64(rf->file, kit, "chunk_bytes", (int64_t)idx->chunk_bytes) < 0) {
        rc = ckpt__h5_fail(err, CKPT_EIO, "%s: write root attributes", path);
        goto out;
    }
    for (uint32_t i = 0; i < idx->nentries && !rc; i++) {
        ckpt__entry *e = &idx->entries[i];
        if ((uint32_t)e->rank != rank)
            continue;
        const void *meta = meta_data && e->kind == CKPT__ENTRY_META ? meta_data[i] : NULL;
        hid_t grp = e->kind == CKPT__ENTRY_META ? g2 : g1;
        rc = make_dataset(grp, e, meta, dcpl, lcpl, &tc, &rf->kit, err);
        if (!rc && e->nbytes && e->file_off + e->nbytes > *data_end)
            *data_end = e->file_off + e->nbytes;
    }
    if (rc)
        ckpt__err_prefix(err, "%s", path);
    /* Flush the layout now so that the file on disk describes it. */
    if (!rc && H5Fflush(rf->file, H5F_SCOPE_LOCAL) < 0)
        rc = ckpt__h5_fail(err, CKPT_EIO, "flush %s", path);
    if (!rc)
        rc = sync_file(rf, idx, rank, err);
out:
    for (size_t t = 0; t < sizeof tc.t / sizeof tc.t[0]; t++)
        if (tc.t[t] >= 0)
            H5Tclose(tc.t[t]);
    if (g1 >= 0)
        H5Gclose(g1);
    if (g2 >= 0)
        H5Gclose(g2);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (gcpl >= 0)
        H5Pclose(gcpl);
    if (fcpl >= 0)
        H5Pclose(fcpl);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (rc) {
        ckpt__rankfile_abort(rf);
        return rc;
    }
    *out = rf;
    return 0;
}

int ckpt__rankfile_finish(ckpt__rankfile *rf, const ckpt__index *idx, uint32_t rank,
                          ckpt__err *err)
{
    /* Format 1.2: nothing of the save is added (no hash, step, uuid or root
     * attributes), so closing writes what HDF5 still holds of the layout. */
    int rc = 0;
    kit_close(&rf->kit);
    herr_t cl = H5Fclose(rf->file);
    rf->file = H5I_INVALID_HID;
    if (cl < 0)
        rc = ckpt__h5_fail(err, CKPT_EIO, "close %s", rf->path);
    if (!rc)
        rc = sync_file(rf, idx, rank, err);
    ckpt__h5_mirror_end(&rf->mirror);
    free(rf);
    return rc;
}

int ckpt__rankfile_dup_fd(const ckpt__rankfile *rf)
{
    return fcntl(rf->mirror.file, F_DUPFD_CLOEXEC, 0);
}

void ckpt__rankfile_abort(ckpt__rankfile *rf)
{
    if (!rf)
        return;
    kit_close(&rf->kit);
    if (rf->file >= 0)
        H5Fclose(rf->file);
    H5Eclear2(H5E_DEFAULT);
    ckpt__h5_mirror_end(&rf->mirror);
    free(rf);
}

/* ---- metadata hash --------------------------------------------------------- */

typedef struct range {
    uint64_t off, end;
} range;

static int cmp_range(const void *a, const void *b)
{
    const range *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* The image being collected: spans appended whole, then compacted. */
static int image_add(ckpt__rankfile_image *img, size_t *cap_p, size_t *cap_b, uint64_t off,
                     const uint8_t *buf, size_t n)
{
    ckpt__rankfile_piece *last = img->npieces ? &img->piece[img->npieces - 1] : NULL;
    if (last && last->off + last->len == off) {
        last->len += n;
    } else {
        if (img->npieces == *cap_p) {
            size_t c = *cap_p ? 2 * *cap_p : 64;
            ckpt__rankfile_piece *v = realloc(img->piece, c * sizeof *v);
            if (!v)
                return -1;
            img->piece = v;
            *cap_p = c;
        }
        img->piece[img->npieces++] = (ckpt__rankfile_piece){off, n};
    }
    if (img->nbytes + n > *cap_b) {
        size_t c = *cap_b ? *cap_b : 1u << 16;
        while (c < img->nbytes + n)
            c *= 2;
        uint8_t *v = realloc(img->bytes, c);
        if (!v)
            return -1;
        img->bytes = v;
        *cap_b = c;
    }
    memcpy(img->bytes + img->nbytes, buf, n);
    img->nbytes += n;
    return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Drops the parts of the pieces that are all zero on a page (4 KiB of the
 * file): a new file reads zeros where nothing was written, and HDF5 left
 * holes there (its blocks are sparse until used), so the copy keeps them. */
static int image_compact(ckpt__rankfile_image *img)
{
    size_t np = img->npieces, cap = np ? np : 1, n = 0;
    ckpt__rankfile_piece *out = malloc(cap * sizeof *out);
    if (!out)
        return -1;
    uint64_t src = 0, dst = 0;
    for (size_t k = 0; k < np; k++) {
        uint64_t off = img->piece[k].off, end = off + img->piece[k].len;
        while (off < end) {
            uint64_t stop = (off / 4096 + 1) * 4096;
            if (stop > end)
                stop = end;
            size_t len = (size_t)(stop - off);
            if (!all_zero(img->bytes + src, len)) {
                memmove(img->bytes + dst, img->bytes + src, len);
                if (n && out[n - 1].off + out[n - 1].len == off) {
                    out[n - 1].len += len;
                } else {
                    if (n == cap) {
                        ckpt__rankfile_piece *v = realloc(out, 2 * cap * sizeof *v);
                        if (!v) {
                            free(out);
                            return -1;
                        }
                        out = v;
                        cap *= 2;
                    }
                    out[n++] = (ckpt__rankfile_piece){off, len};
                }
                dst += len;
            }
            src += len;
            off = stop;
        }
    }
    free(img->piece);
    img->piece = out;
    img->npieces = n;
    img->nbytes = dst;
    return 0;
}

/* Hashes [off, end) of fd into st through buf, and appends it to img
 * (unless NULL). */
static int hash_span(int fd, XXH3_state_t *st, uint8_t *buf, size_t cap, uint64_t off,
                     uint64_t end, ckpt__rankfile_image *img, size_t *icap,
                     const char *path, ckpt__err *err)
{
    while (off < end) {
        size_t n = end - off < cap ? (size_t)(end - off) : cap;
        ssize_t r = pread(fd, buf, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return ckpt__err_errno(err, errno, "read %s", path);
        if (r == 0)
            return ckpt__err_set(err, CKPT_ECORRUPT, "%s ends early, at byte %llu", path,
                                 (unsigned long long)off);
        XXH3_64bits_update(st, buf, (size_t)r);
        if (img && image_add(img, &icap[0], &icap[1], off, buf, (size_t)r) != 0)
            return ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", path);
        off += (uint64_t)r;
    }
    return 0;
}

/* The metadata hash of path, and with img its image (rankfile.h). */
/* fd_in >= 0: path's descriptor, open for reading, used (not closed)
 * instead of a lookup of path. */
static int read_meta(const char *path, int fd_in, const ckpt__index *idx, uint32_t rank,
                     uint64_t file_bytes, uint64_t *hash, ckpt__rankfile_image *img,
                     ckpt__err *err)
{
    *hash = 0;
    /* O_NONBLOCK: a FIFO under this name must not hang; fstat refuses it. */
    int fd = fd_in >= 0 ? fd_in : open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return ckpt__err_set(err, CKPT_ECORRUPT, "%s is missing", path);
        if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
            return ckpt__err_set(err, CKPT_ECORRUPT, "%s is not a regular file", path);
        return ckpt__err_errno(err, e, "open %s", path);
    }
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = ckpt__err_errno(err, errno, "stat %s", path);
    else if (!S_ISREG(st.st_mode))
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s is not a regular file", path);
    else if ((uint64_t)st.st_size != file_bytes)
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s is %lld bytes, the manifest says %llu", path,
                           (long long)st.st_size, (unsigned long long)file_bytes);
    uint32_t n = 0;
    range *v = NULL;
    if (!rc) {
        v = malloc((idx->nentries ? idx->nentries : 1) * sizeof *v);
        if (!v)
            rc = ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", path);
    }
    for (uint32_t i = 0; !rc && i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        if ((uint32_t)e->rank == rank && e->nbytes && e->file_off != CKPT__NO_OFFSET)
            v[n++] = (range){e->file_off, e->file_off + e->nbytes};
    }
    size_t cap = 64u << 10; /* small: a fresh buffer costs a page fault per 4 KiB */
    uint8_t *buf = rc ? NULL : malloc(cap);
    XXH3_state_t *xs = rc ? NULL : XXH3_createState();
    if (!rc && (!buf || !xs))
        rc = ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", path);
    size_t icap[2] = {0, 0};
    if (!rc) {
        /* The decoder keeps every range inside file_bytes; ranges that
         * overlap (only in a forged index) count once. */
        qsort(v, n, sizeof *v, cmp_range);
        XXH3_64bits_reset(xs);
        uint64_t pos = 0;
        for (uint32_t k = 0; !rc && k <= n; k++) {
            uint64_t off = k < n ? v[k].off : file_bytes;
            if (off > pos)
                rc = hash_span(fd, xs, buf, cap, pos, off, img, icap, path, err);
            if (k < n && v[k].end > pos)
                pos = v[k].end;
        }
        if (!rc)
            *hash = XXH3_64bits_digest(xs);
    }
    if (!rc && img) {
        img->file_bytes = file_bytes;
        img->meta_hash = *hash;
        if (image_compact(img) != 0)
            rc = ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", path);
    }
    if (xs)
        XXH3_freeState(xs);
    free(buf);
    free(v);
    if (fd_in < 0)
        close(fd);
    return rc;
}

int ckpt__rankfile_meta_hash(const char *path, const ckpt__index *idx, uint32_t rank,
                             uint64_t file_bytes, uint64_t *hash, ckpt__err *err)
{
    return read_meta(path, -1, idx, rank, file_bytes, hash, NULL, err);
}

int ckpt__rankfile_image_read(const char *path, int fd, const ckpt__index *idx, uint32_t rank,
                              uint64_t file_bytes, ckpt__rankfile_image *img, ckpt__err *err)
{
    memset(img, 0, sizeof *img);
    uint64_t h;
    int rc = read_meta(path, fd, idx, rank, file_bytes, &h, img, err);
    if (rc)
        ckpt__rankfile_image_free(img);
    return rc;
}

void ckpt__rankfile_image_free(ckpt__rankfile_image *img)
{
    free(img->piece);
    free(img->bytes);
    memset(img, 0, sizeof *img);
}

/* pwrite of all of buf; 0 or an errno. */
static int put_all(int fd, const uint8_t *buf, uint64_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, buf, n < (1u << 30) ? (size_t)n : (1u << 30), (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : ENOSPC;
        buf += w;
        n -= (uint64_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int ckpt__rankfile_image_write(const char *path, const ckpt__rankfile_image *img,
                               const ckpt__index *idx, uint32_t rank,
                               const void *const *meta_data, int *fd_out, ckpt__err *err)
{
    if (fd_out)
        *fd_out = -1;
    /* Ours, new (Inv. 6 of commit.c), never through a link: as HDF5's
     * file is created (h5mirror.c). */
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return ckpt__err_errno(err, errno, "create %s", path);
    int e = 0;
    uint64_t at = 0, src = 0;
    for (size_t k = 0; k < img->npieces && !e; k++) {
        at = img->piece[k].off;
        e = put_all(fd, img->bytes + src, img->piece[k].len, at);
        src += img->piece[k].len;
    }
    /* The metadata blobs' bytes, which HDF5 wrote (H5Dwrite) when it built
     * the file; the writer writes only the tensors' data. */
    for (uint32_t i = 0; i < idx->nentries && !e; i++) {
        const ckpt__entry *x = &idx->entries[i];
        if ((uint32_t)x->rank != rank || x->kind != CKPT__ENTRY_META || !x->nbytes)
            continue;
        at = x->file_off;
        e = put_all(fd, meta_data[i], x->nbytes, at);
    }
    if (!e && ftruncate(fd, (off_t)img->file_bytes) != 0) {
        e = errno;
        at = img->file_bytes;
    }
    if (fd_out && !e)
        *fd_out = fd;
    else if (close(fd) != 0 && !e)
        e = errno;
    if (e)
        return ckpt__err_errno(err, e, "write %s at offset %llu", path, (unsigned long long)at);
    return 0;
}

int ckpt__rankfile_check_meta(const char *path, const ckpt__index *idx,
                              const ckpt__rankrec *rr, int *hashed, ckpt__err *err)
{
    *hashed = idx->minor >= CKPT__MINOR_META_HASH;
    if (!*hashed)
        return 0;
    uint64_t h;
    int rc = ckpt__rankfile_meta_hash(path, idx, rr->rank, rr->file_bytes, &h, err);
    if (!rc && ckpt__meta_hash_tag(h) != rr->meta_hash)
        rc = ckpt__err_set(err, CKPT_ECORRUPT,
                           "%s: HDF5 metadata damaged (the hash of its bytes outside tensor "
                           "data differs from the manifest)",
                           path);
    return rc;
}

/* ---- structure check ----------------------------------------------------- */

static int check_entry(hid_t file, const ckpt__index *idx, const ckpt__entry *e,
                       ckpt__err *err)
{
    char path[16 + CKPT__ESCAPED_MAX];
    entry_path(e, path, sizeof path);
    /* A link to another file is refused, not followed (ckpt__h5_dapl). */
    hid_t dapl = ckpt__h5_dapl();
    hid_t ds = dapl >= 0 ? H5Dopen2(file, path, dapl) : H5I_INVALID_HID;
    if (dapl >= 0)
        H5Pclose(dapl);
    if (ds < 0)
        return ckpt__h5_fail(err, CKPT_ECORRUPT, "dataset of '%s' is missing", e->name);
    int rc = 0;
    hid_t want = ckpt__h5_type(e->dtype), have = H5Dget_type(ds), sp = H5Dget_space(ds);
    hsize_t dims[CKPT_MAX_NDIM];
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (want < 0 || have < 0 || H5Tequal(want, have) <= 0) {
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "'%s': HDF5 type differs from %s", e->name,
                           ckpt_dtype_name(e->dtype));
    } else if (nd != e->ndim || (nd > 0 && H5Sget_simple_extent_dims(sp, dims, NULL) < 0)) {
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "'%s': rank of the dataspace differs", e->name);
    } else {
        for (int d = 0; d < nd && !rc; d++)
            if (dims[d] != (hsize_t)e->count[d])
                rc = ckpt__err_set(err, CKPT_ECORRUPT, "'%s': dimension %d differs", e->name,
                                   d);
    }
    haddr_t off = H5Dget_offset(ds);
    if (!rc && e->nbytes && off != (haddr_t)e->file_off)
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "'%s': data offset differs from the manifest",
                           e->name);
    /* Before format 1.2 the rank file also carried the save's hashes: they
     * must agree with the manifest's.  A 1.2 file has none (rankfile.h). */
    int hashes = idx->minor < CKPT__MINOR_LAYOUT_ONCE;
    uint64_t h = 0;
    if (!rc && hashes && (attr_read_u64(ds, "hash", &h, 1) < 0 || h != e->hash))
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "'%s': hash attribute differs", e->name);
    if (!rc && hashes && e->nchunks) {
        uint64_t *leaves = malloc(e->nchunks * sizeof *leaves);
        if (!leaves)
            rc = ckpt__err_set(err, CKPT_ENOMEM, "out of memory");
        else if (attr_read_u64(ds, "chunk_hashes", leaves, e->nchunks) < 0 ||
                 memcmp(leaves, idx->hashes + e->chunk0, e->nchunks * sizeof *leaves) != 0)
            rc = ckpt__err_set(err, CKPT_ECORRUPT, "'%s': chunk_hashes attribute differs",
                               e->name);
        free(leaves);
    }
    if (want >= 0)
        H5Tclose(want);
    if (have >= 0)
        H5Tclose(have);
    if (sp >= 0)
        H5Sclose(sp);
    H5Dclose(ds);
    H5Eclear2(H5E_DEFAULT);
    return rc;
}

/* Checks the object header of group /tensors or /meta (kind) and of the
 * entry's dataset before HDF5 reads them (h5guard.h). */
static int guard_entry(ckpt__h5_guard *g, hid_t file, const ckpt__entry *e, int *group_ok,
                       ckpt__err *err)
{
    int meta = e->kind == CKPT__ENTRY_META;
    int rc = 0;
    if (!group_ok[meta])
        rc = ckpt__h5_guard_link(g, file, meta ? "meta" : "tensors",
                                 meta ? "group /meta" : "group /tensors", err);
    group_ok[meta] = !rc;
    char path[16 + CKPT__ESCAPED_MAX], what[32 + CKPT_MAX_NAME];
    entry_path(e, path, sizeof path);
    snprintf(what, sizeof what, "dataset of '%s'", e->name);
    return rc ? rc : ckpt__h5_guard_link(g, file, path, what, err);
}

int ckpt__rankfile_check(const char *path, const ckpt__index *idx, uint32_t rank,
                         ckpt__err *err)
{
    ckpt__h5_guard g;
    int rc = ckpt__h5_guard_open(&g, path, err);
    if (rc)
        return rc;
    hid_t fapl = ckpt__h5_fapl(CKPT__RANKFILE_ALIGN_MIN);
    hid_t f = fapl >= 0 ? H5Fopen(path, H5F_ACC_RDONLY, fapl) : H5I_INVALID_HID;
    if (fapl >= 0)
        H5Pclose(fapl);
    if (f < 0) {
        ckpt__h5_guard_close(&g);
        return ckpt__h5_fail(err, CKPT_ECORRUPT, "%s is not a readable HDF5 file", path);
    }
    uint64_t root = 0;
    const ckpt__rankrec *rr = NULL;
    for (uint32_t r = 0; r < idx->nranks; r++)
        if (idx->ranks[r].rank == rank)
            rr = &idx->ranks[r];
    if (!rr || (idx->minor < CKPT__MINOR_LAYOUT_ONCE &&
                (attr_read_u64(f, "root", &root, 1) < 0 || root != rr->root)))
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s: root attribute differs from the manifest",
                           path);
    int group_ok[2] = {0, 0};
    for (uint32_t i = 0; i < idx->nentries && !rc; i++) {
        if ((uint32_t)idx->entries[i].rank != rank)
            continue;
        rc = guard_entry(&g, f, &idx->entries[i], group_ok, err);
        if (!rc)
            rc = check_entry(f, idx, &idx->entries[i], err);
    }
    if (rc && rc != CKPT_ENOMEM)
        ckpt__err_prefix(err, "%s", path);
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    ckpt__h5_guard_close(&g);
    return rc;
}
