/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckptrt over MPI: a comm backend for ckpt_open built on an MPI
 * communicator.  Available when the library was built with MPI
 * (CKPT_WITH_MPI, Open MPI from Debian's libopenmpi-dev).
 */
#ifndef CKPT_CKPT_MPI_H
#define CKPT_CKPT_MPI_H

#include <mpi.h>

#include <ckpt/ckpt.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Returns a comm for ckpt_open over a duplicate of `comm` (MPI_Comm_dup,
 * collective over comm: every rank calls it), so the runtime's collectives
 * never match the application's messages.  The runtime issues MPI calls
 * only from the thread that calls ckpt_open, ckpt_restore and
 * ckpt_policy_due (collectives: every rank calls them in the same order)
 * and ckpt_close (frees the duplicate); MPI_THREAD_FUNNELED is enough when
 * that is the main thread.
 * MPI must be initialized, and stay so until ckpt_close has returned (the
 * duplicate is freed there).  Pass the result to ckpt_open, which owns it
 * from then on.  NULL on failure; ckpt_last_error(NULL) says why.
 */
CKPT_API ckpt_comm *ckpt_comm_mpi(MPI_Comm comm);

#ifdef __cplusplus
}
#endif
#endif
