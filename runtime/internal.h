/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The context and what hangs off it: the tensor registry, the metadata
 * store, save jobs and tickets.  Internal to runtime/; the CLI, the bench
 * and tests/internal may use it through the static library.
 *
 * Threads and ownership of a context:
 *   - the caller's thread runs every public function;
 *   - one coordinator thread per context runs saves, one at a time, in
 *     submission order (save.c);
 *   - backend threads (copy, hash, I/O) only touch what a request hands
 *     them (pipeline.h).
 * ctx->mu guards the job queue, the ticket table, inflight, snap_pending,
 * the unreported failures (unobserved, nunobserved) and stop; everything
 * else of the context belongs to the caller's thread, except the registry,
 * which the coordinator reads while saves are in flight and which is
 * therefore frozen then (ckpt_register -> CKPT_ESTATE).
 */
#ifndef CKPT_RUNTIME_INTERNAL_H
#define CKPT_RUNTIME_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "io/index.h"
#include "io/strmap.h"
#include "runtime/comm.h"
#include "base/clock.h"
#include "base/err.h"
#include "runtime/fault.h"
#include "base/log.h"
#include "runtime/pipeline.h"
#include "runtime/verify.h"

/* The calling thread's buffer for errors of calls without a context
 * (error_codes.c).  libckpt only: a backend library reports through its
 * own handles instead (comm.h, device.h). */
ckpt__err *ckpt__thread_err(void);

/* ---- registry (registry.c) ------------------------------------------------ */

typedef struct ckpt__tensor {
    char *name;
    void *ptr;
    ckpt_dtype dtype;
    int ndim;
    int sharded;                   /* 0: replicated on every rank */
    int64_t shape[CKPT_MAX_NDIM];  /* local shape (the count of the slice) */
    int64_t gshape[CKPT_MAX_NDIM]; /* global shape; = shape when replicated */
    int64_t start[CKPT_MAX_NDIM];  /* the slice's offsets; 0 when replicated */
    uint64_t nbytes;               /* local bytes */
} ckpt__tensor;

typedef struct ckpt__registry {
    ckpt__tensor *v;
    uint32_t n, cap;
    ckpt__strmap map;
} ckpt__registry;

/* shape is the local shape; gshape and start are NULL for a replicated
 * tensor, else the global shape and the slice's offsets. */
int ckpt__registry_add(ckpt__registry *r, const char *name, void *ptr, ckpt_dtype dtype,
                       int ndim, const int64_t *shape, const int64_t *gshape,
                       const int64_t *start, ckpt__err *err);
int ckpt__registry_remove(ckpt__registry *r, const char *name, ckpt__err *err);
void ckpt__registry_free(ckpt__registry *r);

typedef struct ckpt__kv {
    char *key;
    uint8_t *val;
    size_t len;
} ckpt__kv;

typedef struct ckpt__metastore {
    ckpt__kv *v;
    uint32_t n, cap;
    ckpt__strmap map;
} ckpt__metastore;

/* Copies data; replaces an existing key. */
int ckpt__meta_put(ckpt__metastore *m, const char *key, const void *data, size_t len,
                   ckpt__err *err);
const ckpt__kv *ckpt__meta_get(const ckpt__metastore *m, const char *key);
int ckpt__meta_copy(ckpt__metastore *dst, const ckpt__metastore *src, ckpt__err *err);
/* Removes a key; 1 when it was there, else 0. */
int ckpt__meta_del(ckpt__metastore *m, const char *key);
void ckpt__meta_free(ckpt__metastore *m);

/* Metadata providers (ckpt_set_meta_fn), in the order their keys were
 * first given one; the caller's thread only. */
typedef struct ckpt__provider {
    char *key;
    ckpt_meta_fn fn;
    void *user;
} ckpt__provider;

typedef struct ckpt__providers {
    ckpt__provider *v;
    uint32_t n, cap;
    uint8_t *buf; /* CKPT_MAX_META bytes the providers write into; from the first */
} ckpt__providers;

/* Sets, replaces or (fn NULL) removes the provider of key. */
int ckpt__provider_set(ckpt__providers *p, const char *key, ckpt_meta_fn fn, void *user,
                       ckpt__err *err);
/* Whether key has a provider; removes it when so (ckpt_set_meta wins). */
int ckpt__provider_drop(ckpt__providers *p, const char *key);
void ckpt__providers_free(ckpt__providers *p);
/* The metadata of a save: a copy of m, then every provider's value in its
 * place (dst is empty on failure, and err names the key). */
int ckpt__meta_capture(ckpt__metastore *dst, const ckpt__metastore *m, ckpt__providers *p,
                       ckpt__err *err);

/* ---- saves and tickets ----------------------------------------------------- */

typedef struct ckpt__job {
    struct ckpt__job *next;
    ckpt_ctx *ctx;
    uint64_t ticket;
    int64_t step;
    uint64_t seq;
    ckpt__metastore meta; /* captured at ckpt_save */
    int wanted;           /* the caller holds the ticket */
    int snap_done;        /* ctx->mu */
    int snap_queued;      /* ctx->mu: every snapshot copy is queued */
    ckpt__err err;
    uint64_t bytes;       /* set by the coordinator before the copies start */
    uint64_t t_save_ns;   /* when ckpt_save was called */
    uint64_t t_stage_ns;  /* the previous event (ctx->ev_mu) */
} ckpt__job;

typedef struct ckpt__ticketrec {
    uint64_t ticket;
    int done;
    int result;
    int wanted; /* the caller holds the ticket */
    char *msg;
} ckpt__ticketrec;

/* ---- save policy (policy.c) ------------------------------------------------ */

#define CKPT__POLICY_MAX_S 1e9 /* policy_every_s bound: its nanoseconds fit */
#ifdef NSIG
#define CKPT__NSIG NSIG
#else
#define CKPT__NSIG 65
#endif

/* Why a step is due; the first three are agreed across ranks. */
enum {
    CKPT__DUE_TIME = 1,
    CKPT__DUE_SIGNAL = 2,
    CKPT__DUE_FILE = 4,
    CKPT__DUE_STEPS = 8
};

/* Owned by the caller's thread, like the rest of the context. */
typedef struct ckpt__policy {
    uint64_t ncalls;     /* counted calls of ckpt_policy_due since open */
    int agree;           /* some rank has a time, signal or file rule */
    uint64_t every_ns;   /* rank 0: policy_every_s, 0 off */
    uint64_t base_ns;    /* rank 0: start of the current period */
    int sig;             /* the signal whose handler this context holds, 0 none */
    unsigned sig_seen;   /* the handler's count this context last took */
    char *file;          /* copy of cfg.policy_request_file (cfg points here) */
    int dir_fd;          /* rank 0 with a request file: the folder, else -1 */
    int pending;         /* CKPT__DUE_* requests taken, not yet agreed */
    int stuck;           /* rank 0: a request file that could not be removed */
    dev_t stuck_dev;
    ino_t stuck_ino;
} ckpt__policy;

/* Installs the signal handler (every rank) and opens the folder (rank 0),
 * then agrees with the other ranks (a collective of ckpt_open). */
int ckpt__policy_open(ckpt_ctx *ctx, ckpt__err *err);
/* Undoes ckpt__policy_open; safe on a context it never reached once
 * ctx->pol.dir_fd is -1. */
void ckpt__policy_close(ckpt_ctx *ctx);

struct ckpt_ctx {
    ckpt_config cfg; /* cfg.dir points at dir, cfg.policy_request_file at pol.file */
    char *dir;
    ckpt__err err;   /* last error of a call on this context */
    ckpt__log log;
    ckpt_comm *comm;
    int rank, world;
    ckpt__fault fault;
    ckpt__engine eng;
    ckpt__registry reg;
    ckpt__metastore meta;
    ckpt__providers prov;      /* ckpt_set_meta_fn */
    int64_t restored_step;     /* the last ckpt_restore's step, or -1 */
    uint8_t restored_uuid[16]; /* and its checkpoint's uuid */
    uint8_t run_uuid[16];
    uint64_t seq;

    pthread_mutex_t ev_mu; /* one event at a time (events.c) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t coord;
    int coord_running;
    int stop;
    ckpt__job *qhead, *qtail;
    int inflight;     /* accepted saves not finished */
    int64_t running_step; /* the step the coordinator is saving, or -1 */
    pthread_t janitor;     /* applies retention after commits (save.c) */
    int janitor_running;
    int jan_req, jan_busy; /* a retention pass requested / running */
    int64_t jan_step;      /* the step it must never delete */
    int snap_pending; /* accepted saves whose snapshot is not complete */
    int snap_unqueued; /* accepted saves whose snapshot copies are not all
                          queued (fence on the device waits for these) */
    ckpt__ticketrec *tickets;
    size_t ntickets, cap_tickets;
    uint64_t next_ticket;
    ckpt__err unobserved; /* first unreported failure of a save without a
                             ticket (ckpt.h conventions) */
    uint32_t nunobserved; /* how many failed since the last report */
    ckpt__policy pol;     /* ckpt_policy_due (policy.c) */
};

/* save.c */
void *ckpt__coordinator_main(void *ctx);
void *ckpt__janitor_main(void *ctx);
/* Blocks until no retention pass is pending or running (ctx->mu held). */
void ckpt__wait_janitor(ckpt_ctx *ctx);
void ckpt__job_free(ckpt__job *job);

/* ctx.c: records a finished save on its ticket (ctx->mu held). */
void ckpt__ticket_finish(ckpt_ctx *ctx, uint64_t ticket, int result, const char *msg);
/* ctx.c: notes the failure of a save without a ticket for the caller's
 * next call (ctx->mu held). */
void ckpt__note_unobserved(ckpt_ctx *ctx, const ckpt__err *e);

/* events.c */
void ckpt__emit(ckpt_ctx *ctx, ckpt__job *job, ckpt_event_kind kind, int error,
                const char *message);

/* config.c */
int ckpt__config_validate(const ckpt_config *cfg, ckpt__err *err);

/* restore.c */
int ckpt__restore(ckpt_ctx *ctx, int64_t step, void *stream, int64_t *step_out);
int ckpt__restore_tensors(ckpt_ctx *ctx, const char *const *names, size_t n, void *stream);

/* ---- folders (catalog.c) ---------------------------------------------------- */

/* Committed step folders of dir, newest first (*steps malloc'd). */
int ckpt__catalog_scan(const char *dir, int64_t **steps, size_t *n, ckpt__err *err);
/* Removes leftovers of crashed saves and deletions (rank 0 at open). */
int ckpt__catalog_cleanup(const char *dir, ckpt__log *log, ckpt__err *err);
/* Removes dir/name recursively without following symlinks. */
int ckpt__remove_tree(const char *dir, const char *name, ckpt__err *err);
/* Deletes a committed checkpoint: rename to a trash name, then remove. */
int ckpt__catalog_delete(const char *dir, int64_t step, ckpt__err *err);
/* fsync of a folder. */
int ckpt__fsync_dir(const char *path, ckpt__err *err);

/* ---- commit protocol (commit.c) -------------------------------------------- */

/* shared: another rank may have made the folder already (world > 1). */
int ckpt__commit_begin(const char *dir, int64_t step, const uint8_t uuid[16], int shared,
                       char *partial, size_t cap, ckpt__err *err);
/* Identity of a done-record, to recognise it after the folder's rename. */
typedef struct ckpt__fileid {
    uint64_t dev, ino;
} ckpt__fileid;
int ckpt__commit_done_record(const char *partial_path, const ckpt__index *idx, uint32_t rank,
                             ckpt__fault *fault, ckpt__fileid *id, ckpt__err *err);
/* A rank whose save failed leaves failed-RANK.rec with its error ("<code
 * name>: <message>"), so rank 0 stops waiting for its done-record (best
 * effort). */
void ckpt__commit_mark_failed(const char *dir, const char *partial, uint32_t rank,
                              const ckpt__err *why);
/* Rank 0: waits until every rank's done-record is there: CKPT_ETIMEDOUT
 * after timeout_s; the error of a rank that left a failure mark, naming it
 * (its code; CKPT_EIO for a mark without one). */
int ckpt__commit_wait_records(const char *partial_path, uint32_t world, double timeout_s,
                              ckpt__err *err);
/* Ranks > 0: waits for rank 0's verdict on the save: 0 once the committed
 * folder holds this rank's done-record `id`; rank 0's error when it left
 * its abandoned mark; CKPT_EIO when the partial folder went away without
 * either; CKPT_ETIMEDOUT after timeout_s. */
int ckpt__commit_wait_verdict(const char *dir, const char *partial, int64_t step, uint32_t rank,
                              const ckpt__fileid *id, double timeout_s, ckpt__err *err);
int ckpt__commit_seal(const char *dir, const char *partial, int64_t step, uint32_t world,
                      ckpt__fault *fault, ckpt__log *log, ckpt__err *err);
void ckpt__commit_abandon(const char *dir, const char *partial, ckpt__log *log);
/* Rank 0, several ranks: marks the save abandoned (why: as for a failure
 * mark), waits until every rank left its done-record or failure mark (at
 * most timeout_s), then removes the folder. */
void ckpt__commit_abandon_shared(const char *dir, const char *partial, uint32_t world,
                                 double timeout_s, const ckpt__err *why, ckpt__log *log);

/* ---- retention (retention.c) ------------------------------------------------- */

typedef struct ckpt__retention {
    int keep_last;
    int keep_every;
    double max_age_hours;
} ckpt__retention;

/* Deletes what the rules no longer keep among the committed steps older
 * than `protect`, a step known to be sound (the one just committed, or the
 * newest that `ckpt gc` verified); never `protect` itself nor a newer step,
 * and nothing when protect < 0.  *deleted (may be NULL) gets how many went. */
int ckpt__retention_apply(const char *dir, const ckpt__retention *rules, int64_t protect,
                          ckpt__log *log, int *deleted, ckpt__err *err);
/* Whether retention_apply deletes steps[i] of the catalog `steps` (newest
 * first) at time now: the rules alone, deleting nothing (`ckpt gc --dry-run`). */
int ckpt__retention_drops(const char *dir, const ckpt__retention *rules, const int64_t *steps,
                          size_t i, int64_t protect, const struct timespec *now);

#endif
