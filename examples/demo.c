/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckpt-demo: a real training loop that checkpoints, is killed, resumes and
 * ends bit-identical to a run that never stopped.
 *
 * The model is a 64-256-256-10 MLP trained on the CPU with Adam and softmax
 * cross-entropy on a generated classification set (Gaussian sub-clusters,
 * four per class).  Everything that decides the next step is either a
 * registered tensor (weights, biases, both Adam moments, Adam's update
 * count) or a metadata blob (the augmentation RNG, the data loader's epoch
 * and position, the hyper-parameters).  The math runs on one thread in a
 * fixed order, so equal state in gives equal bits out.
 *
 * One program run does four things:
 *   1. a reference run of N steps without checkpoints;
 *   2. a child process that trains from scratch, checkpointing every K
 *      steps, and is killed with SIGKILL by the parent mid-run;
 *   3. the parent opens the folder, restores the newest checkpoint and the
 *      metadata, and trains to step N (checkpointing on);
 *   4. a memcmp of every tensor against the reference run, and a restore of
 *      the final checkpoint compared the same way.
 *
 * The loop has the shape of docs/ARCHITECTURE.md: at step S, save if due (the snapshot
 * holds the state before S's update), forward and backward (they only read
 * the weights), ckpt_fence, then the Adam update.  A restore to S re-runs
 * step S.  Contexts are opened only after fork(): a context owns threads.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "examples/cli.h"
#include "examples/mlp.h"

#define META_MAGIC 0x316f6d6564746b63ull /* "cktdemo1" */
#define CHILD_SILENCE_MS 120000           /* the parent gives up on a mute child */

/* ---- small helpers ------------------------------------------------------------ */

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

/* splitmix64: one 64-bit word of state, which is all the metadata needs. */
static int api_fail(const ckpt_ctx *ck, int rc, const char *what)
{
    fprintf(stderr, "ckpt-demo: %s: %s: %s\n", what, ckpt_err_name(rc), ckpt_last_error(ck));
    return -1;
}

static void fmt_bytes(double n, char *out, size_t cap)
{
    if (n >= 1024.0 * 1024.0)
        snprintf(out, cap, "%.2f MiB", n / (1024.0 * 1024.0));
    else if (n >= 1024.0)
        snprintf(out, cap, "%.1f KiB", n / 1024.0);
    else
        snprintf(out, cap, "%.0f B", n);
}

/* ---- training state and metadata -------------------------------------------------- */

typedef struct trainer {
    model m;
    const dataset *train;
    uint64_t seed;
    uint64_t rng;      /* augmentation noise: "demo.rng" */
    meta_loader pos;   /* "demo.loader" */
    uint32_t *perm;    /* this epoch's order, a function of (seed, epoch) */
    uint8_t yb[BATCH];
} trainer;

static meta_hparams hparams(uint64_t seed)
{
    return hparams_of(META_MAGIC, seed);
}

/* The permutation is recomputed from the epoch, so only two words of
 * loader position need to be checkpointed. */
static void shuffle(trainer *tr)
{
    data_order(tr->perm, tr->train->n, tr->seed, tr->pos.epoch);
}

/* The state at step 0: initial weights, zero moments, first batch next. */
static void trainer_reset(trainer *tr)
{
    model_init(&tr->m, tr->seed);
    tr->rng = tr->seed ^ 0xa06a06ull;
    tr->pos.epoch = 0;
    tr->pos.index = 0;
    shuffle(tr);
}

static int trainer_init(trainer *tr, const dataset *train, uint64_t seed)
{
    memset(tr, 0, sizeof *tr);
    tr->train = train;
    tr->seed = seed;
    tr->perm = malloc((size_t)train->n * sizeof *tr->perm);
    if (!tr->perm || model_alloc(&tr->m) != 0) {
        free(tr->perm);
        tr->perm = NULL;
        return -1;
    }
    trainer_reset(tr);
    return 0;
}

/* Garbage in every checkpointed field, so that a restore which skips one
 * cannot go unnoticed in the comparison. */
static void trainer_poison(trainer *tr)
{
    for (int i = 0; i < 2 * NLAYER; i++) {
        param *q = &tr->m.p[i];
        memset(q->val, 0xA5, q->n * sizeof(float));
        memset(q->m, 0xA5, q->n * sizeof(float));
        memset(q->v, 0xA5, q->n * sizeof(float));
    }
    tr->m.t = -1;
    tr->rng = 0xbadbadbadull;
    tr->pos.epoch = tr->pos.index = 0xbadbadull;
}

static void trainer_free(trainer *tr)
{
    free(tr->m.arena);
    free(tr->perm);
    tr->m.arena = NULL;
    tr->perm = NULL;
}

/* Forward and backward on the next batch: reads the weights, writes only
 * activations and gradients.  Advances the loader and the RNG. */
static double compute_grads(trainer *tr)
{
    const int in = dims[0];
    if (tr->pos.index + BATCH > (uint64_t)tr->train->n) {
        tr->pos.epoch++;
        tr->pos.index = 0;
        shuffle(tr);
    }
    for (int s = 0; s < BATCH; s++) {
        uint32_t k = tr->perm[tr->pos.index + (uint64_t)s];
        const float *src = tr->train->x + (size_t)k * (size_t)in;
        float *dst = tr->m.act[0] + (size_t)s * (size_t)in;
        for (int j = 0; j < in; j++)
            dst[j] = src[j] + AUG_NOISE * rng_normal(&tr->rng);
        tr->yb[s] = tr->train->y[k];
    }
    tr->pos.index += BATCH;
    double loss = 0.0;
    int correct = 0;
    forward(&tr->m, BATCH, tr->yb, &loss, &correct);
    backward(&tr->m, BATCH, tr->yb);
    return loss / BATCH;
}

static int register_model(ckpt_ctx *ck, model *m)
{
    char name[64];
    for (int i = 0; i < 2 * NLAYER; i++) {
        param *q = &m->p[i];
        float *bufs[3] = {q->val, q->m, q->v};
        const char *prefix[3] = {"mlp.", "adam.m.", "adam.v."};
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "%s%s", prefix[k], q->name);
            int rc = ckpt_register(ck, name, bufs[k], CKPT_F32, q->ndim, q->shape);
            if (rc)
                return api_fail(ck, rc, "ckpt_register");
        }
    }
    int rc = ckpt_register(ck, "adam.t", &m->t, CKPT_I64, 0, NULL);
    return rc ? api_fail(ck, rc, "ckpt_register(adam.t)") : 0;
}

/* Every checkpointed byte of two models equal?  Names the first that is not. */
static int same_state(const model *a, const model *b, size_t *nbytes, char *diff, size_t cap)
{
    *nbytes = sizeof a->t;
    for (int i = 0; i < 2 * NLAYER; i++) {
        const param *p = &a->p[i], *q = &b->p[i];
        const float *x[3] = {p->val, p->m, p->v}, *y[3] = {q->val, q->m, q->v};
        const char *what[3] = {"", "adam.m.", "adam.v."};
        for (int k = 0; k < 3; k++) {
            *nbytes += p->n * sizeof(float);
            if (memcmp(x[k], y[k], p->n * sizeof(float)) != 0) {
                size_t j = 0;
                while (memcmp(&x[k][j], &y[k][j], sizeof(float)) == 0)
                    j++;
                snprintf(diff, cap, "%s%s[%zu]: %.9g vs %.9g", what[k], p->name, j,
                         (double)x[k][j], (double)y[k][j]);
                return 0;
            }
        }
    }
    if (a->t != b->t) {
        snprintf(diff, cap, "adam.t: %" PRId64 " vs %" PRId64, a->t, b->t);
        return 0;
    }
    return 1;
}

/* ---- the training loop ------------------------------------------------------------- */

typedef struct stats {
    uint64_t saves, save_ns;       /* time inside ckpt_save */
    uint64_t save_cpu_ns;          /* of it, on this thread's CPU (the rest:
                                      descheduled, e.g. for a woken worker) */
    uint64_t backpressure_ns;      /* waiting for the previous save first */
    uint64_t fence_ns;             /* time blocked in ckpt_fence, every step */
    uint64_t commits, commit_ns;   /* ckpt_save call to commit seen */
    uint64_t train_ns, steps;      /* whole steps, checkpoint calls included */
} stats;

/* What the child tells the parent at the start of every step; small enough
 * (< PIPE_BUF) that each write is atomic. */
typedef struct progress {
    int64_t step;
    int64_t last_commit; /* -1 before the first */
    stats st;
} progress;

typedef struct run {
    const char *tag;
    ckpt_ctx *ck;       /* NULL: no checkpoints */
    int64_t every;
    int64_t skip_save;  /* the restored step: it is on disk already */
    int64_t print_every;
    int report_fd;      /* child only: progress to the parent */
    ckpt_ticket pending;
    int64_t pending_step;
    uint64_t pending_t0;
    int64_t last_commit;
    stats st;
} run;

/* Collects the pending save once it has ended (or waits for it, if block).
 * ckpt_poll only looks; ckpt_wait consumes the ticket and gives the result. */
static int settle(run *r, int block)
{
    if (!r->pending)
        return 0;
    if (!block && ckpt_poll(r->ck, r->pending) == CKPT_INPROGRESS)
        return 0;
    uint64_t seen = now_ns();
    int rc = ckpt_wait(r->ck, r->pending, -1);
    if (block)
        seen = now_ns();
    r->pending = 0;
    if (rc) {
        char what[64];
        snprintf(what, sizeof what, "checkpoint of step %" PRId64, r->pending_step);
        return api_fail(r->ck, rc, what);
    }
    r->st.commits++;
    r->st.commit_ns += seen - r->pending_t0;
    r->last_commit = r->pending_step;
    return 0;
}

static int save(trainer *tr, run *r, int64_t step)
{
    ckpt_ctx *ck = r->ck;
    if (r->pending) {
        uint64_t t0 = now_ns();
        if (settle(r, 1))
            return -1;
        r->st.backpressure_ns += now_ns() - t0;
    }
    /* The metadata of the state at the start of this step, as the tensors. */
    int rc = ckpt_set_meta(ck, "demo.rng", &tr->rng, sizeof tr->rng);
    if (!rc)
        rc = ckpt_set_meta(ck, "demo.loader", &tr->pos, sizeof tr->pos);
    if (rc)
        return api_fail(ck, rc, "ckpt_set_meta");
    uint64_t c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID), t0 = now_ns();
    rc = ckpt_save(ck, step, NULL, &r->pending);
    uint64_t t1 = now_ns(), c1 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    if (rc) {
        char what[64];
        snprintf(what, sizeof what, "ckpt_save(step %" PRId64 ")", step);
        return api_fail(ck, rc, what);
    }
    r->st.saves++;
    r->st.save_ns += t1 - t0;
    r->st.save_cpu_ns += c1 - c0;
    r->pending_step = step;
    r->pending_t0 = t0;
    return 0;
}

static int report(run *r, int64_t step)
{
    progress p = {step, r->last_commit, r->st};
    const char *b = (const char *)&p;
    size_t off = 0;
    while (off < sizeof p) {
        ssize_t n = write(r->report_fd, b + off, sizeof p - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "ckpt-demo: child: progress pipe: %s\n", strerror(errno));
            return -1;
        }
        off += (size_t)n;
    }
    return 0;
}

/* Steps [from, to).  The loop of docs/ARCHITECTURE.md: save if due, compute, fence, update. */
static int train_steps(trainer *tr, run *r, int64_t from, int64_t to)
{
    double loss_sum = 0.0;
    int64_t loss_n = 0;
    for (int64_t s = from; s < to; s++) {
        uint64_t t_step = now_ns();
        if (r->report_fd >= 0 && report(r, s) != 0)
            return -1;
        if (r->ck && s % r->every == 0 && s != r->skip_save && save(tr, r, s) != 0)
            return -1;
        double loss = compute_grads(tr);
        if (r->ck) {
            if (settle(r, 0))
                return -1;
            uint64_t t0 = now_ns();
            int rc = ckpt_fence(r->ck, NULL);
            r->st.fence_ns += now_ns() - t0;
            if (rc)
                return api_fail(r->ck, rc, "ckpt_fence");
        }
        adam_step(&tr->m);
        if (r->ck && settle(r, 0))
            return -1;
        r->st.steps++;
        r->st.train_ns += now_ns() - t_step;
        loss_sum += loss;
        loss_n++;
        if ((s + 1) % r->print_every == 0 || s + 1 == to) {
            printf("  %-6s step %6" PRId64 "  train loss %.4f", r->tag, s + 1,
                   loss_sum / (double)loss_n);
            if (r->ck && r->last_commit >= 0)
                printf("  (newest commit: step %" PRId64 ")", r->last_commit);
            printf("\n");
            fflush(stdout); /* a SIGKILLed child keeps only flushed lines */
            loss_sum = 0.0;
            loss_n = 0;
        }
    }
    return 0;
}

/* ---- the phases -------------------------------------------------------------------- */

typedef struct opts {
    const char *dir; /* NULL: a fresh temporary folder */
    int64_t steps, every, kill_at;
    uint64_t seed;
    int keep;
} opts;

static int open_ctx(const char *dir, ckpt_ctx **out)
{
    ckpt_config cfg;
    int rc = ckpt_config_init(&cfg);
    if (rc)
        return api_fail(NULL, rc, "ckpt_config_init (check the CKPT_* variables)");
    cfg.dir = dir;
    cfg.keep_last = 3;
    cfg.device = CKPT_DEVICE_HOST;
    cfg.chunk_bytes = 256 << 10;
    cfg.staging_bytes = 8 << 20; /* the whole state (~1 MiB) fits: one copy */
    rc = ckpt_open(&cfg, NULL, out);
    return rc ? api_fail(NULL, rc, "ckpt_open") : 0;
}

static void run_init(run *r, const char *tag, const opts *o)
{
    memset(r, 0, sizeof *r);
    r->tag = tag;
    r->every = o->every;
    r->skip_save = -1;
    r->report_fd = -1;
    r->last_commit = -1;
    r->print_every = o->steps / 8 > 0 ? o->steps / 8 : 1;
}

/* The child: a fresh start with checkpoints until the parent kills it. */
static int child_main(const opts *o, const dataset *train, int fd)
{
    trainer tr;
    ckpt_ctx *ck = NULL;
    run r;
    run_init(&r, "[ckpt]", o);
    r.report_fd = fd;
    if (trainer_init(&tr, train, o->seed) != 0) {
        fprintf(stderr, "ckpt-demo: child: out of memory\n");
        return 1;
    }
    int fail = open_ctx(o->dir, &ck) != 0 || register_model(ck, &tr.m) != 0;
    meta_hparams h = hparams(o->seed);
    int rc = fail ? 0 : ckpt_set_meta(ck, "demo.hparams", &h, sizeof h);
    if (rc)
        fail = api_fail(ck, rc, "ckpt_set_meta");
    /* A training loop always tries to resume; here the folder is new. */
    if (!fail && (rc = ckpt_restore(ck, CKPT_LATEST, NULL, NULL)) != CKPT_ENOTFOUND) {
        if (rc == 0)
            fprintf(stderr, "ckpt-demo: child: %s already holds a checkpoint\n", o->dir);
        else
            api_fail(ck, rc, "ckpt_restore");
        fail = 1;
    }
    r.ck = ck;
    if (!fail)
        fail = train_steps(&tr, &r, 0, o->steps) != 0;
    /* Reached only if the kill came too late; the parent reports it. */
    if (!fail)
        fail = save(&tr, &r, o->steps) != 0 || settle(&r, 1) != 0;
    rc = ckpt_close(ck);
    if (rc && !fail)
        fail = api_fail(NULL, rc, "ckpt_close");
    trainer_free(&tr);
    return fail ? 1 : 3;
}

typedef struct kill_report {
    int64_t sent_at;  /* step the child had reached when SIGKILL was sent */
    int64_t died_in;  /* last step the child started */
    int64_t last_commit;
    stats st;
} kill_report;

/* Forks the checkpointing child, follows its progress, kills it. */
static int phase_kill(const opts *o, const dataset *train, kill_report *kr)
{
    memset(kr, 0, sizeof *kr);
    kr->sent_at = kr->died_in = kr->last_commit = -1;
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "ckpt-demo: pipe: %s\n", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "ckpt-demo: fork: %s\n", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        int code = child_main(o, train, fds[1]);
        fflush(stdout);
        fflush(stderr);
        _exit(code); /* not exit(): the parent's atexit handlers are not ours */
    }
    close(fds[1]);
    int killed = 0, fail = 0;
    for (;;) {
        progress p;
        int got = cli_read_record(fds[0], &p, sizeof p, CHILD_SILENCE_MS);
        if (got < 0) {
            fprintf(stderr, "ckpt-demo: no word from child %d (%s); killing it\n", (int)pid,
                    strerror(errno));
            kill(pid, SIGKILL);
            fail = 1;
            break;
        }
        if (got == 0)
            break; /* end of file: the child is gone */
        kr->died_in = p.step;
        kr->last_commit = p.last_commit;
        kr->st = p.st;
        if (!killed && p.step >= o->kill_at) {
            if (kill(pid, SIGKILL) != 0) {
                fprintf(stderr, "ckpt-demo: kill: %s\n", strerror(errno));
                fail = 1;
            }
            killed = 1;
            kr->sent_at = p.step;
        }
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            fprintf(stderr, "ckpt-demo: waitpid: %s\n", strerror(errno));
            return -1;
        }
    if (fail)
        return -1;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && killed)
        return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
        fprintf(stderr, "ckpt-demo: the child finished before it could be killed\n");
    else if (WIFEXITED(status))
        fprintf(stderr, "ckpt-demo: the child failed (exit %d) in step %" PRId64 "\n",
                WEXITSTATUS(status), kr->died_in < 0 ? 0 : kr->died_in);
    else
        fprintf(stderr, "ckpt-demo: the child died of signal %d\n",
                WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    return -1;
}

/* Entries in dir whose name holds ".partial-": saves the kill cut short. */
static int count_partials(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".partial-") != NULL;
    closedir(d);
    return n;
}

/* Bytes of the files in one committed step folder: allocated on disk, and
 * apparent (HDF5 reserves room that stays a hole in a sparse file). */
static void step_bytes(const char *dir, int64_t step, uint64_t *alloc, uint64_t *apparent)
{
    char path[4096];
    *alloc = *apparent = 0;
    snprintf(path, sizeof path, "%s/step-%012" PRId64, dir, step);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char f[4400];
        struct stat st;
        snprintf(f, sizeof f, "%s/%s", path, e->d_name);
        if (lstat(f, &st) == 0 && S_ISREG(st.st_mode)) {
            *alloc += (uint64_t)st.st_blocks * 512;
            *apparent += (uint64_t)st.st_size;
        }
    }
    closedir(d);
}

typedef struct resume_report {
    int64_t from;        /* restored step, -1 for a fresh start */
    uint64_t restore_ns;
    int partials;        /* partial folders found before ckpt_open */
    int64_t kept[8];     /* committed steps after the kill, newest first */
    size_t nkept;
    stats st;
} resume_report;

static int meta_fail(ckpt_ctx *ck, int rc, const char *key)
{
    char what[64];
    snprintf(what, sizeof what, "ckpt_get_meta(%s)", key);
    return api_fail(ck, rc ? rc : CKPT_EMISMATCH, what);
}

/* The training loop's resume: tensors, then the metadata that goes with
 * them.  *step gets where training continues. */
static int restore_state(ckpt_ctx *ck, trainer *tr, int64_t *step, uint64_t *restore_ns)
{
    trainer_poison(tr);
    uint64_t t0 = now_ns();
    int rc = ckpt_restore(ck, CKPT_LATEST, NULL, step);
    *restore_ns = now_ns() - t0;
    meta_hparams want = hparams(tr->seed), got;
    if (rc == CKPT_ENOTFOUND) {
        /* Killed before the first commit: a fresh start is the right answer. */
        trainer_reset(tr);
        *step = 0;
        rc = ckpt_set_meta(ck, "demo.hparams", &want, sizeof want);
        return rc ? api_fail(ck, rc, "ckpt_set_meta") : 1;
    }
    if (rc)
        return api_fail(ck, rc, "ckpt_restore");
    size_t len = 0;
    rc = ckpt_get_meta(ck, "demo.hparams", &got, sizeof got, &len);
    if (rc || len != sizeof got)
        return meta_fail(ck, rc, "demo.hparams");
    if (memcmp(&got, &want, sizeof got) != 0) {
        fprintf(stderr, "ckpt-demo: the checkpoint was made with other hyper-parameters "
                        "or another seed\n");
        return -1;
    }
    rc = ckpt_get_meta(ck, "demo.rng", &tr->rng, sizeof tr->rng, &len);
    if (rc || len != sizeof tr->rng)
        return meta_fail(ck, rc, "demo.rng");
    rc = ckpt_get_meta(ck, "demo.loader", &tr->pos, sizeof tr->pos, &len);
    if (rc || len != sizeof tr->pos)
        return meta_fail(ck, rc, "demo.loader");
    if (tr->m.t != *step) {
        fprintf(stderr, "ckpt-demo: restored step %" PRId64 " but adam.t is %" PRId64 "\n",
                *step, tr->m.t);
        return -1;
    }
    shuffle(tr); /* the restored epoch's order */
    return 0;
}

/* Opens the killed run's folder, restores, trains to the end. */
static int phase_resume(const opts *o, trainer *tr, resume_report *rr)
{
    memset(rr, 0, sizeof *rr);
    rr->from = -1;
    rr->partials = count_partials(o->dir);
    ckpt_ctx *ck = NULL;
    if (open_ctx(o->dir, &ck) != 0)
        return -1;
    run r;
    run_init(&r, "[resume]", o);
    r.ck = ck;
    int64_t step = 0;
    int fail = register_model(ck, &tr->m) != 0;
    if (!fail) {
        int rc = restore_state(ck, tr, &step, &rr->restore_ns);
        fail = rc < 0;
        rr->from = rc == 0 ? step : -1;
    }
    if (!fail) {
        ckpt_info info[8];
        size_t n = 0;
        int rc = ckpt_list(ck, info, 8, &n);
        if (rc)
            fail = api_fail(ck, rc, "ckpt_list");
        for (size_t i = 0; !fail && i < n && i < 8; i++)
            rr->kept[rr->nkept++] = info[i].step;
    }
    if (!fail) {
        if (rr->from >= 0) {
            printf("  restored step %" PRId64 " in %.2f ms; committed steps on disk:",
                   rr->from, (double)rr->restore_ns / 1e6);
            for (size_t i = 0; i < rr->nkept; i++)
                printf(" %" PRId64, rr->kept[i]);
            printf(";");
        } else {
            printf("  no checkpoint was committed before the kill: a fresh start;");
        }
        printf(" %d partial folder%s removed at open\n", rr->partials,
               rr->partials == 1 ? "" : "s");
        r.skip_save = rr->from;
        fail = train_steps(tr, &r, step, o->steps) != 0;
    }
    /* The final state is worth a checkpoint too; phase 4 restores it. */
    if (!fail)
        fail = save(tr, &r, o->steps) != 0 || settle(&r, 1) != 0;
    else if (r.pending)
        settle(&r, 1);
    int rc = ckpt_close(ck);
    if (rc && !fail)
        fail = api_fail(NULL, rc, "ckpt_close");
    rr->st = r.st;
    return fail ? -1 : 0;
}

/* Restores the final checkpoint into a poisoned model and compares. */
static int phase_verify(const opts *o, const dataset *train, const model *want, int *same,
                        uint64_t *state_bytes, char *diff, size_t cap)
{
    trainer tr;
    ckpt_ctx *ck = NULL;
    *same = 0;
    if (trainer_init(&tr, train, o->seed) != 0) {
        fprintf(stderr, "ckpt-demo: out of memory\n");
        return -1;
    }
    trainer_poison(&tr);
    int fail = open_ctx(o->dir, &ck) != 0 || register_model(ck, &tr.m) != 0;
    int64_t step = -1;
    int rc = fail ? 0 : ckpt_restore(ck, CKPT_LATEST, NULL, &step);
    if (rc)
        fail = api_fail(ck, rc, "ckpt_restore (final)");
    ckpt_info info;
    size_t n = 0;
    if (!fail && (rc = ckpt_list(ck, &info, 1, &n)) != 0)
        fail = api_fail(ck, rc, "ckpt_list");
    if (!fail && n > 0)
        *state_bytes = info.nbytes;
    size_t nbytes;
    if (!fail && step != o->steps)
        snprintf(diff, cap, "newest checkpoint is step %" PRId64 ", not %" PRId64, step,
                 o->steps);
    else if (!fail)
        *same = same_state(&tr.m, want, &nbytes, diff, cap);
    rc = ckpt_close(ck);
    if (rc && !fail)
        fail = api_fail(NULL, rc, "ckpt_close");
    trainer_free(&tr);
    return fail ? -1 : 0;
}

/* ---- folders ----------------------------------------------------------------------- */

/* Removes the demo's own folder: two levels of plain files, no links followed. */
static int rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char sub[4096];
        struct stat st;
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= sizeof sub ||
            lstat(sub, &st) != 0) {
            rc = -1;
            continue;
        }
        if (S_ISDIR(st.st_mode) ? rm_tree(sub) != 0 : unlink(sub) != 0)
            rc = -1;
    }
    closedir(d);
    return rmdir(path) != 0 ? -1 : rc;
}

/* ---- command line ------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ckpt-demo [--dir D] [--steps N] [--every K] [--kill-at STEP|auto]\n"
            "                 [--seed S] [--keep]\n"
            "\n"
            "Trains a 64-256-256-10 MLP with Adam on the CPU three ways: straight\n"
            "through (reference); in a child process checkpointing every K steps into D,\n"
            "killed with SIGKILL at step STEP; resumed from D's newest checkpoint to step\n"
            "N.  Exits 0 when the resumed weights equal the reference bit for bit.\n"
            "\n"
            "  --dir D         checkpoint folder without checkpoints, kept (default: a\n"
            "                  new folder under $TMPDIR or /tmp, removed at the end)\n"
            "  --steps N       training steps, 2..1000000 (default 400)\n"
            "  --every K       checkpoint every K steps, 1..N (default 20, at most N)\n"
            "  --kill-at STEP  kill the child when it starts STEP, 1..N-1 (default auto:\n"
            "                  just past the middle, between two checkpoints)\n"
            "  --seed S        data, initialisation and noise seed (default 42)\n"
            "  --keep          keep the checkpoint folder\n"
            "  --help          this text\n"
            "\n"
            "Exit status: 0 identical, 1 a difference or an error, 2 bad arguments.\n");
}

static int parse_args(int argc, char **argv, opts *o)
{
    *o = (opts){NULL, 400, 20, -1, 42, 0};
    const char *kill_arg = "auto";
    int every_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--keep") == 0) {
            o->keep = 1;
            continue;
        }
        const char *names[] = {"--dir", "--steps", "--every", "--kill-at", "--seed"};
        int which = -1;
        const char *val = NULL;
        for (int k = 0; k < 5 && which < 0; k++) {
            size_t n = strlen(names[k]);
            if (strncmp(a, names[k], n) == 0 && (a[n] == '\0' || a[n] == '=')) {
                which = k;
                val = a[n] == '=' ? a + n + 1 : (i + 1 < argc ? argv[++i] : NULL);
            }
        }
        if (which < 0) {
            fprintf(stderr, "ckpt-demo: unknown argument '%s'\n", a);
            return -1;
        }
        if (!val || !*val) {
            fprintf(stderr, "ckpt-demo: %s needs a value\n", names[which]);
            return -1;
        }
        int bad = 0;
        int64_t v = 0;
        switch (which) {
        case 0:
            o->dir = val;
            bad = strlen(val) > 3000;
            break;
        case 1:
            bad = cli_i64(val, 2, 1000000, &o->steps);
            break;
        case 2:
            bad = cli_i64(val, 1, 1000000, &o->every);
            every_set = 1;
            break;
        case 3:
            kill_arg = val;
            break;
        default:
            bad = val[0] == '-' || cli_i64(val, 0, INT64_MAX, &v);
            o->seed = (uint64_t)v;
            break;
        }
        if (bad) {
            fprintf(stderr, "ckpt-demo: bad value '%s' for %s\n", val, names[which]);
            return -1;
        }
    }
    if (!every_set && o->every > o->steps)
        o->every = o->steps;
    if (o->every > o->steps) {
        fprintf(stderr, "ckpt-demo: --every %" PRId64 " exceeds --steps %" PRId64 "\n",
                o->every, o->steps);
        return -1;
    }
    if (cli_kill_at(kill_arg, o->steps, o->every, &o->kill_at) != 0) {
        fprintf(stderr, "ckpt-demo: --kill-at '%s' must be auto or a step in 1..%" PRId64 "\n",
                kill_arg, o->steps - 1);
        return -1;
    }
    return 0;
}

/* ---- main -------------------------------------------------------------------------- */

typedef struct results {
    kill_report kr;
    resume_report rr;
    double loss[2], acc[2]; /* reference, resumed */
    uint64_t ref_ns, state_bytes;
    int identical, final_ok;
    size_t cmp_bytes;
    char diff[256], final_diff[256];
} results;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void row(const char *label, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("  %-30s ", label);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static double mean_ms(uint64_t ns, uint64_t n)
{
    return n ? (double)ns / (double)n / 1e6 : 0.0;
}

static void print_summary(const opts *o, const results *x)
{
    const stats *a = &x->kr.st, *b = &x->rr.st;
    /* The child's commits are exact from the restored step: saves run one
     * at a time in step order, so every earlier one committed too. */
    uint64_t child = x->rr.from >= 0 ? (uint64_t)(x->rr.from / o->every) + 1 : 0;
    uint64_t disk, apparent, commits = child + b->commits, saves = a->saves + b->saves;
    step_bytes(o->dir, o->steps, &disk, &apparent);
    char sb[32], db[32], ab[32], tb[32];
    fmt_bytes((double)x->state_bytes, sb, sizeof sb);
    fmt_bytes((double)disk, db, sizeof db);
    fmt_bytes((double)apparent, ab, sizeof ab);
    fmt_bytes((double)disk * (double)commits, tb, sizeof tb);

    printf("\nsummary\n");
    row("steps", "%" PRId64 " (checkpoint every %" PRId64 ", keep_last 3)", o->steps, o->every);
    row("killed at step", "%" PRId64 " (SIGKILL sent at %" PRId64 ")", x->kr.died_in,
        x->kr.sent_at);
    if (x->rr.from >= 0)
        row("resumed from step", "%" PRId64 " (%" PRId64 " steps lost and re-run)", x->rr.from,
            x->kr.died_in - x->rr.from);
    else
        row("resumed from step", "none was committed: fresh start");
    row("steps run", "%" PRId64 " reference; %" PRIu64 " child + %" PRIu64 " resumed", o->steps,
        a->steps, b->steps);
    row("checkpoints committed", "%" PRIu64 " (%" PRIu64 " by the child, %" PRIu64
        " after the resume)", commits, child, b->commits);
    row("saves cut short by the kill", "%d (partial folders removed by ckpt_open)",
        x->rr.partials);
    row("bytes per checkpoint", "%s state, %s on disk (%s apparent)", sb, db, ab);
    row("total bytes committed", "%s", tb);
    row("mean ckpt_save call", "%.1f us (%.1f us of it on the CPU)",
        mean_ms(a->save_ns + b->save_ns, saves) * 1e3,
        mean_ms(a->save_cpu_ns + b->save_cpu_ns, saves) * 1e3);
    row("waits for the previous save", "%.2f ms in all",
        (double)(a->backpressure_ns + b->backpressure_ns) / 1e6);
    row("mean fence stall / checkpoint", "%.3f ms", mean_ms(a->fence_ns + b->fence_ns, saves));
    row("mean save -> committed", "%.2f ms (seen by ckpt_poll twice a step)",
        mean_ms(a->commit_ns + b->commit_ns, a->commits + b->commits));
    row("restore time", "%.2f ms", (double)x->rr.restore_ns / 1e6);
    row("time per step", "%.2f ms reference, %.2f ms checkpointing",
        mean_ms(x->ref_ns, (uint64_t)o->steps),
        mean_ms(a->train_ns + b->train_ns, a->steps + b->steps));
    printf("  %-30s %-18s %s\n", "", "reference", "resumed");
    printf("  %-30s %-18.6f %.6f\n", "final test loss", x->loss[0], x->loss[1]);
    printf("  %-30s %-18.2f %.2f\n", "final test accuracy %", x->acc[0], x->acc[1]);
    row("weights bit-identical", "%s (%d tensors, %zu bytes compared)",
        x->identical ? "yes" : "NO", 3 * 2 * NLAYER + 1, x->cmp_bytes);
    if (!x->identical)
        row("first difference", "%s", x->diff);
    row("final checkpoint restores", "%s", x->final_ok ? "bit-exact" : x->final_diff);
}

/* Phases 1-4; 0 when every call succeeded (the verdict is in *x). */
static int run_all(const opts *o, const dataset *train, const dataset *test, trainer *ref,
                   trainer *res, results *x)
{
    printf("[1/4] reference run, no checkpoints\n");
    run r;
    run_init(&r, "[ref]", o);
    if (train_steps(ref, &r, 0, o->steps) != 0)
        return -1;
    x->ref_ns = r.st.train_ns;
    evaluate(&ref->m, test, &x->loss[0], &x->acc[0]);
    printf("  done in %.2f s: test loss %.4f, accuracy %.1f%%\n", (double)x->ref_ns / 1e9,
           x->loss[0], x->acc[0]);

    printf("[2/4] checkpointed run in a child process, SIGKILL at step %" PRId64 "\n",
           o->kill_at);
    if (phase_kill(o, train, &x->kr) != 0)
        return -1;
    printf("  SIGKILL sent at step %" PRId64 ", the child died in step %" PRId64, x->kr.sent_at,
           x->kr.died_in);
    if (x->kr.last_commit >= 0)
        printf("; newest commit it had seen: step %" PRId64, x->kr.last_commit);
    printf("\n");

    printf("[3/4] resume in a new context from the newest checkpoint\n");
    if (phase_resume(o, res, &x->rr) != 0)
        return -1;
    evaluate(&res->m, test, &x->loss[1], &x->acc[1]);
    printf("  done: test loss %.4f, accuracy %.1f%%\n", x->loss[1], x->acc[1]);

    printf("[4/4] compare with the reference; restore the final checkpoint\n");
    x->identical = same_state(&res->m, &ref->m, &x->cmp_bytes, x->diff, sizeof x->diff);
    return phase_verify(o, train, &res->m, &x->final_ok, &x->state_bytes, x->final_diff,
                        sizeof x->final_diff);
}

int main(int argc, char **argv)
{
    opts o;
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    char tmpl[4096];
    int own_dir = o.dir == NULL;
    if (own_dir) {
        const char *t = getenv("TMPDIR");
        snprintf(tmpl, sizeof tmpl, "%s/ckpt-demo-XXXXXX",
                 t && *t && strlen(t) < 3000 ? t : "/tmp");
        if (!mkdtemp(tmpl)) {
            fprintf(stderr, "ckpt-demo: mkdtemp %s: %s\n", tmpl, strerror(errno));
            return 1;
        }
        o.dir = tmpl;
    }
    size_t nparams = 0;
    for (int l = 0; l < NLAYER; l++)
        nparams += (size_t)dims[l + 1] * (size_t)(dims[l] + 1);
    printf("ckpt-demo: MLP %d-%d-%d-%d (%zu parameters) + Adam, %d samples, batch %d\n",
           dims[0], dims[1], dims[2], dims[3], nparams, NTRAIN, BATCH);
    printf("  %" PRId64 " steps, checkpoint every %" PRId64 ", SIGKILL at step %" PRId64
           ", seed %" PRIu64 "\n  folder %s\n",
           o.steps, o.every, o.kill_at, o.seed, o.dir);

    dataset train = {0}, test = {0};
    trainer ref, res;
    memset(&ref, 0, sizeof ref);
    memset(&res, 0, sizeof res);
    results x;
    memset(&x, 0, sizeof x);
    int fail = data_make(o.seed, &train, &test) != 0 ||
               trainer_init(&ref, &train, o.seed) != 0 ||
               trainer_init(&res, &train, o.seed) != 0;
    if (fail)
        fprintf(stderr, "ckpt-demo: out of memory\n");
    else
        fail = run_all(&o, &train, &test, &ref, &res, &x) != 0;
    if (!fail)
        print_summary(&o, &x);

    trainer_free(&ref);
    trainer_free(&res);
    data_free(&train);
    data_free(&test);
    if (own_dir && !o.keep) {
        if (rm_tree(o.dir) != 0)
            fprintf(stderr, "ckpt-demo: could not remove %s completely\n", o.dir);
    } else {
        printf("checkpoint folder kept: %s\n", o.dir);
    }
    if (fail) {
        fprintf(stderr, "ckpt-demo: FAILED\n");
        return 1;
    }
    return x.identical && x.final_ok ? 0 : 1;
}
