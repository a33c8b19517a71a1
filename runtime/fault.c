/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fault sites (see fault.h).  Hits are counted with atomics because reads
 * and writes are submitted from different threads (restore runs on the
 * caller's thread, saves on the coordinator).
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include "runtime/fault.h"

void ckpt__fault_init(ckpt__fault *f)
{
    for (int i = 0; i < CKPT__FAULT_NSITES; i++) {
        atomic_store(&f->nth[i], -1);
        atomic_store(&f->hits[i], 0);
        atomic_store(&f->action[i], CKPT__FAIL_NONE);
        atomic_store(&f->fired[i], 0);
    }
}

void ckpt__fault_set(ckpt__fault *f, int site, int64_t nth, int action)
{
    atomic_store(&f->nth[site], -1);
    atomic_store(&f->hits[site], 0);
    atomic_store(&f->fired[site], 0);
    atomic_store(&f->action[site], action);
    atomic_store(&f->nth[site], nth);
}

int ckpt__fault_hit(ckpt__fault *f, int site)
{
    if (!f || atomic_load(&f->nth[site]) < 0)
        return CKPT__FAIL_NONE;
    int64_t n = atomic_fetch_add(&f->hits[site], 1);
    if (n != atomic_load(&f->nth[site]))
        return CKPT__FAIL_NONE;
    atomic_fetch_add(&f->fired[site], 1);
    int action = atomic_load(&f->action[site]);
    if (action == CKPT__FAIL_CRASH)
        raise(SIGKILL);
    return action;
}

int ckpt__fault_check(ckpt__fault *f, int site, const char *what, ckpt__err *err)
{
    switch (ckpt__fault_hit(f, site)) {
    case CKPT__FAIL_EIO:
    case CKPT__FAIL_SHORT:
        return ckpt__err_errno(err, EIO, "%s (injected fault)", what);
    case CKPT__FAIL_ENOSPC:
        return ckpt__err_errno(err, ENOSPC, "%s (injected fault)", what);
    default:
        return 0;
    }
}

ckpt__fault *ckpt__fault_new(void)
{
    ckpt__fault *f = malloc(sizeof *f);
    if (f)
        ckpt__fault_init(f);
    return f;
}

int ckpt__fault_arm_table(ckpt__fault *f, int site, int64_t nth, int action)
{
    if (!f || site < 0 || site >= CKPT__FAULT_NSITES)
        return CKPT_EINVAL;
    ckpt__fault_set(f, site, nth, action);
    return 0;
}

int ckpt__fault_fired_table(ckpt__fault *f, int site)
{
    if (!f || site < 0 || site >= CKPT__FAULT_NSITES)
        return 0;
    return atomic_load(&f->fired[site]);
}

int64_t ckpt__fault_hits_table(ckpt__fault *f, int site)
{
    if (!f || site < 0 || site >= CKPT__FAULT_NSITES)
        return 0;
    return atomic_load(&f->hits[site]);
}

void ckpt__fault_free(ckpt__fault *f)
{
    free(f);
}
