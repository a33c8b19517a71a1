/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The public side of errors, which only libckpt holds: ckpt_strerror and
 * ckpt_err_name generated from the CKPT_ERRORS X-macro, and the per-thread
 * buffer that holds the message of a failed call that had no context to
 * hold it (ckpt_last_error(NULL)).  That buffer is thread-local, so it is
 * no shared mutable state.  The backend libraries never reach it: a comm
 * factory's failure travels on the comm it returns (comm.h).
 */
#include "runtime/error_codes.h"

const char *ckpt_strerror(int code)
{
    switch (code) {
#define CKPT_X_MSG(name, value, msg)                                            \
    case CKPT_##name:                                                           \
        return msg;
        CKPT_ERRORS(CKPT_X_MSG)
#undef CKPT_X_MSG
    case CKPT_INPROGRESS:
        return "save in progress";
    default:
        return "unknown error code";
    }
}

const char *ckpt_err_name(int code)
{
    switch (code) {
#define CKPT_X_NAME(name, value, msg)                                           \
    case CKPT_##name:                                                           \
        return "CKPT_" #name;
        CKPT_ERRORS(CKPT_X_NAME)
#undef CKPT_X_NAME
    case CKPT_INPROGRESS:
        return "CKPT_INPROGRESS";
    default:
        return "CKPT_E?";
    }
}

ckpt__err *ckpt__thread_err(void)
{
    static _Thread_local ckpt__err tls;
    return &tls;
}
