/* SPDX-License-Identifier: Apache-2.0 */
#ifndef CKPT_BENCH_BENCH_SCALE_H
#define CKPT_BENCH_BENCH_SCALE_H

/* `ckpt-bench scale` (bench_scale.c): argv[0] is "scale". */
int cmd_scale(int argc, char **argv);

#endif
