/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine: the writer and device backends, the hash pool and the
 * staging pool a context (or the CLI, or the bench) moves data with
 * (engine.c chooses and opens them).  The core calls the backends only
 * through the wrappers of backend.h, never through eng->wm or eng->dm.
 */
#ifndef CKPT_RUNTIME_ENGINE_H
#define CKPT_RUNTIME_ENGINE_H

#include <stdint.h>

#include "io/writer.h"
#include "runtime/device.h"
#include "runtime/device_plugin.h"
#include "runtime/fault.h"
#include "base/log.h"
#include "runtime/staging.h"
#include "base/workers.h"

/* I/O machinery shared by saves, restores, verification and the bench. */
typedef struct ckpt__engine {
    const ckpt__writer_methods *wm;
    ckpt__writer *w;
    const ckpt__device_methods *dm;
    ckpt__device *dev;
    ckpt__plugin plugin; /* where dm lives when it is a plugin's */
    ckpt__workers *hashers;
    ckpt__staging staging;
    uint64_t chunk_bytes;
    ckpt__fault *fault; /* may be NULL */
    ckpt__log *log;     /* may be NULL */
    /* Bytes of the reads submitted to the writer (ckpt__writer_submit):
     * a restore counts what each tier served (ckpt__restore_bytes). */
    _Atomic uint64_t read_bytes;
} ckpt__engine;

typedef struct ckpt__engine_config {
    ckpt_io io;
    ckpt_device device;
    int io_threads;
    int hash_threads;
    int queue_depth; /* 0: 16 */
    int buffered;    /* 1: no O_DIRECT */
    uint64_t staging_bytes;
    uint64_t chunk_bytes;
} ckpt__engine_config;

/* Chooses and opens the backends (config, then CKPT_IO, then probe, then
 * fallback; the choice is logged), the hash pool and the staging pool. */
int ckpt__engine_open(ckpt__engine *eng, const ckpt__engine_config *cfg, ckpt__log *log,
                      ckpt__fault *fault, ckpt__err *err);
void ckpt__engine_close(ckpt__engine *eng);

#endif
