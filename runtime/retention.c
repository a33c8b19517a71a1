/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Retention: which committed checkpoints to delete after a commit (rank 0)
 * or on `ckpt gc`.
 *
 * A checkpoint is deleted when keep_last is set and it is not among the
 * newest keep_last, or when max_age_hours is set and it is older; it is
 * kept regardless when keep_every is set and its step is a multiple of
 * keep_every, and the protected step (the newest valid checkpoint) is
 * never deleted.  Age is the folder's modification time, which the commit
 * sets when it writes the manifest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "runtime/internal.h"

int ckpt__retention_apply(const char *dir, const ckpt__retention *rules, int64_t protect,
                          ckpt__log *log, int *deleted, ckpt__err *err)
{
    if (deleted)
        *deleted = 0;
    if (rules->keep_last <= 0 && rules->max_age_hours <= 0)
        return 0;
    int64_t *steps;
    size_t n;
    int rc = ckpt__catalog_scan(dir, &steps, &n, err);
    if (rc)
        return rc;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    for (size_t i = 0; i < n && !rc; i++) {
        int64_t s = steps[i];
        if (s == protect || (rules->keep_every > 0 && s % rules->keep_every == 0))
            continue;
        int drop = rules->keep_last > 0 && i >= (size_t)rules->keep_last;
        if (!drop && rules->max_age_hours > 0) {
            char name[32], path[4200];
            struct stat st;
            ckpt__step_name(s, name);
            snprintf(path, sizeof path, "%s/%s", dir, name);
            if (stat(path, &st) == 0) {
                double age = (double)(now.tv_sec - st.st_mtim.tv_sec) +
                             (double)(now.tv_nsec - st.st_mtim.tv_nsec) * 1e-9;
                drop = age > rules->max_age_hours * 3600.0;
            }
        }
        if (!drop)
            continue;
        rc = ckpt__catalog_delete(dir, s, err);
        if (!rc) {
            ckpt__logf(log, CKPT_LOG_INFO, "retention: deleted step %lld", (long long)s);
            if (deleted)
                (*deleted)++;
        }
    }
    free(steps);
    return rc;
}
