/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Configuration (config.c): ckpt_config_init's defaults and environment
 * overrides, and the checks ckpt_open makes of a config.
 */
#ifndef CKPT_RUNTIME_CONFIG_H
#define CKPT_RUNTIME_CONFIG_H

#include "ckpt/ckpt.h"
#include "base/err.h"

int ckpt__config_validate(const ckpt_config *cfg, ckpt__err *err);

#endif
