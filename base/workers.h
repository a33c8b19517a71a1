/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The two concurrency pieces every layer uses (base/ includes nothing of
 * io/, runtime/ or cuda/):
 *   - ckpt__workers: a fixed pool of threads running caller-owned tasks in
 *     FIFO order (the pipeline's hash threads, the pwrite writer's I/O
 *     threads, the host device's copy thread: one thread serves strictly
 *     in submission order); a task struct is embedded in the caller's
 *     data, so submitting never allocates and never fails.
 *   - ckpt__mbox: the pipeline coordinator's inbox.  Events are intrusive
 *     nodes too; a node may be posted again only after it was taken.
 */
#ifndef CKPT_BASE_WORKERS_H
#define CKPT_BASE_WORKERS_H

#include <pthread.h>
#include <stdint.h>

#include "base/err.h"

typedef struct ckpt__task ckpt__task;
struct ckpt__task {
    void (*fn)(ckpt__task *t);
    ckpt__task *next;
};

typedef struct ckpt__workers ckpt__workers;

int ckpt__workers_open(int nthreads, ckpt__workers **out, ckpt__err *err);
void ckpt__workers_submit(ckpt__workers *w, ckpt__task *t);
/* Runs the queued tasks to completion, then joins. NULL is a no-op. */
void ckpt__workers_close(ckpt__workers *w);

typedef struct ckpt__event ckpt__event;
struct ckpt__event {
    int type;
    ckpt__event *next;
};

typedef struct ckpt__mbox {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ckpt__event *head, *tail;
} ckpt__mbox;

void ckpt__mbox_init(ckpt__mbox *m);
void ckpt__mbox_destroy(ckpt__mbox *m);
void ckpt__mbox_post(ckpt__mbox *m, ckpt__event *ev, int type);
/* Blocks until an event is posted; returns it (FIFO). */
ckpt__event *ckpt__mbox_wait(ckpt__mbox *m);

#endif
