/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckpt-cuda-train: a training loop on the GPU that checkpoints with the
 * CUDA device backend, is killed, resumes and ends bit-identical to a run
 * that never stopped.
 *
 * The model is the demo's MLP (examples/mlp.h) trained by this example's
 * own kernels (examples/cuda_mlp.cu); weights, both Adam moments and Adam's
 * update count live in device memory and are registered as device
 * pointers.  The input noise key and the data loader's position are
 * metadata blobs, as in examples/demo.c.
 *
 * The loop has the shape of docs/ARCHITECTURE.md, everything on one stream: at step S,
 * ckpt_save if due (the event it records on the stream makes the snapshot
 * the state before S's update), forward and backward (they only read the
 * weights), ckpt_fence (the stream waits on the device for the snapshot),
 * then the Adam kernels.  A restore to S re-runs step S.
 *
 * CUDA does not survive fork(), so the parent never touches CUDA: it runs
 * each phase as a child that executes this program again with a hidden
 * --phase argument.
 *   parent            options, folder, SIGKILL, the exit status
 *   --phase train     trains from scratch with checkpoints, reports each
 *                     step through a pipe; the parent kills it at --kill-at
 *   --phase resume    a reference run without checkpoints; the resume from
 *                     the newest checkpoint to the last step; a memcmp of
 *                     every tensor copied back to the host; a restore of the
 *                     final checkpoint into poisoned device buffers, compared
 *                     the same way
 * A child without a usable GPU exits 77 with the reason; the parent too.
 */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "examples/cli.h"
#include "examples/cuda_mlp.h"

#define PROG "ckpt-cuda-train"
#define EXIT_SKIP 77                      /* no usable GPU: ctest's skip */
#define EXIT_UNKILLED 3                   /* the train child reached the end */
#define META_MAGIC 0x3161647563746b63ull  /* "cktcuda1" */
#define CHILD_SILENCE_MS 120000
#define NTENSOR (3 * 2 * NLAYER + 1)

extern char **environ;

typedef struct opts {
    const char *dir;
    int64_t steps, every, kill_at;
    uint64_t seed;
    int keep;
    const char *phase; /* hidden: NULL in the parent */
    int report_fd;     /* hidden: the train child's progress pipe */
} opts;

static int api_fail(const ckpt_ctx *ck, int rc, const char *what)
{
    fprintf(stderr, PROG ": %s: %s: %s\n", what, ckpt_err_name(rc), ckpt_last_error(ck));
    return -1;
}

/* ---- the state: device tensors, their host copies, the metadata ------------------ */

typedef struct trainer {
    cudaStream_t stream; /* every kernel, copy, save, fence and restore */
    cmlp g;              /* the device state */
    model h;             /* host model: initial weights, copies for evaluation */
    const dataset *train;
    uint64_t seed, rng;  /* "train.rng": one noise key per step */
    meta_loader pos;     /* "train.loader" */
    uint32_t *perm;      /* this epoch's order: data_order(seed, epoch) */
} trainer;

/* One checkpointed tensor: where it lives on the device and in a host model. */
typedef struct tensor {
    char name[40];
    ckpt_dtype dtype;
    int ndim;
    const int64_t *shape;
    size_t nbytes;
    void *dev, *host;
} tensor;

/* The device state as tensors, host model h as their copies; the demo's
 * names, so that both programs' checkpoints read alike. */
static void tensors(cmlp *g, model *h, tensor t[NTENSOR])
{
    const char *prefix[3] = {"mlp.", "adam.m.", "adam.v."};
    int k = 0;
    for (int i = 0; i < 2 * NLAYER; i++) {
        param *q = &h->p[i];
        float *dev[3] = {g->val + g->off[i], g->m + g->off[i], g->v + g->off[i]};
        float *host[3] = {q->val, q->m, q->v};
        for (int j = 0; j < 3; j++, k++) {
            tensor *x = &t[k];
            snprintf(x->name, sizeof x->name, "%s%s", prefix[j], q->name);
            x->dtype = CKPT_F32;
            x->ndim = q->ndim;
            x->shape = q->shape;
            x->nbytes = q->n * sizeof(float);
            x->dev = dev[j];
            x->host = host[j];
        }
    }
    tensor *x = &t[k];
    snprintf(x->name, sizeof x->name, "adam.t");
    x->dtype = CKPT_I64;
    x->ndim = 0;
    x->shape = NULL;
    x->nbytes = sizeof(int64_t);
    x->dev = g->t;
    x->host = &h->t;
}

/* Copies the whole state between the device and host model h; blocks. */
static int copy_state(trainer *tr, model *h, int to_device)
{
    tensor t[NTENSOR];
    tensors(&tr->g, h, t);
    for (int k = 0; k < NTENSOR; k++) {
        cudaError_t e = to_device ? cudaMemcpyAsync(t[k].dev, t[k].host, t[k].nbytes,
                                                    cudaMemcpyHostToDevice, tr->stream)
                                  : cudaMemcpyAsync(t[k].host, t[k].dev, t[k].nbytes,
                                                    cudaMemcpyDeviceToHost, tr->stream);
        if (cmlp_check(e, "cudaMemcpyAsync"))
            return -1;
    }
    return cmlp_check(cudaStreamSynchronize(tr->stream), "cudaStreamSynchronize");
}

/* Garbage in every checkpointed byte and field, so that a restore which
 * skips one cannot go unnoticed. */
static int poison(trainer *tr)
{
    tensor t[NTENSOR];
    tensors(&tr->g, &tr->h, t);
    for (int k = 0; k < NTENSOR; k++)
        if (cmlp_check(cudaMemsetAsync(t[k].dev, 0xA5, t[k].nbytes, tr->stream),
                       "cudaMemsetAsync"))
            return -1;
    tr->rng = 0xbadbadbadull;
    tr->pos.epoch = tr->pos.index = 0xbadbadull;
    return 0;
}

/* The state at step 0: the demo's initial weights, zero moments. */
static int reset(trainer *tr)
{
    model_init(&tr->h, tr->seed);
    tr->rng = tr->seed ^ 0xc0da5eedull;
    tr->pos.epoch = tr->pos.index = 0;
    data_order(tr->perm, tr->train->n, tr->seed, 0);
    return copy_state(tr, &tr->h, 1);
}

/* The next batch's rows and noise key; advances the loader and the RNG. */
static void next_batch(trainer *tr, cmlp_batch *b)
{
    if (tr->pos.index + BATCH > (uint64_t)tr->train->n) {
        tr->pos.epoch++;
        tr->pos.index = 0;
        data_order(tr->perm, tr->train->n, tr->seed, tr->pos.epoch);
    }
    for (int s = 0; s < BATCH; s++)
        b->row[s] = tr->perm[tr->pos.index + (uint64_t)s];
    tr->pos.index += BATCH;
    b->noise_key = rng_next(&tr->rng);
}

/* Exit status 77 and the reason when this machine has no usable GPU. */
static int gpu_usable(void)
{
    int n = 0; /* left unset when there is no driver */
    const char *call = "cudaGetDeviceCount";
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaSuccess && n > 0) {
        call = "cudaSetDevice";
        e = cudaSetDevice(0);
    }
    if (e == cudaSuccess && n > 0)
        return 0;
    if (e == cudaSuccess)
        fprintf(stderr, PROG ": skipped: no usable CUDA device (%s: none found)\n", call);
    else
        fprintf(stderr, PROG ": skipped: no usable CUDA device (%s: %s: %s)\n", call,
                cudaGetErrorName(e), cudaGetErrorString(e));
    return EXIT_SKIP;
}

/* 0, EXIT_SKIP without a GPU, -1 on failure (said why). */
static int trainer_init(trainer *tr, const dataset *train, uint64_t seed)
{
    memset(tr, 0, sizeof *tr);
    tr->train = train;
    tr->seed = seed;
    int rc = gpu_usable();
    if (rc)
        return rc;
    tr->perm = (uint32_t *)malloc((size_t)train->n * sizeof *tr->perm);
    if (!tr->perm || model_alloc(&tr->h) != 0) {
        fprintf(stderr, PROG ": out of memory\n");
        return -1;
    }
    if (cmlp_check(cudaStreamCreateWithFlags(&tr->stream, cudaStreamNonBlocking),
                   "cudaStreamCreateWithFlags"))
        return -1;
    return cmlp_alloc(&tr->g, train, tr->stream);
}

static void trainer_free(trainer *tr)
{
    cmlp_free(&tr->g);
    if (tr->stream)
        (void)cudaStreamDestroy(tr->stream);
    free(tr->h.arena);
    free(tr->perm);
}

/* ---- checkpoints ----------------------------------------------------------------- */

/* Opens dir on the CUDA backend, registers the device tensors, sets the
 * hyper-parameters. */
static int open_ckpt(const opts *o, trainer *tr, ckpt_ctx **out)
{
    ckpt_config cfg;
    int rc = ckpt_config_init(&cfg);
    if (rc)
        return api_fail(NULL, rc, "ckpt_config_init (check the CKPT_* variables)");
    cfg.dir = o->dir;
    cfg.keep_last = 3;
    cfg.device = CKPT_DEVICE_CUDA;
    cfg.policy_every_steps = (int)o->every;
    cfg.chunk_bytes = 256 << 10;
    cfg.staging_bytes = 8 << 20; /* the whole state (~1 MiB) fits */
    if ((rc = ckpt_open(&cfg, NULL, out)) != 0)
        return api_fail(NULL, rc, "ckpt_open");
    tensor t[NTENSOR];
    tensors(&tr->g, &tr->h, t);
    for (int k = 0; k < NTENSOR && !rc; k++)
        rc = ckpt_register(*out, t[k].name, t[k].dev, t[k].dtype, t[k].ndim, t[k].shape);
    if (rc)
        return api_fail(*out, rc, "ckpt_register");
    meta_hparams h = hparams_of(META_MAGIC, tr->seed);
    rc = ckpt_set_meta(*out, "train.hparams", &h, sizeof h);
    return rc ? api_fail(*out, rc, "ckpt_set_meta") : 0;
}

static int get_meta(ckpt_ctx *ck, const char *key, void *buf, size_t n)
{
    size_t len = 0;
    int rc = ckpt_get_meta(ck, key, buf, n, &len);
    if (rc)
        return api_fail(ck, rc, key);
    if (len == n)
        return 0;
    fprintf(stderr, PROG ": metadata %s holds %zu bytes, not %zu\n", key, len, n);
    return -1;
}

/* The start of a training loop: the newest checkpoint into poisoned
 * buffers, or step 0 when there is none (returns 1 then).  *step gets where
 * training continues. */
static int restore_state(ckpt_ctx *ck, trainer *tr, int64_t *step)
{
    if (poison(tr))
        return -1;
    int rc = ckpt_restore(ck, CKPT_LATEST, tr->stream, step);
    if (rc == CKPT_ENOTFOUND) {
        *step = 0;
        return reset(tr) ? -1 : 1;
    }
    if (rc)
        return api_fail(ck, rc, "ckpt_restore");
    meta_hparams want = hparams_of(META_MAGIC, tr->seed), got;
    if (get_meta(ck, "train.hparams", &got, sizeof got) ||
        get_meta(ck, "train.rng", &tr->rng, sizeof tr->rng) ||
        get_meta(ck, "train.loader", &tr->pos, sizeof tr->pos))
        return -1;
    if (memcmp(&got, &want, sizeof got) != 0) {
        fprintf(stderr, PROG ": the checkpoint was made with other hyper-parameters\n");
        return -1;
    }
    int64_t t = -1; /* ckpt_restore has returned: the device holds the bytes */
    if (cmlp_check(cudaMemcpyAsync(&t, tr->g.t, sizeof t, cudaMemcpyDeviceToHost, tr->stream),
                   "cudaMemcpyAsync(adam.t)") ||
        cmlp_check(cudaStreamSynchronize(tr->stream), "cudaStreamSynchronize"))
        return -1;
    if (t != *step) {
        fprintf(stderr, PROG ": restored step %" PRId64 " but adam.t is %" PRId64 "\n", *step, t);
        return -1;
    }
    data_order(tr->perm, tr->train->n, tr->seed, tr->pos.epoch);
    return 0;
}

/* ---- the training loop ------------------------------------------------------------- */

typedef struct progress {
    int64_t step, last_commit; /* < PIPE_BUF: each write is atomic */
} progress;

typedef struct run {
    const char *tag;
    ckpt_ctx *ck;       /* NULL: no checkpoints */
    int64_t skip_save;  /* the restored step: on disk already */
    int64_t print_every;
    int report_fd;      /* the train child: progress to the parent */
    ckpt_ticket pending;
    int64_t pending_step, last_commit;
} run;

static void run_init(run *r, const char *tag, ckpt_ctx *ck, const opts *o)
{
    memset(r, 0, sizeof *r);
    r->tag = tag;
    r->ck = ck;
    r->skip_save = r->pending_step = r->last_commit = -1;
    r->print_every = o->steps / 8 > 0 ? o->steps / 8 : 1;
    r->report_fd = -1;
}

/* Waits for the save in flight, if any, and takes its result. */
static int settle(run *r)
{
    if (!r->pending)
        return 0;
    int rc = ckpt_wait(r->ck, r->pending, -1);
    r->pending = 0;
    if (rc)
        return api_fail(r->ck, rc, "checkpoint");
    r->last_commit = r->pending_step;
    return 0;
}

/* One save at a time, so the newest commit is known; the metadata is that
 * of the start of the step, like the tensors. */
static int save(trainer *tr, run *r, int64_t step)
{
    if (settle(r))
        return -1;
    int rc = ckpt_set_meta(r->ck, "train.rng", &tr->rng, sizeof tr->rng);
    if (!rc)
        rc = ckpt_set_meta(r->ck, "train.loader", &tr->pos, sizeof tr->pos);
    if (!rc)
        rc = ckpt_save(r->ck, step, tr->stream, &r->pending);
    if (rc)
        return api_fail(r->ck, rc, "ckpt_save");
    r->pending_step = step;
    return 0;
}

static int report(const run *r, int64_t step)
{
    progress p = {step, r->last_commit};
    ssize_t n;
    while ((n = write(r->report_fd, &p, sizeof p)) < 0 && errno == EINTR)
        ;
    if (n == (ssize_t)sizeof p)
        return 0;
    fprintf(stderr, PROG ": progress pipe: %s\n", n < 0 ? strerror(errno) : "short write");
    return -1;
}

/* Steps [from, to): save if due, forward + backward, fence, Adam. */
static int train_steps(trainer *tr, run *r, int64_t from, int64_t to)
{
    int64_t since_print = 0;
    for (int64_t s = from; s < to; s++) {
        if (r->report_fd >= 0 && report(r, s) != 0)
            return -1;
        if (r->ck) {
            int due = ckpt_policy_due(r->ck, s);
            if (due < 0)
                return api_fail(r->ck, due, "ckpt_policy_due");
            if (due && s != r->skip_save && save(tr, r, s) != 0)
                return -1;
        }
        cmlp_batch b;
        next_batch(tr, &b);
        if (cmlp_grads(&tr->g, &b, tr->stream) != 0)
            return -1;
        int rc = r->ck ? ckpt_fence(r->ck, tr->stream) : 0;
        if (rc)
            return api_fail(r->ck, rc, "ckpt_fence");
        if (cmlp_adam(&tr->g, tr->stream) != 0)
            return -1;
        since_print++;
        if ((s + 1) % r->print_every == 0 || s + 1 == to) {
            double sum = 0.0;
            if (cmlp_take_loss(&tr->g, tr->stream, &sum) != 0)
                return -1;
            printf("  %-8s step %6" PRId64 "  train loss %.4f", r->tag, s + 1,
                   sum / (double)(since_print * BATCH));
            if (r->last_commit >= 0)
                printf("  (newest commit: step %" PRId64 ")", r->last_commit);
            printf("\n");
            fflush(stdout); /* a killed child keeps only flushed lines */
            since_print = 0;
        }
    }
    return 0;
}

/* ---- the phases run by children ---------------------------------------------------- */

/* Every checkpointed byte of two host models equal?  Names the first that
 * is not. */
static int same_state(trainer *tr, model *a, model *b, size_t *nbytes, char *diff, size_t cap)
{
    tensor x[NTENSOR], y[NTENSOR];
    tensors(&tr->g, a, x);
    tensors(&tr->g, b, y);
    int same = 1;
    *nbytes = 0;
    for (int k = 0; k < NTENSOR; k++) {
        *nbytes += x[k].nbytes;
        const unsigned char *p = (const unsigned char *)x[k].host;
        const unsigned char *q = (const unsigned char *)y[k].host;
        if (same && memcmp(p, q, x[k].nbytes) != 0) {
            size_t i = 0;
            while (p[i] == q[i])
                i++;
            snprintf(diff, cap, "%.40s, byte %zu", x[k].name, i);
            same = 0;
        }
    }
    return same;
}

/* The training loop as a job runs it: resume from the newest checkpoint
 * (or start at step 0), train to the last step with checkpoints, save that
 * too.  *from gets the restored step, -1 for a fresh start; fresh_only
 * refuses a folder that holds a checkpoint. */
static int ckpt_run(const opts *o, trainer *tr, const char *tag, int fresh_only, int64_t *from)
{
    ckpt_ctx *ck = NULL;
    int64_t step = 0;
    int fail = open_ckpt(o, tr, &ck) != 0, rc = 0;
    if (!fail && (rc = restore_state(ck, tr, &step)) == 0 && fresh_only) {
        fprintf(stderr, PROG ": %s already holds a checkpoint\n", o->dir);
        fail = 1;
    }
    fail |= rc < 0;
    *from = fail || rc ? -1 : step;
    if (!fail && rc == 0)
        printf("  %-8s restored step %" PRId64 " from %s\n", tag, step, o->dir);
    else if (!fail)
        printf("  %-8s no checkpoint in the folder: a fresh start\n", tag);
    fflush(stdout);
    run r;
    run_init(&r, tag, ck, o);
    r.skip_save = *from;
    r.report_fd = o->report_fd;
    if (!fail)
        fail = train_steps(tr, &r, step, o->steps) != 0 || save(tr, &r, o->steps) != 0 ||
               settle(&r) != 0;
    if (ck && (rc = ckpt_close(ck)) != 0 && !fail)
        fail = api_fail(NULL, rc, "ckpt_close");
    return fail ? -1 : 0;
}

/* The final checkpoint into poisoned device buffers, copied to host model h. */
static int restore_final(const opts *o, trainer *tr, model *h)
{
    ckpt_ctx *ck = NULL;
    int64_t step = -1;
    int fail = poison(tr) != 0 || open_ckpt(o, tr, &ck) != 0;
    int rc = fail ? 0 : ckpt_restore(ck, CKPT_LATEST, tr->stream, &step);
    if (rc)
        fail = api_fail(ck, rc, "ckpt_restore (final)");
    if (!fail && step != o->steps) {
        fprintf(stderr, PROG ": newest checkpoint is step %" PRId64 ", not %" PRId64 "\n", step,
                o->steps);
        fail = 1;
    }
    if (!fail)
        fail = copy_state(tr, h, 0) != 0;
    if (ck && (rc = ckpt_close(ck)) != 0 && !fail)
        fail = api_fail(NULL, rc, "ckpt_close");
    return fail ? -1 : 0;
}

static int phase_resume(const opts *o, trainer *tr, const dataset *test)
{
    model ref, got;
    memset(&ref, 0, sizeof ref);
    memset(&got, 0, sizeof got);
    if (model_alloc(&ref) != 0 || model_alloc(&got) != 0) {
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    double loss[2], acc[2];
    size_t nbytes = 0;
    char diff[2][128] = {"", ""};
    int64_t from = -1;
    int same = 0, final_same = 0, fail = 0;

    printf("[2/4] reference run, no checkpoints\n");
    run r;
    run_init(&r, "[ref]", NULL, o);
    fail = reset(tr) != 0 || train_steps(tr, &r, 0, o->steps) != 0 ||
           copy_state(tr, &ref, 0) != 0;
    printf("[3/4] resume in a new context from the newest checkpoint\n");
    fail = fail || ckpt_run(o, tr, "[resume]", 0, &from) != 0 || copy_state(tr, &got, 0) != 0;
    printf("[4/4] compare with the reference; restore the final checkpoint\n");
    if (!fail) {
        evaluate(&ref, test, &loss[0], &acc[0]);
        evaluate(&got, test, &loss[1], &acc[1]);
        same = same_state(tr, &got, &ref, &nbytes, diff[0], sizeof diff[0]);
        fail = restore_final(o, tr, &got) != 0;
    }
    if (!fail) {
        final_same = same_state(tr, &got, &ref, &nbytes, diff[1], sizeof diff[1]);
        printf("  final test loss, accuracy     reference %.6f, %.2f%%; resumed %.6f, %.2f%%\n",
               loss[0], acc[0], loss[1], acc[1]);
        printf("  weights bit-identical         %s (%d tensors, %zu bytes)%s%s\n",
               same ? "yes" : "NO", NTENSOR, nbytes, same ? "" : "; first difference: ", diff[0]);
        printf("  final checkpoint restores     %s%s\n", final_same ? "bit-exact" : "NOT equal: ",
               diff[1]);
    }
    free(ref.arena);
    free(got.arena);
    return fail || !same || !final_same ? 1 : 0;
}

/* A child's whole life: 0, 1, EXIT_UNKILLED or EXIT_SKIP. */
static int run_phase(const opts *o)
{
    dataset train = {0, NULL, NULL}, test = {0, NULL, NULL};
    trainer tr;
    memset(&tr, 0, sizeof tr);
    int rc = data_make(o->seed, &train, &test);
    if (rc)
        fprintf(stderr, PROG ": out of memory\n");
    else
        rc = trainer_init(&tr, &train, o->seed);
    int64_t from;
    if (rc == 0 && strcmp(o->phase, "train") == 0)
        /* Reaching the end means the kill came too late. */
        rc = ckpt_run(o, &tr, "[ckpt]", 1, &from) != 0 ? 1 : EXIT_UNKILLED;
    else if (rc == 0)
        rc = phase_resume(o, &tr, &test);
    else if (rc < 0)
        rc = 1;
    trainer_free(&tr);
    data_free(&train);
    data_free(&test);
    fflush(stdout);
    return rc;
}

/* ---- the parent: no CUDA here -------------------------------------------------------- */

/* Runs this program again for one phase.  report_fd goes to the child;
 * close_fd (or -1) is closed in it. */
static int spawn(const opts *o, const char *argv0, const char *phase, int report_fd,
                 int close_fd, pid_t *pid)
{
    char num[5][24];
    snprintf(num[0], sizeof num[0], "%" PRId64, o->steps);
    snprintf(num[1], sizeof num[1], "%" PRId64, o->every);
    snprintf(num[2], sizeof num[2], "%" PRId64, o->kill_at);
    snprintf(num[3], sizeof num[3], "%" PRIu64, o->seed);
    snprintf(num[4], sizeof num[4], "%d", report_fd);
    const char *av[] = {argv0, "--phase", phase, "--dir", o->dir, "--steps", num[0],
                        "--every", num[1], "--kill-at", num[2], "--seed", num[3],
                        "--report-fd", num[4], NULL};
    posix_spawn_file_actions_t fa;
    int rc = posix_spawn_file_actions_init(&fa);
    if (!rc && close_fd >= 0)
        rc = posix_spawn_file_actions_addclose(&fa, close_fd);
    fflush(stdout);
    fflush(stderr);
    if (!rc)
        rc = posix_spawn(pid, "/proc/self/exe", &fa, NULL, (char *const *)av, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc)
        fprintf(stderr, PROG ": posix_spawn: %s\n", strerror(rc));
    return rc ? -1 : 0;
}

/* The child's exit status; -1 (said why) when it did not exit. */
static int reap(pid_t pid, int *signo)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            fprintf(stderr, PROG ": waitpid: %s\n", strerror(errno));
            return -1;
        }
    *signo = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Phase 1: the train child, followed through its pipe and killed at
 * --kill-at.  0, EXIT_SKIP, or -1 (said why). */
static int phase_kill(const opts *o, const char *argv0)
{
    int fds[2];
    pid_t pid;
    if (pipe(fds) != 0) {
        fprintf(stderr, PROG ": pipe: %s\n", strerror(errno));
        return -1;
    }
    int rc = spawn(o, argv0, "train", fds[1], fds[0], &pid);
    close(fds[1]);
    if (rc) {
        close(fds[0]);
        return -1;
    }
    progress last = {-1, -1};
    int64_t sent_at = -1;
    for (;;) {
        progress p;
        int got = cli_read_record(fds[0], &p, sizeof p, CHILD_SILENCE_MS);
        if (got < 0) {
            fprintf(stderr, PROG ": no word from the train child (%s); killing it\n",
                    strerror(errno));
            kill(pid, SIGKILL);
            sent_at = -2;
            break;
        }
        if (got == 0)
            break; /* end of file: the child is gone */
        last = p;
        if (sent_at == -1 && p.step >= o->kill_at) {
            kill(pid, SIGKILL);
            sent_at = p.step;
        }
    }
    close(fds[0]);
    int signo = 0, code = reap(pid, &signo);
    if (code == EXIT_SKIP)
        return EXIT_SKIP;
    if (sent_at >= 0 && signo == SIGKILL) {
        printf("  SIGKILL sent at step %" PRId64 ", the child died in step %" PRId64, sent_at,
               last.step);
        if (last.last_commit >= 0)
            printf("; newest commit it had seen: step %" PRId64, last.last_commit);
        printf("\n");
        return 0;
    }
    if (code == EXIT_UNKILLED)
        fprintf(stderr, PROG ": the train child finished before it could be killed\n");
    else if (code >= 0)
        fprintf(stderr, PROG ": the train child failed (exit %d)\n", code);
    else
        fprintf(stderr, PROG ": the train child died of signal %d\n", signo);
    return -1;
}

/* Phases 1-4: the exit status of the program. */
static int parent(const opts *o, const char *argv0)
{
    printf("[1/4] checkpointed run in a child process, SIGKILL at step %" PRId64 "\n", o->kill_at);
    int rc = phase_kill(o, argv0);
    if (rc)
        return rc == EXIT_SKIP ? EXIT_SKIP : 1;
    pid_t pid;
    if (spawn(o, argv0, "resume", -1, -1, &pid) != 0)
        return 1;
    int signo = 0, code = reap(pid, &signo);
    if (code < 0)
        fprintf(stderr, PROG ": the resume child died of signal %d\n", signo);
    return code < 0 || (code != 0 && code != EXIT_SKIP) ? 1 : code;
}

/* ---- command line ------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " [--dir D] [--steps N] [--every K] [--kill-at STEP|auto]\n"
            "                       [--seed S] [--keep]\n"
            "\n"
            "ckpt-demo's experiment on the GPU: its MLP trained by CUDA kernels, the\n"
            "state in device memory, checkpointed with the CUDA device backend by a\n"
            "child that is killed at STEP, resumed from D and compared bit for bit with\n"
            "a run that never stopped.  The options and their defaults are ckpt-demo's\n"
            "(see examples/README.md).  Exit status: 0 identical, 1 a difference or an\n"
            "error, 2 bad arguments, 77 no usable CUDA driver or device (why on stderr).\n");
}

static int parse_args(int argc, char **argv, opts *o)
{
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 'd'},   {"steps", required_argument, NULL, 'n'},
        {"every", required_argument, NULL, 'e'}, {"kill-at", required_argument, NULL, 'k'},
        {"seed", required_argument, NULL, 's'},  {"keep", no_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},        {"phase", required_argument, NULL, 'P'},
        {"report-fd", required_argument, NULL, 'R'}, {NULL, 0, NULL, 0}};
    static const opts defaults = {NULL, 400, 20, -1, 42, 0, NULL, -1};
    *o = defaults;
    const char *kill_arg = "auto";
    int every_set = 0, c, li = 0;
    int64_t v = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        int bad = 0;
        switch (c) {
        case 'd':
            o->dir = optarg;
            bad = !*optarg || strlen(optarg) > 3000;
            break;
        case 'n':
            bad = cli_i64(optarg, 2, 1000000, &o->steps);
            break;
        case 'e':
            bad = cli_i64(optarg, 1, 1000000, &o->every);
            every_set = 1;
            break;
        case 'k':
            kill_arg = optarg;
            break;
        case 's':
            bad = optarg[0] == '-' || cli_i64(optarg, 0, INT64_MAX, &v);
            o->seed = (uint64_t)v;
            break;
        case 'K':
            o->keep = 1;
            break;
        case 'P':
            o->phase = optarg;
            bad = strcmp(optarg, "train") != 0 && strcmp(optarg, "resume") != 0;
            break;
        case 'R':
            bad = cli_i64(optarg, -1, INT_MAX, &v);
            o->report_fd = (int)v;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1; /* getopt_long said why */
        }
        if (bad) {
            fprintf(stderr, PROG ": bad value '%s' for --%s\n", optarg, longopts[li].name);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->phase && !o->dir) {
        fprintf(stderr, PROG ": --phase needs --dir\n");
        return -1;
    }
    if (!every_set && o->every > o->steps)
        o->every = o->steps;
    if (o->every > o->steps) {
        fprintf(stderr, PROG ": --every %" PRId64 " exceeds --steps %" PRId64 "\n", o->every,
                o->steps);
        return -1;
    }
    if (cli_kill_at(kill_arg, o->steps, o->every, &o->kill_at) != 0) {
        fprintf(stderr, PROG ": --kill-at '%s' must be auto or a step in 1..%" PRId64 "\n",
                kill_arg, o->steps - 1);
        return -1;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    opts o;
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    if (o.phase)
        return run_phase(&o);
    char tmpl[4096];
    int own_dir = o.dir == NULL;
    if (own_dir) {
        const char *t = getenv("TMPDIR");
        snprintf(tmpl, sizeof tmpl, "%s/" PROG "-XXXXXX", t && *t && strlen(t) < 3000 ? t : "/tmp");
        if (!mkdtemp(tmpl)) {
            fprintf(stderr, PROG ": mkdtemp %s: %s\n", tmpl, strerror(errno));
            return 1;
        }
        o.dir = tmpl;
    }
    printf(PROG ": MLP %d-%d-%d-%d + Adam on the GPU, %d samples, batch %d\n"
           "  %" PRId64 " steps, checkpoint every %" PRId64 ", SIGKILL at step %" PRId64
           ", seed %" PRIu64 "\n  folder %s\n",
           dims[0], dims[1], dims[2], dims[3], NTRAIN, BATCH, o.steps, o.every, o.kill_at,
           o.seed, o.dir);
    int code = parent(&o, argv[0]);
    if (own_dir && !o.keep) {
        if (nftw(o.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
            fprintf(stderr, PROG ": could not remove %s completely\n", o.dir);
    } else {
        printf("checkpoint folder kept: %s\n", o.dir);
    }
    if (code == 1)
        fprintf(stderr, PROG ": FAILED\n");
    return code;
}
