/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See h5util.h.  The lock and the saved HDF5 error handler are
 * process-wide mutable state (runtime/policy.c lists every piece the
 * library has): HDF5 itself is process-global, so two contexts writing
 * rank files at once must take turns inside it.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "io/h5util.h"

static pthread_mutex_t h5_mu = PTHREAD_MUTEX_INITIALIZER;
static H5E_auto2_t saved_func;
static void *saved_data;

void ckpt__h5_enter(void)
{
    pthread_mutex_lock(&h5_mu);
    H5Eget_auto2(H5E_DEFAULT, &saved_func, &saved_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void ckpt__h5_quiet(void)
{
    pthread_mutex_lock(&h5_mu);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    pthread_mutex_unlock(&h5_mu);
}

void ckpt__h5_leave(void)
{
    H5Eclear2(H5E_DEFAULT);
    H5Eset_auto2(H5E_DEFAULT, saved_func, saved_data);
    pthread_mutex_unlock(&h5_mu);
}

/* ---- the error stack as one line ------------------------------------------ */

/* What a failure's stack says, walked from the API call down to the file
 * driver.  HDF5's descriptions carry detail lists ("file write failed:
 * time = <ctime, with its newline>, filename = ..., errno = 28, error
 * message = '...', ...") made for a terminal; only the errno is kept of
 * them, and the words before the list. */
typedef struct cause {
    char call[64];  /* the API function that failed, e.g. "H5Fclose" */
    char what[160]; /* the innermost description, without its detail list */
    int errnum;     /* the innermost errno a driver recorded; 0: none */
} cause;

/* The errno in an HDF5 description ("..., errno = 28, ..."), else 0. */
static int desc_errno(const char *d)
{
    const char *p = strstr(d, "errno = ");
    if (!p)
        return 0;
    long v = 0;
    for (p += 8; *p >= '0' && *p <= '9' && v < 100000; p++)
        v = v * 10 + (*p - '0');
    return (int)v;
}

/* Copies the words of d before its detail list (the first ':' or ',') or
 * any control character, without trailing blanks. */
static void desc_words(const char *d, char *out, size_t cap)
{
    size_t n = 0;
    while (d[n] && d[n] != ':' && d[n] != ',' && (unsigned char)d[n] >= 0x20 && n + 1 < cap)
        n++;
    while (n > 0 && d[n - 1] == ' ')
        n--;
    memcpy(out, d, n);
    out[n] = '\0';
}

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    cause *c = data;
    if (n == 0 && e->func_name)
        snprintf(c->call, sizeof c->call, "%s", e->func_name);
    const char *d = e->desc ? e->desc : "";
    int en = desc_errno(d);
    if (en)
        c->errnum = en;
    if (d[0])
        desc_words(d, c->what, sizeof c->what);
    return 0;
}

/* The tail of the line: ": call", ": what" (when with_what), ": strerror". */
static void make_tail(char *out, size_t cap, const char *call, const char *what, int errnum,
                      int with_what)
{
    int n = snprintf(out, cap, "%s%s%s%s%s%s", call[0] ? ": " : "", call,
                     with_what && what[0] ? ": " : "", with_what ? what : "",
                     errnum ? ": " : "", errnum ? strerror(errnum) : "");
    if (n < 0 || (size_t)n >= cap)
        out[0] = '\0';
    if (!call[0] && !(with_what && what[0]) && !errnum)
        snprintf(out, cap, " (HDF5 gave no reason)");
}

void ckpt__h5_format(char *out, size_t cap, const char *head, const char *call,
                     const char *what, int errnum)
{
    if (cap == 0)
        return;
    char tail[CKPT__ERR_MSG];
    make_tail(tail, sizeof tail, call, what, errnum, 1);
    /* Too long: the innermost description goes first (the failing call and
     * the errno text say more), then the head is cut. */
    if (strlen(head) + strlen(tail) >= cap)
        make_tail(tail, sizeof tail, call, what, errnum, 0);
    size_t hl = strlen(head), tl = strlen(tail);
    if (tl >= cap)
        tl = 0, tail[0] = '\0';
    size_t room = cap - 1 - tl;
    if (hl > room) {
        /* Cut at a blank or '/' and say so: no word is cut in two. */
        size_t k = room >= 3 ? room - 3 : 0;
        while (k > 0 && head[k] != ' ' && head[k] != '/')
            k--;
        memcpy(out, head, k);
        memcpy(out + k, "...", room >= 3 ? 3 : 0);
        hl = k + (room >= 3 ? 3 : 0);
    } else {
        memcpy(out, head, hl);
    }
    memcpy(out + hl, tail, tl);
    out[hl + tl] = '\0';
}

int ckpt__h5_fail(ckpt__err *err, int code, const char *fmt, ...)
{
    char head[CKPT__ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    cause c;
    memset(&c, 0, sizeof c);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &c);
    H5Eclear2(H5E_DEFAULT);
    /* The system's reason decides the code: a full disk is CKPT_ENOSPC
     * whichever HDF5 call met it. */
    if (c.errnum)
        code = ckpt__code_from_errno(c.errnum);
    if (err) {
        err->code = code;
        ckpt__h5_format(err->msg, sizeof err->msg, head, c.call, c.what, c.errnum);
    }
    return code;
}

static hid_t custom_float(size_t spos, size_t epos, size_t esize, size_t msize, size_t size,
                          size_t ebias)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0)
        return H5I_INVALID_HID;
    if (H5Tset_fields(t, spos, epos, esize, 0, msize) < 0 || H5Tset_size(t, size) < 0 ||
        H5Tset_ebias(t, ebias) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

hid_t ckpt__h5_type(ckpt_dtype dtype)
{
    switch (dtype) {
    case CKPT_F64:
        return H5Tcopy(H5T_IEEE_F64LE);
    case CKPT_F32:
        return H5Tcopy(H5T_IEEE_F32LE);
    case CKPT_F16:
        return custom_float(15, 10, 5, 10, 2, 15);
    case CKPT_BF16:
        return custom_float(15, 7, 8, 7, 2, 127);
    case CKPT_FP8_E5M2:
        return custom_float(7, 2, 5, 2, 1, 15);
    case CKPT_FP8_E4M3: /* HDF5 would read 0x7E as NaN: stored as bytes */
    case CKPT_U8:
    case CKPT_BYTES:
        return H5Tcopy(H5T_STD_U8LE);
    case CKPT_I64:
        return H5Tcopy(H5T_STD_I64LE);
    case CKPT_I32:
        return H5Tcopy(H5T_STD_I32LE);
    case CKPT_I16:
        return H5Tcopy(H5T_STD_I16LE);
    case CKPT_I8:
        return H5Tcopy(H5T_STD_I8LE);
    case CKPT_BOOL: {
        /* The enum h5py maps to numpy bool. */
        hid_t t = H5Tenum_create(H5T_STD_I8LE);
        int8_t v = 0;
        if (t < 0 || H5Tenum_insert(t, "FALSE", &v) < 0) {
            H5Tclose(t);
            return H5I_INVALID_HID;
        }
        v = 1;
        if (H5Tenum_insert(t, "TRUE", &v) < 0) {
            H5Tclose(t);
            return H5I_INVALID_HID;
        }
        return t;
    }
    }
    return H5I_INVALID_HID;
}

static herr_t refuse_elink(const char *parent_file, const char *parent_group,
                           const char *child_file, const char *child_object,
                           unsigned *acc_flags, hid_t fapl, void *data)
{
    (void)parent_file;
    (void)parent_group;
    (void)child_file;
    (void)child_object;
    (void)acc_flags;
    (void)fapl;
    (void)data;
    return -1;
}

hid_t ckpt__h5_dapl(void)
{
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (dapl >= 0 && H5Pset_elink_cb(dapl, refuse_elink, NULL) < 0) {
        H5Pclose(dapl);
        return H5I_INVALID_HID;
    }
    return dapl;
}

int ckpt__h5_data_is_local(hid_t ds)
{
    hid_t dcpl = H5Dget_create_plist(ds);
    if (dcpl < 0)
        return 0;
    H5D_layout_t layout = H5Pget_layout(dcpl);
    int nexternal = H5Pget_external_count(dcpl);
    H5Pclose(dcpl);
    return layout != H5D_LAYOUT_ERROR && layout != H5D_VIRTUAL && nexternal == 0;
}

/* A metadata cache big enough for the object headers of tens of thousands
 * of datasets: the default (2 MiB) evicts and re-reads them during a save. */
static herr_t grow_cache(hid_t fapl)
{
    H5AC_cache_config_t c;
    memset(&c, 0, sizeof c);
    c.version = H5AC__CURR_CACHE_CONFIG_VERSION;
    if (H5Pget_mdc_config(fapl, &c) < 0)
        return -1;
    c.set_initial_size = 1;
    c.initial_size = 16 << 20;
    c.max_size = 64 << 20;
    c.min_size = 1 << 20;
    return H5Pset_mdc_config(fapl, &c);
}

hid_t ckpt__h5_fapl(int aligned)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0)
        return fapl;
    if (H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST) < 0 ||
        (aligned && H5Pset_alignment(fapl, CKPT__H5_ALIGN_THRESHOLD, 4096) < 0) ||
        (aligned && H5Pset_small_data_block_size(fapl, 1 << 20) < 0) ||
        H5Pset_file_locking(fapl, 0, 1) < 0 || grow_cache(fapl) < 0) {
        H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    return fapl;
}
