/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckptrt public API.
 *
 * A context (ckpt_ctx) checkpoints a set of registered tensors plus small
 * user metadata blobs into DIR/step-NNNNNNNNNNNN/ folders (docs/FORMAT.md)
 * and restores the newest one that verifies.  One training thread drives a
 * context; the runtime's own threads copy, hash and write in the background.
 *
 * Conventions kept by every function below:
 *   - Fallible calls return int: 0 (CKPT_OK) on success, a negative CKPT_E*
 *     code on failure; ckpt_last_error() then names what failed and where.
 *   - A context is not thread-safe: call its functions from one thread at a
 *     time (normally the training thread).  Different contexts are
 *     independent and may be used from different threads at once.
 *   - Nothing here calls abort() or exit(); misuse returns CKPT_ESTATE.
 *   - Strings and arrays passed in are borrowed for the duration of the call
 *     and copied when the runtime needs them later, unless said otherwise.
 *   - A save started without a ticket (ckpt_save with ticket NULL) that
 *     fails is reported to the caller once: by the first later ckpt_save or
 *     ckpt_fence that has no error of its own, which does all its own work
 *     and then returns CKPT_ESAVEFAILED, with ckpt_last_error() naming the
 *     failed step, that save's own code (e.g. "CKPT_ENOSPC") and what
 *     failed; or, when no such call comes, by ckpt_close, with that save's
 *     own code.  Several such failures before the report are counted in it,
 *     and the first is named.  A code of its own, not the save's, because
 *     the reporting call succeeded: ckpt_fence returning the save's
 *     CKPT_EDEVICE would read as "the fence failed, do not touch the
 *     tensors", and ckpt_save returning CKPT_ENOSPC as "this save was not
 *     started".  The save's CKPT_EVENT_FAILED event (cfg.event_fn) comes as
 *     well, and by the time it is delivered the report is pending.  A save
 *     with a ticket keeps its error on the ticket (ckpt_poll, ckpt_wait)
 *     and is never reported this way.
 */
#ifndef CKPT_CKPT_H
#define CKPT_CKPT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CKPT_BUILDING) && defined(__GNUC__)
#define CKPT_API __attribute__((visibility("default")))
#else
#define CKPT_API
#endif

#define CKPT_VERSION_MAJOR 0
#define CKPT_VERSION_MINOR 1
#define CKPT_VERSION_PATCH 0

/* ------------------------------------------------------------------------
 * Error codes.  One X-macro: code name, value, message.  ckpt_strerror()
 * and ckpt_err_name() are generated from it.
 */
#define CKPT_ERRORS(X)                                                          \
    X(OK, 0, "success")                                                         \
    X(EINVAL, -1, "invalid argument")                                           \
    X(ESTATE, -2, "call out of order for the handle's state")                   \
    X(ENOMEM, -3, "out of memory")                                              \
    X(EIO, -4, "input/output error")                                            \
    X(ENOSPC, -5, "no space left on device")                                    \
    X(ENOTFOUND, -6, "not found")                                               \
    X(ECORRUPT, -7, "checkpoint failed verification")                           \
    X(EMISMATCH, -8, "registered tensor does not match the checkpoint")         \
    X(EEXIST, -9, "already exists")                                             \
    X(EBUSY, -10, "a save is still in flight")                                  \
    X(ETIMEDOUT, -11, "timed out")                                              \
    X(EFORMAT, -12, "unsupported checkpoint format version")                    \
    X(EDEVICE, -13, "device backend error")                                     \
    X(ECOMM, -14, "communication backend error")                                \
    X(EUNSUPPORTED, -15, "not supported by this build or backend")              \
    X(ERANGE, -16, "buffer too small")                                          \
    X(EPERM, -17, "permission denied")                                          \
    X(ESAVEFAILED, -18, "an earlier save without a ticket failed")

typedef enum ckpt_error {
#define CKPT_X_ENUM(name, value, msg) CKPT_##name = value,
    CKPT_ERRORS(CKPT_X_ENUM)
#undef CKPT_X_ENUM
    /* Not an error: ckpt_poll() says the save is still running. */
    CKPT_INPROGRESS = 1
} ckpt_error;

/* Static text for a code ("invalid argument"); never NULL. Thread-safe. */
CKPT_API const char *ckpt_strerror(int code);
/* Static name for a code ("CKPT_EINVAL"); never NULL. Thread-safe. */
CKPT_API const char *ckpt_err_name(int code);

/* ------------------------------------------------------------------------
 * Data types.  Sizes in bytes: F64 I64 8; F32 I32 4; F16 BF16 I16 2;
 * FP8 I8 U8 BOOL BYTES 1.  BYTES is opaque data: its shape counts bytes.
 */
typedef enum ckpt_dtype {
    CKPT_F64 = 1,
    CKPT_F32,
    CKPT_F16,
    CKPT_BF16,
    CKPT_FP8_E4M3,
    CKPT_FP8_E5M2,
    CKPT_I64,
    CKPT_I32,
    CKPT_I16,
    CKPT_I8,
    CKPT_U8,
    CKPT_BOOL,
    CKPT_BYTES
} ckpt_dtype;

/* Element size of a dtype in bytes, 0 for an unknown value. Thread-safe. */
CKPT_API size_t ckpt_dtype_size(ckpt_dtype dtype);
/* Lower-case name ("bf16", "fp8_e4m3"), or NULL for an unknown value. */
CKPT_API const char *ckpt_dtype_name(ckpt_dtype dtype);

#define CKPT_MAX_NDIM 8         /* dimensions of a tensor */
#define CKPT_MAX_NAME 255       /* bytes of a tensor name or metadata key */
#define CKPT_MAX_META (1u << 20) /* bytes of one metadata value */

/* ------------------------------------------------------------------------
 * Configuration.  Caller-owned; ckpt_open() copies it (strings included).
 */
typedef enum ckpt_io {
    CKPT_IO_AUTO = 0, /* io_uring when the kernel allows it, else pwrite */
    CKPT_IO_PWRITE,   /* thread pool of pwrite/pread, O_DIRECT when possible */
    CKPT_IO_URING     /* io_uring; refused with CKPT_EUNSUPPORTED if absent */
} ckpt_io;

/* The CUDA backend is a plugin, libckpt_cuda.so.N (N: libckpt's soname
 * version), that ckpt_open loads for AUTO and CUDA: from the file named
 * by the environment variable CKPT_CUDA_BACKEND if set (that file only),
 * else from libckpt's own folder (for a static libckpt: the program's
 * folder, then ../lib from it), else through the dynamic loader's search.
 * A program never links it, and one that never asks for AUTO or CUDA
 * never loads it. */
typedef enum ckpt_device {
    CKPT_DEVICE_AUTO = 0, /* CUDA when the plugin loads and a GPU is present;
                             else host, with the reason logged (info) */
    CKPT_DEVICE_HOST,     /* tensors live in host memory */
    CKPT_DEVICE_CUDA      /* tensors may live in GPU memory; CKPT_EDEVICE
                             naming why when the plugin or CUDA fails */
} ckpt_device;

typedef enum ckpt_busy {
    CKPT_BUSY_WAIT = 0, /* ckpt_save blocks until a save slot is free */
    CKPT_BUSY_REFUSE    /* ckpt_save returns CKPT_EBUSY instead */
} ckpt_busy;

/* What ckpt_restore does about tensors of the checkpoint that no tensor of
 * this rank is registered under. */
typedef enum ckpt_unregistered {
    CKPT_RESTORE_WARN = 0, /* restore the registered ones; log a warning
                              naming how many were left and the first few */
    CKPT_RESTORE_FAIL      /* CKPT_EMISMATCH on every rank, nothing overwritten */
} ckpt_unregistered;

typedef enum ckpt_log_level {
    CKPT_LOG_DEBUG = 0,
    CKPT_LOG_INFO,
    CKPT_LOG_WARN,
    CKPT_LOG_ERROR,
    CKPT_LOG_OFF
} ckpt_log_level;

/* Called from any runtime thread, one call at a time per context. */
typedef void (*ckpt_log_fn)(void *user, ckpt_log_level level, const char *msg);

typedef uint64_t ckpt_ticket; /* identifies one save; 0 is never valid */

/* The stages of one save, in order; FAILED replaces whatever is left. */
typedef enum ckpt_event_kind {
    CKPT_EVENT_STARTED = 1, /* the background thread took the save up */
    CKPT_EVENT_SNAPSHOT,    /* every tensor copied: the fence is released */
    CKPT_EVENT_DURABLE,     /* this rank's file and done-record are on disk */
    CKPT_EVENT_COMMITTED,   /* the checkpoint is committed (on every rank, once
                               it has seen the commit) */
    CKPT_EVENT_FAILED       /* the save failed; error and message say why */
} ckpt_event_kind;

typedef struct ckpt_event {
    ckpt_event_kind kind;
    int64_t step;
    ckpt_ticket ticket;
    uint64_t bytes;       /* tensor and metadata bytes of the save */
    double since_save_s;  /* from the ckpt_save call to this event */
    double stage_s;       /* from the previous event of this save */
    int error;            /* FAILED: the CKPT_E* code, else 0 */
    const char *message;  /* FAILED: what failed; else "" (valid during the call) */
    double layout_cpu_s;  /* DURABLE and later: CPU seconds this rank spent on
                             its rank file's HDF5 metadata (built through HDF5
                             on the first save of a set of tensors, written
                             from a cached image on later ones), its close
                             and its metadata hash; 0 before */
    unsigned tiers;       /* COMMITTED: the tiers the save committed to, bits
                             1 << CKPT_TIER_LOCAL and 1 << CKPT_TIER_DURABLE
                             (ckpt_tier), and 1 << CKPT_TIER_REPLICA when
                             this rank's replicas were sent and every
                             replica it keeps of this save landed verified
                             (cfg.replicas); 0 for the other kinds */
    double local_commit_s; /* COMMITTED with cfg.local_dir: from the ckpt_save
                             call to this rank seeing its node's local commit
                             (since_save_s is the last tier's); else 0 */
    double replicated_s;  /* COMMITTED with cfg.replicas: from the ckpt_save
                             call to the end of this rank's replication
                             round (its replicas sent, its sources' landed,
                             or the round given up); else 0 */
} ckpt_event;

/* Called from a runtime thread (never the caller's), one call at a time
 * per context; it must not call into the context. */
typedef void (*ckpt_event_fn)(void *user, const ckpt_event *event);

typedef struct ckpt_config {
    const char *dir;          /* checkpoint folder; created if missing */
    /* Retention after each commit: only steps older than the one just
     * committed are deleted, never a newer one (it may hold later progress). */
    int keep_last;            /* keep the newest N checkpoints; 0 keeps all */
    int keep_every;           /* also keep steps that are multiples of K; 0 off */
    double max_age_hours;     /* delete older checkpoints; 0 off */
    uint64_t staging_bytes;   /* host staging pool, allocated once at open */
    uint64_t chunk_bytes;     /* hash and write unit; multiple of 4 KiB */
    ckpt_io io;               /* writer backend */
    ckpt_device device;       /* device backend */
    int io_threads;           /* pwrite pool threads; 0 picks */
    int hash_threads;         /* hashing threads; 0 picks from the core count */
    int queue_depth;          /* io_uring: I/O pieces in flight (default 16) */
    int direct_io;            /* 1: O_DIRECT where the file system allows
                                 (default); 0: page cache, then fsync */
    int verify;               /* hash every chunk on restore (default 1) */
    int max_inflight;         /* saves persisting at once (default 1) */
    ckpt_busy busy;           /* what ckpt_save does when none is free */
    double commit_timeout_s;  /* several ranks: how long rank 0 waits for every
                                 rank's done-record, and the others for the
                                 commit, before the save fails (default 300) */
    ckpt_log_level log_level; /* messages below this level are dropped */
    ckpt_log_fn log_fn;       /* NULL writes "ckpt: ..." lines to stderr */
    void *log_user;           /* passed to log_fn */
    ckpt_event_fn event_fn;   /* NULL: events only go to the log (info) */
    void *event_user;         /* passed to event_fn */

    /* Save policy: when ckpt_policy_due() says a step is due.  A step is
     * due when any rule that is on fires.  Every rank must use the same
     * policy_every_steps and policy_sync_steps (ckpt_open checks). */
    int policy_every_steps;   /* due when step % N == 0 (step 0 too); 0 off */
    double policy_every_s;    /* due once T seconds have passed since the
                                 last due step (or since open), measured on
                                 rank 0; 0 off, else up to 1e9 */
    int policy_signal;        /* delivery of this signal (e.g. SIGUSR1) to
                                 any rank requests a save; 0 off.  From
                                 ckpt_open until the last context holding it
                                 closes, the runtime's handler replaces the
                                 signal's disposition (so it no longer ends
                                 the process).  Fault signals, SIGABRT,
                                 SIGKILL and SIGSTOP are refused */
    const char *policy_request_file; /* a file of this name appearing in
                                 dir requests a save; rank 0 removes it when
                                 it takes the request.  A plain name: no
                                 '/', not "." or "..", not "step-..."; NULL
                                 off */
    int policy_sync_steps;    /* time, signal and file requests are agreed
                                 across ranks on every K-th call of
                                 ckpt_policy_due (default 1: every call) */
    double policy_mtbf_s;     /* the job's mean time between failures, in
                                 seconds; 0 off, else up to 1e9, the same on
                                 every rank (ckpt_open checks).  Due once
                                 T = sqrt(2 x C x MTBF) seconds (Young's
                                 interval) have passed on rank 0's clock
                                 since the last due step, C being rank 0's
                                 measured cost of a save: the time the
                                 calling thread spent blocked in ckpt_save,
                                 ckpt_fence and ckpt_wait for it, plus the
                                 CPU time (CLOCK_THREAD_CPUTIME_ID) of the
                                 coordinator and hash threads for it, which
                                 the save takes from the training job; not
                                 its wall time, most of which overlaps
                                 training.  The median of the last 5 saves,
                                 so one outlier does not move T.  Before the
                                 first measured save: due at an agreement
                                 point with no save in flight (so the first
                                 one is due).  With local_dir, T comes from
                                 the local tier's cost and the durable one's
                                 cadence from its own: durable_every (the
                                 start value) becomes max(1, round(T_durable
                                 / T_local)), each tier's C being its passes'
                                 CPU plus the stall of the saves whose fence
                                 its pass released (docs/ARCHITECTURE.md,
                                 "Tiers").  Combines with the other rules:
                                 any rule that fires makes the step due.
                                 Logged (info) whenever T moves by > 10% */
    ckpt_unregistered restore_unregistered; /* ckpt_restore and tensors of
                                 the checkpoint this rank did not register
                                 (default CKPT_RESTORE_WARN) */

    /* Tiers (docs/ARCHITECTURE.md, "Tiers").  With local_dir set, every
     * save goes to a node-local folder first, holding only the files of
     * the ranks on this node (docs/FORMAT.md, "The local tier"), and every
     * durable_every-th save also goes to dir, drained from the committed
     * local files (one snapshot: ckpt_fence returns once the local pass
     * has copied the tensors; every chunk copied to dir is checked against
     * its local hash).  So does the save of a step ckpt_policy_due found
     * due for a policy_signal or policy_request_file request (a shutdown),
     * and ckpt_close drains the last save when it was local-only
     * (no_drain_at_close).  NULL (the default) changes nothing: every save
     * goes to dir alone.  Every rank must set local_dir or none, with the
     * same durable_every and no_drain_at_close (ckpt_open checks).
     * local_dir must be a folder of this node that no other node uses
     * (NVMe, /dev/shm); the ranks of one node share it. */
    const char *local_dir;    /* node-local checkpoint folder; NULL off */
    int durable_every;        /* with local_dir: save number k (1, 2, ...
                                 since open) also goes to dir when
                                 (k - 1) % N == 0, so the first save is
                                 durable (default 1: every save); with
                                 policy_mtbf_s, the start value of a
                                 cadence the policy sets */
    int local_keep_last;      /* retention in local_dir after each local
                                 commit, as keep_last; 0 keeps all */
    const char *node_name;    /* which node this rank is on: ranks with equal
                                 names share a node; NULL: $CKPT_NODE when set,
                                 else the host name (1..63 bytes) */
    int replicas;             /* with local_dir: 0 (default), 1 or 2 other
                                 nodes keep a copy of each rank's local files
                                 (docs/ARCHITECTURE.md, "Tiers": replica k on
                                 the k-th next node of the ring).  Needs more
                                 nodes than replicas and a comm that offers
                                 the exchange: MPI initialized with
                                 MPI_THREAD_MULTIPLE (ckpt_open refuses with
                                 CKPT_EINVAL otherwise; the NCCL comm has
                                 none).  The same on every rank.  Replication
                                 runs on the runtime's coordinator thread,
                                 after each save's local commit, while the
                                 caller's thread may be in MPI calls: hence
                                 MPI_THREAD_MULTIPLE, without which ckpt_open
                                 refuses replicas.  A failed replication is a
                                 warning, never a failed save */
    int no_drain_at_close;    /* with local_dir: 0 (default) makes ckpt_close
                                 drain the newest save into dir when it was
                                 local-only (durable_every > 1), so dir ends
                                 with the job's last step; 1 leaves dir as
                                 the cadence left it.  The same on every
                                 rank */
} ckpt_config;

/*
 * Fills *cfg with defaults, then applies environment overrides:
 *   CKPT_DIR=path  CKPT_KEEP_LAST=N  CKPT_IO=auto|uring|pwrite
 *   CKPT_LOG=debug|info|warn|error|off
 *   CKPT_POLICY_EVERY_STEPS=N  CKPT_POLICY_EVERY_S=seconds
 *   CKPT_POLICY_MTBF_S=seconds
 *   CKPT_LOCAL_DIR=path  CKPT_DURABLE_EVERY=N  CKPT_LOCAL_KEEP_LAST=N
 *   CKPT_REPLICAS=0|1|2  CKPT_DRAIN_AT_CLOSE=0|1 (0 sets no_drain_at_close)
 * Returns CKPT_EINVAL, with the defaults kept for the bad variable, when an
 * override cannot be parsed; ckpt_last_error(NULL) names it.
 * Borrows nothing; cfg->dir may point into the environment afterwards.
 * Thread-safe (reads the environment).
 */
CKPT_API int ckpt_config_init(ckpt_config *cfg);

/* ------------------------------------------------------------------------
 * Communication backend.  NULL means a single rank.  Backends for MPI and
 * NCCL are created by ckpt_mpi.h / ckpt_nccl.h, each in a library of its
 * own (libckpt_mpi, libckpt_nccl).  Their factories never return NULL: a
 * factory that failed returns a comm carrying its error, which ckpt_open
 * refuses with that code and message.
 */
typedef struct ckpt_comm ckpt_comm;

/* ------------------------------------------------------------------------
 * Context lifecycle.
 */
typedef struct ckpt_ctx ckpt_ctx;

/*
 * Opens a context: validates and copies *cfg, creates cfg->dir if missing,
 * removes stale partial folders of earlier crashed saves, allocates the
 * staging pool, starts the background threads, installs the handler of
 * cfg->policy_signal.  Collective over comm.  Takes ownership of comm
 * (also on failure).  On failure *out is NULL and ckpt_last_error(NULL)
 * says why.  Blocks on file-system work; call from the training thread.
 * A comm whose factory failed is refused first, with the factory's code
 * and message; a comm built for another comm interface version is refused
 * with CKPT_EINVAL (and not freed: its layout is unknown).
 */
CKPT_API int ckpt_open(const ckpt_config *cfg, ckpt_comm *comm, ckpt_ctx **out);

/*
 * Waits for every save in flight to commit or fail, then frees the context
 * and everything it owns; the last context holding cfg.policy_signal gives
 * the signal its previous disposition back.  NULL is a no-op returning 0.
 * With cfg.local_dir, when the last save was local-only (and
 * no_drain_at_close is 0) it first drains that save into dir, from the
 * committed local files, every rank taking part: call it on every rank,
 * like a collective, then; a rank that is gone makes the others wait up
 * to commit_timeout_s, and dir keeps its newest step.
 * Returns the code of a save without a ticket that failed and that no
 * ckpt_save or ckpt_fence has reported yet (the first, when several), else
 * that of a failed drain (dir keeps its newest step), with
 * ckpt_last_error(NULL) naming it; else 0.  The handle is invalid
 * afterwards whatever the result.
 */
CKPT_API int ckpt_close(ckpt_ctx *ctx);

/*
 * The message of the last failed call on ctx ("save step 120: write
 * rank-00000.h5 at 4194304: No space left on device").  With ctx NULL, the
 * message of the calling thread's last failed call that had no context
 * (ckpt_config_init, ckpt_open).  Never NULL; valid until the next call on
 * the same context (or thread, for NULL).
 */
CKPT_API const char *ckpt_last_error(const ckpt_ctx *ctx);

/* The backends ckpt_open chose: "uring" or "pwrite"; "host" or "cuda".
 * Static strings; thread-safe. */
CKPT_API const char *ckpt_writer_name(const ckpt_ctx *ctx);
CKPT_API const char *ckpt_device_name(const ckpt_ctx *ctx);

/* ------------------------------------------------------------------------
 * Registration.  Allowed only while no save is in flight (CKPT_ESTATE).
 *
 * A name is 1..255 bytes of UTF-8 without control characters; '/', '.',
 * spaces and non-ASCII letters are fine (they are escaped inside the HDF5
 * file).  The memory at ptr is borrowed until ckpt_close or
 * ckpt_unregister: the runtime reads it during saves (between ckpt_save and
 * ckpt_fence) and writes it during restores.  ptr may be NULL only when the
 * tensor holds zero bytes.  ndim 0 is a scalar; shape may be NULL then.
 */
CKPT_API int ckpt_register(ckpt_ctx *ctx, const char *name, void *ptr, ckpt_dtype dtype,
                           int ndim, const int64_t *shape);

/*
 * Registers this rank's slice of a tensor sharded across ranks (tensor or
 * data-parallel layouts): the whole tensor has global_shape; this rank
 * holds the box that starts at start[] and spans count[] elements in each
 * dimension, stored row-major and contiguous at ptr (count[] is the local
 * shape).  1 <= ndim <= CKPT_MAX_NDIM; 0 <= start[d], start[d] + count[d]
 * <= global_shape[d].  The slices of one name registered by all ranks must
 * tile the global tensor exactly, without overlap; rank 0 checks this
 * before it commits and fails the save with CKPT_EMISMATCH naming the
 * tensor otherwise.
 *
 * A tensor registered with ckpt_register on several ranks is replicated:
 * the same on every rank, written once (by one rank; the runtime spreads
 * replicated tensors over the ranks by size) and read by every rank.
 *
 * Restore reads each rank's slice from the saved slices it overlaps, on
 * any number of ranks: a checkpoint saved on 4 ranks restores on 1, 2, 3
 * or 6, with every chunk it touches verified.  Borrowing and errors as
 * for ckpt_register; the arrays are copied.
 */
CKPT_API int ckpt_register_shard(ckpt_ctx *ctx, const char *name, void *ptr, ckpt_dtype dtype,
                                 int ndim, const int64_t *global_shape, const int64_t *start,
                                 const int64_t *count);

/* Forgets a registered tensor. CKPT_ENOTFOUND if it was not registered. */
CKPT_API int ckpt_unregister(ckpt_ctx *ctx, const char *name);

/*
 * Sets (or replaces) a user metadata blob: RNG state, data-loader position,
 * hyper-parameters.  Copied now; captured by every later ckpt_save.  Key
 * rules as for tensor names; 0 <= len <= CKPT_MAX_META.  Allowed at any
 * time, also while a save is in flight.  Removes a provider the key had
 * (ckpt_set_meta_fn): the last call for a key decides what saves hold.
 */
CKPT_API int ckpt_set_meta(ckpt_ctx *ctx, const char *key, const void *data, size_t len);

/*
 * A metadata provider (ckpt_set_meta_fn): writes the current value of its
 * key into buf, at most cap (= CKPT_MAX_META) bytes, sets *len to the
 * value's size and returns 0.  Any other return fails the save.  A value
 * larger than cap cannot be written: set *len to its size (> cap) and the
 * save fails with CKPT_ERANGE.  buf is valid during the call only.
 */
typedef int (*ckpt_meta_fn)(void *user, void *buf, size_t cap, size_t *len);

/*
 * Gives `key` a provider that every later ckpt_save calls for the key's
 * current value (a data-loader position that must never be saved stale),
 * instead of a value copied now; it replaces a provider the key had.  With
 * fn NULL, removes the key's provider and the key (later saves hold it
 * only if ckpt_set_meta sets it again; CKPT_ENOTFOUND when it had none).
 * Key rules as for ckpt_set_meta.  Borrows `user` until the provider is
 * replaced or removed, or ckpt_close.  Does not block (the first provider
 * allocates CKPT_MAX_META bytes of scratch: CKPT_ENOMEM).  Allowed at any
 * time, also while a save is in flight; call from the context's thread.
 *
 * fn runs on the caller's thread, inside ckpt_save, before the save is
 * queued: once per ckpt_save call that gets past its argument checks (also
 * when the save then waits for a slot or is refused with CKPT_EBUSY), the
 * providers in the order their keys were first given one.  It must not
 * call into the context.  When a provider returns nonzero, ckpt_save
 * returns CKPT_EINVAL; when it reports more than CKPT_MAX_META bytes,
 * CKPT_ERANGE; both with a message naming the key, and nothing of the save
 * is queued or written (the step's older checkpoint, if any, stays).
 *
 * A value that ckpt_set_meta set earlier (or that ckpt_restore brought
 * back) stays in the store for ckpt_get_meta, but saves take the
 * provider's value.  ckpt_get_meta never calls a provider: after
 * ckpt_restore it returns the value the provider gave at that save.
 */
CKPT_API int ckpt_set_meta_fn(ckpt_ctx *ctx, const char *key, ckpt_meta_fn fn, void *user);

/*
 * Copies a metadata blob into buf.  After ckpt_restore these are the
 * restored values (also of keys saved from a provider; providers are not
 * called here).  *len gets the blob's size; CKPT_ERANGE when cap is
 * smaller (buf untouched), CKPT_ENOTFOUND for an unknown key.
 */
CKPT_API int ckpt_get_meta(ckpt_ctx *ctx, const char *key, void *buf, size_t cap, size_t *len);

/* ------------------------------------------------------------------------
 * Saving.
 */

/*
 * Starts a checkpoint of every registered tensor and metadata blob, as they
 * are now, for `step` (0 <= step <= 999999999999).  Returns at once: the
 * snapshot is copied in the background while the caller's compute only
 * reads the tensors; call ckpt_fence() before anything writes them.
 * `stream` is the caller's CUDA stream (cudaStream_t) with the CUDA device
 * backend, ignored (pass NULL) with the host backend.  If ticket is not
 * NULL it receives a handle for ckpt_poll/ckpt_wait; otherwise the save's
 * failure, if it fails, is reported by a later ckpt_save, ckpt_fence or
 * ckpt_close (see the conventions at the top).
 * When cfg.max_inflight saves are still persisting, blocks until one ends
 * (CKPT_BUSY_WAIT) or returns CKPT_EBUSY (CKPT_BUSY_REFUSE).  Saving a step
 * that is already committed replaces it atomically.  Calls the metadata
 * providers (ckpt_set_meta_fn) first; their failure is CKPT_EINVAL or
 * CKPT_ERANGE with nothing queued.
 * Returns 0 when the save was started.  CKPT_ESAVEFAILED: it was started
 * too (*ticket is set and valid), and an earlier save without a ticket had
 * failed; ckpt_last_error names it.  Any other error: nothing was started
 * (*ticket is 0), and an earlier failure stays pending for the next call.
 */
CKPT_API int ckpt_save(ckpt_ctx *ctx, int64_t step, void *stream, ckpt_ticket *ticket);

/*
 * Makes the caller safe to modify registered tensors: returns once every
 * started save has finished copying them.  With the host backend this
 * blocks the caller until the copy is done (immediately if it already is);
 * with CUDA it makes `stream` wait on the device instead.  A save that
 * failed before its copy finished also releases the fence; its error is on
 * its ticket.  CKPT_ESAVEFAILED: the fence did its work (the tensors may
 * be modified), and an earlier save without a ticket had failed
 * (conventions at the top); the backend's own error takes precedence and
 * leaves that report pending.
 */
CKPT_API int ckpt_fence(ckpt_ctx *ctx, void *stream);

/*
 * Returns CKPT_INPROGRESS while the save is running, else its final result
 * (0 once committed).  Does not block and does not consume the ticket.
 * CKPT_EINVAL for a ticket this context never issued, CKPT_ESTATE for one
 * already consumed by ckpt_wait.
 */
CKPT_API int ckpt_poll(ckpt_ctx *ctx, ckpt_ticket ticket);

/*
 * Blocks until the save is committed or failed (timeout_ms < 0: forever)
 * and returns its result, consuming the ticket; CKPT_ETIMEDOUT leaves it
 * valid.  On failure ckpt_last_error(ctx) names what failed.  Waiting a
 * second time on the same ticket is CKPT_ESTATE.  Retention (deleting older
 * checkpoints) runs on a thread of its own and may still be running when
 * this returns; ckpt_list, ckpt_restore and ckpt_close wait for it.
 */
CKPT_API int ckpt_wait(ckpt_ctx *ctx, ckpt_ticket ticket, int64_t timeout_ms);

/*
 * The save policy: returns 1 when a checkpoint is due at `step` under the
 * cfg.policy_* rules, 0 when not, a negative CKPT_E* on error (CKPT_EINVAL
 * for a NULL ctx or a step outside 0..999999999999, or the comm backend's
 * code; an invalid call does not count as a call).  It only decides: the
 * caller then calls ckpt_save(ctx, step, ...) itself.
 *
 * Due when step % policy_every_steps == 0, decided on every rank alone
 * (step 0 too, and after a restore to such a step S, S itself again: skip
 * that call when the save is not wanted); or when the ranks agree on a
 * request: policy_every_s or the policy_mtbf_s interval elapsed on rank
 * 0's clock, policy_signal delivered to any rank, or policy_request_file
 * found by rank 0.  Requests are taken only at agreement points, on every
 * policy_sync_steps-th call (counting calls since open); a request that
 * arrives in between waits for the next one.  A due step, for whatever
 * reason, restarts the policy_every_s and policy_mtbf_s periods and
 * satisfies the requests that arrived before the call; with local_dir, a
 * signal or file request is satisfied only at an agreement point, and the
 * next ckpt_save then goes to dir as well (a step due by the step rule in
 * between may be local-only).  Why a step is due for time, a signal or
 * the file is logged at info.
 *
 * Collective: when a time, signal or file rule is on at any rank, the
 * agreement points exchange a few bytes through the comm and block until
 * every rank has reached them.  Call it on every rank, from the training
 * thread, with the same steps in the same order, like any collective; then
 * every rank returns the same value for each call.  Other calls do no
 * communication, and look for the request file only when due.  Borrows
 * nothing.
 */
CKPT_API int ckpt_policy_due(ckpt_ctx *ctx, int64_t step);

/* ------------------------------------------------------------------------
 * Restoring.
 */
#define CKPT_LATEST ((int64_t)-1)

/*
 * Restores the registered tensors and the metadata from the newest
 * checkpoint whose manifest and data verify (step CKPT_LATEST) or from a
 * given step.  Blocks.  Verifies every chunk while reading (unless
 * cfg.verify is 0); on a bad chunk, a missing file (or one that is not a
 * regular file) or a damaged manifest it logs why and falls back to the
 * next older checkpoint (only with CKPT_LATEST).  It needs and reads no
 * HDF5 metadata of the rank files, so it does not check their metadata
 * hash: `ckpt verify` does (docs/FORMAT.md, "Checking a checkpoint").
 * *step_out (may be NULL) gets the restored step.  Errors:
 *   CKPT_ENOTFOUND  no checkpoint (a fresh start); tensors untouched.
 *   CKPT_EMISMATCH  a registered tensor is missing from the checkpoint or
 *                   differs in dtype or shape; nothing was overwritten.
 *   CKPT_ECORRUPT   no checkpoint verified; tensors may hold partial data.
 *   CKPT_ESTATE     a save is still in flight.
 * Tensors of the checkpoint that this rank did not register are left out:
 * with cfg.restore_unregistered CKPT_RESTORE_WARN (the default) a warning
 * names how many and the first few and points at ckpt_restore_tensors;
 * with CKPT_RESTORE_FAIL it is CKPT_EMISMATCH on every rank, with nothing
 * overwritten and no fallback.  Each rank compares its own registrations
 * with every tensor of the checkpoint.
 * Collective over the comm (every rank calls it, in the same order as the
 * other collectives); every rank returns the same code.
 * stream: as for ckpt_save; the host backend ignores it.
 */
CKPT_API int ckpt_restore(ckpt_ctx *ctx, int64_t step, void *stream, int64_t *step_out);

/* The tier a checkpoint was read from (cfg.local_dir: the local tier). */
typedef enum ckpt_tier {
    CKPT_TIER_NONE = 0, /* no ckpt_restore succeeded on the context yet */
    CKPT_TIER_LOCAL,    /* this rank's node-local copy (cfg.local_dir) */
    CKPT_TIER_DURABLE,  /* the copy in cfg.dir */
    CKPT_TIER_REPLICA   /* a replica another node keeps (cfg.replicas); as a restore's
                           tier: a copy fetched from a partner node's replica */
} ckpt_tier;

/*
 * Which tier the last successful ckpt_restore on ctx read this rank's
 * tensors and metadata from: with cfg.local_dir, every rank takes its
 * node's local copy of the agreed step when it has one that verifies, else
 * the durable copy (ranks may differ; the log says which each used).
 * With cfg.replicas, CKPT_TIER_REPLICA on a rank whose local file was
 * missing or damaged and was fetched from a partner's replica into the
 * node's local folder before it was read (the log names the partner).
 * Without cfg.local_dir always CKPT_TIER_DURABLE after a restore.
 * CKPT_TIER_NONE for NULL, before a restore and after a failed one.  Does
 * not block; call from the context's thread.
 */
CKPT_API ckpt_tier ckpt_restore_tier(const ckpt_ctx *ctx);

/*
 * Restores the registered tensors names[0..n) from the checkpoint that the
 * last ckpt_restore on ctx restored: for state that exists only after the
 * restore, such as optimizer moments allocated on the first update.
 * Register such a tensor once its memory exists, then call this.  Reads
 * and verifies every chunk it touches (unless cfg.verify is 0) and reshards
 * like ckpt_restore; metadata and the other tensors are left alone.  Blocks.
 * Borrows names for the call.  Errors:
 *   CKPT_ESTATE     no ckpt_restore succeeded on ctx (or the last one
 *                   failed), or a save is in flight.
 *   CKPT_EINVAL     names NULL with n > 0, a NULL or repeated name.
 *   CKPT_ENOTFOUND  a name is not registered, or not in that checkpoint;
 *                   or the checkpoint is gone (deleted, or replaced by a
 *                   later save of the same step).
 *   CKPT_EMISMATCH  a tensor differs in dtype or global shape.
 *   CKPT_ECORRUPT   a chunk failed its checksum or a file is damaged.
 * With CKPT_ESTATE, CKPT_EINVAL, CKPT_ENOTFOUND or CKPT_EMISMATCH nothing
 * was overwritten; with CKPT_ECORRUPT or a read error (CKPT_EIO) the named
 * tensors may hold partial data.  There is no fallback to an older
 * checkpoint: the other tensors came from this one, and a mixture of steps
 * is no state the training ever had.
 * Collective over the comm like ckpt_restore: every rank calls it at the
 * same point, each with the names of its own tensors (the lists may
 * differ, n may be 0); every rank returns the same code, with the message
 * of the rank that failed.  Call from the context's thread.  stream: as
 * for ckpt_restore.
 */
CKPT_API int ckpt_restore_tensors(ckpt_ctx *ctx, const char *const *names, size_t n,
                                  void *stream);

/* ------------------------------------------------------------------------
 * Listing.
 */
typedef struct ckpt_info {
    int64_t step;
    int64_t created_unix; /* seconds since the epoch, when committed */
    uint64_t nbytes;      /* tensor and metadata bytes */
    int32_t world_size;
    int32_t ntensors;
    char uuid[33];        /* hex, NUL-terminated */
} ckpt_info;

/*
 * Lists the committed checkpoints in the context's folder whose manifest
 * reads, newest first, into out[0..cap).  *count gets how many exist (may
 * exceed cap).  Only the manifest is checked here: a listed checkpoint is
 * not known to restore (the `ckpt verify` tool checks everything).
 */
CKPT_API int ckpt_list(ckpt_ctx *ctx, ckpt_info *out, size_t cap, size_t *count);

#ifdef __cplusplus
}
#endif
#endif /* CKPT_CKPT_H */
