/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The controls of the CUDA stand-in (cudasim.c) that tests call; every
 * name starts with cudasim_ so nm -D can prove none reaches an installed
 * library.  Callable from any thread.
 */
#ifndef CKPT_TESTS_CUDASIM_H
#define CKPT_TESTS_CUDASIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The n-th copy executed from now on faults asynchronously
 * (cudaErrorIllegalAddress) and the error stays sticky; 0 disarms. */
void cudasim_fail_copy_at(uint64_t n);
/* Copies executed so far, by every stream. */
uint64_t cudasim_copies(void);
/* Clears a sticky fault: stands for starting a new process. */
void cudasim_reset(void);
/* The seed of the streams' random delays (CUDASIM_SEED sets it). */
uint64_t cudasim_seed(void);
/* Reads n bytes of device memory at dev without a stream, for checks
 * only; 0, or -1 when [dev, dev+n) is not device memory. */
int cudasim_read(void *host, const void *dev, size_t n);
/* NCCL: the nth collective run from now on by rank `rank` of any
 * communicator fails asynchronously, and its communicator with it. */
void cudasim_nccl_fail_collective(int rank, uint64_t nth);

#ifdef __cplusplus
}
#endif

#endif
