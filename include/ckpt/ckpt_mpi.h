/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckptrt over MPI: a comm backend for ckpt_open built on an MPI
 * communicator.  It is a library of its own, libckpt_mpi (link it as well
 * as libckpt: `pkg-config --libs ckpt-mpi`, or ckpt::mpi from
 * find_package(ckpt CONFIG COMPONENTS mpi)); built when ckptrt was built
 * with MPI (CKPT_WITH_MPI, Open MPI from Debian's libopenmpi-dev).
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
 * With MPI_THREAD_MULTIPLE on every rank, it also makes a second duplicate
 * (so the call also does an MPI_Allreduce to agree on that), over which the
 * runtime's background thread on rank 0 sends each other rank a 256-byte
 * note with every save's outcome, and the other ranks' background threads
 * receive it: their tickets then report without looking in the checkpoint
 * folder (one lookup per rank per 5 s, doubling, in case a note is lost).
 * Below MPI_THREAD_MULTIPLE no MPI call leaves the caller's thread, and the
 * other ranks learn each outcome from the folder (one lookup per look,
 * looks from 1 ms apart growing to 100 ms): correct, with more file-system
 * metadata traffic.
 * MPI must be initialized, and stay so until ckpt_close has returned (the
 * duplicate is freed there).  Pass the result to ckpt_open, which owns it
 * from then on.
 *
 * Never NULL.  On failure (MPI not initialized or already finalized,
 * MPI_COMM_NULL, MPI_Comm_dup failing, out of memory) it returns a comm
 * that carries the error: ckpt_open refuses it with that code and message
 * (ckpt_last_error(NULL) then says why) and frees it.  A rank whose comm
 * failed takes part in no collective, so the other ranks' ckpt_open would
 * wait for it: on a failure, end the job (MPI_Abort).
 */
CKPT_API ckpt_comm *ckpt_comm_mpi(MPI_Comm comm);

#ifdef __cplusplus
}
#endif
#endif
