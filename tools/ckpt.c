/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `ckpt` command-line tool: list, verify, inspect and gc over one
 * checkpoint folder (docs/FORMAT.md).  It owns the argument syntax, the
 * human tables and the JSON documents; everything that touches checkpoint
 * bytes goes through the runtime's internal layer (catalog, manifest
 * reader, verifier, retention), so the tool judges a checkpoint exactly as
 * restore does.
 *
 * Invariants it keeps:
 *   1. Exit status: 0 success, 1 only when verify proves a checkpoint
 *      corrupt (CKPT_ECORRUPT), 2 for usage errors and every other failure.
 *   2. With --json, stdout carries exactly one JSON document and nothing
 *      else; messages and progress go to stderr.
 *   3. gc deletes a checkpoint only while a newer one is verified: every
 *      chunk hashed, and (format 1.1) every rank file's bytes outside
 *      tensor data hashed.  It verifies from the newest down until one
 *      verifies, protects that one and applies the rules only to older
 *      steps; a newer step that did not verify is kept, and with none
 *      verified nothing is deleted.  It never touches a partial or trash
 *      folder unless --partial asks for it (a running job may own it).
 *      When it cannot tell whether a checkpoint is sound (an I/O or
 *      permission error rather than damage) it deletes nothing.  Its help
 *      and output never call a checkpoint valid that it did not verify.
 *   4. No mutable state outside main's locals: the parsed options live in
 *      main and are passed down by pointer.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/h5util.h"
#include "io/manifest.h"
#include "io/paths.h"
#include "runtime/internal.h"
#include "tools/folder.h"
#include "tools/interop.h"
#include "tools/table.h"

enum { EXIT_VALID = 0, EXIT_CORRUPT = 1, EXIT_ERROR = 2 };

/* ---- options ---------------------------------------------------------------------- */

enum { C_LIST = 1, C_VERIFY = 2, C_INSPECT = 4, C_GC = 8, C_ANY = 15 };

enum {
    O_JSON,
    O_HELP,
    O_STEP,
    O_ALL,
    O_KEEP_LAST,
    O_KEEP_EVERY,
    O_MAX_AGE,
    O_DRY_RUN,
    O_PARTIAL,
    O_VERIFY
};

typedef struct optdef {
    const char *name;
    int id;
    int has_arg;
    unsigned cmds;
} optdef;

static const optdef optdefs[] = {
    {"--json", O_JSON, 0, C_ANY},
    {"--help", O_HELP, 0, C_ANY},
    {"-h", O_HELP, 0, C_ANY},
    {"--step", O_STEP, 1, C_VERIFY | C_INSPECT},
    {"--all", O_ALL, 0, C_VERIFY},
    {"--keep-last", O_KEEP_LAST, 1, C_GC},
    {"--keep-every", O_KEEP_EVERY, 1, C_GC},
    {"--max-age-hours", O_MAX_AGE, 1, C_GC},
    {"--dry-run", O_DRY_RUN, 0, C_GC},
    {"--partial", O_PARTIAL, 0, C_GC},
    {"--verify", O_VERIFY, 0, C_LIST},
};

typedef struct opts {
    unsigned cmd;
    const char *cmd_name;
    const char *dir;
    int json, help, all, dry_run, partial, verify;
    int64_t step; /* -1: the newest */
    int keep_last, keep_every;
    double max_age_hours;
} opts;

static const char usage_main[] =
    "usage: ckpt <command> [options] DIR\n"
    "\n"
    "Commands:\n"
    "  list      committed checkpoints, newest first, each with what was checked\n"
    "  verify    hash every byte of a checkpoint against its manifest\n"
    "  inspect   a checkpoint's header and its table of tensors\n"
    "  gc        delete checkpoints that retention rules no longer keep, only\n"
    "            while a newer one verifies\n"
    "  export    a checkpoint as one safetensors or npz file, tensors whole\n"
    "  import    safetensors files as a committed checkpoint\n"
    "\n"
    "Every command takes --json (one JSON document on stdout) and --help.\n"
    "Run 'ckpt <command> --help' for its options; 'ckpt --version' for the version.\n"
    "\n"
    "Exit status: 0 success, 1 verify found corruption, 2 usage or runtime error.\n";

static const char usage_list[] =
    "usage: ckpt list [--verify] [--json] DIR\n"
    "\n"
    "Lists the committed checkpoints of DIR newest first: step, creation time,\n"
    "data size, ranks, tensors and status.  The status says what was checked:\n"
    "  manifest ok  the manifest verifies, every rank file has its recorded\n"
    "               size and its HDF5 metadata (every byte outside tensor\n"
    "               data) its recorded hash; tensor data was not read\n"
    "  verified     (--verify) all of that, and every chunk of tensor data\n"
    "               hashed: what 'ckpt verify' checks\n"
    "  bad: <why>   damaged; error: <why> when the check could not run\n"
    "A checkpoint of format 1.0 has no metadata hash: its status adds\n"
    "\"(format 1.0: metadata not hashed)\".  Folders of saves in progress (or\n"
    "abandoned) show as \"partial\", deletions under way as \"trash\".\n"
    "\n"
    "  --verify   verify every checkpoint fully (reads all of its data)\n"
    "\n"
    "Exit status: 0 when the folder was listed, whatever the rows say; 2 on\n"
    "usage or I/O errors.  'ckpt verify --all' exits 1 for corruption.\n";

static const char usage_verify[] =
    "usage: ckpt verify [--step S | --all] [--json] DIR\n"
    "\n"
    "Verifies the newest checkpoint (or step S, or every checkpoint with --all)\n"
    "against its manifest: the manifest's own checksums, then for each rank\n"
    "file its size, the hash of its HDF5 metadata (every byte outside tensor\n"
    "data, checked before HDF5 reads the file), its HDF5 structure, and every\n"
    "chunk of tensor data read and hashed.  Prints every damaged chunk as\n"
    "\"tensor '<name>' chunk <i>\", the bytes verified and the throughput.  A\n"
    "checkpoint of format 1.0 has no metadata hash; its structure is checked\n"
    "and the output says so.  Shows progress on a terminal for checkpoints\n"
    "over 256 MiB.\n"
    "\n"
    "Exit status: 0 verified, 1 corrupt (any damage, or a file of the checkpoint\n"
    "missing or not a regular file), 2 usage or I/O error (no such folder, no\n"
    "checkpoint, unknown step, unreadable file).\n";

static const char usage_inspect[] =
    "usage: ckpt inspect [--step S] [--json] DIR\n"
    "\n"
    "Prints the newest checkpoint's (or step S's) header: step, uuid, creation\n"
    "time, world size, chunk size, total bytes; then one row per entry: name,\n"
    "kind (tensor or meta), dtype, global shape, size, rank and chunk count.\n";

static const char usage_gc[] =
    "usage: ckpt gc [--keep-last N] [--keep-every K] [--max-age-hours H]\n"
    "               [--partial] [--dry-run] [--json] DIR\n"
    "\n"
    "Deletes committed checkpoints the rules no longer keep:\n"
    "  --keep-last N       keep the newest N (N >= 1)\n"
    "  --keep-every K      also keep every step that is a multiple of K\n"
    "  --max-age-hours H   delete checkpoints older than H hours (H > 0, a plain\n"
    "                      decimal number such as 8 or 0.5; age is the folder's\n"
    "                      modification time)\n"
    "  --partial           also remove partial and trash folders left by saves\n"
    "                      and deletions; only when no job is writing to DIR\n"
    "  --dry-run           print what would be deleted, delete nothing\n"
    "\n"
    "A checkpoint is deleted only while a newer one is verified: gc first\n"
    "verifies checkpoints from the newest down, as 'ckpt verify' does (every\n"
    "chunk and the rank files' HDF5 metadata hashed; it reads all of their\n"
    "data), until one verifies.  That one is protected, and the rules apply only\n"
    "to older steps: a newer checkpoint that did not verify is kept, and when\n"
    "none verifies nothing is deleted.  When a checkpoint cannot be checked for\n"
    "another reason than damage (permissions, I/O), gc deletes nothing.\n";

static void usage_error(const opts *o, const char *fmt, ...) CKPT__PRINTF(2, 3);

static void usage_error(const opts *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    iop_vusage(o && o->cmd_name ? o->cmd_name : NULL, fmt, ap);
    va_end(ap);
    if (!o || !o->cmd_name)
        fputs(usage_main, stderr);
}

/* Parses a decimal integer in [lo, hi]; 0 on success. */
static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Parses a plain decimal number (digits, at most one '.', at least one
 * digit; no sign, exponent, hex float, inf or nan, which strtod would all
 * take) greater than 0. */
static int parse_hours(const char *s, double *out)
{
    int digits = 0, dots = 0;
    for (const char *p = s; *p; p++) {
        if (*p >= '0' && *p <= '9')
            digits++;
        else if (*p == '.' && !dots)
            dots++;
        else
            return -1;
    }
    if (!digits)
        return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v <= 0)
        return -1;
    *out = v;
    return 0;
}

static int set_int(const opts *o, const char *name, const char *val, int64_t lo, int64_t hi,
                   int64_t *out)
{
    if (parse_i64(val, lo, hi, out) == 0)
        return 0;
    usage_error(o, "%s: '%s' is not a whole number in %lld..%lld", name, val, (long long)lo,
                (long long)hi);
    return -1;
}

static int apply_opt(opts *o, const optdef *d, const char *val)
{
    int64_t v;
    switch (d->id) {
    case O_JSON:
        o->json = 1;
        return 0;
    case O_HELP:
        o->help = 1;
        return 0;
    case O_ALL:
        o->all = 1;
        return 0;
    case O_DRY_RUN:
        o->dry_run = 1;
        return 0;
    case O_PARTIAL:
        o->partial = 1;
        return 0;
    case O_VERIFY:
        o->verify = 1;
        return 0;
    case O_STEP:
        if (set_int(o, d->name, val, 0, CKPT__STEP_MAX, &v))
            return -1;
        o->step = v;
        return 0;
    case O_KEEP_LAST:
    case O_KEEP_EVERY:
        if (set_int(o, d->name, val, 1, INT_MAX, &v))
            return -1;
        *(d->id == O_KEEP_LAST ? &o->keep_last : &o->keep_every) = (int)v;
        return 0;
    case O_MAX_AGE:
        if (parse_hours(val, &o->max_age_hours) == 0)
            return 0;
        usage_error(o, "%s: '%s' is not a positive decimal number of hours", d->name, val);
        return -1;
    default:
        return -1;
    }
}

/* Parses the arguments after the command name; 0, or -1 after a message. */
static int parse_args(int argc, char **argv, opts *o)
{
    int only_positional = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_positional || a[0] != '-' || a[1] == '\0') {
            if (o->dir) {
                usage_error(o, "unexpected argument '%s' (DIR is already '%s')", a, o->dir);
                return -1;
            }
            o->dir = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_positional = 1;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const optdef *d = NULL;
        for (size_t k = 0; k < sizeof optdefs / sizeof optdefs[0]; k++)
            if (strlen(optdefs[k].name) == len && strncmp(optdefs[k].name, a, len) == 0)
                d = &optdefs[k];
        if (!d || !(d->cmds & o->cmd)) {
            usage_error(o, "%s: unknown option '%.*s'", o->cmd_name, (int)len, a);
            return -1;
        }
        const char *val = NULL;
        if (d->has_arg && eq)
            val = eq + 1;
        else if (d->has_arg && i + 1 < argc)
            val = argv[++i];
        else if (d->has_arg) {
            usage_error(o, "%s needs a value", d->name);
            return -1;
        } else if (eq) {
            usage_error(o, "%s takes no value", d->name);
            return -1;
        }
        if (apply_opt(o, d, val))
            return -1;
    }
    if (o->help)
        return 0;
    if (!o->dir) {
        usage_error(o, "%s: missing DIR", o->cmd_name);
        return -1;
    }
    if (o->all && o->step >= 0) {
        usage_error(o, "verify: --step and --all exclude each other");
        return -1;
    }
    if (o->cmd == C_GC && !o->keep_last && o->max_age_hours <= 0 && !o->partial) {
        usage_error(o, "gc: nothing to do: give --keep-last, --max-age-hours or --partial");
        return -1;
    }
    return 0;
}

/* ---- small helpers ---------------------------------------------------------------------- */

/* The tail of msg after "sdir/", so a row reads "manifest.h5 is missing". */
static const char *relative(const char *msg, const char *sdir)
{
    size_t n = strlen(sdir);
    return strncmp(msg, sdir, n) == 0 && msg[n] == '/' ? msg + n + 1 : msg;
}

static int out_of_memory(void)
{
    fputs("ckpt: out of memory\n", stderr);
    return EXIT_ERROR;
}

/* ---- commands' shared steps ---------------------------------------------------------- */

/* Committed steps of o->dir, or a message and EXIT_ERROR. */
static int scan(const opts *o, int64_t **steps, size_t *n)
{
    ckpt__err err;
    ckpt__err_clear(&err);
    if (ckpt__catalog_scan(o->dir, steps, n, &err) != 0) {
        fprintf(stderr, "ckpt %s: %s\n", o->cmd_name, err.msg);
        return EXIT_ERROR;
    }
    return 0;
}

/* The step a command works on: --step S if committed, else the newest. */
static int pick_step(const opts *o, const int64_t *steps, size_t n, int64_t *step)
{
    if (n == 0) {
        fprintf(stderr, "ckpt %s: no checkpoints in %s\n", o->cmd_name, o->dir);
        return EXIT_ERROR;
    }
    if (o->step < 0) {
        *step = steps[0];
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (steps[i] == o->step) {
            *step = o->step;
            return 0;
        }
    fprintf(stderr, "ckpt %s: no committed checkpoint for step %lld in %s\n", o->cmd_name,
            (long long)o->step, o->dir);
    return EXIT_ERROR;
}

/* ---- list --------------------------------------------------------------------------- */

typedef struct row {
    int64_t step;
    const leftover *left; /* a partial or trash folder, else NULL */
    int rc;               /* committed: 0 when its check passed, else the code */
    int verified;         /* the check was the full one (--verify) */
    int hashed;           /* the rank files' metadata hash was checked (not 1.0) */
    int64_t created_unix;
    uint64_t bytes;
    uint32_t world_size, ntensors;
    char uuid[CKPT__UUID_HEX];
    char why[CKPT__ERR_MSG]; /* why a committed folder failed its check */
} row;

static int cmp_row(const void *a, const void *b)
{
    const row *x = a, *y = b;
    if (x->step != y->step)
        return x->step < y->step ? 1 : -1;
    return (x->left != NULL) - (y->left != NULL);
}

/* Fills a committed folder's row by the cheap check, or with verify by the
 * full one; the index is dropped at once, so a folder of many large
 * checkpoints is listed in constant memory. */
static void check_row(const char *dir, int verify, ckpt__log *log, row *r)
{
    ckpt__index idx;
    ckpt__err err;
    ckpt__err_clear(&err);
    vresult v;
    r->verified = verify;
    if (verify) {
        verify_one(dir, r->step, log, &v);
        r->rc = v.rc;
        err = v.err;
        r->hashed = v.rep.nunhashed == 0;
        idx = v.rep.idx;
    } else {
        r->rc = quick_check(dir, r->step, &idx, &r->hashed, &err);
    }
    if (r->rc) {
        char sdir[CKPT__PATH_MAX];
        const char *why = err.msg;
        if (ckpt__path_step(sdir, dir, r->step, NULL, NULL) == 0)
            why = relative(err.msg, sdir);
        snprintf(r->why, sizeof r->why, "%s", why);
    } else {
        r->created_unix = idx.created_unix;
        r->world_size = idx.world_size;
        totals(&idx, &r->bytes, &r->ntensors);
        ckpt__uuid_hex(idx.uuid, r->uuid);
    }
    if (verify)
        ckpt__verify_report_free(&v.rep);
    else if (!r->rc)
        ckpt__index_free(&idx);
}

/* "manifest ok", "verified", "bad: <why>" or "error: <why>". */
static const char *row_status(const row *r)
{
    if (r->rc == 0)
        return r->verified ? "verified" : "manifest ok";
    return r->rc == CKPT_ECORRUPT ? "bad" : "error";
}

static void list_json(FILE *f, const opts *o, const row *rows, size_t n)
{
    fputs("{\"dir\":", f);
    json_str(f, o->dir);
    fputs(",\"checkpoints\":[", f);
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        if (r->left)
            continue;
        fprintf(f, "%s{\"step\":%lld", first ? "" : ",", (long long)r->step);
        first = 0;
        if (r->rc == 0)
            fprintf(f, ",\"created_unix\":%lld,\"bytes\":%llu,\"world_size\":%u,\"tensors\":%u,"
                       "\"uuid\":\"%s\",\"status\":\"ok\"",
                    (long long)r->created_unix, (unsigned long long)r->bytes, r->world_size,
                    r->ntensors, r->uuid);
        else
            fprintf(f, ",\"status\":\"%s\"", row_status(r));
        fprintf(f, ",\"checked\":\"%s\"", r->verified ? "verified" : "manifest");
        if (r->rc == 0)
            fprintf(f, ",\"metadata_hashed\":%s}", r->hashed ? "true" : "false");
        else {
            fputs(",\"error\":", f);
            json_str(f, r->why);
            fputc('}', f);
        }
    }
    fputs("],\"partial\":[", f);
    first = 1;
    for (size_t i = 0; i < n; i++) {
        if (!rows[i].left)
            continue;
        fprintf(f, "%s{\"step\":%lld,\"name\":\"%s\",\"status\":\"%s\"}", first ? "" : ",",
                (long long)rows[i].step, rows[i].left->name,
                rows[i].left->trash ? "trash" : "partial");
        first = 0;
    }
    fputs("]}\n", f);
}

static int list_table(FILE *f, const row *rows, size_t n)
{
    static const char *const head[] = {"STEP", "CREATED", "SIZE", "RANKS", "TENSORS", "STATUS"};
    table t = {6, head, "rlrrrl", NULL, 0, 0};
    int bad = 0;
    for (size_t i = 0; i < n && !bad; i++) {
        const row *r = &rows[i];
        bad |= cell(&t, "%lld", (long long)r->step);
        if (!r->left && r->rc == 0) {
            char when[32], size[32];
            local_time(r->created_unix, when);
            human(r->bytes, size);
            bad |= cell(&t, "%s", when) | cell(&t, "%s", size) | cell(&t, "%u", r->world_size) |
                   cell(&t, "%u", r->ntensors) |
                   cell(&t, "%s%s", row_status(r),
                        r->hashed ? "" : " (format 1.0: metadata not hashed)");
            continue;
        }
        bad |= cell(&t, "-") | cell(&t, "-") | cell(&t, "-") | cell(&t, "-");
        if (!r->left)
            bad |= cell(&t, "%s: %s", row_status(r), r->why);
        else if (r->left->trash)
            bad |= cell(&t, "trash (a deletion in progress or interrupted)");
        else
            bad |= cell(&t, "partial (a save in progress or abandoned)");
    }
    if (!bad)
        table_print(f, &t);
    table_free(&t);
    return bad ? out_of_memory() : 0;
}

static int cmd_list(const opts *o, ckpt__log *log)
{
    int64_t *steps;
    size_t nsteps, nleft;
    leftover *left;
    ckpt__err err;
    ckpt__err_clear(&err);
    int rc = scan(o, &steps, &nsteps);
    if (rc)
        return rc;
    if (scan_leftovers(o->dir, &left, &nleft, &err) != 0) {
        fprintf(stderr, "ckpt list: %s\n", err.msg);
        free(steps);
        return EXIT_ERROR;
    }
    size_t n = nsteps + nleft;
    row *rows = calloc(n ? n : 1, sizeof *rows);
    if (!rows) {
        free(steps);
        free(left);
        return out_of_memory();
    }
    for (size_t i = 0; i < nsteps; i++) {
        rows[i].step = steps[i];
        check_row(o->dir, o->verify, log, &rows[i]);
    }
    for (size_t i = 0; i < nleft; i++) {
        rows[nsteps + i].step = left[i].step;
        rows[nsteps + i].left = &left[i];
    }
    qsort(rows, n, sizeof *rows, cmp_row);
    if (o->json)
        list_json(stdout, o, rows, n);
    else if (n == 0)
        printf("no checkpoints in %s\n", o->dir);
    else
        rc = list_table(stdout, rows, n);
    free(rows);
    free(left);
    free(steps);
    return rc;
}

/* ---- verify ------------------------------------------------------------------------- */

static const ckpt__entry *bad_entry(const vresult *v, uint32_t i)
{
    return &v->rep.idx.entries[v->rep.bads[i].entry];
}

/* Bytes of the chunks that failed: the report's byte count includes them. */
static uint64_t bad_bytes(const vresult *v)
{
    uint64_t n = 0, chunk = v->rep.idx.chunk_bytes;
    for (uint32_t i = 0; i < v->rep.nbads; i++) {
        const ckpt__entry *e = bad_entry(v, i);
        uint64_t off = (uint64_t)v->rep.bads[i].chunk * chunk;
        n += e->nbytes - off < chunk ? e->nbytes - off : chunk;
    }
    return n;
}

static void verify_json(FILE *f, const vresult *v)
{
    fprintf(f, "{\"step\":%lld,\"valid\":%s,\"bytes\":%llu,\"bad_bytes\":%llu,"
               "\"seconds\":%.6f,\"metadata_hashed\":%s,\"error\":",
            (long long)v->step, v->rc ? "false" : "true", (unsigned long long)v->rep.bytes,
            (unsigned long long)bad_bytes(v), v->seconds,
            v->rep.nunhashed == 0 ? "true" : "false");
    if (v->rc)
        json_str(f, v->err.msg);
    else
        fputs("null", f);
    fputs(",\"bad_chunks\":[", f);
    for (uint32_t i = 0; i < v->rep.nbads; i++) {
        const ckpt__entry *e = bad_entry(v, i);
        fputs(i ? ",{\"tensor\":" : "{\"tensor\":", f);
        json_str(f, e->name);
        fprintf(f, ",\"kind\":\"%s\",\"rank\":%d,\"chunk\":%u}",
                e->kind == CKPT__ENTRY_META ? "meta" : "tensor", e->rank,
                v->rep.bads[i].chunk);
    }
    fputs("]}", f);
}

static void verify_text(FILE *f, const vresult *v)
{
    char size[32], rate[32];
    human(v->rep.bytes, size);
    double s = v->seconds > 1e-9 ? v->seconds : 1e-9;
    human((uint64_t)((double)v->rep.bytes / s), rate);
    if (v->rc == 0) {
        fprintf(f, "step %lld: ok: verified %s (%llu bytes) in %.3f s (%s/s): %s\n",
                (long long)v->step, size, (unsigned long long)v->rep.bytes, v->seconds, rate,
                v->rep.nunhashed == 0
                    ? "every chunk and the rank files' HDF5 metadata hashed"
                    : "every chunk hashed; format 1.0: the HDF5 metadata has no hash, its "
                      "structure was checked");
        return;
    }
    fprintf(f, "step %lld: %s\n", (long long)v->step,
            v->rc == CKPT_ECORRUPT ? "CORRUPT" : "ERROR");
    for (uint32_t i = 0; i < v->rep.nbads; i++) {
        const ckpt__entry *e = bad_entry(v, i);
        fprintf(f, "  %s '%s' chunk %u", e->kind == CKPT__ENTRY_META ? "metadata" : "tensor",
                e->name, v->rep.bads[i].chunk);
        if (v->rep.idx.nranks > 1)
            fprintf(f, " (rank %d)", e->rank);
        fputc('\n', f);
    }
    fprintf(f, "  error: %s\n", v->err.msg);
    char bad[32];
    human(bad_bytes(v), bad);
    fprintf(f, "  checked %s (%llu bytes) in %.3f s (%s/s); %s in bad chunks\n", size,
            (unsigned long long)v->rep.bytes, v->seconds, rate, bad);
}

static int exit_of(int rc)
{
    return rc == 0 ? EXIT_VALID : rc == CKPT_ECORRUPT ? EXIT_CORRUPT : EXIT_ERROR;
}

static int cmd_verify(const opts *o, ckpt__log *log)
{
    int64_t *steps, one;
    size_t n;
    int rc = scan(o, &steps, &n);
    if (rc)
        return rc;
    if (!o->all || n == 0)
        rc = pick_step(o, steps, n, &one);
    if (rc) {
        free(steps);
        return rc;
    }
    const int64_t *todo = o->all ? steps : &one;
    size_t ntodo = o->all ? n : 1;
    int worst = EXIT_VALID;
    if (o->json && o->all)
        fputs("{\"checkpoints\":[", stdout);
    for (size_t i = 0; i < ntodo; i++) {
        vresult v;
        verify_one(o->dir, todo[i], log, &v);
        int code = exit_of(v.rc);
        worst = code > worst ? code : worst;
        if (o->json) {
            if (i)
                fputc(',', stdout);
            verify_json(stdout, &v);
        } else {
            verify_text(stdout, &v);
        }
        if (code == EXIT_ERROR)
            fprintf(stderr, "ckpt verify: step %lld: %s\n", (long long)v.step, v.err.msg);
        ckpt__verify_report_free(&v.rep);
    }
    if (o->json && o->all)
        printf("],\"valid\":%s}\n", worst == EXIT_VALID ? "true" : "false");
    else if (o->json)
        fputc('\n', stdout);
    free(steps);
    return worst;
}

/* ---- inspect ------------------------------------------------------------------------ */

static void inspect_json(FILE *f, const ckpt__index *idx)
{
    char uuid[CKPT__UUID_HEX], shape[CKPT_MAX_NDIM * 24 + 4];
    uint64_t bytes;
    uint32_t nt;
    totals(idx, &bytes, &nt);
    ckpt__uuid_hex(idx->uuid, uuid);
    fprintf(f, "{\"step\":%lld,\"uuid\":\"%s\",\"created_unix\":%lld,\"world_size\":%u,"
               "\"chunk_bytes\":%llu,\"bytes\":%llu,\"entries\":[",
            (long long)idx->step, uuid, (long long)idx->created_unix, idx->world_size,
            (unsigned long long)idx->chunk_bytes, (unsigned long long)bytes);
    for (uint32_t i = 0; i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        const char *dt = ckpt_dtype_name(e->dtype);
        shape_text(e->ndim, e->shape, shape, sizeof shape);
        fputs(i ? ",{\"name\":" : "{\"name\":", f);
        json_str(f, e->name);
        fprintf(f, ",\"kind\":\"%s\",\"dtype\":\"%s\",\"shape\":%s,\"bytes\":%llu,\"rank\":%d,"
                   "\"chunks\":%u}",
                e->kind == CKPT__ENTRY_META ? "meta" : "tensor", dt ? dt : "?", shape,
                (unsigned long long)e->nbytes, e->rank, e->nchunks);
    }
    fputs("]}\n", f);
}

static int inspect_text(FILE *f, const ckpt__index *idx)
{
    char uuid[CKPT__UUID_HEX], when[32], chunk[32], size[32];
    uint64_t bytes;
    uint32_t nt;
    totals(idx, &bytes, &nt);
    ckpt__uuid_hex(idx->uuid, uuid);
    local_time(idx->created_unix, when);
    human(idx->chunk_bytes, chunk);
    human(bytes, size);
    fprintf(f, "step        %lld\n", (long long)idx->step);
    fprintf(f, "uuid        %s\n", uuid);
    fprintf(f, "created     %s (unix %lld)\n", when, (long long)idx->created_unix);
    fprintf(f, "world size  %u\n", idx->world_size);
    fprintf(f, "chunk size  %s (%llu bytes)\n", chunk, (unsigned long long)idx->chunk_bytes);
    fprintf(f, "total       %s (%llu bytes) in %u tensors and %u metadata entries\n\n", size,
            (unsigned long long)bytes, nt, idx->nentries - nt);

    static const char *const head[] = {"NAME", "KIND", "DTYPE", "SHAPE", "SIZE", "RANK",
                                       "CHUNKS"};
    table t = {7, head, "lllrrrr", NULL, 0, 0};
    int bad = 0;
    for (uint32_t i = 0; i < idx->nentries && !bad; i++) {
        const ckpt__entry *e = &idx->entries[i];
        const char *dt = ckpt_dtype_name(e->dtype);
        char shape[CKPT_MAX_NDIM * 24 + 4];
        shape_text(e->ndim, e->shape, shape, sizeof shape);
        human(e->nbytes, size);
        bad |= cell(&t, "%s", e->name) |
               cell(&t, "%s", e->kind == CKPT__ENTRY_META ? "meta" : "tensor") |
               cell(&t, "%s", dt ? dt : "?") | cell(&t, "%s", shape) | cell(&t, "%s", size) |
               cell(&t, "%d", e->rank) | cell(&t, "%u", e->nchunks);
    }
    if (!bad)
        table_print(f, &t);
    table_free(&t);
    return bad ? out_of_memory() : 0;
}

static int cmd_inspect(const opts *o)
{
    int64_t *steps, step;
    size_t n;
    int rc = scan(o, &steps, &n);
    if (rc)
        return rc;
    rc = pick_step(o, steps, n, &step);
    free(steps);
    if (rc)
        return rc;
    char path[CKPT__PATH_MAX];
    ckpt__index idx;
    ckpt__err err;
    ckpt__err_clear(&err);
    if (ckpt__path_step(path, o->dir, step, CKPT__MANIFEST_NAME, &err) != 0 ||
        ckpt__manifest_read(path, &idx, &err) != 0) {
        fprintf(stderr, "ckpt inspect: step %lld: %s\n", (long long)step, err.msg);
        return EXIT_ERROR;
    }
    if (o->json)
        inspect_json(stdout, &idx);
    else
        rc = inspect_text(stdout, &idx);
    ckpt__index_free(&idx);
    return rc;
}

/* ---- gc ----------------------------------------------------------------------------- */

/* A step newer than the protected one that did not verify (kept, Inv. 3). */
typedef struct unverified {
    int64_t step;
    char why[CKPT__ERR_MSG];
} unverified;

typedef struct gc_result {
    int checked;     /* rules were given, so checkpoints were verified */
    int64_t protect; /* the newest verified step, or -1 */
    int hashed;      /* its rank files' metadata hash was checked (not 1.0) */
    unverified *bad; /* newer steps that did not verify, newest first */
    size_t nbad;
    int64_t *deleted, *kept; /* views into one allocation */
    size_t ndeleted, nkept;
    leftover *left;
    size_t nleft, nremoved; /* left[0..nremoved) are gone (or would go) */
} gc_result;

/*
 * Verifies from the newest step down until one verifies fully (verify_one,
 * what `ckpt verify` checks) and protects it; g->protect stays -1 when none
 * does.  Damage (CKPT_ECORRUPT) is noted and the next older one tried; any
 * other error (permissions, I/O) means soundness is unknown, and gc must
 * stop (Inv. 3).
 */
static int find_protected(const opts *o, ckpt__log *log, const int64_t *steps, size_t n,
                          gc_result *g)
{
    g->protect = -1;
    for (size_t i = 0; i < n; i++) {
        vresult v;
        verify_one(o->dir, steps[i], log, &v);
        int rc = v.rc;
        if (rc == 0) {
            g->protect = steps[i];
            g->hashed = v.rep.nunhashed == 0;
        } else if (rc == CKPT_ECORRUPT) {
            unverified *u = &g->bad[g->nbad++];
            char sdir[CKPT__PATH_MAX];
            u->step = steps[i];
            snprintf(u->why, sizeof u->why, "%s",
                     ckpt__path_step(sdir, o->dir, steps[i], NULL, NULL) == 0
                         ? relative(v.err.msg, sdir)
                         : v.err.msg);
        } else {
            fprintf(stderr, "ckpt gc: cannot tell whether step %lld is sound: %s; deleting "
                            "nothing\n",
                    (long long)steps[i], v.err.msg);
        }
        ckpt__verify_report_free(&v.rep);
        if (rc != CKPT_ECORRUPT)
            return rc ? EXIT_ERROR : 0;
    }
    return 0;
}

static int contains(const int64_t *v, size_t n, int64_t x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return 1;
    return 0;
}

static void print_steps(FILE *f, const int64_t *v, size_t n)
{
    fputc('[', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%lld", i ? "," : "", (long long)v[i]);
    fputc(']', f);
}

static const char what_verified[] = "every chunk and the rank files' HDF5 metadata hashed";
static const char what_verified_10[] =
    "every chunk hashed; format 1.0: HDF5 metadata has no hash, its structure was checked";

static void gc_report(const opts *o, const gc_result *g)
{
    FILE *f = stdout;
    if (o->json) {
        fprintf(f, "{\"dry_run\":%s,\"protected\":", o->dry_run ? "true" : "false");
        if (g->protect >= 0)
            fprintf(f, "%lld", (long long)g->protect);
        else
            fputs("null", f);
        fputs(",\"deleted\":", f);
        print_steps(f, g->deleted, g->ndeleted);
        fputs(",\"kept\":", f);
        print_steps(f, g->kept, g->nkept);
        fputs(",\"partial\":[", f);
        for (size_t i = 0; i < g->nremoved; i++)
            fprintf(f, "%s\"%s\"", i ? "," : "", g->left[i].name);
        fputs("],\"protected_checked\":", f);
        if (g->protect >= 0)
            json_str(f, g->hashed ? what_verified : what_verified_10);
        else
            fputs("null", f);
        fputs(",\"not_verified\":[", f);
        for (size_t i = 0; i < g->nbad; i++) {
            fprintf(f, "%s{\"step\":%lld,\"error\":", i ? "," : "", (long long)g->bad[i].step);
            json_str(f, g->bad[i].why);
            fputc('}', f);
        }
        fputs("]}\n", f);
        return;
    }
    const char *verb = o->dry_run ? "would delete" : "deleted";
    for (size_t i = 0; i < g->ndeleted; i++)
        fprintf(f, "%s step %lld\n", verb, (long long)g->deleted[i]);
    for (size_t i = 0; i < g->nremoved; i++)
        fprintf(f, "%s %s folder %s\n", verb, g->left[i].trash ? "trash" : "partial",
                g->left[i].name);
    fprintf(f, "kept %zu checkpoint%s", g->nkept, g->nkept == 1 ? "" : "s");
    for (size_t i = 0; i < g->nkept; i++)
        fprintf(f, "%s%lld", i ? ", " : ": ", (long long)g->kept[i]);
    fputc('\n', f);
    if (!g->checked)
        return;
    if (g->protect >= 0)
        fprintf(f, "protected: step %lld, the newest checkpoint verified (%s)\n",
                (long long)g->protect, g->hashed ? what_verified : what_verified_10);
    else
        fputs("no checkpoint verified: nothing deleted (a checkpoint is deleted only while a "
              "newer one verifies)\n",
              f);
    for (size_t i = 0; i < g->nbad; i++)
        fprintf(f, "not verified, kept: step %lld: %s\n", (long long)g->bad[i].step,
                g->bad[i].why);
}

/* Applies the retention rules below g->protect (or plans them with
 * --dry-run). */
static int gc_steps(const opts *o, ckpt__log *log, const int64_t *steps, size_t n,
                    gc_result *g)
{
    int rc = 0;
    ckpt__retention rules = {o->keep_last, o->keep_every, o->max_age_hours};
    if (!g->checked || g->protect < 0) {
        for (size_t i = 0; i < n; i++)
            g->kept[g->nkept++] = steps[i];
        return 0;
    }
    if (o->dry_run) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        for (size_t i = 0; i < n; i++) {
            if (ckpt__retention_drops(o->dir, &rules, steps, i, g->protect, &now))
                g->deleted[g->ndeleted++] = steps[i];
            else
                g->kept[g->nkept++] = steps[i];
        }
        return 0;
    }
    ckpt__err err;
    ckpt__err_clear(&err);
    int ndel = 0;
    if (ckpt__retention_apply(o->dir, &rules, g->protect, log, &ndel, &err) != 0) {
        fprintf(stderr, "ckpt gc: retention in %s: %s\n", o->dir, err.msg);
        rc = EXIT_ERROR;
    }
    /* What went is what the folder no longer holds (a job may add steps). */
    int64_t *after;
    size_t nafter;
    if (scan(o, &after, &nafter) != 0)
        return EXIT_ERROR;
    for (size_t i = 0; i < n; i++)
        if (!contains(after, nafter, steps[i]))
            g->deleted[g->ndeleted++] = steps[i];
    for (size_t i = 0; i < nafter && g->nkept < n; i++)
        if (contains(steps, n, after[i]))
            g->kept[g->nkept++] = after[i];
    free(after);
    return rc;
}

static int gc_partial(const opts *o, gc_result *g)
{
    ckpt__err err;
    ckpt__err_clear(&err);
    if (scan_leftovers(o->dir, &g->left, &g->nleft, &err) != 0) {
        fprintf(stderr, "ckpt gc: %s\n", err.msg);
        return EXIT_ERROR;
    }
    if (o->dry_run) {
        g->nremoved = g->nleft;
        return 0;
    }
    for (; g->nremoved < g->nleft; g->nremoved++) {
        if (ckpt__remove_tree(o->dir, g->left[g->nremoved].name, &err) != 0) {
            fprintf(stderr, "ckpt gc: removing %s/%s: %s\n", o->dir, g->left[g->nremoved].name,
                    err.msg);
            return EXIT_ERROR;
        }
    }
    if (g->nleft && ckpt__fsync_dir(o->dir, &err) != 0) {
        fprintf(stderr, "ckpt gc: %s\n", err.msg);
        return EXIT_ERROR;
    }
    return 0;
}

static int cmd_gc(const opts *o, ckpt__log *log)
{
    int64_t *steps;
    size_t n;
    int rc = scan(o, &steps, &n);
    if (rc)
        return rc;
    gc_result g;
    memset(&g, 0, sizeof g);
    g.protect = -1;
    g.deleted = malloc((2 * n + 1) * sizeof *g.deleted);
    g.bad = calloc(n ? n : 1, sizeof *g.bad);
    if (!g.deleted || !g.bad) {
        free(g.deleted);
        free(g.bad);
        free(steps);
        return out_of_memory();
    }
    g.kept = g.deleted + n;
    /* Only rules delete checkpoints; --partial alone needs no verification. */
    g.checked = o->keep_last > 0 || o->max_age_hours > 0;
    if (g.checked)
        rc = find_protected(o, log, steps, n, &g);
    if (!rc) {
        rc = gc_steps(o, log, steps, n, &g);
        if (!rc && o->partial)
            rc = gc_partial(o, &g);
        /* Also after a failure: say what is already gone. */
        gc_report(o, &g);
    }
    free(g.left);
    free(g.bad);
    free(g.deleted);
    free(steps);
    return rc;
}

/* ---- main --------------------------------------------------------------------------- */

typedef struct command {
    const char *name;
    unsigned bit;
    const char *help;
} command;

static const command commands[] = {
    {"list", C_LIST, usage_list},
    {"verify", C_VERIFY, usage_verify},
    {"inspect", C_INSPECT, usage_inspect},
    {"gc", C_GC, usage_gc},
};

/* Log level from CKPT_LOG (debug|info|warn|error|off); warnings by default. */
static ckpt_log_level log_level(void)
{
    const char *s = getenv("CKPT_LOG");
    int l = s ? ckpt__log_parse(s) : -1;
    return l < 0 ? CKPT_LOG_WARN : (ckpt_log_level)l;
}

static int run(const opts *o)
{
    ckpt__log log;
    ckpt__log_init(&log, log_level(), NULL, NULL);
    int rc;
    switch (o->cmd) {
    case C_LIST:
        rc = cmd_list(o, &log);
        break;
    case C_VERIFY:
        rc = cmd_verify(o, &log);
        break;
    case C_INSPECT:
        rc = cmd_inspect(o);
        break;
    default:
        rc = cmd_gc(o, &log);
        break;
    }
    ckpt__log_destroy(&log);
    return rc;
}

int main(int argc, char **argv)
{
    /* Every message is the runtime's, HDF5 prints none (not even at exit). */
    ckpt__h5_quiet();
    opts o;
    memset(&o, 0, sizeof o);
    o.step = -1;
    if (argc < 2) {
        usage_error(NULL, "missing command");
        return EXIT_ERROR;
    }
    const char *a = argv[1];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "help") == 0) {
        fputs(usage_main, stdout);
        return EXIT_VALID;
    }
    if (strcmp(a, "--version") == 0) {
        printf("ckpt %d.%d.%d (checkpoint format %d.%d)\n", CKPT_VERSION_MAJOR,
               CKPT_VERSION_MINOR, CKPT_VERSION_PATCH, CKPT__FORMAT_MAJOR, CKPT__FORMAT_MINOR);
        return EXIT_VALID;
    }
    /* export and import parse their own options (tools/interop.h). */
    if (strcmp(a, "export") == 0)
        return export_main(argc - 2, argv + 2);
    if (strcmp(a, "import") == 0)
        return import_main(argc - 2, argv + 2);
    const command *c = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(a, commands[i].name) == 0)
            c = &commands[i];
    if (!c) {
        usage_error(NULL, "unknown command '%s'", a);
        return EXIT_ERROR;
    }
    o.cmd = c->bit;
    o.cmd_name = c->name;
    if (parse_args(argc - 2, argv + 2, &o) != 0)
        return EXIT_ERROR;
    if (o.help) {
        fputs(c->help, stdout);
        return EXIT_VALID;
    }
    int rc = run(&o);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "ckpt: writing to stdout: %s\n", strerror(errno));
        return EXIT_ERROR;
    }
    return rc;
}
