/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writer interface: positioned reads and writes of rank files, with
 * completions delivered asynchronously, plus durable sync.  Backends:
 * writer_pwrite.c (the worker pool of base/workers.h doing pwrite/pread)
 * and writer_uring.c (io_uring, one completion thread); the file methods
 * they share are in writer.c.
 *
 * Shape (after sqlite3_io_methods and libuv's fs layer):
 *   - A writer is opened once per context; files are opened through it.
 *   - Requests are caller-owned ckpt__ioreq structs (no allocation per
 *     I/O).  The caller fills file, op, buf, n, off, cb, user and must not
 *     touch the struct again until cb(req) has run.
 *   - submit() is called from one thread at a time; cb runs on a backend
 *     thread, possibly before submit() returns.  req->res is the number of
 *     bytes transferred (n on success; less only at end of file for reads
 *     or when the device refuses more) or a negative errno.
 *   - The backend uses O_DIRECT for the parts of a request whose buffer
 *     address, file offset and length are 4 KiB aligned, and a buffered
 *     descriptor for the rest, so sub-block tails never rewrite bytes
 *     outside [off, off + n) (docs/ARCHITECTURE.md: the HDF5 tail trap).
 *   - sync() makes every completed write of the file durable (fsync).
 */
#ifndef CKPT_IO_WRITER_H
#define CKPT_IO_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/workers.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2: a probe method. */
#define CKPT__WRITER_VERSION 2
#define CKPT__DIO_ALIGN 4096u

typedef struct ckpt__writer ckpt__writer;
typedef struct ckpt__wfile ckpt__wfile;
typedef struct ckpt__ioreq ckpt__ioreq;

enum ckpt__io_op { CKPT__IO_READ = 1, CKPT__IO_WRITE = 2 };
enum ckpt__wfile_mode { CKPT__WF_READ = 1, CKPT__WF_WRITE = 2 };

struct ckpt__ioreq {
    ckpt__wfile *file;
    int op;                       /* CKPT__IO_READ or CKPT__IO_WRITE */
    void *buf;
    size_t n;
    uint64_t off;
    void (*cb)(ckpt__ioreq *req); /* completion, on a backend thread */
    void *user;
    int64_t res;                  /* set before cb: bytes or -errno */
    ckpt__task task;              /* backend's use while queued */
    /* Backend's use while in flight: the pieces of the request (unaligned
     * head, O_DIRECT body, tail) and their progress. */
    struct ckpt__iopart {
        uint64_t off, len, done;
        int direct;
    } part[3];
    int nparts, parts_left, err;
};

typedef struct ckpt__writer_config {
    int threads;     /* pwrite pool threads (>= 1) */
    int queue_depth; /* I/O pieces in flight (io_uring) */
    int direct;      /* 1: use O_DIRECT where the file system allows */
} ckpt__writer_config;

typedef struct ckpt__writer_methods {
    int version;
    const char *name;
    /* 0 when the backend can run here, else CKPT_EUNSUPPORTED and why
     * (io_uring: EPERM under seccomp or io_uring_disabled, ENOSYS, ENOMEM;
     * the environment variable CKPT_TEST_URING_PROBE=<errno name> makes it
     * fail as if the kernel had refused, so tests can check the fallback). */
    int (*probe)(ckpt__err *err);
    int (*open)(const ckpt__writer_config *cfg, ckpt__writer **out, ckpt__err *err);
    /* Every request must have completed. */
    void (*close)(ckpt__writer *w);
    /* Opens an existing file (never creates; refuses symlinks).  fd >= 0
     * is a descriptor of path already open read-write (mode WRITE) that the
     * file takes over, so a file just created costs no second lookup; it
     * is closed with the file, or here on failure.  -1: opens path. */
    int (*file_open)(ckpt__writer *w, const char *path, int mode, int fd, ckpt__wfile **out,
                     ckpt__err *err);
    /* Every request on the file must have completed. */
    void (*file_close)(ckpt__writer *w, ckpt__wfile *f);
    /* Queues req; never fails synchronously (errors arrive through cb). */
    void (*submit)(ckpt__writer *w, ckpt__ioreq *req);
    int (*sync)(ckpt__writer *w, ckpt__wfile *f, ckpt__err *err);
    /* Reserves [off, off + len) on disk (fallocate) so that writes there
     * neither extend the file nor fail for space later; a file system
     * without fallocate is not an error. */
    int (*allocate)(ckpt__writer *w, ckpt__wfile *f, uint64_t off, uint64_t len,
                    ckpt__err *err);
    /* 1 when the file got an O_DIRECT descriptor. */
    int (*is_direct)(const ckpt__wfile *f);
    /* Optional (NULL): registers [base, base + len) for I/O, in pieces that
     * are whole multiples of `unit`.  Failing is not fatal: the writer then
     * works unregistered and err says why. */
    int (*register_buffers)(ckpt__writer *w, void *base, size_t len, size_t unit,
                            ckpt__err *err);
} ckpt__writer_methods;

extern const ckpt__writer_methods ckpt__writer_pwrite;
extern const ckpt__writer_methods ckpt__writer_uring;

/* A file open for a writer: what both backends hold.  fd is buffered;
 * fd_direct is an O_DIRECT descriptor of the same file, or -1 where the
 * file system refuses O_DIRECT (tmpfs) or the writer was opened without. */
struct ckpt__wfile {
    int fd;
    int fd_direct;
};

/* The file methods both backends share (writer.c): open an existing file
 * (never creating it, refusing a symlink; a FIFO planted under the name
 * does not block), close it, reserve space, tell O_DIRECT. */
int ckpt__wfile_open(const char *path, int mode, int direct, int fd, ckpt__wfile **out,
                     ckpt__err *err);
void ckpt__wfile_close(ckpt__writer *w, ckpt__wfile *f);
int ckpt__wfile_allocate(ckpt__writer *w, ckpt__wfile *f, uint64_t off, uint64_t len,
                         ckpt__err *err);
int ckpt__wfile_is_direct(const ckpt__wfile *f);

/* How a request splits: an unaligned head and tail go through the buffered
 * descriptor, the 4 KiB-aligned body through the O_DIRECT one (when the
 * buffer and the file offset share their phase).  Fills req->part. */
void ckpt__io_split(ckpt__ioreq *req, int have_direct);

#ifdef __cplusplus
}
#endif
#endif
