/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ckpt-bench train (bench_train.c): the cost of checkpointing to a
 * synthetic training loop.
 */
#ifndef CKPT_BENCH_BENCH_TRAIN_H
#define CKPT_BENCH_BENCH_TRAIN_H

#include "runtime/internal.h"

/* Runs the subcommand: exit status 0, 1 (a failed call) or 2 (usage). */
int cmd_train(int argc, char **argv);

#endif
