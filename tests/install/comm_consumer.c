/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A program outside the tree that links the installed comm backends
 * (libckpt_mpi with CONSUMER_MPI, libckpt_nccl with CONSUMER_NCCL): each
 * factory, given what it cannot use (MPI not initialized, no NCCL
 * communicator), returns a comm that ckpt_open refuses with the factory's
 * code and message.  Runs on any machine: no MPI job, no GPU.
 * Usage: comm_consumer DIR.  Exit 0 only if every refusal was right.
 */
#include <stdio.h>
#include <string.h>

#include <ckpt/ckpt.h>
#if CONSUMER_MPI
#include <ckpt/ckpt_mpi.h>
#endif
#if CONSUMER_NCCL
#include <ckpt/ckpt_nccl.h>
#endif

/* 0 when ckpt_open refuses `comm` with `code` and a message holding `want`. */
static int refused(const char *dir, ckpt_comm *comm, int code, const char *want)
{
    ckpt_config cfg;
    ckpt_config_init(&cfg);
    cfg.dir = dir;
    ckpt_ctx *ck = NULL;
    int rc = ckpt_open(&cfg, comm, &ck);
    const char *msg = ckpt_last_error(NULL);
    if (!comm || rc != code || ck || !strstr(msg, want)) {
        fprintf(stderr, "comm_consumer: expected %s with '%s', got %s: %s\n",
                ckpt_err_name(code), want, ckpt_err_name(rc), msg);
        return 1;
    }
    printf("comm_consumer: refused, %s: %s\n", ckpt_err_name(rc), msg);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: comm_consumer DIR\n");
        return 2;
    }
    int bad = 0, checked = 0;
#if CONSUMER_MPI
    bad |= refused(argv[1], ckpt_comm_mpi(MPI_COMM_WORLD), CKPT_ESTATE, "MPI is not initialized");
    checked++;
#endif
#if CONSUMER_NCCL
    bad |= refused(argv[1], ckpt_comm_nccl(NULL, NULL), CKPT_EINVAL, "comm is NULL");
    checked++;
#endif
    printf("comm_consumer: %d backend(s) checked\n", checked);
    return bad;
}
