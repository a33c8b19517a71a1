/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fault sites and actions, and the test hooks that arm them on a
 * context (or on a table of their own).  Separate from fault.h (which holds the C11 atomic counters) so
 * that C++ tests can include it.  Not installed; not part of the API.
 */
#ifndef CKPT_RUNTIME_FAULT_HOOKS_H
#define CKPT_RUNTIME_FAULT_HOOKS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ckpt__fault_site {
    CKPT__FAULT_WRITE = 0, /* a data write submitted to the writer */
    CKPT__FAULT_READ,      /* a data read (restore, verify) */
    CKPT__FAULT_LAYOUT,    /* creating the rank file's HDF5 layout */
    CKPT__FAULT_SYNC,      /* fsync of the rank file */
    CKPT__FAULT_FINISH,    /* finishing the rank file (HDF5's close; a file
                              written from the cached layout: the same point) */
    CKPT__FAULT_DONE,      /* writing the done-record */
    CKPT__FAULT_MANIFEST,  /* writing the manifest */
    CKPT__FAULT_RENAME,    /* the commit rename (also a replica's, replica.c) */
    CKPT__FAULT_DIRSYNC,   /* fsync of DIR after the rename */
    CKPT__FAULT_COPY,      /* a snapshot copy request handed to the device */
    CKPT__FAULT_BARRIER,   /* a comm barrier */
    CKPT__FAULT_ALLREDUCE, /* a comm allreduce (open, policy agreement, restore) */
    CKPT__FAULT_BCAST,     /* a comm bcast (open, restore's agreed error) */
    CKPT__FAULT_GATHER,    /* a comm gather */
    CKPT__FAULT_NOTE,      /* receiving a note (comm.h): fails it, notes are then not used */
    CKPT__FAULT_EXCHANGE,  /* a comm exchange (comm.h): fails it before anything is posted */
    CKPT__FAULT_REPLICA_ROOM, /* allocating a landing replica's files (replica.c,
                                 make_room: where a full disk fails) */
    CKPT__FAULT_NSITES
};

enum ckpt__fault_action {
    CKPT__FAIL_NONE = 0,
    CKPT__FAIL_EIO,    /* comm sites: any action but CRASH fails with CKPT_ECOMM */
    CKPT__FAIL_ENOSPC,
    CKPT__FAIL_SHORT, /* I/O sites: completes with half the bytes */
    CKPT__FAIL_CRASH  /* raise(SIGKILL) at the site */
};

struct ckpt_ctx;
/* Arms `site` of a context to fail once, at its hit number nth (counted
 * from 0 from now); nth < 0 disarms.  CKPT_EINVAL for a bad site. */
int ckpt__fault_arm(struct ckpt_ctx *ctx, int site, int64_t nth, int action);
/* How many times the site fired since it was armed. */
int ckpt__fault_fired(struct ckpt_ctx *ctx, int site);
/* How many times the site was reached since it was armed (hits count only
 * while armed: arm it at a hit number never reached to count the reads a
 * restore submits). */
int64_t ckpt__fault_hits(struct ckpt_ctx *ctx, int site);

/* Bytes of tensor data the last ckpt_restore on ctx read from files of
 * tier (CKPT_TIER_LOCAL, _DURABLE, _REPLICA: a local file fetched from a
 * replica), counted as the reads it submitted to the writer. */
uint64_t ckpt__restore_bytes(struct ckpt_ctx *ctx, int tier);

/* The layout cache (runtime/layout.h): how many saves of the context built
 * their rank file through HDF5 (*built) and how many wrote it from the
 * cache (*cached). */
void ckpt__layout_counts(struct ckpt_ctx *ctx, uint64_t *built, uint64_t *cached);
/* Damages the cached layout, to show that a wrong cache never makes a
 * checkpoint that verifies: what 0 flips the low bit of byte k (modulo its
 * size) of the cached image, 1 moves the cached file offset of the k-th
 * entry (modulo their number) with data 8 bytes on, 2 flips the low bit
 * of the cached metadata hash.  CKPT_ENOTFOUND when nothing is cached. */
enum { CKPT__LAYOUT_DAMAGE_IMAGE = 0, CKPT__LAYOUT_DAMAGE_OFFSET, CKPT__LAYOUT_DAMAGE_HASH };
int ckpt__layout_damage(struct ckpt_ctx *ctx, int what, uint64_t k);

/* The save policy's policy_mtbf_s rule (runtime/policy.c), on rank 0.
 * test_cost: cost_s >= 0 makes every later sample of tier (a ckpt_tier,
 * LOCAL or DURABLE) cost_s seconds instead of the measured cost; < 0
 * measures again.  CKPT_EINVAL for a bad tier.  test_clock: now_ns != 0
 * makes the rule's clock read now_ns (the first such call also restarts
 * its period at now_ns); 0 gives it the real clock back.  interval: the
 * tier's interval T and (*cost_s, may be NULL) its cost C, both -1 before
 * a measurement.  durable_every: the durable cadence in force (any rank). */
int ckpt__policy_test_cost(struct ckpt_ctx *ctx, int tier, double cost_s);
void ckpt__policy_test_clock(struct ckpt_ctx *ctx, uint64_t now_ns);
double ckpt__policy_interval(struct ckpt_ctx *ctx, int tier, double *cost_s);
int ckpt__policy_durable_every(struct ckpt_ctx *ctx);

/* A fault table without a context, for tests that call the comm wrappers
 * of backend.h directly: new (NULL when out of memory), arm and fired as
 * above, free (NULL is a no-op). */
struct ckpt__fault;
struct ckpt__fault *ckpt__fault_new(void);
int ckpt__fault_arm_table(struct ckpt__fault *f, int site, int64_t nth, int action);
int ckpt__fault_fired_table(struct ckpt__fault *f, int site);
int64_t ckpt__fault_hits_table(struct ckpt__fault *f, int site);
void ckpt__fault_free(struct ckpt__fault *f);

#ifdef __cplusplus
}
#endif
#endif
