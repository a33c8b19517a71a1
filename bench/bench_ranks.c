/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The MPI backend of bench_world.h: a bench run by the ranks of an MPI job,
 * and the launcher that starts such a job from a plain command line
 * (`ckpt-bench train --ranks 4` runs itself again under mpirun).
 *
 * Invariants: MPI is initialized once, by bench_ranks_open, with
 * MPI_THREAD_FUNNELED (the runtime's MPI calls, like the bench's, come from
 * the main thread), or MPI_THREAD_MULTIPLE with --replicas (the runtime's
 * coordinator thread sends them beside the main thread's calls); the bench's collectives go over MPI_COMM_WORLD and the
 * runtime's over its own duplicate (ckpt_comm_mpi), so they never match
 * each other's messages; MPI errors are fatal to the job (the default
 * handler), so no rank is left waiting in a collective another rank has
 * given up on.
 *
 * The launcher speaks Open MPI's mpirun: --allow-run-as-root (containers
 * run as root), --oversubscribe (more ranks than cores is the point on a
 * small machine), and the shared-memory transport without its single-copy
 * mechanism (CMA needs ptrace rights containers seldom grant) unless the
 * caller chose one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "ckpt/ckpt_mpi.h"

#include "bench/bench_util.h"
#include "bench/bench_world.h"

static void mpi_barrier(bench_world *w)
{
    (void)w;
    MPI_Barrier(MPI_COMM_WORLD);
}

/* Tested every 50 us: Open MPI's blocking barrier polls, which on a
 * machine with more ranks than cores takes the time the runtime's threads
 * and the other ranks' steps need. */
static void mpi_step_sync(bench_world *w)
{
    (void)w;
    MPI_Request req;
    int done = 0;
    MPI_Ibarrier(MPI_COMM_WORLD, &req);
    for (;;) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done)
            break;
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
}

static void mpi_sum(bench_world *w, double *v, int n)
{
    (void)w;
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

/* The bench gathers a few figures per rank; more than INT_MAX bytes would
 * be a bug in the caller, and ends the job like any failed collective. */
static void mpi_gather(bench_world *w, const void *send, size_t n, void *recv)
{
    (void)w;
    if (n > INT_MAX) {
        errorf("gather of %zu bytes per rank", n);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Gather(send, (int)n, MPI_BYTE, recv, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
}

static ckpt_comm *mpi_comm(bench_world *w)
{
    (void)w;
    /* Never NULL.  It can fail here only in MPI_Comm_dup, which aborts the
     * job (MPI_COMM_WORLD's errors are fatal), or out of memory: then
     * ckpt_open refuses the failed comm on this rank with the reason, the
     * rank exits non-zero, and mpirun ends the job. */
    return ckpt_comm_mpi(MPI_COMM_WORLD);
}

static void mpi_close(bench_world *w)
{
    (void)w;
    MPI_Finalize();
}

static const bench_world_methods mpi_methods = {
    1, "mpi", mpi_barrier, mpi_step_sync, mpi_sum, mpi_gather, mpi_comm, mpi_close,
};

int bench_ranks_open(const char *cmd, int ranks, int multiple, bench_world *w)
{
    int provided = 0, rank = 0, size = 0;
    /* Replicas travel on the coordinator thread (ckpt.h, cfg.replicas). */
    int need = multiple ? MPI_THREAD_MULTIPLE : MPI_THREAD_FUNNELED;
    if (MPI_Init_thread(NULL, NULL, need, &provided) != MPI_SUCCESS) {
        errorf("MPI_Init_thread failed");
        return 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int rc = 0;
    if (provided < need) {
        if (rank == 0)
            errorf("MPI offers thread level %d; the runtime needs %s", provided,
                   multiple ? "MPI_THREAD_MULTIPLE (--replicas)" : "MPI_THREAD_FUNNELED");
        rc = 1;
    } else if (ranks > 0 && ranks != size) {
        if (rank == 0)
            usage_error(cmd, "--ranks %d, but the launcher started %d ranks", ranks, size);
        rc = 2;
    }
    if (rc) {
        MPI_Finalize();
        return rc;
    }
    /* Messages name the rank that prints them. */
    static char name[64];
    if (size > 1) {
        snprintf(name, sizeof name, "%s[%d]", prog, rank);
        prog = name;
    }
    w->m = &mpi_methods;
    w->rank = rank;
    w->size = size;
    return 0;
}

int bench_ranks_launch(const char *cmd, int ranks, int argc, char **argv)
{
    static char mpirun[] = "mpirun", root[] = "--allow-run-as-root",
                over[] = "--oversubscribe", np_flag[] = "-np";
    char self[4096], np[16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        errorf("%s --ranks %d: cannot find this program (/proc/self/exe): %s", cmd, ranks,
               strerror(errno));
        return 1;
    }
    self[n] = '\0';
    snprintf(np, sizeof np, "%d", ranks);
    char **av = calloc((size_t)argc + 7, sizeof *av);
    if (!av) {
        errorf("out of memory");
        return 1;
    }
    int k = 0;
    av[k++] = mpirun;
    av[k++] = root;
    av[k++] = over;
    av[k++] = np_flag;
    av[k++] = np;
    av[k++] = self;
    for (int i = 0; i < argc; i++)
        av[k++] = argv[i];
    av[k] = NULL;
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
    fflush(stdout);
    fflush(stderr);
    execvp(mpirun, av);
    errorf("%s --ranks %d: cannot run mpirun (Open MPI's launcher, from PATH): %s", cmd, ranks,
           strerror(errno));
    free(av);
    return 1;
}
