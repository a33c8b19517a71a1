/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A device plugin from "another build" for test_device_plugin.cpp: it
 * exports the entry point, but its table has the next interface version
 * and no methods, so libckpt must refuse it without calling into it.
 */
#include "runtime/device.h"

static const ckpt__device_methods future = {
    .version = CKPT__DEVICE_VERSION + 1,
    .name = "future",
};

__attribute__((visibility("default"))) const ckpt__device_methods *ckpt__device_plugin(void);

const ckpt__device_methods *ckpt__device_plugin(void)
{
    return &future;
}
