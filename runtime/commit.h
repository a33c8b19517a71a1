/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The commit protocol (commit.c, whose opening comment holds its state
 * diagram and invariants): partial folder, done-records, failure and
 * abandoned marks, the manifest and the rename.
 */
#ifndef CKPT_RUNTIME_COMMIT_H
#define CKPT_RUNTIME_COMMIT_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/log.h"
#include "io/index.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ckpt__fault ckpt__fault; /* runtime/fault.h */

/* The ranks that commit one folder together: the whole world in DIR, or
 * one node's ranks in its local_dir (the local tier).  Records are named
 * by world rank; the group's first rank is its leader, which does what
 * rank 0 does in DIR (waits for the records, seals, abandons). */
typedef struct ckpt__group {
    uint32_t world;        /* ranks of the job */
    uint32_t n;            /* ranks of the group, 1..world */
    const uint32_t *ranks; /* [n], ascending; NULL: 0..world-1 (n == world) */
} ckpt__group;

static inline uint32_t ckpt__group_rank(const ckpt__group *g, uint32_t i)
{
    return g->ranks ? g->ranks[i] : i;
}

/* Makes (or, shared: another rank may have made it already, world > 1)
 * the save's partial folder; its name goes to partial, and *dfd gets the
 * folder open (O_DIRECTORY), which the calls below work through and the
 * caller closes.  On failure *dfd is -1, and partial is "" unless this
 * rank made the folder (then it must be removed). */
int ckpt__commit_begin(const char *dir, int64_t step, const uint8_t uuid[16], int shared,
                       char *partial, size_t cap, int *dfd, ckpt__err *err);
/* Identity of a done-record, to recognise it after the folder's rename. */
typedef struct ckpt__fileid {
    uint64_t dev, ino;
} ckpt__fileid;
/* partial_path names folder dfd in messages. */
int ckpt__commit_done_record(int dfd, const char *partial_path, const ckpt__index *idx,
                             uint32_t rank, ckpt__fault *fault, ckpt__fileid *id,
                             ckpt__err *err);
/* A rank whose save failed leaves failed-RANK.rec with its error ("<code
 * name>: <message>"), so rank 0 stops waiting for its done-record (best
 * effort). */
void ckpt__commit_mark_failed(int dfd, uint32_t rank, const ckpt__err *why);
/* The group's leader: waits until every rank of g left its done-record:
 * CKPT_ETIMEDOUT after timeout_s; the error of a rank that left a failure
 * mark, naming it (its code; CKPT_EIO for a mark without one). */
int ckpt__commit_wait_records(int dfd, const char *partial_path, const ckpt__group *g,
                              double timeout_s, ckpt__err *err);
/* Ranks > 0: waits for rank 0's verdict on the save: 0 once the committed
 * folder holds this rank's done-record `id`; rank 0's error when it left
 * its abandoned mark; CKPT_EIO when the partial folder went away without
 * either; CKPT_ETIMEDOUT after timeout_s. */
int ckpt__commit_wait_verdict(int dfd, const char *dir, int64_t step, uint32_t rank,
                              const ckpt__fileid *id, double timeout_s, ckpt__err *err);
/* One look of that wait: 0 (committed) or an error as above, or
 * CKPT__VERDICT_PENDING when nothing is decided yet.  marks: look for the
 * abandoned mark too (one more lookup). */
#define CKPT__VERDICT_PENDING 1
int ckpt__commit_verdict_look(int dfd, const char *dir, int64_t step, uint32_t rank,
                              const ckpt__fileid *id, int marks, ckpt__err *err);
/* The group's leader: merges the done-records of g's ranks in folder dfd
 * (dir/partial) into the manifest and commits.  A group of the whole world
 * must hold a complete layout (inv. 8); a smaller one (a node's local
 * folder) slices that are consistent and disjoint (inv. L2). */
int ckpt__commit_seal(int dfd, const char *dir, const char *partial, int64_t step,
                      const ckpt__group *g, ckpt__fault *fault, ckpt__log *log,
                      ckpt__err *err);
/* The rename of a commit (inv. 5): dir/partial becomes dir/committed (the
 * name of step); when a checkpoint of that step is there already, the two
 * swap names atomically, *replaced is set and the old one is left under
 * `partial` for the caller to remove.  The caller fsyncs dir after. */
int ckpt__commit_publish(const char *dir, const char *partial, int64_t step,
                         const char *committed, int *replaced, ckpt__err *err);
void ckpt__commit_abandon(const char *dir, const char *partial, ckpt__log *log);
/* The leader of a group of several ranks: marks the save abandoned (why:
 * as for a failure mark), waits until every other rank of g left its
 * done-record or failure mark (at most timeout_s), then removes the folder. */
void ckpt__commit_abandon_shared(int dfd, const char *dir, const char *partial,
                                 const ckpt__group *g, double timeout_s, const ckpt__err *why,
                                 ckpt__log *log);

#ifdef __cplusplus
}
#endif
#endif
