/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Configuration: defaults, environment overrides and validation.  Every
 * bound below is checked at ckpt_open, so a bad value is a clear
 * CKPT_EINVAL naming the field, never a crash later.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "io/paths.h"
#include "runtime/config.h"
#include "runtime/error_codes.h"
#include "runtime/nodes.h"
#include "base/log.h"
#include "runtime/policy.h"

#define MIB (1ull << 20)

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_seconds(const char *s, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !(v >= 0 && v <= hi))
        return -1;
    *out = v;
    return 0;
}

int ckpt_config_init(ckpt_config *cfg)
{
    ckpt__err *err = ckpt__thread_err();
    ckpt__err_clear(err);
    if (!cfg)
        return ckpt__err_set(err, CKPT_EINVAL, "ckpt_config_init: cfg is NULL");
    memset(cfg, 0, sizeof *cfg);
    cfg->dir = NULL;
    cfg->staging_bytes = 256 * MIB;
    cfg->chunk_bytes = 4 * MIB;
    cfg->io = CKPT_IO_AUTO;
    cfg->device = CKPT_DEVICE_AUTO;
    cfg->queue_depth = 16;
    cfg->direct_io = 1;
    cfg->verify = 1;
    cfg->max_inflight = 1;
    cfg->busy = CKPT_BUSY_WAIT;
    cfg->commit_timeout_s = 300;
    cfg->log_level = CKPT_LOG_WARN;
    cfg->policy_sync_steps = 1;
    cfg->durable_every = 1;

    int rc = 0;
    const char *v;
    if ((v = getenv("CKPT_DIR")) && *v)
        cfg->dir = v;
    if ((v = getenv("CKPT_KEEP_LAST")) && *v) {
        long n;
        if (parse_int(v, 0, 1000000, &n) == 0)
            cfg->keep_last = (int)n;
        else
            rc = ckpt__err_append(err, CKPT_EINVAL,
                                  "CKPT_KEEP_LAST='%.64s' is not a number in 0..1000000", v);
    }
    if ((v = getenv("CKPT_LOCAL_DIR")) && *v)
        cfg->local_dir = v;
    if ((v = getenv("CKPT_DURABLE_EVERY")) && *v) {
        long n;
        if (parse_int(v, 1, INT32_MAX, &n) == 0)
            cfg->durable_every = (int)n;
        else
            rc = ckpt__err_append(err, CKPT_EINVAL,
                                  "CKPT_DURABLE_EVERY='%.64s' is not a number in 1..2147483647",
                                  v);
    }
    if ((v = getenv("CKPT_LOCAL_KEEP_LAST")) && *v) {
        long n;
        if (parse_int(v, 0, 1000000, &n) == 0)
            cfg->local_keep_last = (int)n;
        else
            rc = ckpt__err_append(err, CKPT_EINVAL,
                                  "CKPT_LOCAL_KEEP_LAST='%.64s' is not a number in 0..1000000",
                                  v);
    }
    if ((v = getenv("CKPT_REPLICAS")) && *v) {
        long n;
        if (parse_int(v, 0, CKPT__REPLICAS_MAX, &n) == 0)
            cfg->replicas = (int)n;
        else
            rc = ckpt__err_append(err, CKPT_EINVAL, "CKPT_REPLICAS='%.64s' is not 0, 1 or 2",
                                  v);
    }
    if ((v = getenv("CKPT_DRAIN_AT_CLOSE")) && *v) {
        if (strcmp(v, "0") == 0 || strcmp(v, "1") == 0)
            cfg->no_drain_at_close = v[0] == '0';
        else
            rc = ckpt__err_append(err, CKPT_EINVAL, "CKPT_DRAIN_AT_CLOSE='%.64s' is not 0 or 1",
                                  v);
    }
    if ((v = getenv("CKPT_IO")) && *v) {
        if (strcmp(v, "auto") == 0)
            cfg->io = CKPT_IO_AUTO;
        else if (strcmp(v, "pwrite") == 0)
            cfg->io = CKPT_IO_PWRITE;
        else if (strcmp(v, "uring") == 0)
            cfg->io = CKPT_IO_URING;
        else
            rc = ckpt__err_append(err, CKPT_EINVAL,
                                  "CKPT_IO='%.64s': expected auto, uring or pwrite", v);
    }
    if ((v = getenv("CKPT_LOG")) && *v) {
        int lvl = ckpt__log_parse(v);
        if (lvl >= 0)
            cfg->log_level = (ckpt_log_level)lvl;
        else
            rc = ckpt__err_append(err, CKPT_EINVAL,
                                  "CKPT_LOG='%.64s': expected debug, info, warn, error or off",
                                  v);
    }
    if ((v = getenv("CKPT_POLICY_EVERY_STEPS")) && *v) {
        long n;
        if (parse_int(v, 0, INT32_MAX, &n) == 0)
            cfg->policy_every_steps = (int)n;
        else
            rc = ckpt__err_append(err, CKPT_EINVAL,
                                  "CKPT_POLICY_EVERY_STEPS='%.64s' is not a number in "
                                  "0..2147483647",
                                  v);
    }
    if ((v = getenv("CKPT_POLICY_EVERY_S")) && *v) {
        double t;
        if (parse_seconds(v, CKPT__POLICY_MAX_S, &t) == 0)
            cfg->policy_every_s = t;
        else
            rc = ckpt__err_append(err, CKPT_EINVAL,
                                  "CKPT_POLICY_EVERY_S='%.64s' is not a number of seconds in "
                                  "0..1e9",
                                  v);
    }
    if ((v = getenv("CKPT_POLICY_MTBF_S")) && *v) {
        double t;
        if (parse_seconds(v, CKPT__POLICY_MAX_S, &t) == 0)
            cfg->policy_mtbf_s = t;
        else
            rc = ckpt__err_append(err, CKPT_EINVAL,
                                  "CKPT_POLICY_MTBF_S='%.64s' is not a number of seconds in "
                                  "0..1e9",
                                  v);
    }
    return rc;
}

/* Signals whose default meaning must stay: a fault cannot be resumed from
 * a handler that returns, abort() must end the process, and SIGKILL and
 * SIGSTOP cannot be caught at all. */
static int signal_refused(int sig)
{
    static const int refused[] = {SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE,
                                  SIGILL,  SIGTRAP, SIGSYS,  SIGABRT};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (sig == refused[i])
            return 1;
    return 0;
}

static int policy_validate(const ckpt_config *c, ckpt__err *err)
{
#define BAD(...) return ckpt__err_set(err, CKPT_EINVAL, __VA_ARGS__)
    if (c->policy_every_steps < 0)
        BAD("config: policy_every_steps is %d (0 off, else every N steps)",
            c->policy_every_steps);
    if (!(c->policy_every_s >= 0 && c->policy_every_s <= CKPT__POLICY_MAX_S))
        BAD("config: policy_every_s must be a number of seconds in 0..1e9 (0 off)");
    if (!(c->policy_mtbf_s >= 0 && c->policy_mtbf_s <= CKPT__POLICY_MAX_S))
        BAD("config: policy_mtbf_s must be a number of seconds in 0..1e9 (0 off), the "
            "job's mean time between failures");
    if (c->policy_sync_steps < 1)
        BAD("config: policy_sync_steps is %d; it must be >= 1", c->policy_sync_steps);
    int sig = c->policy_signal;
    if (sig != 0) {
        /* Querying the disposition changes nothing; it refuses numbers that
         * are no signal here and those the C library keeps for itself. */
        struct sigaction sa;
        if (sig < 0 || sig >= CKPT__NSIG || sigaction(sig, NULL, &sa) != 0)
            BAD("config: policy_signal %d is not a signal number here", sig);
        if (signal_refused(sig))
            BAD("config: policy_signal %d cannot request saves (use SIGUSR1, SIGUSR2, "
                "SIGTERM, or a real-time signal)",
                sig);
    }
    const char *f = c->policy_request_file;
    if (f) {
        size_t n = strlen(f);
        if (n == 0 || n > 255)
            BAD("config: policy_request_file must be a name of 1..255 bytes");
        if (strchr(f, '/') || strcmp(f, ".") == 0 || strcmp(f, "..") == 0)
            BAD("config: policy_request_file '%.64s' must be a plain name inside dir "
                "(no '/', not . or ..)",
                f);
        if (ckpt__folder_reserved(f))
            BAD("config: policy_request_file '%.64s' starts with step-, which names "
                "checkpoints",
                f);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)f[i] < 0x20 || f[i] == 0x7f)
                BAD("config: policy_request_file holds a control character");
    }
    return 0;
#undef BAD
}

/* The tiers' fields (ckpt.h): checked whether local_dir is set or not, so
 * a bad value is refused before anyone relies on it. */
static int tiers_validate(const ckpt_config *c, ckpt__err *err)
{
#define BAD(...) return ckpt__err_set(err, CKPT_EINVAL, __VA_ARGS__)
    if (c->durable_every < 1)
        BAD("config: durable_every is %d; it must be >= 1 (1: every save is durable)",
            c->durable_every);
    if (c->local_keep_last < 0)
        BAD("config: local_keep_last is %d (0 keeps all)", c->local_keep_last);
    if (c->node_name && (!c->node_name[0] || strlen(c->node_name) >= CKPT__NODE_NAME_MAX))
        BAD("config: node_name must be 1..%d bytes", CKPT__NODE_NAME_MAX - 1);
    if (c->no_drain_at_close != 0 && c->no_drain_at_close != 1)
        BAD("config: no_drain_at_close is %d; it must be 0 or 1", c->no_drain_at_close);
    if (c->replicas < 0 || c->replicas > CKPT__REPLICAS_MAX)
        BAD("config: replicas is %d; it must be 0..%d", c->replicas, CKPT__REPLICAS_MAX);
    const char *l = c->local_dir;
    if (!l && c->replicas)
        BAD("config: replicas is %d without local_dir (replicas copy the local tier)",
            c->replicas);
    if (!l)
        return 0;
    if (!l[0])
        BAD("config: local_dir is empty (NULL turns the local tier off)");
    if (ckpt__path_dir_check(l, err) != 0)
        return ckpt__err_prefix(err, "config: local_dir");
    /* Both tiers in one folder would name two checkpoints step-S. */
    size_t a = strlen(l), b = strlen(c->dir);
    while (a > 1 && l[a - 1] == '/')
        a--;
    while (b > 1 && c->dir[b - 1] == '/')
        b--;
    if (a == b && memcmp(l, c->dir, a) == 0)
        BAD("config: local_dir and dir are the same folder (%.200s)", c->dir);
    return 0;
#undef BAD
}

int ckpt__config_validate(const ckpt_config *c, ckpt__err *err)
{
#define BAD(...) return ckpt__err_set(err, CKPT_EINVAL, __VA_ARGS__)
    if (!c->dir || !c->dir[0])
        BAD("config: dir is not set (cfg.dir or CKPT_DIR)");
    /* Every path the runtime builds in dir fits CKPT__PATH_MAX (io/paths.h). */
    if (ckpt__path_dir_check(c->dir, err) != 0)
        return ckpt__err_prefix(err, "config");
    if (c->keep_last < 0)
        BAD("config: keep_last is %d", c->keep_last);
    if (c->keep_every < 0)
        BAD("config: keep_every is %d", c->keep_every);
    if (!(c->max_age_hours >= 0) || isinf(c->max_age_hours))
        BAD("config: max_age_hours must be a finite number >= 0");
    if (c->chunk_bytes < 64 * 1024 || c->chunk_bytes > (1ull << 30) || c->chunk_bytes % 4096)
        BAD("config: chunk_bytes %llu must be a multiple of 4 KiB in 64 KiB..1 GiB",
            (unsigned long long)c->chunk_bytes);
    if (c->staging_bytes < c->chunk_bytes || c->staging_bytes > (1ull << 46))
        BAD("config: staging_bytes %llu must be in chunk_bytes..64 TiB",
            (unsigned long long)c->staging_bytes);
    if (c->io != CKPT_IO_AUTO && c->io != CKPT_IO_PWRITE && c->io != CKPT_IO_URING)
        BAD("config: unknown io backend %d", (int)c->io);
    if (c->device != CKPT_DEVICE_AUTO && c->device != CKPT_DEVICE_HOST &&
        c->device != CKPT_DEVICE_CUDA)
        BAD("config: unknown device backend %d", (int)c->device);
    if (c->io_threads < 0 || c->io_threads > 64)
        BAD("config: io_threads %d (0..64)", c->io_threads);
    if (c->hash_threads < 0 || c->hash_threads > 64)
        BAD("config: hash_threads %d (0..64)", c->hash_threads);
    if (c->queue_depth < 1 || c->queue_depth > 4096)
        BAD("config: queue_depth %d (1..4096)", c->queue_depth);
    if (c->direct_io != 0 && c->direct_io != 1)
        BAD("config: direct_io must be 0 or 1");
    if (c->verify != 0 && c->verify != 1)
        BAD("config: verify must be 0 or 1");
    if (c->max_inflight < 1 || c->max_inflight > 64)
        BAD("config: max_inflight %d (1..64)", c->max_inflight);
    if (c->busy != CKPT_BUSY_WAIT && c->busy != CKPT_BUSY_REFUSE)
        BAD("config: unknown busy policy %d", (int)c->busy);
    if (!(c->commit_timeout_s > 0 && c->commit_timeout_s <= 86400))
        BAD("config: commit_timeout_s %g (a number of seconds in (0, 86400])",
            c->commit_timeout_s);
    if ((int)c->log_level < CKPT_LOG_DEBUG || c->log_level > CKPT_LOG_OFF)
        BAD("config: unknown log level %d", (int)c->log_level);
    if (c->restore_unregistered != CKPT_RESTORE_WARN &&
        c->restore_unregistered != CKPT_RESTORE_FAIL)
        BAD("config: restore_unregistered %d (CKPT_RESTORE_WARN or CKPT_RESTORE_FAIL)",
            (int)c->restore_unregistered);
#undef BAD
    int rc = tiers_validate(c, err);
    return rc ? rc : policy_validate(c, err);
}
