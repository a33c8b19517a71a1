/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine: the backends and pools a context (or the CLI, or the bench)
 * moves data with.  This file is the one registry of backends: explicit
 * config first, then the environment (CKPT_IO, applied by
 * ckpt_config_init; CKPT_CUDA_BACKEND, the file of the CUDA plugin), then
 * a probe, then the fallback; the choice is logged.  Nothing here depends
 * on how libckpt was built: the CUDA backend is a plugin that is there or
 * not (device_plugin.h).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/backend.h"
#include "runtime/engine.h"

static int pick_writer(const ckpt__engine_config *cfg, ckpt__log *log,
                       const ckpt__writer_methods **out, ckpt__err *err)
{
    ckpt__err why;
    switch (cfg->io) {
    case CKPT_IO_PWRITE:
        *out = &ckpt__writer_pwrite;
        return 0;
    case CKPT_IO_URING:
        if (ckpt__writer_probe(&ckpt__writer_uring, err) != 0)
            return ckpt__err_prefix(err, "io=uring");
        *out = &ckpt__writer_uring;
        return 0;
    case CKPT_IO_AUTO:
    default:
        ckpt__err_clear(&why);
        if (ckpt__writer_probe(&ckpt__writer_uring, &why) == 0) {
            *out = &ckpt__writer_uring;
            ckpt__logf(log, CKPT_LOG_INFO, "writer: uring (auto)");
        } else {
            *out = &ckpt__writer_pwrite;
            ckpt__logf(log, CKPT_LOG_INFO, "writer: pwrite (auto; %s)", why.msg);
        }
        return 0;
    }
}

/* The CUDA backend is a plugin (device_plugin.h), whatever this libckpt
 * was built with: its soname carries libckpt's SOVERSION, so a plugin of
 * an incompatible build is never picked up by name. */
#define CUDA_PLUGIN "libckpt_cuda.so." CKPT__SOVERSION
#define CUDA_PLUGIN_ENV "CKPT_CUDA_BACKEND"

/* Loads the CUDA plugin and probes it: 0 with eng->plugin loaded, else
 * the reason in *why and nothing loaded. */
static int cuda_load(ckpt__engine *eng, ckpt__err *why)
{
    int rc = ckpt__plugin_load(CUDA_PLUGIN, CUDA_PLUGIN_ENV, &eng->plugin, why);
    if (!rc && (rc = ckpt__device_probe(eng->plugin.m, why)) != 0)
        ckpt__plugin_unload(&eng->plugin);
    return rc;
}

static int pick_device(ckpt__engine *eng, const ckpt__engine_config *cfg, ckpt__log *log,
                       ckpt__err *err)
{
    ckpt__err why;
    switch (cfg->device) {
    case CKPT_DEVICE_CUDA:
        if (cuda_load(eng, err) != 0)
            return ckpt__err_prefix(err, "device=cuda");
        eng->dm = eng->plugin.m;
        ckpt__logf(log, CKPT_LOG_INFO, "device: cuda, backend %s", eng->plugin.path);
        return 0;
    case CKPT_DEVICE_HOST:
        eng->dm = &ckpt__device_host;
        return 0;
    case CKPT_DEVICE_AUTO:
    default:
        /* No plugin, no driver or no device: the host backend. */
        ckpt__err_clear(&why);
        if (cuda_load(eng, &why) == 0) {
            eng->dm = eng->plugin.m;
            ckpt__logf(log, CKPT_LOG_INFO, "device: cuda (auto), backend %s", eng->plugin.path);
        } else {
            eng->dm = &ckpt__device_host;
            ckpt__logf(log, CKPT_LOG_INFO, "device: host (auto: %s)", why.msg);
        }
        return 0;
    }
}

static int cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

int ckpt__engine_open(ckpt__engine *eng, const ckpt__engine_config *cfg, ckpt__log *log,
                      ckpt__fault *fault, ckpt__err *err)
{
    memset(eng, 0, sizeof *eng);
    eng->fault = fault;
    eng->log = log;
    eng->chunk_bytes = cfg->chunk_bytes;
    int rc = pick_writer(cfg, log, &eng->wm, err);
    if (!rc)
        rc = pick_device(eng, cfg, log, err);
    if (rc)
        return rc;
    ckpt__writer_config wc = {
        .threads = cfg->io_threads ? cfg->io_threads : 4,
        .queue_depth = cfg->queue_depth ? cfg->queue_depth : 16,
        .direct = !cfg->buffered,
    };
    int nh = cfg->hash_threads ? cfg->hash_threads : (cores() < 4 ? cores() : 4);
    rc = ckpt__writer_open(eng, &wc, err);
    if (!rc)
        rc = ckpt__device_open(eng, err);
    if (!rc)
        rc = ckpt__workers_open(nh, &eng->hashers, err);
    if (!rc)
        rc = ckpt__staging_init(&eng->staging, cfg->staging_bytes, err);
    if (!rc)
        rc = ckpt__device_register_staging(eng, eng->staging.base, eng->staging.bytes, err);
    if (!rc) {
        ckpt__err why;
        ckpt__err_clear(&why);
        if (ckpt__writer_register_buffers(eng, eng->staging.base, eng->staging.bytes,
                                          CKPT__STAGE_ALIGN, &why) != 0)
            ckpt__logf(log, CKPT_LOG_INFO, "%s", why.msg);
    }
    if (rc)
        ckpt__engine_close(eng);
    return rc;
}

void ckpt__engine_close(ckpt__engine *eng)
{
    ckpt__workers_close(eng->hashers);
    if (eng->dev)
        ckpt__device_close(eng);
    if (eng->w)
        ckpt__writer_close(eng);
    ckpt__staging_destroy(&eng->staging);
    ckpt__plugin_unload(&eng->plugin); /* after its device is closed */
    memset(eng, 0, sizeof *eng);
}
