/* SPDX-License-Identifier: Apache-2.0 */
/* The world's nodes and the replica partners (nodes.h: N1-N2, P1-P3). */
#define _GNU_SOURCE
#include "runtime/nodes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/backend.h"

int ckpt__node_name(const char *given, char out[CKPT__NODE_NAME_MAX], ckpt__err *err)
{
    const char *from = "the configured node name", *name = given;
    char host[256];
    if (!name) {
        from = "CKPT_NODE";
        name = getenv("CKPT_NODE");
    }
    if (!name) {
        from = "the host name";
        if (gethostname(host, sizeof host) != 0)
            return ckpt__err_errno(err, errno, "gethostname");
        host[sizeof host - 1] = 0;
        name = host;
    }
    size_t len = strlen(name);
    if (len == 0 || len >= CKPT__NODE_NAME_MAX)
        return ckpt__err_set(err, CKPT_EINVAL, "%s is %s (a node name is 1 to %d bytes)", from,
                             len ? "too long" : "empty", CKPT__NODE_NAME_MAX - 1);
    memcpy(out, name, len + 1);
    return 0;
}

void ckpt__nodes_free(ckpt__nodes *n)
{
    free(n->node);
    free(n->local);
    free(n->first);
    free(n->byrank);
    memset(n, 0, sizeof *n);
}

/* local, first and byrank from node (N2), once node[] and nnodes are set. */
static int index_nodes(ckpt__nodes *n, ckpt__err *err)
{
    n->local = calloc(n->nranks ? n->nranks : 1, sizeof *n->local);
    n->byrank = calloc(n->nranks ? n->nranks : 1, sizeof *n->byrank);
    n->first = calloc((size_t)n->nnodes + 1, sizeof *n->first);
    if (!n->local || !n->byrank || !n->first)
        return ckpt__err_set(err, CKPT_ENOMEM, "node layout of %u ranks: out of memory",
                             n->nranks);
    for (uint32_t r = 0; r < n->nranks; r++)
        n->first[n->node[r] + 1]++;
    for (uint32_t m = 0; m < n->nnodes; m++)
        n->first[m + 1] += n->first[m];
    /* Ranks in order, a cursor per node: the count so far is the local
     * index. */
    uint32_t *cur = malloc((size_t)n->nnodes * sizeof *cur);
    if (!cur)
        return ckpt__err_set(err, CKPT_ENOMEM, "node layout: out of memory");
    memcpy(cur, n->first, (size_t)n->nnodes * sizeof *cur);
    for (uint32_t r = 0; r < n->nranks; r++) {
        uint32_t m = n->node[r];
        n->local[r] = cur[m] - n->first[m];
        n->byrank[cur[m]++] = r;
    }
    free(cur);
    return 0;
}

static const char *name_of(const char *names, uint32_t r)
{
    return names + (size_t)r * CKPT__NODE_NAME_MAX;
}

typedef struct {
    const char *names;
} sort_ctx;

static int by_name_then_rank(const void *a, const void *b, void *user)
{
    const sort_ctx *s = user;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    int c = strcmp(name_of(s->names, x), name_of(s->names, y));
    return c ? c : (x > y) - (x < y);
}

int ckpt__nodes_build(const char *names, uint32_t nranks, ckpt__nodes *out, ckpt__err *err)
{
    memset(out, 0, sizeof *out);
    if (nranks == 0)
        return ckpt__err_set(err, CKPT_EINVAL, "node layout of no ranks");
    for (uint32_t r = 0; r < nranks; r++) {
        size_t len = strnlen(name_of(names, r), CKPT__NODE_NAME_MAX);
        if (len == 0 || len == CKPT__NODE_NAME_MAX)
            return ckpt__err_set(err, CKPT_EINVAL, "rank %u has no valid node name (%s)", r,
                                 len ? "too long" : "empty");
    }
    out->nranks = nranks;
    out->node = malloc((size_t)nranks * sizeof *out->node);
    uint32_t *order = malloc((size_t)nranks * sizeof *order);
    uint32_t *group = malloc((size_t)nranks * sizeof *group); /* rank -> sorted group */
    uint32_t *id = NULL;
    int rc = 0;
    if (!out->node || !order || !group) {
        rc = ckpt__err_set(err, CKPT_ENOMEM, "node layout of %u ranks: out of memory", nranks);
        goto done;
    }
    for (uint32_t r = 0; r < nranks; r++)
        order[r] = r;
    sort_ctx s = {names};
    qsort_r(order, nranks, sizeof *order, by_name_then_rank, &s);
    uint32_t ngroups = 0;
    for (uint32_t k = 0; k < nranks; k++) {
        if (k == 0 || strcmp(name_of(names, order[k - 1]), name_of(names, order[k])) != 0)
            ngroups++;
        group[order[k]] = ngroups - 1;
    }
    /* N1: number the groups in the order of their lowest rank. */
    id = malloc((size_t)ngroups * sizeof *id);
    if (!id) {
        rc = ckpt__err_set(err, CKPT_ENOMEM, "node layout: out of memory");
        goto done;
    }
    for (uint32_t g = 0; g < ngroups; g++)
        id[g] = UINT32_MAX;
    for (uint32_t r = 0; r < nranks; r++) {
        if (id[group[r]] == UINT32_MAX)
            id[group[r]] = out->nnodes++;
        out->node[r] = id[group[r]];
    }
    rc = index_nodes(out, err);
done:
    free(order);
    free(group);
    free(id);
    if (rc)
        ckpt__nodes_free(out);
    return rc;
}

/* What rank 0 broadcasts: its verdict, then node[] (N1). */
typedef struct {
    int32_t code; /* 0 or a CKPT_E code */
    char text[CKPT__ERR_MSG];
} verdict_head;

int ckpt__nodes_gather(ckpt_comm *comm, struct ckpt__fault *f, const char *name,
                       ckpt__nodes *out, ckpt__err *err)
{
    memset(out, 0, sizeof *out);
    int rank = ckpt__comm_rank(comm);
    uint32_t nranks = (uint32_t)ckpt__comm_size(comm);
    size_t msg_bytes = sizeof(verdict_head) + (size_t)nranks * sizeof(uint32_t);
    char mine[CKPT__NODE_NAME_MAX] = {0};
    if (name)
        snprintf(mine, sizeof mine, "%s", name);
    char *names = rank == 0 ? calloc(nranks, CKPT__NODE_NAME_MAX) : NULL;
    uint8_t *msg = calloc(1, msg_bytes);
    verdict_head head = {0, ""};
    int rc = 0;
    if (!msg || (rank == 0 && !names)) {
        rc = ckpt__err_set(err, CKPT_ENOMEM, "node layout of %u ranks: out of memory", nranks);
        mine[0] = 0; /* rank 0 then refuses the layout for every rank */
    }
    /* Every rank takes part in both collectives whatever happened here, so
     * none is left waiting. */
    ckpt__err cerr;
    int grc = ckpt__comm_gather(comm, f, mine, sizeof mine, names, 0, &cerr);
    if (rank == 0) {
        ckpt__nodes built;
        int brc = grc ? grc : !names ? CKPT_ENOMEM : ckpt__nodes_build(names, nranks, &built, &cerr);
        head.code = brc;
        if (brc)
            snprintf(head.text, sizeof head.text, "%s", brc == CKPT_ENOMEM && !grc && !names
                                                            ? "rank 0: out of memory"
                                                            : cerr.msg);
        else {
            if (msg)
                memcpy(msg + sizeof head, built.node, (size_t)nranks * sizeof(uint32_t));
            ckpt__nodes_free(&built);
        }
        if (msg)
            memcpy(msg, &head, sizeof head);
    } else if (grc && !rc) {
        rc = grc;
        *err = cerr;
    }
    /* A rank without its buffer still takes part, with rank 0's head only. */
    int bcrc = msg ? ckpt__comm_bcast(comm, f, msg, msg_bytes, 0, &cerr)
                   : ckpt__comm_bcast(comm, f, &head, sizeof head, 0, &cerr);
    if (!rc && bcrc) {
        rc = bcrc;
        *err = cerr;
    }
    if (!rc) {
        memcpy(&head, msg, sizeof head);
        head.text[sizeof head.text - 1] = 0;
        if (head.code)
            rc = ckpt__err_set(err, head.code < 0 ? head.code : CKPT_EIO,
                               "node layout: %s", head.text);
    }
    if (!rc) {
        out->nranks = nranks;
        out->node = malloc((size_t)nranks * sizeof *out->node);
        if (!out->node)
            rc = ckpt__err_set(err, CKPT_ENOMEM, "node layout: out of memory");
        else
            memcpy(out->node, msg + sizeof head, (size_t)nranks * sizeof *out->node);
        for (uint32_t r = 0; !rc && r < nranks; r++) {
            if (out->node[r] >= nranks)
                rc = ckpt__err_set(err, CKPT_ECOMM, "node layout: rank 0 sent node %u for "
                                   "rank %u of %u", out->node[r], r, nranks);
            else if (out->node[r] + 1 > out->nnodes)
                out->nnodes = out->node[r] + 1;
        }
        if (!rc)
            rc = index_nodes(out, err);
    }
    free(names);
    free(msg);
    if (rc)
        ckpt__nodes_free(out);
    return rc;
}

int ckpt__nodes_check_replicas(const ckpt__nodes *n, int replicas, ckpt__err *err)
{
    if (replicas < 0 || replicas > CKPT__REPLICAS_MAX)
        return ckpt__err_set(err, CKPT_EINVAL, "replicas is %d (0 to %d)", replicas,
                             CKPT__REPLICAS_MAX);
    if (replicas > 0 && n->nnodes <= (uint32_t)replicas)
        return ckpt__err_set(err, CKPT_EINVAL,
                             "replicas %d needs at least %d nodes; the world has %u (nodes "
                             "come from the node names: CKPT_NODE or the host name)",
                             replicas, replicas + 1, n->nnodes);
    return 0;
}

static uint32_t node_size(const ckpt__nodes *n, uint32_t m)
{
    return n->first[m + 1] - n->first[m];
}

uint32_t ckpt__nodes_partner(const ckpt__nodes *n, uint32_t rank, int k)
{
    uint32_t m = (n->node[rank] + (uint32_t)k) % n->nnodes;
    return n->byrank[n->first[m] + n->local[rank] % node_size(n, m)];
}

uint32_t ckpt__nodes_sources(const ckpt__nodes *n, uint32_t rank, int k, uint32_t *out)
{
    uint32_t m = n->node[rank], from = (m + n->nnodes - (uint32_t)k % n->nnodes) % n->nnodes;
    uint32_t size = node_size(n, m), count = 0;
    for (uint32_t at = n->first[from]; at < n->first[from + 1]; at++) {
        uint32_t r = n->byrank[at];
        if (n->local[r] % size == n->local[rank])
            out[count++] = r;
    }
    return count;
}
