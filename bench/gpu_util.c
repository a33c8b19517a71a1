/* SPDX-License-Identifier: Apache-2.0 */
/* See gpu_util.h. */
#include <sys/statvfs.h>

#include "bench/gpu_util.h"

int cu_fail(cudaError_t e, const char *call)
{
    if (e == cudaSuccess)
        return 0;
    errorf("%s: %s: %s", call, cudaGetErrorName(e), cudaGetErrorString(e));
    return 1;
}

int gpu_open(const char *cmd, gpu_dev *d)
{
    memset(d, 0, sizeof *d);
    int count = 0; /* left unset when there is no driver (docs/ARCHITECTURE.md, traps) */
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        errorf("%s: no usable GPU: cudaGetDeviceCount: %s: %s", cmd, cudaGetErrorName(e),
               cudaGetErrorString(e));
        return 1;
    }
    if (count <= 0) {
        errorf("%s: no usable GPU: cudaGetDeviceCount found no CUDA device", cmd);
        return 1;
    }
    struct cudaDeviceProp prop;
    memset(&prop, 0, sizeof prop);
    if (CU(cudaGetDevice(&d->id)) || CU(cudaGetDeviceProperties(&prop, d->id)))
        return 1;
    snprintf(d->name, sizeof d->name, "%s", prop.name);
    if (CU(cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking))) {
        d->stream = NULL;
        return 1;
    }
    return 0;
}

void gpu_close(gpu_dev *d)
{
    if (d->stream) {
        CU(cudaStreamSynchronize(d->stream));
        CU(cudaStreamDestroy(d->stream));
    }
    d->stream = NULL;
}

uint64_t gpu_state_bytes(const gpu_state *s)
{
    return s->kind_bytes * (uint64_t)s->nkinds;
}

uint64_t gpu_tensor_bytes(const gpu_state *s, int i)
{
    return i + 1 < s->per_kind ? s->tensor_bytes
                               : s->kind_bytes - s->tensor_bytes * (uint64_t)(s->per_kind - 1);
}

int gpu_state_alloc(gpu_state *s, const char *const *kinds, int nkinds, uint64_t total,
                    int ntensors, cudaStream_t stream)
{
    memset(s, 0, sizeof *s);
    if (nkinds < 1 || nkinds > GPU_MAX_KINDS)
        return 1;
    s->per_kind = ntensors / nkinds > 0 ? ntensors / nkinds : 1;
    s->kind_bytes = total / (uint64_t)nkinds / 4096 * 4096;
    s->tensor_bytes = s->kind_bytes / (uint64_t)s->per_kind / 4096 * 4096;
    if (s->tensor_bytes == 0) {
        errorf("a state of %" PRIu64 " bytes cannot hold %d tensors of whole 4 KiB pages",
               total, ntensors);
        return 1;
    }
    for (int k = 0; k < nkinds; k++) {
        s->kind[k] = kinds[k];
        void *p = NULL;
        if (CU(cudaMalloc(&p, (size_t)s->kind_bytes)))
            return 1;
        s->slab[k] = p;
        s->nkinds = k + 1;
        size_t len = strlen(kinds[k]);
        int positive = len >= 2 && strcmp(kinds[k] + len - 2, ".v") == 0;
        if (CU(gpu_fill(s->slab[k], (size_t)(s->kind_bytes / 4), (uint64_t)k + 1, positive,
                        stream)))
            return 1;
    }
    return CU(cudaStreamSynchronize(stream));
}

void gpu_state_free(gpu_state *s)
{
    for (int k = 0; k < s->nkinds; k++)
        if (s->slab[k])
            CU(cudaFree(s->slab[k]));
    memset(s, 0, sizeof *s);
}

int gpu_state_register(const gpu_state *s, ckpt_ctx *ctx)
{
    for (int k = 0; k < s->nkinds; k++)
        for (int i = 0; i < s->per_kind; i++) {
            char name[96];
            snprintf(name, sizeof name, "%s.%d", s->kind[k], i);
            int64_t shape = (int64_t)(gpu_tensor_bytes(s, i) / 4);
            int rc = ckpt_register(ctx, name, (char *)s->slab[k] + gpu_tensor_off(s, i),
                                   CKPT_F32, 1, &shape);
            if (rc)
                return api_fail("ckpt_register", rc, ctx);
        }
    return 0;
}

int gpu_state_checksum(const gpu_state *s, int nkinds_sum, unsigned long long *sum,
                       cudaStream_t stream, uint64_t *out)
{
    unsigned long long h = 0;
    int rc = CU(cudaMemsetAsync(sum, 0, sizeof *sum, stream));
    for (int k = 0; !rc && k < nkinds_sum && k < s->nkinds; k++)
        rc = CU(gpu_checksum(s->slab[k], (size_t)s->kind_bytes, sum, stream));
    rc = rc || CU(cudaMemcpyAsync(&h, sum, sizeof h, cudaMemcpyDeviceToHost, stream)) ||
         CU(cudaStreamSynchronize(stream));
    *out = h;
    return rc;
}

int gpu_open_ctx(const char *dir, uint64_t staging_bytes, uint64_t chunk_bytes, ckpt_io io,
                 int keep_last, ckpt_event_fn fn, void *user, ckpt_ctx **out)
{
    ckpt_config cfg;
    *out = NULL;
    int rc = ckpt_config_init(&cfg);
    if (rc)
        return api_fail("ckpt_config_init", rc, NULL);
    cfg.dir = dir;
    cfg.device = CKPT_DEVICE_CUDA;
    cfg.staging_bytes = staging_bytes;
    cfg.chunk_bytes = chunk_bytes;
    if (io != CKPT_IO_AUTO)
        cfg.io = io;
    cfg.keep_last = keep_last;
    cfg.keep_every = 0;
    cfg.max_age_hours = 0;
    cfg.event_fn = fn;
    cfg.event_user = user;
    rc = ckpt_open(&cfg, NULL, out);
    return rc ? api_fail("ckpt_open", rc, NULL) : 0;
}

int disk_room(const char *cmd, const char *dir, uint64_t need, const char *hint)
{
    struct statvfs v;
    if (statvfs(dir, &v) != 0) {
        errorf("%s: statvfs %s: %s", cmd, dir, strerror(errno));
        return 1;
    }
    uint64_t avail = (uint64_t)v.f_bavail * (uint64_t)v.f_frsize;
    if (avail >= need)
        return 0;
    char b1[32], b2[32];
    errorf("%s: %s has %s free, the run needs about %s%s%s", cmd, dir,
           fmt_bytes(avail, b1, sizeof b1), fmt_bytes(need, b2, sizeof b2), hint ? ": " : "",
           hint ? hint : "");
    return 1;
}

int ev_ms(cudaEvent_t a, cudaEvent_t b, double *ms)
{
    float f = 0;
    int rc = CU(cudaEventElapsedTime(&f, a, b));
    *ms = rc ? 0 : (double)f;
    return rc;
}
