/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one clock of the runtime, its tools and its benchmark: CLOCK_MONOTONIC
 * for every duration and deadline (never the wall clock, which jumps), and
 * the calling thread's CPU time for telling work from waiting.  Wall-clock
 * time (CLOCK_REALTIME) is read only where a timestamp is stored or shown.
 */
#ifndef CKPT_BASE_CLOCK_H
#define CKPT_BASE_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic nanoseconds since an arbitrary origin. */
static inline uint64_t ckpt__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Monotonic seconds since an arbitrary origin. */
static inline double ckpt__now_s(void)
{
    return (double)ckpt__now_ns() * 1e-9;
}

/* CPU seconds the calling thread has used. */
static inline double ckpt__thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
