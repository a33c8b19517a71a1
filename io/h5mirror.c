/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See h5mirror.h.  The memory file is a memfd: sparse like the file (HDF5
 * writes metadata around the tensor data it never touches), so it holds
 * only the pages HDF5 wrote, and SEEK_DATA finds them again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/h5mirror.h"
#include "io/h5util.h"

#define COPY_BUF (1u << 20)
#define RESERVE 4096 /* what H5Fcreate writes: the superblock's page */

/* Copies [off, off + len) from one descriptor to the other; 0, or the
 * errno with *what saying which side failed and *at where. */
static int copy_range(int from, int to, uint64_t off, uint64_t len, uint8_t *buf,
                      const char **what, uint64_t *at)
{
    while (len > 0) {
        size_t n = len < COPY_BUF ? (size_t)len : COPY_BUF;
        ssize_t r = pread(from, buf, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            *what = "read";
            *at = off;
            return r < 0 ? errno : EIO;
        }
        size_t done = 0;
        while (done < (size_t)r) {
            ssize_t w = pwrite(to, buf + done, (size_t)r - done, (off_t)(off + done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                *what = "write";
                *at = off + done;
                return w < 0 ? errno : ENOSPC;
            }
            done += (size_t)w;
        }
        off += (uint64_t)r;
        len -= (uint64_t)r;
    }
    return 0;
}

static int is_sec2(hid_t f)
{
    hid_t fapl = H5Fget_access_plist(f);
    if (fapl < 0)
        return 0;
    hid_t drv = H5Pget_driver(fapl);
    H5Pclose(fapl);
    return drv >= 0 && drv == H5FD_SEC2;
}

/* Points HDF5's descriptor of h at a memfd holding what HDF5 wrote so far
 * (it may read it back); *mem gets our own descriptor of the memfd, or -1
 * when there is none (HDF5 then writes the file itself).  0 or an errno. */
static int to_memory(hid_t h, int *mem)
{
    *mem = -1;
    int *fd = NULL;
    if (!is_sec2(h) || H5Fget_vfd_handle(h, H5P_DEFAULT, (void **)&fd) < 0 || !fd ||
        *fd < 0) {
        H5Eclear2(H5E_DEFAULT);
        return 0;
    }
    int m = memfd_create("ckpt-h5-mirror", MFD_CLOEXEC);
    if (m < 0)
        return 0;
    struct stat st;
    int e = fstat(*fd, &st) != 0 ? errno : 0;
    const char *what = "read";
    uint64_t at = 0;
    uint8_t *buf = e ? NULL : malloc(COPY_BUF);
    if (!e && !buf)
        e = ENOMEM;
    if (!e)
        e = copy_range(*fd, m, 0, (uint64_t)st.st_size, buf, &what, &at);
    free(buf);
    if (!e && dup2(m, *fd) < 0)
        e = errno;
    if (e) {
        close(m);
        return e;
    }
    *mem = m;
    return 0;
}

int ckpt__h5_mirror_create(ckpt__h5_mirror *m, const char *path, hid_t fcpl, hid_t fapl,
                           hid_t *out, ckpt__err *err)
{
    m->mem = m->file = -1;
    *out = H5I_INVALID_HID;
    /* The file on disk: ours, new (Inv. 6 of commit.c), never through a link. */
    int file = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (file < 0)
        return ckpt__err_errno(err, errno, "create %s", path);
    /* H5Fcreate writes the superblock, within the first page, and HDF5 1.10
     * leaks when that write fails.  So the page is taken here first, where
     * a full disk is an errno; H5Fcreate then truncates the file and writes
     * into the space it just freed. */
    static const uint8_t page[RESERVE];
    size_t done = 0;
    while (done < sizeof page) {
        ssize_t w = pwrite(file, page + done, sizeof page - done, (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            close(file);
            return ckpt__err_errno(err, e, "create %s", path);
        }
        done += (size_t)w;
    }
    hid_t h = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    if (h < 0) {
        close(file);
        return ckpt__h5_fail(err, CKPT_EIO, "create %s", path);
    }
    int e = to_memory(h, &m->mem);
    if (e) {
        H5Fclose(h);
        H5Eclear2(H5E_DEFAULT);
        close(file);
        return ckpt__err_errno(err, e, "%s: moving HDF5's writes to memory", path);
    }
    m->file = file;
    *out = h;
    return 0;
}

int ckpt__h5_mirror_sync(const ckpt__h5_mirror *m, const ckpt__range *skip, size_t nskip,
                         const char *path, ckpt__err *err)
{
    if (m->mem < 0)
        return 0;
    struct stat ms, fs;
    if (fstat(m->mem, &ms) != 0 || fstat(m->file, &fs) != 0)
        return ckpt__err_errno(err, errno, "stat %s", path);
    uint8_t *buf = malloc(COPY_BUF);
    if (!buf)
        return ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", path);
    const uint64_t size = (uint64_t)ms.st_size;
    const char *what = "write";
    uint64_t pos = 0, at = 0;
    size_t k = 0;
    int e = 0;
    while (!e && pos < size) {
        off_t d = lseek(m->mem, (off_t)pos, SEEK_DATA);
        if (d < 0) {
            e = errno == ENXIO ? 0 : errno; /* ENXIO: no data after pos */
            break;
        }
        off_t h = lseek(m->mem, d, SEEK_HOLE);
        if (h < 0) {
            e = errno;
            break;
        }
        /* The extent [d, h) minus the caller's ranges. */
        uint64_t a = (uint64_t)d, end = (uint64_t)h;
        while (!e && a < end) {
            while (k < nskip && skip[k].off + skip[k].len <= a)
                k++;
            if (k < nskip && skip[k].off <= a) {
                a = skip[k].off + skip[k].len < end ? skip[k].off + skip[k].len : end;
                continue;
            }
            uint64_t b = k < nskip && skip[k].off < end ? skip[k].off : end;
            e = copy_range(m->mem, m->file, a, b - a, buf, &what, &at);
            a = b;
        }
        pos = end;
    }
    free(buf);
    if (e)
        return ckpt__err_errno(err, e, "%s %s at offset %llu", what, path,
                               (unsigned long long)at);
    /* HDF5's length (its end of allocation once closed); the tensor data
     * may already reach further, never past it. */
    if ((uint64_t)fs.st_size < size && ftruncate(m->file, (off_t)size) != 0)
        return ckpt__err_errno(err, errno, "extend %s to %llu bytes", path,
                               (unsigned long long)size);
    return 0;
}

void ckpt__h5_mirror_end(ckpt__h5_mirror *m)
{
    if (m->mem >= 0)
        close(m->mem);
    if (m->file >= 0)
        close(m->file);
    m->mem = m->file = -1;
}
