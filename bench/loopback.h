/* SPDX-License-Identifier: Apache-2.0 */
#ifndef CKPT_BENCH_LOOPBACK_H
#define CKPT_BENCH_LOOPBACK_H

/*
 * A comm backend for ranks that are threads of one process: the same
 * collectives as the MPI backend (runtime/comm.h) over one barrier and a
 * slot per rank.  `ckpt-bench scale` runs thousands of simulated ranks on
 * it, and tests/internal runs multi-rank saves and restores on it under
 * ThreadSanitizer and LeakSanitizer, which Open MPI does not allow.
 * Bench and test code only: not part of libckpt.
 */

#include "runtime/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ckpt_loopback ckpt_loopback;

/* The state nranks threads share; NULL when out of memory.  Destroy it
 * (ckpt_loopback_free) only after every comm made from it is destroyed. */
ckpt_loopback *ckpt_loopback_new(int nranks);
void ckpt_loopback_free(ckpt_loopback *lb);

/* A comm for `rank` of lb's threads; ckpt_open takes it over.  NULL when
 * out of memory.  It offers notes (runtime/comm.h) unless
 * ckpt_loopback_set_notes(lb, 0) was called before: then its ranks learn
 * a save's verdict from the folder alone, as with a comm without notes. */
ckpt_comm *ckpt_loopback_comm(ckpt_loopback *lb, int rank);
void ckpt_loopback_set_notes(ckpt_loopback *lb, int on);
/* How many notes lb's ranks have received so far. */
unsigned long ckpt_loopback_notes_received(ckpt_loopback *lb);

#ifdef __cplusplus
}
#endif
#endif
