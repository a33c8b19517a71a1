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
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "io/paths.h"
#include "runtime/internal.h"

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
