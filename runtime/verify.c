/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Full verification of one committed checkpoint, for `ckpt verify`, `ckpt
 * gc` and the tests: the manifest (user block, checksum, index, hash tree),
 * then for every rank file its size, the hash of its bytes outside tensor
 * data, its HDF5 structure against the manifest, and every chunk of every
 * entry hashed against its leaf.  Unlike restore it keeps going after a bad
 * chunk, so the report lists every damaged tensor and chunk.
 *
 * Invariant: HDF5 parses a rank file only after the metadata hash matched
 * (format 1.1), so damaged metadata never reaches libhdf5 here; a 1.0
 * checkpoint has no such hash and gets the structure check alone.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/h5util.h"
#include "io/manifest.h"
#include "io/paths.h"
#include "io/shard.h"
#include "io/rankfile.h"
#include "runtime/backend.h"
#include "runtime/catalog.h"
#include "runtime/engine.h"
#include "runtime/pipeline.h"
#include "runtime/verify.h"

void ckpt__verify_report_free(ckpt__verify_report *r)
{
    free(r->bads);
    r->bads = NULL;
    r->nbads = 0;
    ckpt__index_free(&r->idx);
}

static int append_bads(ckpt__verify_report *rep, const ckpt__pipe *p)
{
    if (!p->nbads)
        return 0;
    ckpt__bad_chunk *v = realloc(rep->bads, (rep->nbads + p->nbads) * sizeof *v);
    if (!v)
        return -1;
    memcpy(v + rep->nbads, p->bads, p->nbads * sizeof *v);
    rep->bads = v;
    rep->nbads += p->nbads;
    return 0;
}

static int verify_rank(ckpt__engine *eng, const char *sdir, ckpt__verify_report *rep,
                       const ckpt__rankrec *rr, ckpt__err *err)
{
    ckpt__index *idx = &rep->idx;
    char fname[CKPT__FNAME_MAX], path[CKPT__PATH_MAX];
    ckpt__rank_file_name(rr->rank, fname);
    int rc = ckpt__path_join(path, sdir, fname, err);
    if (rc)
        return rc;
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? ckpt__err_set(err, CKPT_ECORRUPT, "%s is missing", path)
                               : ckpt__err_errno(err, errno, "stat %s", path);
    if (!S_ISREG(st.st_mode))
        return ckpt__err_set(err, CKPT_ECORRUPT, "%s is not a regular file", path);
    int truncated = (uint64_t)st.st_size != rr->file_bytes;
    if (truncated)
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s is %lld bytes, the manifest says %llu", path,
                           (long long)st.st_size, (unsigned long long)rr->file_bytes);
    else {
        int hashed;
        rc = ckpt__rankfile_check_meta(path, idx, rr, &hashed, err);
        rep->nunhashed += !hashed;
        /* A cheap consistency check once the bytes are known intact. */
        if (!rc) {
            ckpt__h5_enter();
            rc = ckpt__rankfile_check(path, idx, rr->rank, err);
            ckpt__h5_leave();
        }
    }
    /* Read every chunk even when the structure is damaged: name what is lost. */
    uint32_t *ids = malloc((idx->nentries ? idx->nentries : 1) * sizeof *ids), n = 0;
    if (!ids)
        return ckpt__err_set(err, CKPT_ENOMEM, "verify: out of memory");
    for (uint32_t i = 0; i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        if ((uint32_t)e->rank != rr->rank)
            continue;
        rep->ntensors += e->kind == CKPT__ENTRY_TENSOR;
        rep->nmeta += e->kind == CKPT__ENTRY_META;
        if (e->nbytes)
            ids[n++] = i;
    }
    ckpt__wfile *wf = NULL;
    ckpt__err e2;
    ckpt__err_clear(&e2);
    int orc = ckpt__writer_file_open(eng, path, CKPT__WF_READ, -1, &wf, &e2);
    if (orc) {
        free(ids);
        ckpt__err_keep(err, &e2);
        return rc ? rc : orc;
    }
    ckpt__pipe p;
    int prc = ckpt__pipe_init(&p, CKPT__PIPE_LOAD, eng, idx, NULL, ids, n, path, &e2);
    if (!prc) {
        p.keep_going = 1;
        p.on_progress = rep->progress;
        p.progress_user = rep->progress_user;
        ckpt__pipe_set_file(&p, wf);
        prc = ckpt__pipe_run(&p);
        rep->bytes += p.done_bytes;
        if (append_bads(rep, &p) != 0 && !prc)
            prc = ckpt__err_set(&p.err, CKPT_ENOMEM, "verify: out of memory");
        e2 = p.err;
    }
    ckpt__pipe_destroy(&p);
    ckpt__writer_file_close(eng, wf);
    free(ids);
    /* A bad chunk names the damage more precisely than a structure error. */
    if (prc == CKPT_ECORRUPT && rep->nbads) {
        *err = e2;
        return prc;
    }
    if (rc)
        return rc;
    if (prc)
        *err = e2;
    return prc;
}

int ckpt__verify_step(ckpt__engine *eng, const char *dir, int64_t step,
                      ckpt__verify_report *rep, ckpt__err *err)
{
    void (*progress)(void *, uint64_t, uint64_t) = rep->progress;
    void *pu = rep->progress_user;
    memset(rep, 0, sizeof *rep);
    rep->progress = progress;
    rep->progress_user = pu;
    rep->step = step;
    char name[CKPT__FNAME_MAX], sdir[CKPT__PATH_MAX], path[CKPT__PATH_MAX];
    ckpt__step_name(step, name);
    int rc = ckpt__path_step(sdir, dir, step, NULL, err);
    if (!rc)
        rc = ckpt__path_join(path, sdir, CKPT__MANIFEST_NAME, err);
    if (!rc)
        rc = ckpt__manifest_read(path, &rep->idx, err);
    if (rc)
        return rc;
    if (rep->idx.step != step)
        return ckpt__err_set(err, CKPT_ECORRUPT, "%s records step %lld", path,
                             (long long)rep->idx.step);
    rc = ckpt__layout_check(&rep->idx, CKPT_ECORRUPT, name, err);
    if (rc)
        return rc;
    for (uint32_t r = 0; r < rep->idx.nranks; r++) {
        ckpt__err e;
        ckpt__err_clear(&e);
        int rrc = verify_rank(eng, sdir, rep, &rep->idx.ranks[r], &e);
        if (rrc && !rc) {
            rc = rrc;
            *err = e;
        }
    }
    return rc;
}

int ckpt__verify_rank_file(ckpt__engine *eng, const char *sdir, const ckpt__index *idx,
                           uint32_t rank, ckpt__err *err)
{
    const ckpt__rankrec *rr = NULL;
    for (uint32_t r = 0; r < idx->nranks && !rr; r++)
        if (idx->ranks[r].rank == rank)
            rr = &idx->ranks[r];
    if (!rr)
        return ckpt__err_set(err, CKPT_ENOTFOUND, "%s: the manifest lists no rank %u", sdir,
                             rank);
    /* verify_rank reads the report's index only: a shallow copy, not freed. */
    ckpt__verify_report rep;
    memset(&rep, 0, sizeof rep);
    rep.idx = *idx;
    int rc = verify_rank(eng, sdir, &rep, rr, err);
    free(rep.bads);
    return rc;
}

struct ckpt__verifier {
    ckpt__engine eng;
};

int ckpt__verifier_open(uint64_t chunk, ckpt__verifier **out, ckpt__err *err)
{
    *out = NULL;
    ckpt__verifier *v = calloc(1, sizeof *v);
    if (!v)
        return ckpt__err_set(err, CKPT_ENOMEM, "verify: out of memory");
    ckpt__engine_config ec = {
        .io = CKPT_IO_AUTO,
        .device = CKPT_DEVICE_HOST,
        .queue_depth = 16,
        .staging_bytes = chunk * 16 > (64u << 20) ? chunk * 16 : 64u << 20,
        .chunk_bytes = chunk,
    };
    int rc = ckpt__engine_open(&v->eng, &ec, NULL, NULL, err);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    return 0;
}

int ckpt__verifier_run(ckpt__verifier *v, const char *dir, int64_t step,
                       ckpt__verify_report *rep, ckpt__err *err)
{
    return ckpt__verify_step(&v->eng, dir, step, rep, err);
}

void ckpt__verifier_close(ckpt__verifier *v)
{
    if (!v)
        return;
    ckpt__engine_close(&v->eng);
    free(v);
}

int ckpt__verify(const char *dir, int64_t step, ckpt__verify_report *rep, ckpt__err *err)
{
    char path[CKPT__PATH_MAX];
    /* The engine's slabs must hold one chunk of this checkpoint. */
    ckpt__index idx;
    int rc = ckpt__path_step(path, dir, step, CKPT__MANIFEST_NAME, err);
    if (!rc)
        rc = ckpt__manifest_read(path, &idx, err);
    if (rc) {
        memset(rep, 0, sizeof *rep);
        rep->step = step;
        return rc;
    }
    uint64_t chunk = idx.chunk_bytes;
    ckpt__index_free(&idx);
    ckpt__verifier *v;
    rc = ckpt__verifier_open(chunk, &v, err);
    if (rc)
        return rc;
    rc = ckpt__verifier_run(v, dir, step, rep, err);
    ckpt__verifier_close(v);
    return rc;
}
