/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replicas of the local tier: one round per save, on the coordinator
 * thread, after the local pass and before the durable one (save.c,
 * run_job).  Rank r's replica k is kept by rank ckpt__nodes_partner(r, k)
 * on the k-th next node (nodes.h, P1); a rank keeps the replicas of its
 * ckpt__nodes_sources.  A round is three exchanges (comm.h), each posted
 * at once on every rank, so no order of the ranks deadlocks:
 *
 *   1. headers: to each partner, this rank's (step, uuid, whether it has a
 *      committed local copy, the sizes of its three files); from each
 *      source, its;
 *   2. answers: to each source, whether this rank made room for its files
 *      (a partial folder, the files allocated: a full disk is an answer,
 *      not a SIGBUS in a mapping); from each partner, its;
 *   3. data: the three files, mapped read-only, to each partner that made
 *      room; from each source this rank made room for, straight into its
 *      files, mapped shared.
 *
 * Landing a replica (LOCAL/replica-of-R/, the catalog layout of a tier
 * folder, docs/FORMAT.md "Replicas"), with the invariants of commit.c:
 *   R1. The files are written only into step-S.partial-UUID/, made with
 *       mkdir by this rank (commit.c, inv. 6).
 *   R2. The replica is verified before anything is made durable: the
 *       manifest parses as a local manifest of step S and the save's uuid,
 *       rank R's file has the size, metadata hash and chunk hashes it
 *       lists.  One that does not verify is removed, never renamed.
 *   R3. Every file and the partial folder are fsynced before the rename
 *       (commit.c, inv. 3); replica-of-R/ is fsynced after it (inv. 4).
 *       So a crash at any instant leaves the previous committed replica
 *       and at most one partial folder, which the node's leader removes at
 *       the next open (ckpt__replica_cleanup).
 *   R4. Retention (local_keep_last) runs after R3 and never deletes the
 *       step just landed nor a newer one (retention.c).
 *
 * Failures (a peer that never answers, a replica that does not verify, a
 * full disk) are warnings naming the step, the source and the partner.  An
 * exchange that fails may leave the channel broken (MPI: a timed-out
 * exchange), so after one no round runs again, logged once: later saves
 * never wait for a broken channel.  Every rank then still commits its
 * saves; its partners' next round times out once and stops too.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/manifest.h"
#include "io/paths.h"
#include "runtime/backend.h"
#include "runtime/catalog.h"
#include "runtime/commit.h"
#include "runtime/context.h"
#include "runtime/replica.h"
#include "runtime/verify.h"

#define HEAD_MAGIC 0x50524b43u /* "CKRP" */
#define HEAD_VERSION 1u

/* The three files of a replica, in the order they are sent. */
enum { F_MANIFEST = 0, F_RANK, F_DONE, NFILES };

/* Exchange 1's message, the same size on every rank. */
typedef struct replica_head {
    uint32_t magic, version;
    int64_t step;
    uint8_t uuid[16];
    uint32_t has;  /* 1: a committed local copy of step follows */
    uint32_t rank; /* the sender */
    uint64_t nbytes[NFILES];
} replica_head;
_Static_assert(sizeof(replica_head) == 64, "a replica header is 64 bytes");

typedef struct mapped {
    void *p; /* NULL: not mapped (n == 0 or not yet) */
    size_t n;
    int fd; /* -1 when closed */
} mapped;

/* What one round sends: kept past a failed exchange (ckpt__replicas). */
struct ckpt__replica_sent {
    ckpt__replica_sent *next;
    replica_head head;
    uint32_t *answers; /* [nsrc] to the sources */
    mapped src[NFILES];
};

/* A replica this rank keeps, of one source, in one round. */
typedef struct kept {
    uint32_t rank;     /* the source */
    int k;             /* which replica of it */
    replica_head head; /* its header */
    int ready;         /* room made: the files are mapped in the partial */
    int dfd;           /* the partial folder, or -1 */
    char rdir[CKPT__PATH_MAX];
    char partial[CKPT__FNAME_MAX];
    mapped f[NFILES];
} kept;

static void file_names(uint32_t rank, char names[NFILES][CKPT__FNAME_MAX])
{
    snprintf(names[F_MANIFEST], CKPT__FNAME_MAX, "%s", CKPT__MANIFEST_NAME);
    ckpt__rank_file_name(rank, names[F_RANK]);
    ckpt__done_name(rank, names[F_DONE]);
}

static void unmap(mapped *m)
{
    if (m->p)
        munmap(m->p, m->n);
    m->p = NULL;
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
}

static void sent_free(ckpt__replica_sent *s)
{
    if (!s)
        return;
    for (int j = 0; j < NFILES; j++)
        unmap(&s->src[j]);
    free(s->answers);
    free(s);
}

void ckpt__replicas_free(ckpt__replicas *r)
{
    while (r->kept) {
        ckpt__replica_sent *s = r->kept;
        r->kept = s->next;
        sent_free(s);
    }
}

/* This rank's committed local files of step, mapped read-only, their sizes
 * into the header. */
static int map_source(ckpt_ctx *ctx, int64_t step, ckpt__replica_sent *s, ckpt__err *err)
{
    char names[NFILES][CKPT__FNAME_MAX], path[CKPT__PATH_MAX];
    file_names((uint32_t)ctx->rank, names);
    for (int j = 0; j < NFILES; j++) {
        int rc = ckpt__path_step(path, ctx->local_dir, step, names[j], err);
        if (rc)
            return rc;
        mapped *m = &s->src[j];
        m->fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (m->fd < 0 || fstat(m->fd, &st) != 0)
            return ckpt__err_errno(err, errno, "open %s", path);
        m->n = (size_t)st.st_size;
        if (m->n) {
            void *p = mmap(NULL, m->n, PROT_READ, MAP_PRIVATE, m->fd, 0);
            if (p == MAP_FAILED)
                return ckpt__err_errno(err, errno, "mmap %s", path);
            m->p = p;
        }
        s->head.nbytes[j] = m->n;
    }
    return 0;
}

/* Exchange 2's answer for one source: R1, the partial folder made and its
 * three files allocated (a full disk fails here) and mapped. */
static int make_room(ckpt_ctx *ctx, kept *kp, const uint8_t uuid[16], ckpt__err *err)
{
    char name[CKPT__FNAME_MAX];
    ckpt__replica_name(kp->rank, name);
    int rc = ckpt__path_join(kp->rdir, ctx->local_dir, name, err);
    if (rc)
        return rc;
    if (mkdir(kp->rdir, 0755) == 0) {
        if ((rc = ckpt__fsync_dir(ctx->local_dir, err)) != 0)
            return rc;
    } else if (errno != EEXIST) {
        return ckpt__err_errno(err, errno, "create folder %s", kp->rdir);
    }
    rc = ckpt__commit_begin(kp->rdir, kp->head.step, uuid, 0, kp->partial, sizeof kp->partial,
                            &kp->dfd, err);
    if (rc)
        return rc;
    char names[NFILES][CKPT__FNAME_MAX];
    file_names(kp->rank, names);
    for (int j = 0; j < NFILES; j++) {
        mapped *m = &kp->f[j];
        m->n = (size_t)kp->head.nbytes[j];
        m->fd = openat(kp->dfd, names[j], O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                       0644);
        if (m->fd < 0)
            return ckpt__err_errno(err, errno, "create %s/%s/%s", kp->rdir, kp->partial,
                                   names[j]);
        if (!m->n)
            continue;
        char what[CKPT__PATH_MAX + 64];
        snprintf(what, sizeof what, "allocate %zu bytes for %s/%s/%s", m->n, kp->rdir,
                 kp->partial, names[j]);
        rc = ckpt__fault_check(&ctx->fault, CKPT__FAULT_REPLICA_ROOM, what, err);
        if (rc)
            return rc;
        int e = posix_fallocate(m->fd, 0, (off_t)m->n);
        if (e)
            return ckpt__err_errno(err, e, "allocate %zu bytes for %s/%s/%s", m->n, kp->rdir,
                                   kp->partial, names[j]);
        void *p = mmap(NULL, m->n, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
        if (p == MAP_FAILED)
            return ckpt__err_errno(err, errno, "mmap %s/%s/%s", kp->rdir, kp->partial,
                                   names[j]);
        m->p = p;
    }
    kp->ready = 1;
    return 0;
}

/* The files are in the partial folder: R2, R3, R4. */
static int land(ckpt_ctx *ctx, kept *kp, ckpt__err *err)
{
    char ppath[CKPT__PATH_MAX], path[CKPT__PATH_MAX], committed[CKPT__FNAME_MAX];
    for (int j = 0; j < NFILES; j++) {
        if (kp->f[j].p)
            munmap(kp->f[j].p, kp->f[j].n);
        kp->f[j].p = NULL;
    }
    int rc = ckpt__path_join(ppath, kp->rdir, kp->partial, err);
    if (!rc)
        rc = ckpt__path_join(path, ppath, CKPT__MANIFEST_NAME, err);
    if (rc)
        return rc;
    /* R2 */
    ckpt__index idx;
    rc = ckpt__manifest_read_part(path, &idx, err);
    if (rc)
        return rc;
    if (idx.step != kp->head.step || memcmp(idx.uuid, kp->head.uuid, 16) != 0)
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s is of step %lld, another save", path,
                           (long long)idx.step);
    if (!rc)
        rc = ckpt__verify_rank_file(&ctx->eng, ppath, &idx, kp->rank, err);
    ckpt__index_free(&idx);
    if (rc)
        return rc;
    /* R3 */
    char names[NFILES][CKPT__FNAME_MAX];
    file_names(kp->rank, names);
    for (int j = 0; j < NFILES && !rc; j++)
        if (fsync(kp->f[j].fd) != 0)
            rc = ckpt__err_errno(err, errno, "fsync %s/%s", ppath, names[j]);
    if (!rc && fsync(kp->dfd) != 0)
        rc = ckpt__err_errno(err, errno, "fsync folder %s", ppath);
    if (!rc)
        rc = ckpt__fault_check(&ctx->fault, CKPT__FAULT_RENAME, "replica rename", err);
    int replaced = 0;
    ckpt__step_name(kp->head.step, committed);
    if (!rc)
        rc = ckpt__commit_publish(kp->rdir, kp->partial, kp->head.step, committed, &replaced,
                                  err);
    if (rc)
        return rc;
    kp->partial[0] = 0; /* renamed: nothing left to abandon */
    rc = ckpt__fsync_dir(kp->rdir, err);
    ckpt__err e;
    ckpt__partial_name(kp->head.step, kp->head.uuid, kp->partial);
    if (replaced && ckpt__remove_tree(kp->rdir, kp->partial, &e) != 0)
        ckpt__logf(&ctx->log, CKPT_LOG_WARN, "removing the replaced %s/%s: %s", kp->rdir,
                   committed, e.msg);
    kp->partial[0] = 0;
    /* R4 */
    ckpt__retention rules = {ctx->cfg.local_keep_last, 0, 0};
    if (!rc && ckpt__retention_apply(kp->rdir, &rules, kp->head.step, &ctx->log, NULL, &e) != 0)
        ckpt__logf(&ctx->log, CKPT_LOG_WARN, "retention in %s after step %lld: %s", kp->rdir,
                   (long long)kp->head.step, e.msg);
    return rc;
}

static void kept_release(ckpt_ctx *ctx, kept *kp)
{
    for (int j = 0; j < NFILES; j++)
        unmap(&kp->f[j]);
    if (kp->dfd >= 0)
        close(kp->dfd);
    kp->dfd = -1;
    if (kp->partial[0])
        ckpt__commit_abandon(kp->rdir, kp->partial, &ctx->log);
    kp->partial[0] = 0;
}

static void warn_kept(ckpt_ctx *ctx, const kept *kp, int64_t step, const char *why)
{
    ckpt__logf(&ctx->log, CKPT_LOG_WARN,
               "step %lld: replica %d of rank %u not kept by rank %d (partner): %s",
               (long long)step, kp->k, kp->rank, ctx->rank, why);
}

/* An exchange failed: no more rounds (the module comment), logged once;
 * the round's sends stay with the context. */
static void give_up(ckpt_ctx *ctx, int64_t step, const char *what, const ckpt__err *why)
{
    ctx->repl.off = 1;
    ckpt__logf(&ctx->log, CKPT_LOG_WARN,
               "step %lld: replication by rank %d failed (%s: %s); replicas are not sent or "
               "kept from now on",
               (long long)step, ctx->rank, what, why->msg);
}

static void free_all(kept *kp, ckpt__msg *sends, ckpt__msg *recvs, uint32_t *srcs, int *srck)
{
    free(kp);
    free(sends);
    free(recvs);
    free(srcs);
    free(srck);
}

int ckpt__replica_round(ckpt_ctx *ctx, int64_t step, const uint8_t uuid[16], int have_local)
{
    if (ctx->repl.off)
        return -1;
    const ckpt__nodes *nd = &ctx->nodes;
    uint32_t me = (uint32_t)ctx->rank;
    int nrep = ctx->cfg.replicas;
    double t_end = ckpt__now_s() + ctx->cfg.commit_timeout_s / 2;
#define LEFT_S() (t_end > ckpt__now_s() ? t_end - ckpt__now_s() : 0.0)
    ckpt__err err;
    ckpt__err_clear(&err);

    uint32_t partner[CKPT__REPLICAS_MAX], pans[CKPT__REPLICAS_MAX] = {0};
    uint32_t *srcs = malloc((size_t)nd->nranks * (size_t)nrep * sizeof *srcs);
    int *srck = malloc((size_t)nd->nranks * (size_t)nrep * sizeof *srck);
    ckpt__replica_sent *s = calloc(1, sizeof *s);
    uint32_t nsrc = 0;
    for (int k = 1; srcs && srck && k <= nrep; k++) {
        partner[k - 1] = ckpt__nodes_partner(nd, me, k);
        uint32_t n = ckpt__nodes_sources(nd, me, k, srcs + nsrc);
        for (uint32_t i = 0; i < n; i++)
            srck[nsrc + i] = k;
        nsrc += n;
    }
    kept *kp = srcs && srck ? calloc(nsrc ? nsrc : 1, sizeof *kp) : NULL;
    ckpt__msg *sends = malloc(((size_t)nrep * NFILES + nsrc) * sizeof *sends);
    ckpt__msg *recvs = malloc(((size_t)nsrc * NFILES + (size_t)nrep) * sizeof *recvs);
    if (s)
        s->answers = calloc(nsrc ? nsrc : 1, sizeof *s->answers);
    if (!s || !s->answers || !kp || !sends || !recvs) {
        /* Without memory this rank cannot take part: its peers time out. */
        ckpt__err_set(&err, CKPT_ENOMEM, "out of memory");
        give_up(ctx, step, "a round", &err);
        sent_free(s);
        free_all(kp, sends, recvs, srcs, srck);
        return 0;
    }
    for (int j = 0; j < NFILES; j++)
        s->src[j].fd = -1;
    for (uint32_t i = 0; i < nsrc; i++) {
        kp[i].rank = srcs[i];
        kp[i].k = srck[i];
        kp[i].dfd = -1;
        for (int j = 0; j < NFILES; j++)
            kp[i].f[j].fd = -1;
    }
    s->head = (replica_head){.magic = HEAD_MAGIC, .version = HEAD_VERSION, .step = step,
                             .rank = me};
    memcpy(s->head.uuid, uuid, 16);
    if (have_local) {
        if (map_source(ctx, step, s, &err) == 0)
            s->head.has = 1;
        else
            ckpt__logf(&ctx->log, CKPT_LOG_WARN,
                       "step %lld: rank %d sends no replica: %s", (long long)step,
                       ctx->rank, err.msg);
    }
    if (!s->head.has)
        memset(s->head.nbytes, 0, sizeof s->head.nbytes);

    int ok = s->head.has, failed = 0;
    /* 1. headers */
    int ns = 0, nr = 0;
    for (int k = 0; k < nrep; k++)
        sends[ns++] = (ckpt__msg){(int)partner[k], &s->head, sizeof s->head};
    for (uint32_t i = 0; i < nsrc; i++)
        recvs[nr++] = (ckpt__msg){(int)kp[i].rank, &kp[i].head, sizeof kp[i].head};
    int rc = ckpt__comm_exchange(ctx->comm, &ctx->fault, sends, ns, recvs, nr,
                                 LEFT_S(), &err);
    if (rc) {
        give_up(ctx, step, "headers", &err);
        failed = 1;
    }
    /* 2. answers */
    for (uint32_t i = 0; !failed && i < nsrc; i++) {
        const replica_head *h = &kp[i].head;
        if (h->magic != HEAD_MAGIC || h->version != HEAD_VERSION || h->rank != kp[i].rank ||
            h->step != step || memcmp(h->uuid, uuid, 16) != 0) {
            /* Out of step with this source: its data would not match. */
            char why[160];
            snprintf(why, sizeof why, "its header is of another save (step %lld)",
                     (long long)h->step);
            warn_kept(ctx, &kp[i], step, why);
            ckpt__err_set(&err, CKPT_ECOMM, "rank %u's header is of another save", kp[i].rank);
            give_up(ctx, step, "headers", &err);
            ok = 0;
            continue;
        }
        if (!h->has) {
            warn_kept(ctx, &kp[i], step, "it has no committed local copy");
            ok = 0;
            continue;
        }
        ckpt__err e;
        ckpt__err_clear(&e);
        if (make_room(ctx, &kp[i], uuid, &e) != 0) {
            warn_kept(ctx, &kp[i], step, e.msg);
            kept_release(ctx, &kp[i]);
            ok = 0;
            continue;
        }
        s->answers[i] = 1;
    }
    if (!failed) {
        ns = nr = 0;
        for (uint32_t i = 0; i < nsrc; i++)
            sends[ns++] = (ckpt__msg){(int)kp[i].rank, &s->answers[i], sizeof s->answers[i]};
        for (int k = 0; k < nrep; k++)
            recvs[nr++] = (ckpt__msg){(int)partner[k], &pans[k], sizeof pans[k]};
        rc = ckpt__comm_exchange(ctx->comm, &ctx->fault, sends, ns, recvs, nr,
                                 LEFT_S(), &err);
        if (rc) {
            give_up(ctx, step, "answers", &err);
            failed = 1;
        }
    }
    /* 3. data */
    double t_data = ckpt__now_s(), t_land = t_data;
    if (!failed) {
        ns = nr = 0;
        for (int k = 0; k < nrep; k++) {
            if (!pans[k] || !s->head.has) {
                ok = 0; /* the partner warned */
                continue;
            }
            for (int j = 0; j < NFILES; j++)
                if (s->src[j].n)
                    sends[ns++] = (ckpt__msg){(int)partner[k], s->src[j].p, s->src[j].n};
        }
        for (uint32_t i = 0; i < nsrc; i++)
            for (int j = 0; s->answers[i] && j < NFILES; j++)
                if (kp[i].f[j].n)
                    recvs[nr++] = (ckpt__msg){(int)kp[i].rank, kp[i].f[j].p, kp[i].f[j].n};
        rc = ckpt__comm_exchange(ctx->comm, &ctx->fault, sends, ns, recvs, nr,
                                 LEFT_S(), &err);
        if (rc) {
            give_up(ctx, step, "data", &err);
            failed = 1;
        }
        t_land = ckpt__now_s();
    }
    for (uint32_t i = 0; i < nsrc; i++) {
        if (!kp[i].ready)
            continue;
        ckpt__err e;
        ckpt__err_clear(&e);
        if (failed) {
            warn_kept(ctx, &kp[i], step, err.msg);
        } else if (land(ctx, &kp[i], &e) != 0) {
            warn_kept(ctx, &kp[i], step, e.msg);
            ok = 0;
        }
        kept_release(ctx, &kp[i]);
    }
    if (failed) {
        ok = 0;
        s->next = ctx->repl.kept;
        ctx->repl.kept = s;
    } else {
        sent_free(s);
    }
    free_all(kp, sends, recvs, srcs, srck);
    if (ok)
        ckpt__logf(&ctx->log, CKPT_LOG_DEBUG,
                   "step %lld: replicas of rank %d sent, %u kept: headers and answers %.3f s, "
                   "data %.3f s, landing %.3f s",
                   (long long)step, ctx->rank, nsrc, t_data - (t_end - ctx->cfg.commit_timeout_s / 2),
                   t_land - t_data, ckpt__now_s() - t_land);
    return ok;
#undef LEFT_S
}

int ckpt__replica_cleanup(const char *local_dir, ckpt__log *log, ckpt__err *err)
{
    DIR *d = opendir(local_dir);
    if (!d)
        return ckpt__err_errno(err, errno, "open folder %s", local_dir);
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d)) != NULL) {
        uint32_t r;
        char path[CKPT__PATH_MAX];
        struct stat st;
        if (!ckpt__replica_dir_parse(de->d_name, &r) ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISDIR(st.st_mode))
            continue;
        rc = ckpt__path_join(path, local_dir, de->d_name, err);
        if (!rc)
            rc = ckpt__catalog_cleanup(path, log, err);
    }
    closedir(d);
    return rc;
}
