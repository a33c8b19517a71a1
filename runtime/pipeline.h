/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data pipeline between registered tensors and a rank file, through the
 * staging pool, in either direction:
 *
 *   save:  device copy_out -> slab -> hash (leaves) -> writer writes -> free
 *   load:  writer reads -> slab -> hash (verify) -> device copy_in -> free
 *
 * Plan: the entries to move are cut into extents (one hash chunk each) and
 * packed in order into batches of at most chunk_bytes: big entries start at
 * a 4 KiB boundary of the batch (their file offsets are 4 KiB-aligned, so
 * the writer can use O_DIRECT), small ones are packed tightly (HDF5 packs
 * small datasets tightly too, so neighbours merge into one write).  Runs are
 * the maximal pieces of a batch contiguous both in staging and in the file:
 * one I/O request each.
 *
 * Staging is a ring: batches take their own length (4 KiB-rounded) in the
 * order they start, and their space comes back in that order, so a pool as
 * big as the state holds the whole snapshot whatever the tensor sizes.
 *
 * Snapshot first: while copies can still make progress (some are queued on
 * the device), copied batches wait to be hashed, so on a machine with few
 * cores the copy, which the caller's fence waits for, is not slowed by
 * hashing.  Hashing starts once every started copy is done: the snapshot
 * is complete, or the pool is full and slabs must be written to be freed.
 *
 * Concurrency: the coordinator (the thread in ckpt__pipe_run) owns the plan
 * and the slabs; device, hash and writer threads only touch the batch they
 * were given and report back through the mailbox, one event per batch and
 * stage, so at most one event per batch is ever queued.
 *
 * Invariants:
 *   1. A byte of staging belongs to at most one batch; it returns to the
 *      ring only after the batch's last I/O or copy_in completed.
 *   2. A batch in flight has exactly one pending stage.
 *   3. After a failure no new batch starts; run() returns only when every
 *      started batch has come back, so no thread touches a slab, a tensor
 *      or the file after run() returns.
 */
#ifndef CKPT_RUNTIME_PIPELINE_H
#define CKPT_RUNTIME_PIPELINE_H

#include <stdatomic.h>
#include <stdint.h>

#include "io/index.h"
#include "runtime/engine.h"

enum ckpt__pipe_dir { CKPT__PIPE_SAVE = 1, CKPT__PIPE_LOAD = 2 };

typedef struct ckpt__pipe ckpt__pipe;

typedef struct ckpt__extent {
    uint32_t entry;
    uint32_t chunk;
    uint64_t src_off; /* offset inside the entry's data */
    uint64_t n;
    uint64_t slab_off; /* offset inside its batch's staging space */
} ckpt__extent;

typedef struct ckpt__batch {
    ckpt__pipe *pipe;
    uint32_t first, count; /* extents */
    uint32_t run0, nruns;
    uint64_t off, len; /* its place in the staging ring */
    int released;      /* done with its staging space */
    atomic_uint pending;
    atomic_int io_failed;
    int64_t io_res;
    uint32_t io_run;
    int copy_rc;       /* 0, or the CKPT_E* code of its failed copy */
    int copy_msg;      /* its failure is the one in pipe->copy_err */
    ckpt__copyreq creq;
    ckpt__task task;
    ckpt__event ev;
} ckpt__batch;


struct ckpt__pipe {
    int dir;
    ckpt__engine *eng;
    ckpt__index *idx;    /* entries; hashes[] receive (save) or hold (load) leaves */
    void *const *ptrs;   /* per entry: source (save) or destination (load, may be NULL) */
    const char *what;    /* file name for messages */
    void *stream;
    ckpt__wfile *file;
    int keep_going;      /* load: report every bad chunk instead of stopping */
    int verify;          /* load: hash and compare (default 1) */

    ckpt__extent *ext;
    uint32_t next;
    ckpt__batch *bat;
    uint32_t nbat;
    ckpt__copy *ops;     /* per extent */
    ckpt__ioreq *runs;
    uint64_t *run_slab_off; /* per run: where its bytes sit in the slab */
    uint32_t *run_ext;      /* per run: its first extent */
    uint8_t *bad;        /* load: per extent, 1 when its hash differs */

    ckpt__mbox mbox;
    uint32_t started, finished, outstanding;
    uint64_t ring_head;  /* where the next batch's space starts */
    uint32_t ring_tail;  /* oldest batch still holding space */
    uint32_t filled;      /* save: batches whose copy the coordinator has seen */
    ckpt__task *deferred; /* save: copied batches waiting to be hashed */
    atomic_uint copied;
    atomic_uint_fast64_t hash_cpu_ns; /* CPU time of the hash threads on this
                                         pipe's batches (the save policy's cost) */
    void (*on_snapshot)(void *user); /* save: every batch has been copied */
    void (*on_queued)(void *user);   /* save: every batch's copy is queued
                                        (before on_snapshot; coordinator) */
    void *snap_user;
    int queued_sent;
    int failed;
    ckpt__err err;
    /* save: the first failed copy's message, written by the callback that
     * won copy_failed and read by the coordinator only after taking that
     * batch's event (so never while being written). */
    atomic_int copy_failed;
    ckpt__err copy_err;
    ckpt__bad_chunk *bads;
    uint32_t nbads, cap_bads;
    uint64_t bytes;      /* planned data bytes */
    uint64_t done_bytes; /* bytes through the whole pipeline so far */
    void (*on_progress)(void *user, uint64_t done, uint64_t total); /* coordinator */
    void *progress_user;
    /* save from a file (ckpt__pipe_set_source): batches are filled by
     * reads of src instead of device copies, and their leaves must equal
     * expect[] (the source's own chunk hashes). */
    ckpt__wfile *src;
    const char *src_what;     /* the source's name for messages */
    const uint64_t *src_off;  /* per entry of idx: its data's offset in src */
    const uint64_t *expect;   /* per leaf of idx */
    ckpt__ioreq *src_reqs;    /* per extent */
};

/* Plans moving entries[0..n) of idx (indices, in order). */
int ckpt__pipe_init(ckpt__pipe *p, int dir, ckpt__engine *eng, ckpt__index *idx,
                    void *const *ptrs, const uint32_t *entries, uint32_t n, const char *what,
                    ckpt__err *err);
/* Save from a file rather than from the entries' memory (the drain,
 * docs/ARCHITECTURE.md, "Tiers"): each extent is read from src at
 * src_off[entry] + its offset, and its hash must equal
 * expect[chunk0 + chunk], else the save fails with CKPT_ECORRUPT naming
 * src_what, the entry and the chunk, before that batch is written.  The
 * arrays must outlive the pipe; ptrs are not read for those entries.
 * Before ckpt__pipe_start. */
int ckpt__pipe_set_source(ckpt__pipe *p, ckpt__wfile *src, const char *src_what,
                          const uint64_t *src_off, const uint64_t *expect, ckpt__err *err);
/* Save: starts copying into free slabs; the file may come later. */
void ckpt__pipe_start(ckpt__pipe *p);
/* Sets the file: computes runs from the entries' file offsets. */
int ckpt__pipe_set_file(ckpt__pipe *p, ckpt__wfile *file);
/* Marks the pipeline failed (e.g. the layout could not be made). */
void ckpt__pipe_fail(ckpt__pipe *p, const ckpt__err *why);
/* Runs to completion; returns 0 or the first error (p->err). */
int ckpt__pipe_run(ckpt__pipe *p);
void ckpt__pipe_destroy(ckpt__pipe *p);

#endif
