/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See log.h.  Messages are formatted before the lock is taken so a slow
 * callback holds other threads back only for the call itself.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"

static const char *names[] = {"debug", "info", "warn", "error", "off"};

void ckpt__log_init(ckpt__log *log, ckpt_log_level level, ckpt_log_fn fn, void *user)
{
    log->level = level;
    log->fn = fn;
    log->user = user;
    pthread_mutex_init(&log->mu, NULL);
}

void ckpt__log_destroy(ckpt__log *log)
{
    pthread_mutex_destroy(&log->mu);
}

int ckpt__log_parse(const char *s)
{
    for (int i = 0; i <= CKPT_LOG_OFF; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

void ckpt__logf(ckpt__log *log, ckpt_log_level level, const char *fmt, ...)
{
    if (!log || level < log->level || level >= CKPT_LOG_OFF)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log->mu);
    if (log->fn)
        log->fn(log->user, level, msg);
    else
        fprintf(stderr, "ckpt: [%s] %s\n", names[level], msg);
    pthread_mutex_unlock(&log->mu);
}
