/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writing and reading manifest.h5 (layout in manifest.h).  HDF5 calls run
 * inside ckpt__h5_enter/leave, taken here.
 *
 * Invariant: every byte of a manifest is covered by a check whose failure
 * reads as damage (CKPT_ECORRUPT, so restore falls back): the user block's
 * header by its own hash (or, in a 1.0 manifest, by its reserved bytes
 * being zero), the rest of the file by the body checksum.  CKPT_EFORMAT is
 * only for a user block whose header hash verifies but which announces a
 * version or flag this library does not know: a newer writer's, intact.
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
#include "io/manifest.h"
#include "io/paths.h"

#define UB_BYTES 512u
#define UB_VERSION 1u
#define UB_FLAG_HEADER_HASH 1u /* [32, 40) holds the header hash (format 1.1) */
#define UB_HASH_AT 32u
#define CKPT__XSTR(x) #x
#define CKPT__STR(x) CKPT__XSTR(x)
static const char ub_magic[8] = {'C', 'K', 'P', 'T', 'M', 'A', 'N', '1'};

/* One row of /tensors: this fixed part, then the name in a fixed-length
 * string as long as the index's longest name (plus its NUL).  kind, dtype
 * and name are all fixed-length strings: a variable-length string is one
 * global-heap object each, and with thousands of rows those dominated the
 * manifest's build (3.9 of its 5.9 ms of CPU at 1,000 tensors). */
typedef struct row {
    char kind[8];
    char dtype[16];
    int32_t rank;
    int32_t ndim;
    int64_t shape[CKPT_MAX_NDIM];
    int64_t start[CKPT_MAX_NDIM];
    int64_t count[CKPT_MAX_NDIM];
    uint64_t nbytes;
    uint64_t offset;
    uint64_t hash;
} row;

static hid_t fixed_str(size_t n)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, n) < 0 || H5Tset_strpad(t, H5T_STR_NULLPAD) < 0)) {
        H5Tclose(t);
        t = H5I_INVALID_HID;
    }
    return t;
}

/* The table's row type: name (name_bytes, UTF-8) first, at offset
 * sizeof(row) of a row of stride bytes. */
static hid_t row_type(size_t name_bytes, size_t stride)
{
    hsize_t dims = CKPT_MAX_NDIM;
    hid_t arr = H5Tarray_create2(H5T_NATIVE_INT64, 1, &dims);
    hid_t t = H5Tcreate(H5T_COMPOUND, stride);
    hid_t s8 = fixed_str(sizeof ((row *)0)->kind), s16 = fixed_str(sizeof ((row *)0)->dtype);
    hid_t sn = fixed_str(name_bytes);
    if (arr < 0 || t < 0 || s8 < 0 || s16 < 0 || sn < 0 ||
        H5Tset_cset(sn, H5T_CSET_UTF8) < 0 ||
        H5Tinsert(t, "name", sizeof(row), sn) < 0 ||
        H5Tinsert(t, "kind", HOFFSET(row, kind), s8) < 0 ||
        H5Tinsert(t, "dtype", HOFFSET(row, dtype), s16) < 0 ||
        H5Tinsert(t, "rank", HOFFSET(row, rank), H5T_NATIVE_INT32) < 0 ||
        H5Tinsert(t, "ndim", HOFFSET(row, ndim), H5T_NATIVE_INT32) < 0 ||
        H5Tinsert(t, "shape", HOFFSET(row, shape), arr) < 0 ||
        H5Tinsert(t, "start", HOFFSET(row, start), arr) < 0 ||
        H5Tinsert(t, "count", HOFFSET(row, count), arr) < 0 ||
        H5Tinsert(t, "nbytes", HOFFSET(row, nbytes), H5T_NATIVE_UINT64) < 0 ||
        H5Tinsert(t, "offset", HOFFSET(row, offset), H5T_NATIVE_UINT64) < 0 ||
        H5Tinsert(t, "hash", HOFFSET(row, hash), H5T_NATIVE_UINT64) < 0) {
        if (t >= 0)
            H5Tclose(t);
        t = H5I_INVALID_HID;
    }
    if (arr >= 0)
        H5Tclose(arr);
    if (s8 >= 0)
        H5Tclose(s8);
    if (s16 >= 0)
        H5Tclose(s16);
    if (sn >= 0)
        H5Tclose(sn);
    return t;
}

static int put_attr(hid_t obj, const char *name, hid_t type, hsize_t n, const void *v)
{
    hid_t sp = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = sp >= 0 ? H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = a < 0 || H5Awrite(a, type, v) < 0 ? -1 : 0;
    if (a >= 0)
        H5Aclose(a);
    if (sp >= 0)
        H5Sclose(sp);
    return rc;
}

/* HDF5 builds the file in memory (a mirrored file, h5mirror.h) and it is
 * copied out in a few large writes after the close, instead of the many
 * small writes of its metadata that the commit latency would pay for; a
 * full disk is then an errno of that copy, never a failed HDF5 close. */
static int write_hdf5(const char *path, const ckpt__index *idx, const uint8_t *blob,
                      size_t blen, ckpt__err *err)
{
    size_t name_bytes = 1;
    for (uint32_t i = 0; i < idx->nentries; i++) {
        size_t l = strlen(idx->entries[i].name) + 1;
        name_bytes = l > name_bytes ? l : name_bytes;
    }
    size_t stride = sizeof(row) + (name_bytes + 7) / 8 * 8;
    unsigned char *rows = calloc(idx->nentries ? idx->nentries : 1, stride);
    if (!rows)
        return ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", path);
    int rc = 0;
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = ckpt__h5_fapl(0);
    hid_t str = H5Tcopy(H5T_C_S1), f = H5I_INVALID_HID, rt = H5I_INVALID_HID;
    ckpt__h5_mirror mirror = {-1, -1};
    if (fcpl < 0 || fapl < 0 || str < 0 || H5Pset_userblock(fcpl, UB_BYTES) < 0 ||
        H5Tset_size(str, H5T_VARIABLE) < 0 || H5Tset_cset(str, H5T_CSET_UTF8) < 0 ||
        (rt = row_type(name_bytes, stride)) < 0) {
        rc = ckpt__h5_fail(err, CKPT_EIO, "%s: property lists", path);
        goto out;
    }
    rc = ckpt__h5_mirror_create(&mirror, path, fcpl, fapl, &f, err);
    if (rc)
        goto out;
    char uuid[CKPT__UUID_HEX];
    ckpt__uuid_hex(idx->uuid, uuid);
    const char *uuidp = uuid, *lib = "ckptrt " CKPT__STR(CKPT_VERSION_MAJOR) "." CKPT__STR(
                                          CKPT_VERSION_MINOR) "." CKPT__STR(CKPT_VERSION_PATCH);
    int32_t ver[2] = {CKPT__FORMAT_MAJOR, idx->minor};
    int64_t step = idx->step, world = idx->world_size, created = idx->created_unix;
    int64_t chunk = (int64_t)idx->chunk_bytes;
    uint64_t root = ckpt__index_root(idx);
    if (put_attr(f, "ckpt_format_version", H5T_NATIVE_INT32, 2, ver) < 0 ||
        put_attr(f, "step", H5T_NATIVE_INT64, 0, &step) < 0 ||
        put_attr(f, "world_size", H5T_NATIVE_INT64, 0, &world) < 0 ||
        put_attr(f, "created_unix", H5T_NATIVE_INT64, 0, &created) < 0 ||
        put_attr(f, "chunk_bytes", H5T_NATIVE_INT64, 0, &chunk) < 0 ||
        put_attr(f, "root", H5T_NATIVE_UINT64, 0, &root) < 0 ||
        put_attr(f, "uuid", str, 0, &uuidp) < 0 || put_attr(f, "writer", str, 0, &lib) < 0) {
        rc = ckpt__h5_fail(err, CKPT_EIO, "%s: write attributes", path);
        goto out;
    }
    hsize_t n = blen;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds = sp >= 0 ? H5Dcreate2(f, "index", H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                                    H5P_DEFAULT)
                       : -1;
    int bad = ds < 0 || H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, blob) < 0;
    if (ds >= 0)
        H5Dclose(ds);
    if (sp >= 0)
        H5Sclose(sp);
    for (uint32_t i = 0; i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        row *r = (row *)(void *)(rows + (size_t)i * stride);
        memcpy(rows + (size_t)i * stride + sizeof(row), e->name, strlen(e->name));
        snprintf(r->kind, sizeof r->kind, "%s", e->kind == CKPT__ENTRY_META ? "meta" : "tensor");
        snprintf(r->dtype, sizeof r->dtype, "%s", ckpt_dtype_name(e->dtype));
        r->rank = e->rank;
        r->ndim = e->ndim;
        memcpy(r->shape, e->shape, sizeof r->shape);
        memcpy(r->start, e->start, sizeof r->start);
        memcpy(r->count, e->count, sizeof r->count);
        r->nbytes = e->nbytes;
        r->offset = e->file_off;
        r->hash = e->hash;
    }
    n = idx->nentries;
    sp = bad ? -1 : H5Screate_simple(1, &n, NULL);
    ds = sp >= 0 ? H5Dcreate2(f, "tensors", rt, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    bad = ds < 0 || (n > 0 && H5Dwrite(ds, rt, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) < 0);
    if (ds >= 0)
        H5Dclose(ds);
    if (sp >= 0)
        H5Sclose(sp);
    if (bad)
        rc = ckpt__h5_fail(err, CKPT_EIO, "%s: write index", path);
out:
    free(rows);
    if (f >= 0 && H5Fclose(f) < 0 && !rc)
        rc = ckpt__h5_fail(err, CKPT_EIO, "close %s", path);
    if (f >= 0 && !rc)
        rc = ckpt__h5_mirror_sync(&mirror, NULL, 0, path, err);
    ckpt__h5_mirror_end(&mirror);
    if (rt >= 0)
        H5Tclose(rt);
    if (str >= 0)
        H5Tclose(str);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (fcpl >= 0)
        H5Pclose(fcpl);
    return rc;
}

/* Reads the whole file into a malloc'd buffer. */
static int slurp(int fd, const char *path, uint8_t **out, size_t *len, ckpt__err *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return ckpt__err_errno(err, errno, "stat %s", path);
    if (!S_ISREG(st.st_mode))
        return ckpt__err_set(err, CKPT_ECORRUPT, "%s is not a regular file", path);
    if ((uint64_t)st.st_size > CKPT__MANIFEST_MAX)
        return ckpt__err_set(err, CKPT_ECORRUPT, "%s is %lld bytes, too large", path,
                             (long long)st.st_size);
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", path);
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(buf);
            return ckpt__err_errno(err, e, "read %s", path);
        }
        got += (size_t)r;
    }
    *out = buf;
    *len = n;
    return 0;
}

static void le64(uint8_t *p, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return v;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The header hash: XXH3-64 of the first UB_BYTES with the hash's own eight
 * bytes read as zero.  Every later user-block version keeps this field and
 * this definition (docs/FORMAT.md), so an intact newer header is told from
 * a damaged one. */
static uint64_t header_hash(const uint8_t *ub)
{
    uint8_t tmp[UB_BYTES];
    memcpy(tmp, ub, UB_BYTES);
    memset(tmp + UB_HASH_AT, 0, 8);
    return XXH3_64bits(tmp, UB_BYTES);
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

int ckpt__manifest_write(const char *path, const ckpt__index *idx, ckpt__err *err)
{
    uint8_t *blob = NULL;
    size_t blen = 0;
    int rc = ckpt__index_encode(idx, &blob, &blen, err);
    if (rc)
        return rc;
    ckpt__h5_enter();
    rc = write_hdf5(path, idx, blob, blen, err);
    ckpt__h5_leave();
    free(blob);
    if (rc)
        return rc;
    /* Seal: hash everything after the user block into it, then fsync. */
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return ckpt__err_errno(err, errno, "open %s", path);
    uint8_t *buf = NULL;
    size_t len = 0;
    rc = slurp(fd, path, &buf, &len, err);
    if (!rc && len < UB_BYTES)
        rc = ckpt__err_set(err, CKPT_EIO, "%s: HDF5 wrote only %zu bytes", path, len);
    if (!rc) {
        /* Version 1 as 1.0 wrote it (a 1.0 reader reads this file), plus the
         * header hash in bytes that 1.0 wrote as zero and does not read. */
        uint8_t ub[UB_BYTES] = {0};
        memcpy(ub, ub_magic, 8);
        ub[8] = UB_VERSION;
        ub[12] = UB_FLAG_HEADER_HASH;
        le64(ub + 16, len);
        le64(ub + 24, XXH3_64bits(buf + UB_BYTES, len - UB_BYTES));
        le64(ub + UB_HASH_AT, header_hash(ub));
        if (pwrite(fd, ub, UB_BYTES, 0) != (ssize_t)UB_BYTES)
            rc = ckpt__err_errno(err, errno ? errno : EIO, "write %s user block", path);
        else if (fsync(fd) != 0)
            rc = ckpt__err_errno(err, errno, "fsync %s", path);
    }
    free(buf);
    close(fd);
    return rc;
}

/* ---- read ------------------------------------------------------------------ */

/* H5Aread stores as many values as the file's dataspace holds, so a hostile
 * manifest with a "step" of 64 elements would overrun *v: one element only. */
static int get_attr_i64(hid_t f, const char *name, int64_t *v)
{
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    hid_t sp = a >= 0 ? H5Aget_space(a) : H5I_INVALID_HID;
    int rc = -1;
    if (sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, H5T_NATIVE_INT64, v) >= 0)
        rc = 0;
    if (sp >= 0)
        H5Sclose(sp);
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

static int read_index_blob(const uint8_t *img, size_t len, const char *path, uint8_t **blob,
                           size_t *blen, int64_t *attrs, ckpt__err *err)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    hid_t f = H5I_INVALID_HID, ds = H5I_INVALID_HID, sp = H5I_INVALID_HID;
    hid_t dapl = H5I_INVALID_HID;
    int rc = 0;
    /* Open the verified bytes from memory: what HDF5 parses is what was hashed. */
    if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 20, 0) < 0 ||
        H5Pset_file_image(fapl, (void *)img, len) < 0) {
        rc = ckpt__h5_fail(err, CKPT_EIO, "%s: file image", path);
        goto out;
    }
    /* The image passed its seal; a forged one must still not reach HDF5
     * with a damaged object header (h5guard.h). */
    ckpt__h5_guard g;
    rc = ckpt__h5_guard_image(&g, img, len, UB_BYTES, path, err);
    if (rc)
        goto out;
    /* The name only labels the in-memory image; nothing is opened by it. */
    f = H5Fopen("ckpt-manifest-image", H5F_ACC_RDONLY, fapl);
    if (f < 0) {
        rc = ckpt__h5_fail(err, CKPT_ECORRUPT, "%s is not a readable HDF5 file", path);
        goto out;
    }
    if (get_attr_i64(f, "step", &attrs[0]) < 0 || get_attr_i64(f, "world_size", &attrs[1]) < 0) {
        rc = ckpt__h5_fail(err, CKPT_ECORRUPT, "%s: attributes missing", path);
        goto out;
    }
    /* Only bytes inside the verified image: no external link, no external
     * or virtual storage that would make HDF5 read other files. */
    rc = ckpt__h5_guard_link(&g, f, "index", "dataset /index", err);
    if (rc) {
        if (rc != CKPT_ENOMEM)
            ckpt__err_prefix(err, "%s", path);
        goto out;
    }
    dapl = ckpt__h5_dapl();
    ds = dapl >= 0 ? H5Dopen2(f, "index", dapl) : -1;
    sp = ds >= 0 && ckpt__h5_data_is_local(ds) ? H5Dget_space(ds) : -1;
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (n < 0 || (uint64_t)n > len) {
        rc = ckpt__h5_fail(err, CKPT_ECORRUPT, "%s: /index dataset missing or damaged", path);
        goto out;
    }
    *blen = (size_t)n;
    *blob = malloc(*blen ? *blen : 1);
    if (!*blob) {
        rc = ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if (n > 0 && H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, *blob) < 0) {
        free(*blob);
        *blob = NULL;
        rc = ckpt__h5_fail(err, CKPT_ECORRUPT, "%s: read /index", path);
    }
out:
    if (sp >= 0)
        H5Sclose(sp);
    if (ds >= 0)
        H5Dclose(ds);
    if (dapl >= 0)
        H5Pclose(dapl);
    if (f >= 0)
        H5Fclose(f);
    if (fapl >= 0)
        H5Pclose(fapl);
    return rc;
}

/* Checks the user block and the body checksum of the whole image. */
static int check_user_block(const uint8_t *img, size_t len, const char *path, ckpt__err *err)
{
    if (len < UB_BYTES || memcmp(img, ub_magic, 8) != 0)
        return ckpt__err_set(err, CKPT_ECORRUPT, "%s: not a ckpt manifest (no user block)",
                             path);
    uint32_t ver = rd32(img + 8), flags = rd32(img + 12);
    int hashed = (flags & UB_FLAG_HEADER_HASH) != 0;
    if (hashed && rd64(img + UB_HASH_AT) != header_hash(img))
        return ckpt__err_set(err, CKPT_ECORRUPT,
                             "%s: user block damaged (its header hash differs)", path);
    if (ver != UB_VERSION || (flags & ~UB_FLAG_HEADER_HASH)) {
        /* Only an intact header may announce a newer format. */
        if (hashed && ver >= UB_VERSION)
            return ckpt__err_set(err, CKPT_EFORMAT,
                                 "%s: manifest user block version %u, flags 0x%x: written by a "
                                 "newer ckptrt (this one reads version %u)",
                                 path, ver, flags, UB_VERSION);
        return ckpt__err_set(err, CKPT_ECORRUPT,
                             "%s: user block damaged (version %u, flags 0x%x)", path, ver, flags);
    }
    size_t zero_from = hashed ? UB_HASH_AT + 8 : UB_HASH_AT;
    if (!all_zero(img + zero_from, UB_BYTES - zero_from))
        return ckpt__err_set(err, CKPT_ECORRUPT,
                             "%s: user block damaged (reserved bytes are not zero)", path);
    uint64_t sealed = rd64(img + 16);
    if (sealed != len)
        return ckpt__err_set(err, CKPT_ECORRUPT, "%s is %zu bytes, sealed at %llu (truncated?)",
                             path, len, (unsigned long long)sealed);
    if (rd64(img + 24) != XXH3_64bits(img + UB_BYTES, len - UB_BYTES))
        return ckpt__err_set(err, CKPT_ECORRUPT, "%s: checksum mismatch (damaged)", path);
    return 0;
}

/* open() of path failed with e: a name that is there but not a regular file
 * (a symlink, refused by O_NOFOLLOW; a socket) is damage, not an I/O error. */
static int open_failed(const char *path, int e, ckpt__err *err)
{
    struct stat st;
    if (e == ENOENT)
        return ckpt__err_set(err, CKPT_ECORRUPT, "%s is missing", path);
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return ckpt__err_set(err, CKPT_ECORRUPT, "%s is not a regular file (%s)", path,
                             S_ISLNK(st.st_mode) ? "a symbolic link" : "a special file");
    return ckpt__err_errno(err, e, "open %s", path);
}

static int manifest_read(const char *path, int part, ckpt__index *out, ckpt__err *err)
{
    memset(out, 0, sizeof *out);
    /* O_NONBLOCK: a FIFO planted under this name must not hang the open;
     * slurp() then refuses anything but a regular file. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return open_failed(path, errno, err);
    uint8_t *img = NULL;
    size_t len = 0;
    int rc = slurp(fd, path, &img, &len, err);
    close(fd);
    if (rc)
        return rc;
    rc = check_user_block(img, len, path, err);
    if (rc) {
        free(img);
        return rc;
    }
    uint8_t *blob = NULL;
    size_t blen = 0;
    int64_t attrs[2] = {0, 0};
    ckpt__h5_enter();
    rc = read_index_blob(img, len, path, &blob, &blen, attrs, err);
    ckpt__h5_leave();
    free(img);
    if (rc)
        return rc;
    rc = ckpt__index_decode(blob, blen, path, out, err);
    free(blob);
    if (rc)
        return rc;
    if (attrs[0] != out->step || attrs[1] != (int64_t)out->world_size)
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s: attributes disagree with /index", path);
    if (!rc)
        rc = ckpt__index_check_tree(out, path, err);
    if (!rc && !part && out->nranks != out->world_size)
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s: %u of %u rank files listed", path,
                           out->nranks, out->world_size);
    if (rc)
        ckpt__index_free(out);
    return rc;
}

int ckpt__manifest_read(const char *path, ckpt__index *out, ckpt__err *err)
{
    return manifest_read(path, 0, out, err);
}

int ckpt__manifest_read_part(const char *path, ckpt__index *out, ckpt__err *err)
{
    return manifest_read(path, 1, out, err);
}
