/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ticket table and the unreported failures (tickets.h, which states
 * the invariants).  Every function runs with the context's mutex held.
 */
#include <stdlib.h>
#include <string.h>

#include "runtime/tickets.h"

#define MAX_TICKETS 4096

ckpt__ticketrec *ckpt__tickets_find(ckpt__tickets *t, uint64_t ticket, size_t *pos)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].ticket == ticket) {
            if (pos)
                *pos = i;
            return &t->v[i];
        }
    return NULL;
}

void ckpt__tickets_drop(ckpt__tickets *t, size_t i)
{
    free(t->v[i].msg);
    memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof *t->v);
    t->n--;
}

int ckpt__tickets_reserve(ckpt__tickets *t, ckpt__err *err)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        ckpt__ticketrec *v = realloc(t->v, cap * sizeof *v);
        if (!v)
            return ckpt__err_set(err, CKPT_ENOMEM, "ckpt_save: out of memory");
        t->v = v;
        t->cap = cap;
    }
    /* Bound the table: forget the oldest finished ticket nobody collected. */
    if (t->n >= MAX_TICKETS)
        for (size_t i = 0; i < t->n; i++)
            if (t->v[i].done) {
                ckpt__tickets_drop(t, i);
                break;
            }
    return 0;
}

uint64_t ckpt__tickets_issue(ckpt__tickets *t, int wanted)
{
    ckpt__ticketrec *r = &t->v[t->n++];
    memset(r, 0, sizeof *r);
    r->ticket = ++t->next;
    r->wanted = wanted;
    return r->ticket;
}

void ckpt__tickets_finish(ckpt__tickets *t, uint64_t ticket, int result, const char *msg)
{
    size_t i;
    /* A failure without a ticket was noted before its event (save.c). */
    ckpt__ticketrec *r = ckpt__tickets_find(t, ticket, &i);
    if (!r)
        return;
    if (!r->wanted) {
        ckpt__tickets_drop(t, i);
        return;
    }
    r->done = 1;
    r->result = result;
    r->msg = result ? strdup(msg) : NULL;
}

int ckpt__tickets_lookup(ckpt__tickets *t, uint64_t ticket, const char *fn,
                         ckpt__ticketrec **out, size_t *pos, ckpt__err *err)
{
    *out = ckpt__tickets_find(t, ticket, pos);
    if (*out)
        return 0;
    if (ticket == 0 || ticket > t->next)
        return ckpt__err_set(err, CKPT_EINVAL, "%s: ticket %llu was never issued", fn,
                             (unsigned long long)ticket);
    return ckpt__err_set(err, CKPT_ESTATE,
                         "%s: ticket %llu was already waited for (or not kept)", fn,
                         (unsigned long long)ticket);
}

void ckpt__tickets_note_unobserved(ckpt__tickets *t, const ckpt__err *e)
{
    ckpt__err_keep(&t->unobserved, e);
    t->nunobserved++;
}

int ckpt__tickets_report_unobserved(ckpt__tickets *t, ckpt__err *err)
{
    const ckpt__err *u = &t->unobserved;
    if (!u->code)
        return 0;
    if (t->nunobserved > 1)
        ckpt__err_set(err, CKPT_ESAVEFAILED,
                      "%u earlier saves without a ticket failed; the first (%s): %s",
                      t->nunobserved, ckpt_err_name(u->code), u->msg);
    else
        ckpt__err_set(err, CKPT_ESAVEFAILED, "an earlier save without a ticket failed (%s): %s",
                      ckpt_err_name(u->code), u->msg);
    ckpt__err_clear(&t->unobserved);
    t->nunobserved = 0;
    return CKPT_ESAVEFAILED;
}

void ckpt__tickets_unreported(const ckpt__tickets *t, ckpt__err *out)
{
    *out = t->unobserved;
    if (t->nunobserved > 1)
        ckpt__err_prefix(out, "%u saves without a ticket failed; the first", t->nunobserved);
}

void ckpt__tickets_free(ckpt__tickets *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].msg);
    free(t->v);
    memset(t, 0, sizeof *t);
}
