/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Names in the checkpoint folder and the path-length limits (paths.h).
 * Every format string of an on-disk name is here and nowhere else, so a
 * writer and a reader of the folder cannot disagree on a spelling.
 */
#include <stdio.h>
#include <string.h>

#include "io/paths.h"

#define STEP_PREFIX "step-"
#define STEP_DIGITS 12
#define PARTIAL_TAG ".partial-"
#define TRASH_TAG ".trash-"

/* DIR/folder/file and a mark's temporary name (NAME.tmp) always fit. */
_Static_assert(CKPT__DIR_MAX + 1 + CKPT__FNAME_MAX + 1 + CKPT__FNAME_MAX + 4 <= CKPT__PATH_MAX,
               "a path the runtime builds may not fit CKPT__PATH_MAX");
/* The longest name: the step's digits and a 32-digit hex tag. */
_Static_assert(sizeof STEP_PREFIX - 1 + STEP_DIGITS + sizeof PARTIAL_TAG - 1 + 32 <
                   CKPT__FNAME_MAX,
               "a folder name may not fit CKPT__FNAME_MAX");

int ckpt__path_dir_check(const char *dir, ckpt__err *err)
{
    if (strlen(dir) > CKPT__DIR_MAX)
        return ckpt__err_set(err, CKPT_EINVAL, "dir is longer than %d bytes", CKPT__DIR_MAX);
    return 0;
}

int ckpt__path_join(char *out, const char *dir, const char *name, ckpt__err *err)
{
    int n = snprintf(out, CKPT__PATH_MAX, "%s/%s", dir, name);
    if (n >= 0 && n < CKPT__PATH_MAX)
        return 0;
    out[0] = '\0';
    return ckpt__err_set(err, CKPT_EINVAL, "path %s/%s is too long", dir, name);
}

int ckpt__path_step(char *out, const char *dir, int64_t step, const char *file,
                    ckpt__err *err)
{
    char name[CKPT__FNAME_MAX];
    ckpt__step_name(step, name);
    int n = file ? snprintf(out, CKPT__PATH_MAX, "%s/%s/%s", dir, name, file)
                 : snprintf(out, CKPT__PATH_MAX, "%s/%s", dir, name);
    if (n >= 0 && n < CKPT__PATH_MAX)
        return 0;
    out[0] = '\0';
    return ckpt__err_set(err, CKPT_EINVAL, "path %s/%s is too long", dir, name);
}

void ckpt__step_name(int64_t step, char *out)
{
    snprintf(out, CKPT__FNAME_MAX, STEP_PREFIX "%0*lld", STEP_DIGITS, (long long)step);
}

void ckpt__uuid_hex(const uint8_t uuid[16], char *out)
{
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", uuid[i]);
}

/* step-S + tag + hex of 16 bytes. */
static void tagged_name(int64_t step, const char *tag, const uint8_t b[16], char *out)
{
    char hex[CKPT__UUID_HEX];
    ckpt__uuid_hex(b, hex);
    ckpt__step_name(step, out);
    size_t n = strlen(out);
    snprintf(out + n, CKPT__FNAME_MAX - n, "%s%s", tag, hex);
}

void ckpt__partial_name(int64_t step, const uint8_t uuid[16], char *out)
{
    tagged_name(step, PARTIAL_TAG, uuid, out);
}

void ckpt__trash_name(int64_t step, const uint8_t rnd[16], char *out)
{
    tagged_name(step, TRASH_TAG, rnd, out);
}

void ckpt__rank_file_name(uint32_t rank, char *out)
{
    snprintf(out, CKPT__FNAME_MAX, "rank-%05u.h5", rank);
}

void ckpt__done_name(uint32_t rank, char *out)
{
    snprintf(out, CKPT__FNAME_MAX, "done-%05u.rec", rank);
}

void ckpt__done_tmp_name(uint32_t rank, char *out)
{
    snprintf(out, CKPT__FNAME_MAX, "done-%05u.tmp", rank);
}

void ckpt__failed_name(uint32_t rank, char *out)
{
    snprintf(out, CKPT__FNAME_MAX, "failed-%05u.rec", rank);
}

/* The rank number that d starts with (at most 10 digits): 1 when there is
 * one that fits a u32, in *r; the caller checks the canonical spelling. */
static int rank_digits(const char *d, uint64_t *r)
{
    size_t n = 0;
    *r = 0;
    for (; d[n] >= '0' && d[n] <= '9' && n < 10; n++)
        *r = *r * 10 + (uint64_t)(d[n] - '0');
    return n > 0 && *r <= UINT32_MAX;
}

int ckpt__replica_dir_parse(const char *name, uint32_t *rank)
{
    if (strncmp(name, "replica-of-", 11) != 0)
        return 0;
    const char *d = name + 11;
    uint64_t r;
    if (!rank_digits(d, &r))
        return 0;
    char canon[CKPT__FNAME_MAX];
    ckpt__replica_name((uint32_t)r, canon);
    if (strcmp(canon, name) != 0)
        return 0;
    *rank = (uint32_t)r;
    return 1;
}

ckpt__record_kind ckpt__record_parse(const char *name, uint32_t *rank)
{
    ckpt__record_kind kind = strncmp(name, "done-", 5) == 0     ? CKPT__RECORD_DONE
                             : strncmp(name, "failed-", 7) == 0 ? CKPT__RECORD_FAILED
                                                                : CKPT__RECORD_OTHER;
    if (kind == CKPT__RECORD_OTHER)
        return kind;
    const char *d = name + (kind == CKPT__RECORD_DONE ? 5 : 7);
    uint64_t r;
    if (!rank_digits(d, &r))
        return CKPT__RECORD_OTHER;
    /* Only the canonical spelling: "done-7.rec" or "done-000001.rec" is
     * somebody else's file. */
    char canon[CKPT__FNAME_MAX];
    if (kind == CKPT__RECORD_DONE)
        ckpt__done_name((uint32_t)r, canon);
    else
        ckpt__failed_name((uint32_t)r, canon);
    if (strcmp(canon, name) != 0)
        return CKPT__RECORD_OTHER;
    *rank = (uint32_t)r;
    return kind;
}

void ckpt__replica_name(uint32_t rank, char *out)
{
    snprintf(out, CKPT__FNAME_MAX, "replica-of-%05u", rank);
}

void ckpt__mark_tmp_name(const char *mark, char *out)
{
    snprintf(out, CKPT__FNAME_MAX, "%s.tmp", mark);
}

/* Parses STEP_PREFIX + 12 digits at the start of s; returns the step, else -1. */
static int64_t parse_step(const char *s, const char **rest)
{
    size_t k = sizeof STEP_PREFIX - 1;
    if (strncmp(s, STEP_PREFIX, k) != 0)
        return -1;
    int64_t v = 0;
    for (size_t i = k; i < k + STEP_DIGITS; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *rest = s + k + STEP_DIGITS;
    return v;
}

/* 32 lowercase hex digits, then the end of the name. */
static int is_hex32(const char *s)
{
    for (int i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[32] == '\0';
}

ckpt__folder_kind ckpt__folder_parse(const char *name, int64_t *step)
{
    const char *rest;
    int64_t s = parse_step(name, &rest);
    if (s < 0)
        return CKPT__FOLDER_FOREIGN;
    ckpt__folder_kind kind = CKPT__FOLDER_FOREIGN;
    if (*rest == '\0')
        kind = CKPT__FOLDER_COMMITTED;
    else if (strncmp(rest, PARTIAL_TAG, sizeof PARTIAL_TAG - 1) == 0 &&
             is_hex32(rest + sizeof PARTIAL_TAG - 1))
        kind = CKPT__FOLDER_PARTIAL;
    else if (strncmp(rest, TRASH_TAG, sizeof TRASH_TAG - 1) == 0 &&
             is_hex32(rest + sizeof TRASH_TAG - 1))
        kind = CKPT__FOLDER_TRASH;
    if (kind != CKPT__FOLDER_FOREIGN)
        *step = s;
    return kind;
}

int ckpt__folder_reserved(const char *name)
{
    return strncmp(name, STEP_PREFIX, sizeof STEP_PREFIX - 1) == 0;
}
