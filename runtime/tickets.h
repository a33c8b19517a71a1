/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ticket table of a context (tickets.c): what ckpt_poll and ckpt_wait
 * ask about a save, and the failures of saves without a ticket that no
 * call has reported yet.  The caller's thread issues and consumes tickets,
 * the coordinator finishes them; the context's mutex (ctx->mu) guards the
 * whole table, and every function here expects it held.
 *
 * Invariant: a ticket is in the table from ckpt_save until it is consumed
 * by ckpt_wait (wanted) or until its save ends (not wanted).  Tickets are
 * issued in increasing order, so a ticket at most `next` that is not in
 * the table was consumed already.
 *
 * Unreported failures: a save without a ticket that fails is noted in
 * `unobserved` (the first) and `nunobserved` by the coordinator before its
 * FAILED event; the next ckpt_save or ckpt_fence that succeeds hands it to
 * the caller and clears it, so ckpt_close returns only what no call
 * reported (ckpt.h conventions).
 */
#ifndef CKPT_RUNTIME_TICKETS_H
#define CKPT_RUNTIME_TICKETS_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct ckpt__ticketrec {
    uint64_t ticket;
    int done;
    int result;
    int wanted; /* the caller holds the ticket */
    char *msg;
} ckpt__ticketrec;

typedef struct ckpt__tickets {
    ckpt__ticketrec *v;
    size_t n, cap;
    uint64_t next;        /* the last ticket issued */
    ckpt__err unobserved; /* first unreported failure of a save without a ticket */
    uint32_t nunobserved; /* how many failed since the last report */
} ckpt__tickets;

/* Makes room for one more ticket (forgetting the oldest finished ticket
 * nobody collected when the table is full); CKPT_ENOMEM in err. */
int ckpt__tickets_reserve(ckpt__tickets *t, ckpt__err *err);
/* Issues the next ticket into the room reserve made. */
uint64_t ckpt__tickets_issue(ckpt__tickets *t, int wanted);
/* Records a finished save on its ticket (dropped at once when not wanted). */
void ckpt__tickets_finish(ckpt__tickets *t, uint64_t ticket, int result, const char *msg);
/* The record of ticket (and its position), or NULL. */
ckpt__ticketrec *ckpt__tickets_find(ckpt__tickets *t, uint64_t ticket, size_t *pos);
/* Same, or an error in err for a ticket never issued (CKPT_EINVAL) or
 * already consumed (CKPT_ESTATE); fn names the API call. */
int ckpt__tickets_lookup(ckpt__tickets *t, uint64_t ticket, const char *fn,
                         ckpt__ticketrec **out, size_t *pos, ckpt__err *err);
/* Consumes the record at pos. */
void ckpt__tickets_drop(ckpt__tickets *t, size_t pos);
/* Notes the failure of a save without a ticket. */
void ckpt__tickets_note_unobserved(ckpt__tickets *t, const ckpt__err *e);
/* Hands the unreported failures to the caller: once, as CKPT_ESAVEFAILED
 * with the failed save's step, code and message in err; 0 when none. */
int ckpt__tickets_report_unobserved(ckpt__tickets *t, ckpt__err *err);
/* What ckpt_close returns: the unreported failures, as they are (no code
 * when none). */
void ckpt__tickets_unreported(const ckpt__tickets *t, ckpt__err *out);
void ckpt__tickets_free(ckpt__tickets *t);

#endif
