/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Retention: which committed checkpoints to delete after a commit (rank 0)
 * or on `ckpt gc`.
 *
 * Only steps older than the protected one are candidates: the protected
 * step is one known to be sound (after a commit, the step just committed,
 * whose bytes every rank hashed as it wrote them; for `ckpt gc`, the newest
 * checkpoint it fully verified), and a checkpoint may go only while a newer
 * sound one exists.  A step newer than the protected one is never deleted:
 * nobody verified it, and it may be the only copy of later progress.
 * Among the candidates, one is deleted when keep_last is set and it is not
 * among the newest keep_last committed steps, or when max_age_hours is set
 * and it is older; it is kept regardless when keep_every is set and its
 * step is a multiple of keep_every.  Age is the folder's modification time,
 * which the commit sets when it writes the manifest.
 *
 * The janitor (retention.h) is the one owner of the passes a context runs
 * after its commits: the coordinator requests them, the caller's thread
 * waits for them (list, restore, close), and only its thread applies them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "io/paths.h"
#include "runtime/catalog.h"
#include "runtime/retention.h"

int ckpt__retention_drops(const char *dir, const ckpt__retention *rules, const int64_t *steps,
                          size_t i, int64_t protect, const struct timespec *now)
{
    int64_t s = steps[i];
    if (protect < 0 || s >= protect || (rules->keep_every > 0 && s % rules->keep_every == 0))
        return 0;
    if (rules->keep_last > 0 && i >= (size_t)rules->keep_last)
        return 1;
    if (rules->max_age_hours <= 0)
        return 0;
    char path[CKPT__PATH_MAX];
    struct stat st;
    if (ckpt__path_step(path, dir, s, NULL, NULL) != 0 || stat(path, &st) != 0)
        return 0;
    double age = (double)(now->tv_sec - st.st_mtim.tv_sec) +
                 (double)(now->tv_nsec - st.st_mtim.tv_nsec) * 1e-9;
    return age > rules->max_age_hours * 3600.0;
}

int ckpt__retention_apply(const char *dir, const ckpt__retention *rules, int64_t protect,
                          ckpt__log *log, int *deleted, ckpt__err *err)
{
    if (deleted)
        *deleted = 0;
    if (protect < 0 || (rules->keep_last <= 0 && rules->max_age_hours <= 0))
        return 0;
    int64_t *steps;
    size_t n;
    int rc = ckpt__catalog_scan(dir, &steps, &n, err);
    if (rc)
        return rc;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    for (size_t i = 0; i < n && !rc; i++) {
        if (!ckpt__retention_drops(dir, rules, steps, i, protect, &now))
            continue;
        rc = ckpt__catalog_delete(dir, steps[i], err);
        if (!rc) {
            ckpt__logf(log, CKPT_LOG_INFO, "retention: deleted step %lld (step %lld is newer "
                                           "and sound)",
                       (long long)steps[i], (long long)protect);
            if (deleted)
                (*deleted)++;
        }
    }
    free(steps);
    return rc;
}

/* ---- the janitor ------------------------------------------------------------- */

static void janitor_pass(ckpt__janitor *j, int64_t step)
{
    ckpt__err e;
    ckpt__err_clear(&e);
    if (ckpt__retention_apply(j->dir, &j->rules, step, j->log, NULL, &e) != 0)
        ckpt__logf(j->log, CKPT_LOG_WARN, "retention after step %lld: %s", (long long)step,
                   e.msg);
}

/* One pass at a time, the newest request's; a pending pass is finished
 * before stop is seen. */
static void *janitor_main(void *arg)
{
    ckpt__janitor *j = arg;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        while (!j->req && !j->stop)
            pthread_cond_wait(&j->cv, &j->mu);
        if (!j->req)
            break;
        int64_t step = j->step;
        j->req = 0;
        j->busy = 1;
        pthread_mutex_unlock(&j->mu);
        janitor_pass(j, step);
        pthread_mutex_lock(&j->mu);
        j->busy = 0;
        pthread_cond_broadcast(&j->cv);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

int ckpt__janitor_start(ckpt__janitor *j, const char *dir, const ckpt__retention *rules,
                        ckpt__log *log, ckpt__err *err)
{
    memset(j, 0, sizeof *j);
    j->dir = dir;
    j->rules = *rules;
    j->log = log;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    int e = pthread_create(&j->thread, NULL, janitor_main, j);
    if (e) {
        pthread_cond_destroy(&j->cv);
        pthread_mutex_destroy(&j->mu);
        return ckpt__err_errno(err, e, "ckpt_open: pthread_create");
    }
    j->running = 1;
    return 0;
}

void ckpt__janitor_request(ckpt__janitor *j, int64_t step)
{
    pthread_mutex_lock(&j->mu);
    j->step = step;
    j->req = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

void ckpt__janitor_wait(ckpt__janitor *j)
{
    if (!j->running)
        return;
    pthread_mutex_lock(&j->mu);
    while (j->req || j->busy)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

void ckpt__janitor_stop(ckpt__janitor *j)
{
    if (!j->running)
        return;
    pthread_mutex_lock(&j->mu);
    j->stop = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    pthread_join(j->thread, NULL);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    j->running = 0;
}
