/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckptrt over NCCL: a comm backend for ckpt_open built on the training
 * job's NCCL communicator.  It is a library of its own, libckpt_nccl (link
 * it as well as libckpt: `pkg-config --libs ckpt-nccl`, or ckpt::nccl from
 * find_package(ckpt CONFIG COMPONENTS nccl)); built when ckptrt was built
 * with NCCL (CKPT_WITH_NCCL, auto-detected from the CUDA toolkit; NCCL >=
 * 2.18).
 */
#ifndef CKPT_CKPT_NCCL_H
#define CKPT_CKPT_NCCL_H

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <ckpt/ckpt.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Returns a comm for ckpt_open over the runtime's own communicator, split
 * from `comm` with ncclCommSplit (collective over comm: every rank calls
 * it, from the thread that uses comm), so the runtime's collectives never
 * interleave with the application's.
 *
 * `stream` is the stream the runtime's collectives run on.  NULL lets the
 * runtime create its own non-blocking stream on comm's device (advised:
 * its collectives then never wait for training work).  A stream passed in
 * is borrowed and must outlive ckpt_close.  Each collective is
 * synchronous for the calling thread: it returns once the stream has run
 * it.
 *
 * The runtime issues NCCL calls only from the thread that calls ckpt_open,
 * ckpt_restore, ckpt_policy_due and ckpt_close (collectives: every rank
 * calls them in the same order), and never from its background threads.
 * It allocates one small device buffer (at most 1 MiB) on comm's device
 * for the collectives.  Failures, including an asynchronous NCCL error
 * seen while waiting, are CKPT_ECOMM with NCCL's message.
 *
 * `comm` is borrowed: it must stay valid until this call returns, not
 * after.  Pass the result to ckpt_open, which owns it from then on (it is
 * destroyed with the context; ckpt_close frees the split communicator).
 *
 * Never NULL.  On failure (comm NULL, a CUDA or NCCL call failing, out of
 * memory) it returns a comm that carries the error: ckpt_open refuses it
 * with that code and message (ckpt_last_error(NULL) then says why) and
 * frees it.  A rank whose comm failed takes part in no collective: on a
 * failure, end the job.
 */
CKPT_API ckpt_comm *ckpt_comm_nccl(ncclComm_t comm, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
