/* SPDX-License-Identifier: Apache-2.0 */
/* The staging pool (see staging.h). */
#include <errno.h>
#include <sys/mman.h>

#include "runtime/staging.h"

int ckpt__staging_init(ckpt__staging *s, uint64_t bytes, ckpt__err *err)
{
    s->base = NULL;
    s->bytes = 0;
    bytes = bytes / CKPT__STAGE_ALIGN * CKPT__STAGE_ALIGN;
    if (bytes == 0 || bytes > (uint64_t)SIZE_MAX / 2)
        return ckpt__err_set(err, CKPT_EINVAL, "staging pool of %llu bytes",
                             (unsigned long long)bytes);
    /* MAP_POPULATE: the pages are faulted in now, at open, not during the
     * first snapshot (where they cost about 1.3 s per GiB on this VM). */
    void *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED)
        return ckpt__err_errno(err, errno, "staging pool: mmap of %llu bytes",
                               (unsigned long long)bytes);
    s->base = p;
    s->bytes = (size_t)bytes;
    return 0;
}

void ckpt__staging_destroy(ckpt__staging *s)
{
    if (s->base)
        munmap(s->base, s->bytes);
    s->base = NULL;
    s->bytes = 0;
}
