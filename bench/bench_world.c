/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which processes run a bench (bench_world.h): the registry that picks the
 * backend, and the single-process backend.  The MPI backend lives in
 * bench_ranks.c and is reached only from the #if below, so a build without
 * MPI has no MPI symbol anywhere in the bench.
 */
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "bench/bench_world.h"

static void single_barrier(bench_world *w)
{
    (void)w;
}

static void single_step_sync(bench_world *w)
{
    (void)w;
}

static void single_sum(bench_world *w, double *v, int n)
{
    (void)w;
    (void)v;
    (void)n;
}

static void single_gather(bench_world *w, const void *send, size_t n, void *recv)
{
    (void)w;
    memcpy(recv, send, n);
}

static ckpt_comm *single_comm(bench_world *w)
{
    (void)w;
    return NULL;
}

static void single_close(bench_world *w)
{
    (void)w;
}

static const bench_world_methods single_methods = {
    1, "single", single_barrier, single_step_sync, single_sum, single_gather, single_comm, single_close,
};

/* Set by Open MPI's launcher in every process it starts (and by the
 * launchers of PMI, which MPICH's mpiexec uses). */
static int launched_size(void)
{
    const char *v = getenv("OMPI_COMM_WORLD_SIZE");
    if (!v || !*v)
        v = getenv("PMI_SIZE");
    return v && *v ? atoi(v) : 0;
}

int bench_world_open(const char *cmd, int ranks, int multiple, int argc, char **argv,
                     bench_world *w)
{
    int launched = launched_size();
#if CKPT_BENCH_MPI
    if (launched > 0)
        return bench_ranks_open(cmd, ranks, multiple, w);
    if (ranks > 1)
        return bench_ranks_launch(cmd, ranks, argc, argv);
#else
    (void)argc;
    (void)argv;
    if (ranks > 1 || launched > 1)
        return usage_error(cmd, "%d ranks: this ckpt-bench was built without MPI "
                                "(configure with -DCKPT_WITH_MPI=ON)",
                           ranks > 1 ? ranks : launched);
#endif
    w->m = &single_methods;
    w->rank = 0;
    w->size = 1;
    return 0;
}
