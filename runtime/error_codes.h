/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The calling thread's buffer for errors of calls without a context
 * (error_codes.c).  libckpt only: a backend library reports through its
 * own handles instead (comm.h, device.h).
 */
#ifndef CKPT_RUNTIME_ERROR_CODES_H
#define CKPT_RUNTIME_ERROR_CODES_H

#include "base/err.h"

ckpt__err *ckpt__thread_err(void);

#endif
