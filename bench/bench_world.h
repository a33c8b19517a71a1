/* SPDX-License-Identifier: Apache-2.0 */
#ifndef CKPT_BENCH_BENCH_WORLD_H
#define CKPT_BENCH_BENCH_WORLD_H

/*
 * The processes that run one bench: this process alone ("single",
 * bench_world.c) or the ranks of an MPI job ("mpi", bench_ranks.c, built
 * with CKPT_WITH_MPI).  A subcommand is written once against these few
 * collectives; with one process they are copies and no-ops.
 *
 * Invariants: every rank calls the collectives in the same order, from the
 * thread that opened the world (the runtime's event threads never do); a
 * collective that fails ends the job (the MPI backend keeps MPI's default
 * handler, MPI_ERRORS_ARE_FATAL), so the calls return nothing.
 */

#include <stddef.h>

#include "ckpt/ckpt.h"

typedef struct bench_world bench_world;

typedef struct bench_world_methods {
    int version; /* 1 */
    const char *name;
    void (*barrier)(bench_world *w);
    /* A barrier that waits without keeping a core busy (MPI_Barrier may
     * poll): once per training step, the stand-in for the gradient
     * all-reduce that keeps a data-parallel job's ranks in step. */
    void (*step_sync)(bench_world *w);
    /* Element-wise sum of v[0..n) over the ranks, left in v on every rank. */
    void (*sum)(bench_world *w, double *v, int n);
    /* Rank 0 receives every rank's n bytes at send, in rank order, in
     * recv[0 .. n * size); recv is ignored on the other ranks. */
    void (*gather)(bench_world *w, const void *send, size_t n, void *recv);
    /* A comm for ckpt_open, which owns it (NULL: one rank).  Collective. */
    ckpt_comm *(*comm)(bench_world *w);
    /* Ends the world: MPI_Finalize.  The process exits soon after. */
    void (*close)(bench_world *w);
} bench_world_methods;

struct bench_world {
    const bench_world_methods *m;
    int rank, size;
};

/*
 * Opens the world for a subcommand asked to run on `ranks` processes (0:
 * however many the launcher started), given its own argc/argv (argv[0] is
 * the subcommand's name; multiple: the runtime will need MPI_THREAD_MULTIPLE,
 * for cfg.replicas):
 *   - under an MPI launcher (mpirun set OMPI_COMM_WORLD_SIZE): the MPI
 *     world, which must hold `ranks` processes when ranks > 0;
 *   - else ranks <= 1: this process alone;
 *   - else the program is run again as `mpirun -np RANKS` with the same
 *     arguments, and this process becomes mpirun (exec): it does not return
 *     unless that fails.
 * Returns 0 with *w open, or an exit status (1 failure, 2 usage: a build
 * without MPI, a world of the wrong size) after printing why.
 */
int bench_world_open(const char *cmd, int ranks, int multiple, int argc, char **argv,
                     bench_world *w);

/* The MPI backend (bench_ranks.c); declared for bench_world.c's registry. */
int bench_ranks_open(const char *cmd, int ranks, int multiple, bench_world *w);
int bench_ranks_launch(const char *cmd, int ranks, int argc, char **argv);

#endif
