/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The save policy: ckpt_policy_due says whether a step is due for a
 * checkpoint, from the step number, rank 0's clock, a signal, or a request
 * file in the checkpoint folder.
 *
 * Invariants:
 *   1. Every rank returns the same value for the same call sequence.  The
 *      step rule depends only on the step; whatever depends on a clock, on
 *      signal delivery or on the file system is decided only at agreement
 *      points, where the ranks OR their flags through the comm.
 *   2. Every rank reaches the same agreement points: the n-th counted call
 *      (n from 1) is one exactly when pol.agree is set and n is a multiple
 *      of policy_sync_steps.  ckpt_open makes both equal on every rank; a
 *      refused call (a bad step) is not counted, and every rank refuses the
 *      same steps.
 *   3. A request is never lost: it stays pending on the rank that took it
 *      until a step is due; a failed exchange keeps it for the next one.
 *   4. Nothing outside the checkpoint folder is touched: the request file
 *      is a plain name, looked up and removed relative to the folder's
 *      descriptor without following a symlink.
 *   5. The signal handler only increments a lock-free atomic counter.
 *   6. policy_mtbf_s (ckpt.h): rank 0 alone measures the cost of its
 *      saves, computes Young's interval T = sqrt(2 C MTBF) per tier and
 *      decides; the other ranks learn the decision, and the durable
 *      cadence it sets, at agreement points (inv. 1), and ckpt_save reads
 *      that cadence, so every rank sends the same saves to DIR.  Rank 0's
 *      cost is what rank 0 measures: the caller's blocked time in
 *      ckpt_save, ckpt_fence and ckpt_wait (it stalls training) plus the
 *      CPU time of the coordinator and hash threads (which a busy node
 *      takes from the job; the I/O threads mostly wait, and the snapshot
 *      copies are what the fence waits for, so neither is counted again).
 *      A tier's cost is its passes' CPU plus the stall of the saves whose
 *      last pass it ran (that pass releases the fence: save.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/paths.h"
#include "runtime/backend.h"
#include "runtime/context.h"

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the signal counters must be lock-free");

/*
 * Process-wide mutable state.  The library has three pieces of it: these
 * signal counters and holders, io/h5util.c's lock (and saved error
 * handler) around the process-global HDF5 library, and the per-thread
 * last-error buffer of runtime/error_codes.c.  Everything else lives in a
 * context.
 * A signal handler gets no context pointer, so what it records must live in
 * static storage: one counter per signal number.  Besides volatile
 * sig_atomic_t, a lock-free atomic is the only object C11 lets a handler
 * modify, and unlike sig_atomic_t it may also be read from another thread,
 * which matters because a process-directed signal may run the handler on
 * any thread, the runtime's own included.  Each context keeps the count it
 * last took (pol.sig_seen), so every context sees every delivery.
 *
 * Giving the signal back to its previous disposition when the last context
 * lets go needs, per signal, the number of contexts holding it and the
 * saved disposition.  The handler never touches these; holders_mu guards
 * them against contexts opened and closed on different threads.
 */
static atomic_uint hits[CKPT__NSIG];
static struct {
    int users;
    struct sigaction old;
} holders[CKPT__NSIG];
static pthread_mutex_t holders_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_signal(int sig)
{
    if (sig > 0 && sig < CKPT__NSIG)
        atomic_fetch_add_explicit(&hits[sig], 1u, memory_order_relaxed);
}

static int is_handler(const struct sigaction *sa)
{
    if (sa->sa_flags & SA_SIGINFO)
        return 1;
    return sa->sa_handler != SIG_DFL && sa->sa_handler != SIG_IGN;
}

/* Installs on_signal for sig unless another context already did. */
static int hold_signal(int sig, ckpt__log *log, ckpt__err *err)
{
    int rc = 0, replaced = 0;
    pthread_mutex_lock(&holders_mu);
    if (holders[sig].users == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        if (sigaction(sig, &sa, &holders[sig].old) != 0)
            rc = ckpt__err_set(err, CKPT_EINVAL, "policy_signal %d: sigaction: %s", sig,
                               strerror(errno));
        else
            replaced = is_handler(&holders[sig].old);
    }
    if (!rc)
        holders[sig].users++;
    pthread_mutex_unlock(&holders_mu);
    if (replaced)
        ckpt__logf(log, CKPT_LOG_WARN,
                   "policy: signal %d had a handler; the runtime's replaces it until the "
                   "last context using it closes",
                   sig);
    return rc;
}

/* The last context to let go restores the disposition found at the first
 * hold, unless the application has set another one since: that one wins. */
static void release_signal(int sig)
{
    pthread_mutex_lock(&holders_mu);
    if (--holders[sig].users == 0) {
        struct sigaction cur;
        if (sigaction(sig, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
            cur.sa_handler == on_signal)
            sigaction(sig, &holders[sig].old, NULL);
    }
    pthread_mutex_unlock(&holders_mu);
}

static void signal_label(int sig, char *out, size_t cap)
{
    static const struct {
        int sig;
        const char *name;
    } names[] = {
        {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"},
        {SIGUSR1, "SIGUSR1"}, {SIGUSR2, "SIGUSR2"}, {SIGALRM, "SIGALRM"},
        {SIGTERM, "SIGTERM"}, {SIGXCPU, "SIGXCPU"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].sig == sig) {
            snprintf(out, cap, "%s", names[i].name);
            return;
        }
    if (sig >= SIGRTMIN && sig <= SIGRTMAX)
        snprintf(out, cap, "SIGRTMIN+%d", sig - SIGRTMIN);
    else
        snprintf(out, cap, "signal %d", sig);
}

int ckpt__policy_open(ckpt_ctx *ctx, ckpt__err *err)
{
    ckpt__policy *p = &ctx->pol;
    const ckpt_config *c = &ctx->cfg;
    int rc = 0;
    if (c->policy_signal) {
        rc = hold_signal(c->policy_signal, &ctx->log, err);
        if (!rc) {
            p->sig = c->policy_signal;
            p->sig_seen = atomic_load(&hits[p->sig]);
        }
    }
    if (!rc && ctx->rank == 0 && c->policy_request_file) {
        p->dir_fd = open(ctx->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (p->dir_fd < 0)
            rc = ckpt__err_errno(err, errno, "policy: open folder %s", ctx->dir);
    }
    p->mtbf = c->policy_mtbf_s > 0;
    p->durable_every = c->durable_every;
    for (int k = 0; k < 3; k++) {
        p->tier[k].logged_s = -1;
        p->test_cost_s[k] = -1;
    }
    p->mtbf_base_ns = ckpt__now_ns();
    if (ctx->rank == 0 && c->policy_every_s > 0) {
        /* At least 1 ns: 0 means off. */
        p->every_ns = (uint64_t)(c->policy_every_s * 1e9);
        p->every_ns += p->every_ns == 0;
        p->base_ns = ckpt__now_ns();
    }
    /* Inv. 2: the rules that place agreement points must match on every
     * rank (MAX of v and of -v gives the range), and every rank must know
     * whether any rank has a rule that needs them.  Sent after a local
     * failure too, with its code, so that no rank waits for one that left.
     * policy_mtbf_s goes as its bits (a double validated to 0..1e9: a
     * non-negative int64 that orders like the value). */
    int64_t mtbf_bits;
    memcpy(&mtbf_bits, &c->policy_mtbf_s, sizeof mtbf_bits);
    int64_t v[8] = {
        c->policy_sync_steps,
        -(int64_t)c->policy_sync_steps,
        c->policy_every_steps,
        -(int64_t)c->policy_every_steps,
        c->policy_every_s > 0 || c->policy_signal != 0 || c->policy_request_file != NULL ||
            p->mtbf,
        -(int64_t)rc,
        mtbf_bits,
        -mtbf_bits,
    };
    ckpt__err cerr;
    ckpt__err_clear(&cerr);
    int crc = ckpt__comm_allreduce(ctx->comm, &ctx->fault, v, 8, CKPT__MAX, &cerr);
    if (rc)
        return rc;
    if (crc) {
        *err = cerr;
        return ckpt__err_prefix(err, "policy: agreeing on the rules");
    }
    if (v[5])
        return ckpt__err_set(err, (int)-v[5], "policy: setup failed on another rank");
    if (v[0] != -v[1] || v[2] != -v[3])
        return ckpt__err_set(err, CKPT_EINVAL,
                             "config: policy_sync_steps (%lld..%lld) and policy_every_steps "
                             "(%lld..%lld) must be the same on every rank",
                             (long long)-v[1], (long long)v[0], (long long)-v[3],
                             (long long)v[2]);
    if (v[6] != -v[7]) {
        double lo, hi;
        int64_t b = -v[7];
        memcpy(&lo, &b, sizeof lo);
        memcpy(&hi, &v[6], sizeof hi);
        return ckpt__err_set(err, CKPT_EINVAL,
                             "config: policy_mtbf_s (%g..%g) must be the same on every rank",
                             lo, hi);
    }
    p->agree = v[4] != 0;
    ckpt__logf(&ctx->log, CKPT_LOG_DEBUG,
               "policy: every %d steps, every %g s, mtbf %g s, signal %d, request file %s; "
               "agreed on every %d calls%s",
               c->policy_every_steps, c->policy_every_s, c->policy_mtbf_s, c->policy_signal,
               c->policy_request_file ? c->policy_request_file : "(none)",
               c->policy_sync_steps, p->agree ? "" : " (no rule needs it)");
    return 0;
}

void ckpt__policy_close(ckpt_ctx *ctx)
{
    ckpt__policy *p = &ctx->pol;
    if (p->sig) {
        release_signal(p->sig);
        p->sig = 0;
    }
    if (p->dir_fd >= 0) {
        close(p->dir_fd);
        p->dir_fd = -1;
    }
}

/* Rank 0: looks for the request file and removes it (a symlink's link,
 * never its target).  Returns 1 when it found a request.  An entry that
 * cannot be removed counts once, else it would make every later agreement
 * point due. */
static int take_file(ckpt_ctx *ctx)
{
    ckpt__policy *p = &ctx->pol;
    const char *name = p->file;
    struct stat st;
    if (fstatat(p->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT)
            ckpt__logf(&ctx->log, CKPT_LOG_DEBUG, "policy: request file %s/%s: %s",
                       ctx->dir, name, strerror(errno));
        p->stuck = 0;
        return 0;
    }
    if (p->stuck && st.st_dev == p->stuck_dev && st.st_ino == p->stuck_ino)
        return 0;
    int flags = S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0;
    if (unlinkat(p->dir_fd, name, flags) != 0 && errno != ENOENT) {
        ckpt__logf(&ctx->log, CKPT_LOG_WARN,
                   "policy: cannot remove request file %s/%s (%s); it counts once",
                   ctx->dir, name, strerror(errno));
        p->stuck = 1;
        p->stuck_dev = st.st_dev;
        p->stuck_ino = st.st_ino;
    }
    return 1;
}

/* Takes the signal and file requests that arrived since the last look. */
static void take_requests(ckpt_ctx *ctx)
{
    ckpt__policy *p = &ctx->pol;
    if (p->sig) {
        unsigned n = atomic_load_explicit(&hits[p->sig], memory_order_relaxed);
        if (n != p->sig_seen) {
            p->sig_seen = n;
            p->pending |= CKPT__DUE_SIGNAL;
        }
    }
    if (p->dir_fd >= 0 && take_file(ctx))
        p->pending |= CKPT__DUE_FILE;
}

/* ---- policy_mtbf_s (inv. 6) ------------------------------------------------ */

static uint64_t mtbf_now(const ckpt__policy *p)
{
    return p->test_now_ns ? p->test_now_ns : ckpt__now_ns();
}

static const char *tier_label(int k)
{
    return k == CKPT_TIER_LOCAL ? "local" : "durable";
}

void ckpt__policy_note_stall(ckpt_ctx *ctx, uint64_t seq, double s)
{
    ckpt__policy *p = &ctx->pol;
    if (!p->mtbf || ctx->rank != 0)
        return;
    if (seq) {
        p->stall_seq = seq;
        p->stall[seq % CKPT__MTBF_RING].seq = seq;
        p->stall[seq % CKPT__MTBF_RING].s = s;
    } else if (p->stall_seq && p->stall[p->stall_seq % CKPT__MTBF_RING].seq == p->stall_seq) {
        p->stall[p->stall_seq % CKPT__MTBF_RING].s += s;
    }
}

/* The coordinator's side: cfg, not pol.mtbf, which ckpt_open sets after
 * the coordinator started. */
void ckpt__policy_note_done(ckpt_ctx *ctx, const ckpt__job *job)
{
    ckpt__policy *p = &ctx->pol;
    if (!(ctx->cfg.policy_mtbf_s > 0) || ctx->rank != 0)
        return;
    ckpt__save_cost *c = &p->done[p->ndone % CKPT__MTBF_RING];
    c->seq = job->seq;
    memcpy(c->cpu_s, job->cpu_s, sizeof c->cpu_s);
    c->last = job->fence_tier;
    c->durable = job->durable;
    p->ndone++;
}

int ckpt__policy_durable(ckpt_ctx *ctx, uint64_t seq)
{
    ckpt__policy *p = &ctx->pol;
    int shutdown = p->durable_next;
    p->durable_next = 0;
    if (!ctx->has_local)
        return 1;
    if (!p->mtbf)
        return shutdown || (seq - 1) % (uint64_t)ctx->cfg.durable_every == 0;
    int d = shutdown || seq == 1 || p->since_durable + 1 >= (uint64_t)p->durable_every;
    p->since_durable = d ? 0 : p->since_durable + 1;
    return d;
}

static double median(const double *v, unsigned n)
{
    double a[CKPT__MTBF_WINDOW];
    for (unsigned i = 0; i < n; i++) {
        unsigned j = i;
        for (; j > 0 && a[j - 1] > v[i]; j--)
            a[j] = a[j - 1];
        a[j] = v[i];
    }
    return n % 2 ? a[n / 2] : (a[n / 2 - 1] + a[n / 2]) / 2;
}

/* A tier's new sample: its median cost, Young's interval, logged when it
 * moved by more than 10% since the last line. */
static void add_sample(ckpt_ctx *ctx, int k, double cost_s)
{
    ckpt__mtbf_tier *m = &ctx->pol.tier[k];
    m->win[m->next] = cost_s;
    m->next = (m->next + 1) % CKPT__MTBF_WINDOW;
    m->n += m->n < CKPT__MTBF_WINDOW;
    m->cost_s = median(m->win, m->n);
    double t = sqrt(2 * m->cost_s * ctx->cfg.policy_mtbf_s);
    m->interval_s = t < CKPT__POLICY_MAX_S ? t : CKPT__POLICY_MAX_S;
    if (m->logged_s < 0 || fabs(m->interval_s - m->logged_s) > 0.1 * m->logged_s) {
        ckpt__logf(&ctx->log, CKPT_LOG_INFO,
                   "policy: %s tier: save cost C %.4g s (median of the last %u), MTBF %g s: "
                   "interval T = sqrt(2 C MTBF) = %.4g s%s",
                   tier_label(k), m->cost_s, m->n, ctx->cfg.policy_mtbf_s, m->interval_s,
                   m->logged_s < 0 ? "" : " (was different by more than 10%)");
        m->logged_s = m->interval_s;
    }
}

/* Rank 0: folds the saves finished since the last look into the tiers'
 * costs; returns whether a save is still in flight (read in the same
 * critical section, so a save that finished is either taken or in flight). */
static int take_costs(ckpt_ctx *ctx)
{
    ckpt__policy *p = &ctx->pol;
    ckpt__save_cost got[CKPT__MTBF_RING];
    pthread_mutex_lock(&ctx->mu);
    uint64_t n = p->ndone;
    uint64_t from = n - p->ntaken > CKPT__MTBF_RING ? n - CKPT__MTBF_RING : p->ntaken;
    for (uint64_t i = from; i < n; i++)
        got[i - from] = p->done[i % CKPT__MTBF_RING];
    int busy = ctx->inflight > 0;
    pthread_mutex_unlock(&ctx->mu);
    p->ntaken = n;
    for (uint64_t i = 0; i < n - from; i++) {
        const ckpt__save_cost *c = &got[i];
        double stall = 0;
        if (p->stall[c->seq % CKPT__MTBF_RING].seq == c->seq)
            stall = p->stall[c->seq % CKPT__MTBF_RING].s;
        for (int k = CKPT_TIER_LOCAL; k <= CKPT_TIER_DURABLE; k++) {
            int ran = k == CKPT_TIER_LOCAL ? ctx->has_local : c->durable;
            if (!ran)
                continue;
            double x = c->cpu_s[k] + (k == c->last ? stall : 0);
            add_sample(ctx, k, p->test_cost_s[k] >= 0 ? p->test_cost_s[k] : x);
        }
    }
    return busy;
}

/* Rank 0: the durable cadence the intervals ask for, 0 while a tier is
 * unmeasured (the agreement then keeps the one in force). */
static int64_t proposed_every(const ckpt_ctx *ctx)
{
    const ckpt__mtbf_tier *l = &ctx->pol.tier[CKPT_TIER_LOCAL];
    const ckpt__mtbf_tier *d = &ctx->pol.tier[CKPT_TIER_DURABLE];
    if (!ctx->has_local || !l->n || !d->n)
        return 0;
    double r = l->interval_s > 0 ? round(d->interval_s / l->interval_s) : CKPT__MTBF_MAX_EVERY;
    return r < 1 ? 1 : r > CKPT__MTBF_MAX_EVERY ? CKPT__MTBF_MAX_EVERY : (int64_t)r;
}

/* Rank 0: whether the rule asks for a save now, and the cadence it
 * proposes (*every). */
static void mtbf_look(ckpt_ctx *ctx, int64_t *every)
{
    ckpt__policy *p = &ctx->pol;
    int busy = take_costs(ctx);
    const ckpt__mtbf_tier *m = &p->tier[ctx->has_local ? CKPT_TIER_LOCAL : CKPT_TIER_DURABLE];
    /* Before the first measurement: due whenever no save is in flight. */
    if (m->n ? mtbf_now(p) - p->mtbf_base_ns >= (uint64_t)(m->interval_s * 1e9) : !busy)
        p->pending |= CKPT__DUE_MTBF;
    *every = proposed_every(ctx);
}

int ckpt__policy_test_cost(ckpt_ctx *ctx, int tier, double cost_s)
{
    if (!ctx || (tier != CKPT_TIER_LOCAL && tier != CKPT_TIER_DURABLE))
        return CKPT_EINVAL;
    ctx->pol.test_cost_s[tier] = cost_s;
    return 0;
}

void ckpt__policy_test_clock(ckpt_ctx *ctx, uint64_t now_ns)
{
    if (now_ns && !ctx->pol.test_now_ns)
        ctx->pol.mtbf_base_ns = now_ns;
    ctx->pol.test_now_ns = now_ns;
}

double ckpt__policy_interval(ckpt_ctx *ctx, int tier, double *cost_s)
{
    const ckpt__mtbf_tier *m = &ctx->pol.tier[tier == CKPT_TIER_LOCAL ? tier : CKPT_TIER_DURABLE];
    if (cost_s)
        *cost_s = m->n ? m->cost_s : -1;
    return m->n ? m->interval_s : -1;
}

int ckpt__policy_durable_every(ckpt_ctx *ctx)
{
    return ctx->pol.durable_every;
}

/* One agreement point: ORs every rank's time, signal, file and mtbf flags;
 * with policy_mtbf_s, rank 0's durable cadence comes along (the others
 * send 0). */
static int agree(ckpt_ctx *ctx, int *why)
{
    ckpt__policy *p = &ctx->pol;
    take_requests(ctx);
    if (p->every_ns && ckpt__now_ns() - p->base_ns >= p->every_ns)
        p->pending |= CKPT__DUE_TIME;
    int64_t every = 0;
    if (p->mtbf && ctx->rank == 0)
        mtbf_look(ctx, &every);
    int64_t v[5] = {
        (p->pending & CKPT__DUE_TIME) != 0,
        (p->pending & CKPT__DUE_SIGNAL) != 0,
        (p->pending & CKPT__DUE_FILE) != 0,
        (p->pending & CKPT__DUE_MTBF) != 0,
        every,
    };
    /* Without the mtbf rule the last two are not sent (same on every rank). */
    int rc = ckpt__comm_allreduce(ctx->comm, &ctx->fault, v, p->mtbf ? 5 : 3, CKPT__MAX,
                                  &ctx->err);
    if (rc)
        return ckpt__err_prefix(&ctx->err, "ckpt_policy_due: agreeing across ranks");
    *why |= (v[0] ? CKPT__DUE_TIME : 0) | (v[1] ? CKPT__DUE_SIGNAL : 0) |
            (v[2] ? CKPT__DUE_FILE : 0) | (p->mtbf && v[3] ? CKPT__DUE_MTBF : 0);
    if (p->mtbf && v[4] > 0 && v[4] != p->durable_every) {
        if (ctx->rank == 0)
            ckpt__logf(&ctx->log, CKPT_LOG_INFO,
                       "policy: durable every %lld saves (was %d): round(T durable %.4g s / T "
                       "local %.4g s)",
                       (long long)v[4], p->durable_every,
                       p->tier[CKPT_TIER_DURABLE].interval_s,
                       p->tier[CKPT_TIER_LOCAL].interval_s);
        p->durable_every = (int)v[4];
    }
    return 0;
}

static void log_due(ckpt_ctx *ctx, int64_t step, int why)
{
    const ckpt_config *c = &ctx->cfg;
    char text[512], sig[32];
    size_t n = 0;
    text[0] = '\0';
#define ADD(...) n += (size_t)snprintf(text + n, n < sizeof text ? sizeof text - n : 0, __VA_ARGS__)
    if (why & CKPT__DUE_STEPS)
        ADD("%severy %d steps", n ? "; " : "", c->policy_every_steps);
    if (why & CKPT__DUE_TIME)
        ADD("%severy %g s", n ? "; " : "", c->policy_every_s);
    if (why & CKPT__DUE_SIGNAL) {
        signal_label(c->policy_signal, sig, sizeof sig);
        ADD("%s%s", n ? "; " : "", c->policy_signal ? sig : "a signal on another rank");
    }
    if (why & CKPT__DUE_FILE)
        ADD("%srequest file %s", n ? "; " : "", c->policy_request_file
                                                   ? c->policy_request_file
                                                   : "on rank 0");
    if (why & CKPT__DUE_MTBF) {
        const ckpt__mtbf_tier *m =
            &ctx->pol.tier[ctx->has_local ? CKPT_TIER_LOCAL : CKPT_TIER_DURABLE];
        if (ctx->rank != 0)
            ADD("%sthe mtbf interval on rank 0", n ? "; " : "");
        else if (m->n)
            ADD("%smtbf interval %.4g s", n ? "; " : "", m->interval_s);
        else
            ADD("%smtbf, no save measured yet", n ? "; " : "");
    }
#undef ADD
    ckpt__logf(&ctx->log, why & ~CKPT__DUE_STEPS ? CKPT_LOG_INFO : CKPT_LOG_DEBUG,
               "policy: save due at step %lld (%s)", (long long)step, text);
}

int ckpt_policy_due(ckpt_ctx *ctx, int64_t step)
{
    if (!ctx)
        return ckpt__err_set(ckpt__thread_err(), CKPT_EINVAL, "ckpt_policy_due: ctx is NULL");
    if (step < 0 || step > CKPT__STEP_MAX)
        return ckpt__err_set(&ctx->err, CKPT_EINVAL,
                             "ckpt_policy_due: step %lld out of 0..%lld", (long long)step,
                             CKPT__STEP_MAX);
    ckpt__policy *p = &ctx->pol;
    const ckpt_config *c = &ctx->cfg;
    p->ncalls++;
    int why = 0;
    if (c->policy_every_steps > 0 && step % c->policy_every_steps == 0)
        why |= CKPT__DUE_STEPS;
    int agreed = p->agree && p->ncalls % (uint64_t)c->policy_sync_steps == 0;
    if (agreed) {
        int rc = agree(ctx, &why);
        if (rc)
            return rc; /* Inv. 3: pending requests wait for the next point. */
    } else if (why && !ctx->has_local) {
        /* Due by the step rule: this save also serves the requests that
         * arrived before it.  Rank-local, so it cannot make ranks differ:
         * later agreement points still OR every rank's flags.  With the
         * local tier this save may be local-only, so a signal or file
         * request (a shutdown) waits for the next agreement point, which
         * makes its save durable. */
        take_requests(ctx);
    }
    if (!why)
        return 0;
    /* Only agreed bits (agree() ORs every rank's): the same on every rank. */
    p->durable_next = (why & (CKPT__DUE_SIGNAL | CKPT__DUE_FILE)) != 0;
    if (agreed || !ctx->has_local)
        p->pending = 0;
    else
        p->pending &= CKPT__DUE_SIGNAL | CKPT__DUE_FILE;
    if (p->every_ns)
        p->base_ns = ckpt__now_ns();
    if (p->mtbf)
        p->mtbf_base_ns = mtbf_now(p);
    log_due(ctx, step, why);
    return 1;
}
