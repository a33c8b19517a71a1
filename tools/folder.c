/* SPDX-License-Identifier: Apache-2.0 */
/* See folder.h. */
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "io/rankfile.h"
#include "tools/folder.h"

#define MIB (1024ull * 1024ull)
#define STAGING_BYTES (64 * MIB)
#define PROGRESS_MIN_BYTES (256 * MIB)

/*
 * The cheap checks `list` reports: the manifest reads and validates and
 * names this step, and every rank file it lists is a regular file of the
 * recorded size whose bytes outside tensor data (its HDF5 metadata) have
 * the recorded hash.  Tensor data is not read (verify_one does).  *hashed
 * is 0 for a 1.0 checkpoint, which records no metadata hash.  On success
 * *idx holds the index (the caller frees it).
 */
int quick_check(const char *dir, int64_t step, ckpt__index *idx, int *hashed, ckpt__err *err)
{
    char path[CKPT__PATH_MAX];
    memset(idx, 0, sizeof *idx);
    *hashed = 0;
    int rc = ckpt__path_step(path, dir, step, CKPT__MANIFEST_NAME, err);
    if (!rc)
        rc = ckpt__manifest_read(path, idx, err);
    if (rc)
        return rc;
    *hashed = idx->minor >= CKPT__MINOR_META_HASH;
    if (idx->step != step)
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s records step %lld", CKPT__MANIFEST_NAME,
                           (long long)idx->step);
    for (uint32_t r = 0; !rc && r < idx->nranks; r++) {
        char file[CKPT__FNAME_MAX];
        struct stat st;
        ckpt__rank_file_name(idx->ranks[r].rank, file);
        rc = ckpt__path_step(path, dir, step, file, err);
        if (rc)
            break;
        int h;
        if (lstat(path, &st) != 0)
            rc = errno == ENOENT ? ckpt__err_set(err, CKPT_ECORRUPT, "%s is missing", file)
                                 : ckpt__err_errno(err, errno, "stat %s", path);
        else if (!S_ISREG(st.st_mode))
            rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s is not a regular file", file);
        else if ((uint64_t)st.st_size != idx->ranks[r].file_bytes)
            rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s is %lld bytes, the manifest says %llu",
                               file, (long long)st.st_size,
                               (unsigned long long)idx->ranks[r].file_bytes);
        else
            rc = ckpt__rankfile_check_meta(path, idx, &idx->ranks[r], &h, err);
    }
    if (rc)
        ckpt__index_free(idx);
    return rc;
}

/* Data bytes (tensors and metadata) and tensor count of a checkpoint. */
void totals(const ckpt__index *idx, uint64_t *bytes, uint32_t *ntensors)
{
    *bytes = 0;
    *ntensors = 0;
    for (uint32_t i = 0; i < idx->nentries; i++) {
        *bytes += idx->entries[i].nbytes;
        *ntensors += idx->entries[i].kind == CKPT__ENTRY_TENSOR;
    }
}


/* 1 and *out when name is a leftover folder's, else 0. */
int parse_leftover(const char *name, leftover *out)
{
    int64_t step;
    ckpt__folder_kind k = ckpt__folder_parse(name, &step);
    if (k != CKPT__FOLDER_PARTIAL && k != CKPT__FOLDER_TRASH)
        return 0;
    memcpy(out->name, name, strlen(name) + 1); /* fits: a leftover's name has 56 or 58 bytes */
    out->step = step;
    out->trash = k == CKPT__FOLDER_TRASH;
    return 1;
}

static int cmp_leftover(const void *a, const void *b)
{
    const leftover *x = a, *y = b;
    if (x->step != y->step)
        return x->step < y->step ? 1 : -1;
    return strcmp(x->name, y->name);
}

/* Partial and trash folders of dir, newest step first (*out malloc'd). */
int scan_leftovers(const char *dir, leftover **out, size_t *n,
                                 ckpt__err *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return ckpt__err_errno(err, errno, "open folder %s", dir);
    size_t cap = 0;
    int rc = 0;
    struct dirent *de;
    leftover l;
    while ((de = readdir(d)) != NULL) {
        if (!parse_leftover(de->d_name, &l))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            leftover *v = realloc(*out, cap * sizeof *v);
            if (!v) {
                rc = ckpt__err_set(err, CKPT_ENOMEM, "scanning %s: out of memory", dir);
                break;
            }
            *out = v;
        }
        (*out)[(*n)++] = l;
    }
    closedir(d);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
        return rc;
    }
    if (*n > 1)
        qsort(*out, *n, sizeof **out, cmp_leftover);
    return 0;
}

/* ---- full verification ---------------------------------------------------------- */

/* Progress across the rank files of one checkpoint: each rank's pipeline
 * counts from zero again, so a drop in `done` means the next file began. */
typedef struct progress {
    int64_t step;
    uint64_t total, base, last_done, last_total;
    int last_pct;
} progress;

static void on_progress(void *user, uint64_t done, uint64_t total)
{
    progress *p = user;
    if (done < p->last_done)
        p->base += p->last_total;
    p->last_done = done;
    p->last_total = total;
    uint64_t all = p->base + done;
    int pct = p->total ? (int)((double)all * 100.0 / (double)p->total) : 100;
    if (pct > 100)
        pct = 100;
    if (pct != p->last_pct) {
        fprintf(stderr, "\rverifying step %lld: %3d%%", (long long)p->step, pct);
        fflush(stderr);
        p->last_pct = pct;
    }
}

static int cmp_bad(const void *a, const void *b)
{
    const ckpt__bad_chunk *x = a, *y = b;
    if (x->entry != y->entry)
        return x->entry < y->entry ? -1 : 1;
    return x->chunk < y->chunk ? -1 : x->chunk > y->chunk;
}

/*
 * Verifies one step into *v: v->rc is 0, CKPT_ECORRUPT with v->err naming
 * the first problem, or another code when the check itself could not run.
 * The manifest is read first for its chunk size, because the engine's
 * staging slabs must hold one chunk of this checkpoint.
 */
void verify_one(const char *dir, int64_t step, ckpt__log *log, vresult *v)
{
    memset(v, 0, sizeof *v);
    v->step = step;
    char path[CKPT__PATH_MAX];
    ckpt__index idx;
    v->rc = ckpt__path_step(path, dir, step, CKPT__MANIFEST_NAME, &v->err);
    if (!v->rc)
        v->rc = ckpt__manifest_read(path, &idx, &v->err);
    if (v->rc)
        return;
    uint64_t total;
    uint32_t nt;
    totals(&idx, &total, &nt);
    ckpt__engine_config ec = {
        .io = CKPT_IO_AUTO,
        .device = CKPT_DEVICE_HOST,
        .staging_bytes = idx.chunk_bytes > STAGING_BYTES ? idx.chunk_bytes : STAGING_BYTES,
        .chunk_bytes = idx.chunk_bytes,
    };
    ckpt__index_free(&idx);
    ckpt__engine eng;
    if (ckpt__engine_open(&eng, &ec, log, NULL, &v->err) != 0) {
        /* Not the checkpoint's fault: never reported as corruption. */
        v->rc = v->err.code == CKPT_ECORRUPT ? CKPT_EIO : v->err.code;
        ckpt__err_prefix(&v->err, "opening the reader");
        return;
    }
    progress pr = {.step = step, .total = total, .last_pct = -1};
    if (isatty(STDERR_FILENO) && total > PROGRESS_MIN_BYTES) {
        v->rep.progress = on_progress;
        v->rep.progress_user = &pr;
    }
    double t0 = ckpt__now_s();
    v->rc = ckpt__verify_step(&eng, dir, step, &v->rep, &v->err);
    v->seconds = ckpt__now_s() - t0;
    ckpt__engine_close(&eng);
    /* The report lists bad chunks in the order reads finished. */
    if (v->rep.nbads > 1)
        qsort(v->rep.bads, v->rep.nbads, sizeof *v->rep.bads, cmp_bad);
    if (pr.last_pct >= 0)
        fprintf(stderr, "\r%40s\r", "");
}

