/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The GPU modes of ckpt-bench in a build without the CUDA backend or
 * without nvcc: they fail with the reason (bench_gpu.h).
 */
#include "bench/bench_gpu.h"

int d2h_measure(const d2h_opts *o, d2h_result *r)
{
    (void)o;
    (void)r;
    errorf("d2h: %s", GPU_BUILD_HINT);
    return 1;
}

int train_gpu(const train_opts *o)
{
    (void)o;
    errorf("train --device cuda: %s", GPU_BUILD_HINT);
    return 1;
}
