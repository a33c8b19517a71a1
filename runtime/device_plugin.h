/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading a device backend that lives in a plugin library (device.h), for
 * the registry in engine.c.  Why a plugin: a CPU-only program never loads
 * a GPU library, one build of libckpt serves GPU and CPU machines, and a
 * CUDA program needs no code change to get the CUDA backend.
 *
 * Where a plugin is looked for, in order (the first file that exists is
 * the one loaded; a broken one is an error, not a reason to look further):
 *   1. the environment variable named by `env`, when set and not empty:
 *      that path and nothing else (tests point it at a missing file);
 *   2. next to libckpt: the folder of the image that holds this code (the
 *      shared libckpt, or the program a static libckpt is linked into),
 *      then ../lib from there (a program in PREFIX/bin or build/bin finds
 *      PREFIX/lib or build/lib);
 *   3. the soname through the dynamic loader's own search.
 */
#ifndef CKPT_RUNTIME_DEVICE_PLUGIN_H
#define CKPT_RUNTIME_DEVICE_PLUGIN_H

#include <stddef.h>

#include "runtime/device.h"

typedef struct ckpt__plugin {
    void *handle; /* from dlopen; NULL: nothing loaded */
    const ckpt__device_methods *m;
    char path[4096]; /* the file loaded (or the soname, when the loader found it) */
} ckpt__plugin;

/* Loads the plugin `soname` (e.g. "libckpt_cuda.so.0") and checks its
 * table: version CKPT__DEVICE_VERSION, every method present.  0 and *p
 * filled, else CKPT_EDEVICE naming where it looked and why each place
 * failed, with *p cleared.  Blocks on the file system; any thread. */
int ckpt__plugin_load(const char *soname, const char *env, ckpt__plugin *p, ckpt__err *err);
/* Releases a plugin from ckpt__plugin_load (a cleared one is a no-op).  The
 * library stays mapped (RTLD_NODELETE): a CUDA runtime inside it cannot be
 * torn down and started again safely. */
void ckpt__plugin_unload(ckpt__plugin *p);

#endif
