/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The commit protocol: how one save's files become a checkpoint, atomically.
 *
 * States of a save's folder in DIR:
 *
 *   (none) --mkdir--> PARTIAL --rank files + done-records durable--> COMPLETE
 *     --manifest durable, folder fsynced--> SEALED --rename--> COMMITTED
 *     --fsync DIR--> DURABLE (the ticket reports 0; retention may run)
 *
 *   PARTIAL, COMPLETE, SEALED --failure--> ABANDONED: removed at once, or
 *     by ckpt__catalog_cleanup at the next open after a crash.
 *   COMMITTED --rename to *.trash-*--> TRASH --remove--> (none)
 *
 * Function per transition:
 *   (none) -> PARTIAL          ckpt__commit_begin (every rank; the first makes it)
 *   PARTIAL -> COMPLETE        save.c (rank file, fsync) + ckpt__commit_done_record,
 *                              on every rank; rank 0 ckpt__commit_wait_records
 *                              for all of them (or a rank's failure mark:
 *                              ckpt__commit_mark_failed -> ABANDONED)
 *   COMPLETE -> SEALED         ckpt__commit_seal, first half (rank 0)
 *   SEALED -> DURABLE          ckpt__commit_seal, second half (rank 0)
 *   -> ABANDONED               ckpt__commit_abandon, ckpt__catalog_cleanup
 *   COMMITTED -> (none)        ckpt__catalog_delete (retention, `ckpt gc`)
 *   ranks > 0 learn the outcome  ckpt__commit_wait_verdict: their done-record
 *                              (same inode) under the committed name, or the
 *                              partial folder gone without it
 *
 * Invariants:
 *   1. A folder has a committed name only if it holds a durable manifest;
 *      the committed name only ever appears through rename(2), so a crash
 *      at any instant leaves either the old set of checkpoints or the new.
 *   2. A rank file is durable (fsync) before its done-record is written,
 *      and a done-record appears under its final name only when complete
 *      and durable (written to a temporary name, fsynced, renamed).
 *   3. The manifest is durable (file and folder fsynced) before the rename.
 *   4. DIR is fsynced after the rename, before the save reports success.
 *   5. A save never writes into a committed folder.  Replacing a committed
 *      step is one atomic exchange of names (RENAME_EXCHANGE); the old
 *      content then sits under the partial name and is removed.
 *   6. Everything a save creates lies in a folder made with mkdir under
 *      DIR (by this rank, failing if the name exists; with several ranks,
 *      by whichever rank comes first, the others accepting only a real
 *      folder, never a symlink), and files are created exclusively, so no
 *      existing path, symlink or not, can redirect a write outside DIR.
 *   7. Retention runs after invariant 4 and deletes only steps older than
 *      the one just committed (the one checkpoint this rank knows to be
 *      sound: every rank hashed what it wrote), never a newer one.
 *   8. Rank 0 commits only when every rank's done-record is present, every
 *      rank registered the same replicated tensors (the hash each record
 *      carries in created_unix equals rank 0's), and the merged index is a
 *      complete layout: every tensor's slices tile it exactly (io/shard.h).
 *      A tensor some rank registered is then never missing from a commit.
 *   9. With several ranks, rank 0 gives a failed save up by writing
 *      abandoned.rec into its folder and removes the folder only once every
 *      rank has left its done-record or failure mark there (or after
 *      commit_timeout_s): a slower rank never recreates the folder and
 *      waits for a verdict nobody gives.
 *  10. Each rank opens the partial folder once (ckpt__commit_begin) and
 *      creates, renames and fsyncs its records through that handle, so
 *      nothing it writes can land in another folder put under the name.
 *  11. File-system metadata calls per save are O(ranks) in all, not
 *      O(ranks x polls): rank 0 learns of done-records and failure marks
 *      by reading the folder's entries, once per look, with looks growing
 *      apart to tens of milliseconds; another rank looks for its verdict
 *      with one lookup (its record under the committed name; in the first
 *      few looks also rank 0's abandoned mark), looks growing apart to
 *      100 ms, and sees the folder's removal with an fstat of its handle.
 *
 * The local tier (docs/FORMAT.md, "The local tier") runs this protocol in
 * each node's local_dir with a group (commit.h) of the node's ranks: every
 * state, transition and invariant above holds with "rank 0" read as "the
 * group's leader" (the node's lowest rank), "every rank" as "every rank of
 * the group" and DIR as local_dir.  Two more:
 *  L1. Records are named by world rank, and the leader waits for and
 *      merges exactly its group's (a record of a rank outside the group is
 *      never read), so a crash of any rank at any instant leaves every
 *      node's local_dir with its previous local checkpoints and at most one
 *      partial folder, which the leader removes at the next open.
 *  L2. A group smaller than the world holds part of the layout: the seal
 *      checks that its slices are consistent and disjoint (io/shard.h,
 *      ckpt__layout_check_part) instead of inv. 8's tiling, and the
 *      manifest lists the group's ranks only (nranks < world_size), which
 *      the durable reader refuses.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/manifest.h"
#include "io/paths.h"
#include "io/shard.h"
#include "runtime/catalog.h"
#include "runtime/commit.h"
#include "runtime/events.h"
#include "runtime/fault.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define MAX_RECORD (1ull << 31) /* bytes of one done-record */

int ckpt__commit_begin(const char *dir, int64_t step, const uint8_t uuid[16], int shared,
                       char *partial, size_t cap, int *dfd, ckpt__err *err)
{
    char name[CKPT__FNAME_MAX], path[CKPT__PATH_MAX];
    *dfd = -1;
    ckpt__partial_name(step, uuid, name);
    snprintf(partial, cap, "%s", name);
    int rc = ckpt__path_join(path, dir, name, err);
    if (rc) {
        partial[0] = 0;
        return rc;
    }
    /* Inv. 6: mkdir fails if anything already has this name; with several
     * ranks only a real folder (made by another rank) is accepted: the
     * open refuses a symlink (O_NOFOLLOW) and anything not a folder, and
     * what it opens is the folder every later step of this save works in
     * (inv. 10), whatever the name comes to point at.  With several ranks
     * the open comes first, so that every rank after the first costs one
     * lookup, not two (issue 16: metadata calls per save). */
    const int oflags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    if (shared) {
        *dfd = open(path, oflags);
        if (*dfd >= 0)
            return 0;
        if (errno != ENOENT) {
            partial[0] = 0;
            return ckpt__err_errno(err, errno, "create folder %s", path);
        }
    }
    int made = mkdir(path, 0755) == 0, e = made ? 0 : errno;
    if (made || (shared && e == EEXIST)) {
        *dfd = open(path, oflags);
        if (*dfd >= 0)
            return 0;
        e = errno;
    }
    if (!made)
        partial[0] = 0; /* not ours: nobody may remove it */
    return ckpt__err_errno(err, e, "create folder %s", path);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = write(fd, p + done, n - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -ENOSPC;
        done += (size_t)r;
    }
    return 0;
}

int ckpt__commit_done_record(int dfd, const char *partial_path, const ckpt__index *idx,
                             uint32_t rank, ckpt__fault *fault, ckpt__fileid *id,
                             ckpt__err *err)
{
    char tmp[CKPT__FNAME_MAX], fin[CKPT__FNAME_MAX];
    int rc = ckpt__fault_check(fault, CKPT__FAULT_DONE, "write done-record", err);
    if (rc)
        return rc;
    ckpt__done_tmp_name(rank, tmp);
    ckpt__done_name(rank, fin);
    uint8_t *buf;
    size_t len;
    rc = ckpt__index_encode(idx, &buf, &len, err);
    if (rc)
        return rc;
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        free(buf);
        return ckpt__err_errno(err, errno, "create %s/%s", partial_path, tmp);
    }
    int w = write_all(fd, buf, len);
    free(buf);
    struct stat st;
    if (w < 0)
        rc = ckpt__err_errno(err, -w, "write %s/%s", partial_path, tmp);
    else if (fsync(fd) != 0)
        rc = ckpt__err_errno(err, errno, "fsync %s/%s", partial_path, tmp);
    else if (fstat(fd, &st) != 0)
        rc = ckpt__err_errno(err, errno, "stat %s/%s", partial_path, tmp);
    else if (id)
        *id = (ckpt__fileid){(uint64_t)st.st_dev, (uint64_t)st.st_ino};
    close(fd);
    /* Inv. 2: the final name appears only for a complete, durable record. */
    if (!rc && renameat(dfd, tmp, dfd, fin) != 0)
        rc = ckpt__err_errno(err, errno, "rename %s/%s", partial_path, tmp);
    if (!rc && fsync(dfd) != 0)
        rc = ckpt__err_errno(err, errno, "fsync folder %s", partial_path);
    return rc;
}

/* Writes a failure or abandoned mark `name` into folder ppath (best
 * effort): the code's name, then the message, so that the rank reading it
 * reports the same code (a full disk stays CKPT_ENOSPC on every rank).  It
 * is written under a temporary name and renamed, like a done-record, so a
 * rank that sees the mark never reads it half written. */
static void write_mark(int dfd, const char *name, const ckpt__err *why)
{
    char tmp[CKPT__FNAME_MAX];
    char text[CKPT__ERR_MSG + 32];
    ckpt__mark_tmp_name(name, tmp);
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return;
    snprintf(text, sizeof text, "%s: %s", ckpt_err_name(why->code), why->msg);
    int w = write_all(fd, (const uint8_t *)text, strlen(text));
    close(fd);
    if (w != 0 || renameat2(dfd, tmp, dfd, name, RENAME_NOREPLACE) != 0)
        unlinkat(dfd, tmp, 0);
}

void ckpt__commit_mark_failed(int dfd, uint32_t rank, const ckpt__err *why)
{
    char name[CKPT__FNAME_MAX];
    ckpt__failed_name(rank, name);
    if (dfd >= 0)
        write_mark(dfd, name, why);
}

/* Sleeps *ns, then doubles it up to cap_ns. */
static void backoff(long *ns, long cap_ns)
{
    struct timespec ts = {0, *ns};
    nanosleep(&ts, NULL);
    *ns = *ns * 2 > cap_ns ? cap_ns : *ns * 2;
}

/* Rank 0's looks at the folder (inv. 11): the first after 0.1 ms, then
 * ever longer apart, up to 10 ms plus 2.5 us per rank (a scan of 4,096
 * ranks' entries takes a few milliseconds of its own), at most 50 ms: the
 * commit follows the last done-record within that, and the folder is read
 * a few hundred times in a save of seconds, whatever the number of ranks. */
static long scan_cap_ns(uint32_t world)
{
    long cap = 10000000L + 2500L * (long)world;
    return cap < 50000000L ? cap : 50000000L;
}

/* The other ranks' looks for the verdict: from 1 ms, up to 100 ms apart. */
#define VERDICT_FIRST_NS 1000000L
#define VERDICT_CAP_NS 100000000L
#define VERDICT_MARK_NS 8000000L /* looks for the abandoned mark while this close */

/* 1 when the folder dfd is open on was removed (no name links to it). */
static int folder_removed(int dfd)
{
    struct stat st;
    return fstat(dfd, &st) == 0 && st.st_nlink == 0;
}

/* Which ranks' done-records (have[r] |= 1) and failure marks (have[r] |= 2)
 * the folder holds, from one read of it: rewinddir makes the next readdir
 * ask the file system again.  Names of ranks >= world are not ours and are
 * left alone. */
static void scan_records(DIR *d, uint32_t world, uint8_t *have)
{
    rewinddir(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint32_t r;
        ckpt__record_kind k = ckpt__record_parse(e->d_name, &r);
        if (k != CKPT__RECORD_OTHER && r < world)
            have[r] |= k == CKPT__RECORD_DONE ? 1 : 2;
    }
}

/* A second handle on folder dfd to read its entries (the DIR owns it). */
static DIR *open_scan(int dfd, const char *what, ckpt__err *err)
{
    int fd = dup(dfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        ckpt__err_errno(err, errno, "read folder %s", what);
        if (fd >= 0)
            close(fd);
    }
    return d;
}

/* The message a failed rank left (its failure mark), or "", and its code
 * (CKPT_EIO when the mark names none). */
static int read_mark(int dfd, const char *name, char *out, size_t cap)
{
    out[0] = 0;
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return CKPT_EIO;
    ssize_t r = read(fd, out, cap - 1);
    close(fd);
    out[r > 0 ? r : 0] = 0;
    for (char *c = out; *c; c++)
        if ((unsigned char)*c < 0x20)
            *c = ' ';
    const char *colon = strstr(out, ": ");
    int code = colon ? ckpt__code_from_name(out, (size_t)(colon - out)) : 0;
    if (!code)
        return CKPT_EIO;
    memmove(out, colon + 2, strlen(colon + 2) + 1);
    return code;
}

int ckpt__commit_wait_records(int dfd, const char *partial_path, const ckpt__group *g,
                              double timeout_s, ckpt__err *err)
{
    char name[CKPT__FNAME_MAX], msg[CKPT__ERR_MSG + 32];
    uint32_t world = g->world;
    uint8_t *have = calloc(world ? world : 1, 1);
    DIR *d = have ? open_scan(dfd, partial_path, err) : NULL;
    if (!have)
        ckpt__err_set(err, CKPT_ENOMEM, "waiting for %u done-records: out of memory", world);
    if (!d) {
        free(have);
        return err->code;
    }
    double t0 = ckpt__now_s();
    long ns = 100000, cap = scan_cap_ns(world);
    /* Inv. L1: only the group's records count, named by world rank. */
    uint32_t next = 0; /* the group's ranks below index next have their record */
    int rc = 0;
    for (;;) {
        scan_records(d, world, have);
        while (next < g->n && (have[ckpt__group_rank(g, next)] & 1))
            next++;
        if (next == g->n)
            break;
        uint32_t k = next;
        while (k < g->n && !(have[ckpt__group_rank(g, k)] & 2))
            k++;
        if (k < g->n) {
            uint32_t r = ckpt__group_rank(g, k);
            ckpt__failed_name(r, name);
            int code = read_mark(dfd, name, msg, sizeof msg);
            rc = ckpt__err_set(err, code, "rank %u failed: %s", r,
                               msg[0] ? msg : "(no message)");
            break;
        }
        if (folder_removed(dfd)) {
            rc = ckpt__err_set(err, CKPT_EIO, "the partial folder %s went away", partial_path);
            break;
        }
        if (ckpt__now_s() - t0 > timeout_s) {
            rc = ckpt__err_set(err, CKPT_ETIMEDOUT,
                               "rank %u's done-record did not arrive within %.1f s "
                               "(commit_timeout_s)",
                               ckpt__group_rank(g, next), timeout_s);
            break;
        }
        backoff(&ns, cap);
    }
    closedir(d);
    free(have);
    return rc;
}

int ckpt__commit_verdict_look(int dfd, const char *dir, int64_t step, uint32_t rank,
                              const ckpt__fileid *id, int marks, ckpt__err *err)
{
    char name[CKPT__FNAME_MAX], rec[CKPT__PATH_MAX];
    ckpt__done_name(rank, name);
    int rc = ckpt__path_step(rec, dir, step, name, err);
    if (rc)
        return rc;
    struct stat st;
    /* The folder this rank wrote into first (an fstat, no lookup): once no
     * name links to it, rank 0 removed it, and only the committed name can
     * still say otherwise (inv. 11). */
    int gone = folder_removed(dfd);
    if (lstat(rec, &st) == 0 && (uint64_t)st.st_ino == id->ino && (uint64_t)st.st_dev == id->dev)
        return 0;
    if (!gone && marks && fstatat(dfd, CKPT__ABANDONED_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        char msg[CKPT__ERR_MSG + 32];
        int code = read_mark(dfd, CKPT__ABANDONED_NAME, msg, sizeof msg);
        return ckpt__err_set(err, code, "rank 0 abandoned step %lld: %s", (long long)step,
                             msg[0] ? msg : "(no message)");
    }
    if (gone)
        return ckpt__err_set(err, CKPT_EIO,
                             "rank 0 did not commit step %lld (its log or ticket says why)",
                             (long long)step);
    return CKPT__VERDICT_PENDING;
}

int ckpt__commit_wait_verdict(int dfd, const char *dir, int64_t step, uint32_t rank,
                              const ckpt__fileid *id, double timeout_s, ckpt__err *err)
{
    double t0 = ckpt__now_s();
    long ns = VERDICT_FIRST_NS;
    for (;;) {
        /* Rank 0's abandoned mark, in the first looks only: it gives a
         * save up early (a rank failed) or late, and then removes the
         * folder as soon as every record is there, which a look sees. */
        int rc = ckpt__commit_verdict_look(dfd, dir, step, rank, id, ns <= VERDICT_MARK_NS, err);
        if (rc != CKPT__VERDICT_PENDING)
            return rc;
        if (ckpt__now_s() - t0 > timeout_s)
            return ckpt__err_set(err, CKPT_ETIMEDOUT,
                                 "no commit of step %lld by rank 0 within %.1f s "
                                 "(commit_timeout_s)",
                                 (long long)step, timeout_s);
        backoff(&ns, VERDICT_CAP_NS);
    }
}

static int read_record(int dfd, const char *name, const char *path, ckpt__index *out,
                       ckpt__err *err)
{
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return ckpt__err_errno(err, errno, "open %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > MAX_RECORD) {
        close(fd);
        return ckpt__err_set(err, CKPT_ECORRUPT, "%s is not a done-record", path);
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", path);
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    int rc = got == n ? ckpt__index_decode(buf, n, path, out, err)
                      : ckpt__err_set(err, CKPT_EIO, "read %s: short", path);
    free(buf);
    return rc;
}

/* Appends rank record set `r` (one rank) to the merged index m. */
static int merge(ckpt__index *m, const ckpt__index *r, ckpt__err *err)
{
    ckpt__rankrec *ranks = realloc(m->ranks, (m->nranks + 1) * sizeof *ranks);
    if (ranks)
        m->ranks = ranks;
    ckpt__entry *ents = realloc(m->entries, (size_t)(m->nentries + r->nentries + 1) *
                                                sizeof *ents);
    if (ents)
        m->entries = ents;
    uint64_t *hs = realloc(m->hashes, (size_t)(m->nhashes + r->nhashes + 1) * sizeof *hs);
    if (hs)
        m->hashes = hs;
    if (!ranks || !ents || !hs)
        return ckpt__err_set(err, CKPT_ENOMEM, "merging done-records: out of memory");
    m->ranks[m->nranks++] = r->ranks[0];
    for (uint32_t i = 0; i < r->nentries; i++) {
        ckpt__entry e = r->entries[i];
        e.name = strdup(e.name);
        if (!e.name)
            return ckpt__err_set(err, CKPT_ENOMEM, "merging done-records: out of memory");
        e.chunk0 += m->nhashes;
        m->entries[m->nentries++] = e;
    }
    memcpy(m->hashes + m->nhashes, r->hashes, r->nhashes * sizeof *hs);
    m->nhashes += r->nhashes;
    return 0;
}

/* Moves partial to the committed name; *replaced is set when an older
 * checkpoint of the same step now sits under the partial name. */
int ckpt__commit_publish(const char *dir, const char *partial, int64_t step,
                         const char *committed, int *replaced, ckpt__err *err)
{
    *replaced = 0;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return ckpt__err_errno(err, errno, "open folder %s", dir);
    int rc = 0;
    if (renameat2(dfd, partial, dfd, committed, RENAME_NOREPLACE) == 0) {
        close(dfd);
        return 0;
    }
    int e = errno;
    if (e == EEXIST) {
        /* Inv. 5: swap names atomically; the old content leaves under `partial`. */
        if (renameat2(dfd, partial, dfd, committed, RENAME_EXCHANGE) == 0)
            *replaced = 1;
        else
            rc = ckpt__err_errno(err, errno, "exchange %s/%s with %s", dir, partial,
                                 committed);
    } else if (e == EINVAL || e == ENOSYS || e == ENOTSUP) {
        /* No renameat2 on this file system: rename(2) refuses a non-empty target. */
        if (renameat(dfd, partial, dfd, committed) != 0) {
            e = errno;
            if (e == ENOTEMPTY || e == EEXIST) {
                ckpt__err sub;
                if (ckpt__catalog_delete(dir, step, &sub) != 0)
                    rc = ckpt__err_set(err, sub.code, "replace %s: %s", committed, sub.msg);
                else if (renameat(dfd, partial, dfd, committed) != 0)
                    rc = ckpt__err_errno(err, errno, "rename %s/%s", dir, partial);
            } else {
                rc = ckpt__err_errno(err, e, "rename %s/%s", dir, partial);
            }
        }
    } else {
        rc = ckpt__err_errno(err, e, "rename %s/%s to %s", dir, partial, committed);
    }
    close(dfd);
    return rc;
}

int ckpt__commit_seal(int dfd, const char *dir, const char *partial, int64_t step,
                      const ckpt__group *g, ckpt__fault *fault, ckpt__log *log,
                      ckpt__err *err)
{
    uint32_t world = g->world;
    char ppath[CKPT__PATH_MAX], path[CKPT__PATH_MAX], committed[CKPT__FNAME_MAX];
    char name[CKPT__FNAME_MAX];
    ckpt__step_name(step, committed);
    ckpt__index m;
    memset(&m, 0, sizeof m);
    int rc = ckpt__path_join(ppath, dir, partial, err);
    uint64_t t0 = ckpt__now_ns(), t1 = t0, t2 = t0, t3 = t0;
    for (uint32_t k = 0; k < g->n && !rc; k++) {
        uint32_t r = ckpt__group_rank(g, k);
        ckpt__index rec;
        ckpt__done_name(r, name);
        rc = ckpt__path_join(path, ppath, name, err);
        if (rc)
            break;
        rc = read_record(dfd, name, path, &rec, err);
        if (rc)
            break;
        if (rec.step != step || rec.world_size != world || rec.nranks != 1 ||
            rec.ranks[0].rank != r || (k > 0 && memcmp(rec.uuid, m.uuid, 16) != 0))
            rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s belongs to another save", path);
        /* The manifest states one format for every rank's record. */
        if (!rc && rec.minor != CKPT__FORMAT_MINOR)
            rc = ckpt__err_set(err, CKPT_EMISMATCH,
                               "%s was written in format %d.%u, rank 0 writes %d.%d (ranks "
                               "run different ckptrt versions)",
                               path, CKPT__FORMAT_MAJOR, rec.minor, CKPT__FORMAT_MAJOR,
                               CKPT__FORMAT_MINOR);
        if (!rc && k > 0 && rec.created_unix != m.created_unix)
            rc = ckpt__err_set(err, CKPT_EMISMATCH,
                               "rank %u registered other replicated tensors than rank %u "
                               "(names, dtypes or shapes differ): ckpt_register must name the "
                               "same tensors on every rank (ckpt_register_shard for a rank's "
                               "own), else a tensor would be missing from the checkpoint",
                               r, ckpt__group_rank(g, 0));
        if (!rc && k == 0) {
            m.created_unix = rec.created_unix;
            m.minor = rec.minor;
            m.step = rec.step;
            m.world_size = rec.world_size;
            m.chunk_bytes = rec.chunk_bytes;
            memcpy(m.uuid, rec.uuid, 16);
        }
        if (!rc && rec.chunk_bytes != m.chunk_bytes)
            rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s: chunk size differs", path);
        if (!rc)
            rc = merge(&m, &rec, err);
        ckpt__index_free(&rec);
    }
    if (!rc) {
        m.created_unix = (int64_t)time(NULL);
        rc = ckpt__index_check_tree(&m, "merged index", err);
    }
    /* Inv. 8: every tensor's slices tile it exactly; inv. L2: a node's
     * slices are consistent and disjoint (the other nodes hold the rest). */
    if (!rc)
        rc = g->n == world ? ckpt__layout_check(&m, CKPT_EMISMATCH, committed, err)
                           : ckpt__layout_check_part(&m, CKPT_EMISMATCH, committed, err);
    if (!rc)
        rc = ckpt__fault_check(fault, CKPT__FAULT_MANIFEST, "write manifest", err);
    if (!rc)
        rc = ckpt__path_join(path, ppath, CKPT__MANIFEST_NAME, err);
    t1 = ckpt__now_ns();
    if (!rc)
        rc = ckpt__manifest_write(path, &m, err);
    ckpt__index_free(&m);
    t2 = ckpt__now_ns();
    /* Inv. 3: manifest and folder durable before the rename. */
    if (!rc && fsync(dfd) != 0)
        rc = ckpt__err_errno(err, errno, "fsync folder %s", ppath);
    t3 = ckpt__now_ns();
    if (!rc)
        rc = ckpt__fault_check(fault, CKPT__FAULT_RENAME, "commit rename", err);
    int replaced = 0;
    if (!rc)
        rc = ckpt__commit_publish(dir, partial, step, committed, &replaced, err);
    if (rc)
        return rc;
    /* Inv. 4: the new name is durable before anyone is told. */
    rc = ckpt__fault_check(fault, CKPT__FAULT_DIRSYNC, "fsync of the checkpoint folder", err);
    if (!rc)
        rc = ckpt__fsync_dir(dir, err);
    ckpt__logf(log, CKPT_LOG_DEBUG,
               "commit %s: records + checks %.1f ms, manifest %.1f ms, folder fsync %.1f ms, "
               "rename + DIR fsync %.1f ms",
               committed, (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6,
               (double)(t3 - t2) / 1e6, (double)(ckpt__now_ns() - t3) / 1e6);
    if (replaced) {
        ckpt__err sub;
        if (ckpt__remove_tree(dir, partial, &sub) != 0)
            ckpt__logf(log, CKPT_LOG_WARN, "removing the replaced %s: %s", committed, sub.msg);
    }
    return rc;
}

void ckpt__commit_abandon_shared(int dfd, const char *dir, const char *partial,
                                 const ckpt__group *g, double timeout_s, const ckpt__err *why,
                                 ckpt__log *log)
{
    uint32_t world = g->world;
    write_mark(dfd, CKPT__ABANDONED_NAME, why);
    /* Inv. 9: the folder goes only when no rank can still create it anew. */
    ckpt__err e;
    uint8_t *have = calloc(world, 1);
    DIR *d = have ? open_scan(dfd, partial, &e) : NULL;
    double t0 = ckpt__now_s();
    long ns = 100000, cap = scan_cap_ns(world);
    for (uint32_t k = 1; d && k < g->n;) {
        uint32_t r = ckpt__group_rank(g, k);
        if (have[r]) {
            k++;
            continue;
        }
        if (ckpt__now_s() - t0 > timeout_s) {
            ckpt__logf(log, CKPT_LOG_WARN,
                       "rank %u did not finish the abandoned save in %s within %.1f s", r,
                       partial, timeout_s);
            break;
        }
        scan_records(d, world, have);
        if (!have[r])
            backoff(&ns, cap);
    }
    if (!d)
        ckpt__logf(log, CKPT_LOG_WARN,
                   "could not wait for the other ranks before removing %s: %s", partial,
                   have ? e.msg : "out of memory");
    if (d)
        closedir(d);
    free(have);
    ckpt__commit_abandon(dir, partial, log);
}

void ckpt__commit_abandon(const char *dir, const char *partial, ckpt__log *log)
{
    ckpt__err e;
    if (partial[0] && ckpt__remove_tree(dir, partial, &e) != 0)
        ckpt__logf(log, CKPT_LOG_WARN, "could not remove %s/%s (removed at next open): %s",
                   dir, partial, e.msg);
}
