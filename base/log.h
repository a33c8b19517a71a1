/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging: level filter, user callback or "ckpt: [level] ..." lines on
 * stderr.  Safe from every runtime thread (one lock per logger).
 */
#ifndef CKPT_BASE_LOG_H
#define CKPT_BASE_LOG_H

#include <pthread.h>

#include "base/err.h"

typedef struct ckpt__log {
    ckpt_log_level level;
    ckpt_log_fn fn;
    void *user;
    pthread_mutex_t mu;
} ckpt__log;

void ckpt__log_init(ckpt__log *log, ckpt_log_level level, ckpt_log_fn fn, void *user);
void ckpt__log_destroy(ckpt__log *log);
/* log may be NULL (nothing is printed). */
void ckpt__logf(ckpt__log *log, ckpt_log_level level, const char *fmt, ...) CKPT__PRINTF(3, 4);
/* Parses "debug|info|warn|error|off"; -1 when unknown. */
int ckpt__log_parse(const char *s);

#endif
