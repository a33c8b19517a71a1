/* SPDX-License-Identifier: Apache-2.0 */
/*
 * d2h_measure: the measuring half of `ckpt-bench d2h` (bench_d2h.c says
 * what is measured and reports it).  CUDA builds only.
 *
 * Order per repetition: raw copy in pieces, raw copy in whole tensors,
 * snapshot (then wait for its commit and remove the step), so a drift of
 * the machine (clocks, another tenant) touches all three alike.
 */
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/gpu_util.h"
#include "io/paths.h"

/* The runtime's events of the save of each repetition (runtime thread). */
typedef struct d2h_watch {
    pthread_mutex_t mu;
    int64_t step0;
    int reps;
    d2h_rep *rep;
} d2h_watch;

static void on_event(void *user, const ckpt_event *ev)
{
    d2h_watch *w = user;
    int64_t i = ev->step - w->step0;
    if (i < 0 || i >= w->reps)
        return;
    pthread_mutex_lock(&w->mu);
    if (ev->kind == CKPT_EVENT_SNAPSHOT)
        w->rep[i].snapshot_event_s = ev->since_save_s;
    else if (ev->kind == CKPT_EVENT_DURABLE)
        w->rep[i].durable_s = ev->since_save_s;
    else if (ev->kind == CKPT_EVENT_COMMITTED)
        w->rep[i].committed_s = ev->since_save_s;
    pthread_mutex_unlock(&w->mu);
}

typedef struct d2h_run {
    const d2h_opts *o;
    gpu_dev dev;
    gpu_state st;
    uint8_t *host; /* pinned, the state's size */
    cudaEvent_t e0, e1;
    int have_events;
    ckpt_ctx *ctx;
} d2h_run;

/* Raw pinned D2H of the whole state, in pieces of `piece` bytes (0: one
 * copy per tensor), timed by events on the stream. */
static int raw_copy(d2h_run *x, uint64_t piece, double *secs)
{
    const gpu_state *s = &x->st;
    cudaStream_t st = x->dev.stream;
    int rc = CU(cudaEventRecord(x->e0, st));
    for (int i = 0; !rc && i < s->per_kind; i++) {
        uint64_t base = gpu_tensor_off(s, i), n = gpu_tensor_bytes(s, i);
        uint64_t step = piece ? piece : n;
        for (uint64_t off = 0; !rc && off < n; off += step) {
            uint64_t len = n - off < step ? n - off : step;
            rc = CU(cudaMemcpyAsync(x->host + base + off, (const char *)s->slab[0] + base + off,
                                    (size_t)len, cudaMemcpyDeviceToHost, st));
        }
    }
    double ms = 0;
    rc = rc || CU(cudaEventRecord(x->e1, st)) || CU(cudaEventSynchronize(x->e1)) ||
         ev_ms(x->e0, x->e1, &ms);
    *secs = ms * 1e-3;
    return rc;
}

/* One snapshot: events around ckpt_save + ckpt_fence on the stream, then
 * the commit, then the step's removal. */
static int snapshot(d2h_run *x, int64_t step, d2h_rep *r)
{
    cudaStream_t st = x->dev.stream;
    ckpt_ticket t = 0;
    int rc = CU(cudaStreamSynchronize(st)) || CU(cudaEventRecord(x->e0, st));
    if (rc)
        return rc;
    double t0 = now_s();
    int arc = ckpt_save(x->ctx, step, (void *)st, &t);
    double t1 = now_s();
    if (arc)
        return api_fail("ckpt_save", arc, x->ctx);
    arc = ckpt_fence(x->ctx, (void *)st);
    double t2 = now_s();
    if (arc)
        rc = api_fail("ckpt_fence", arc, x->ctx);
    double ms = 0;
    rc = rc || CU(cudaEventRecord(x->e1, st)) || CU(cudaEventSynchronize(x->e1)) ||
         ev_ms(x->e0, x->e1, &ms);
    /* Waited for whatever happened above: the ticket must not outlive us. */
    arc = ckpt_wait(x->ctx, t, -1);
    if (arc && !rc)
        rc = api_fail("ckpt_wait", arc, x->ctx);
    ckpt__err e;
    ckpt__err_clear(&e);
    if (!arc && ckpt__catalog_delete(x->o->c.dir, step, &e) != 0) {
        errorf("d2h: remove step %lld from %s: %s", (long long)step, x->o->c.dir, e.msg);
        rc = 1;
    }
    r->snapshot_s = ms * 1e-3;
    r->save_call_us = (t1 - t0) * 1e6;
    r->fence_call_ms = (t2 - t1) * 1e3;
    return rc;
}

/* The step after the newest one already in dir: ours never replace one. */
static int first_step(const char *dir, int64_t *step)
{
    int64_t *steps = NULL;
    size_t n = 0;
    ckpt__err e;
    ckpt__err_clear(&e);
    if (ckpt__catalog_scan(dir, &steps, &n, &e) != 0) {
        errorf("d2h: scan %s: %s", dir, e.msg);
        return 1;
    }
    *step = n ? steps[0] + 1 : 1;
    free(steps);
    if (*step + D2H_MAX_REPS > CKPT__STEP_MAX) {
        errorf("d2h: %s already holds step %lld", dir, (long long)(*step - 1));
        return 1;
    }
    return 0;
}

static int measure(d2h_run *x, d2h_result *r, d2h_watch *w)
{
    const d2h_opts *o = x->o;
    static const char *const kinds[] = {"tensor"};
    if (gpu_state_alloc(&x->st, kinds, 1, o->bytes, o->tensors, x->dev.stream))
        return 1;
    r->bytes = gpu_state_bytes(&x->st);
    r->ntensors = x->st.per_kind;
    void *h = NULL;
    if (CU(cudaMallocHost(&h, (size_t)r->bytes)))
        return 1;
    x->host = h;
    if (CU(cudaEventCreate(&x->e0)))
        return 1;
    if (CU(cudaEventCreate(&x->e1))) {
        CU(cudaEventDestroy(x->e0));
        return 1;
    }
    x->have_events = 1;
    if (gpu_open_ctx(o->c.dir, o->c.staging_bytes, o->chunk_bytes, o->c.io, 0, on_event, w,
                     &x->ctx) ||
        gpu_state_register(&x->st, x->ctx))
        return 1;
    snprintf(r->writer, sizeof r->writer, "%s", ckpt_writer_name(x->ctx));
    /* One checkpoint on disk at a time, plus HDF5's few KiB per tensor. */
    if (first_step(o->c.dir, &w->step0) ||
        disk_room("d2h", o->c.dir, r->bytes + r->bytes / 16 + 64 * MIB, "a smaller --size"))
        return 1;
    double warm;
    if (raw_copy(x, o->chunk_bytes, &warm)) /* first-use costs of the buffers */
        return 1;
    for (int i = 0; i < o->reps; i++) {
        d2h_rep *p = &r->rep[i];
        if (raw_copy(x, o->chunk_bytes, &p->raw_piece_s) || raw_copy(x, 0, &p->raw_whole_s) ||
            snapshot(x, w->step0 + i, p))
            return 1;
        fprintf(stderr, "  d2h rep %d/%d: raw %.2f GB/s (pieces) %.2f (whole), snapshot "
                        "%.2f GB/s, durable after %.3f s\n",
                i + 1, o->reps, (double)r->bytes / p->raw_piece_s / 1e9,
                (double)r->bytes / p->raw_whole_s / 1e9, (double)r->bytes / p->snapshot_s / 1e9,
                p->durable_s);
    }
    return 0;
}

int d2h_measure(const d2h_opts *o, d2h_result *r)
{
    d2h_run x;
    memset(&x, 0, sizeof x);
    x.o = o;
    d2h_watch w;
    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.mu, NULL);
    w.reps = o->reps;
    w.rep = r->rep;
    struct stat sb;
    int existed = stat(o->c.dir, &sb) == 0;
    if (gpu_open("d2h", &x.dev)) {
        pthread_mutex_destroy(&w.mu);
        return 1;
    }
    snprintf(r->gpu, sizeof r->gpu, "%s", x.dev.name);
    int rc = measure(&x, r, &w);
    if (x.ctx) {
        int c = ckpt_close(x.ctx);
        if (c && !rc)
            rc = api_fail("ckpt_close", c, NULL);
    }
    if (x.have_events) {
        rc |= CU(cudaEventDestroy(x.e0));
        rc |= CU(cudaEventDestroy(x.e1));
    }
    if (x.host)
        rc |= CU(cudaFreeHost(x.host));
    gpu_state_free(&x.st);
    gpu_close(&x.dev);
    if (!existed)
        rmdir(o->c.dir); /* only when empty again */
    pthread_mutex_destroy(&w.mu);
    return rc ? 1 : 0;
}
