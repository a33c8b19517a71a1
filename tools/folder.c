/* SPDX-License-Identifier: Apache-2.0 */
/* See folder.h. */
#include "tools/folder.h"

/* out = dir/step-N[/file]; CKPT_EINVAL when it does not fit PATH_CAP. */
int step_path(char *out, const char *dir, int64_t step, const char *file,
                            ckpt__err *err)
{
    char name[32];
    ckpt__step_name(step, name);
    int n = file ? snprintf(out, PATH_CAP, "%s/%s/%s", dir, name, file)
                 : snprintf(out, PATH_CAP, "%s/%s", dir, name);
    if (n < 0 || n >= PATH_CAP)
        return ckpt__err_set(err, CKPT_EINVAL, "path %s/%s is too long", dir, name);
    return 0;
}

/*
 * The cheap checks `list` reports and `gc` protects by: the manifest reads
 * and validates and names this step, and every rank file it lists is a
 * regular file of the recorded size.  Data is not hashed (verify does).
 * On success *idx holds the index (the caller frees it).
 */
int quick_check(const char *dir, int64_t step, ckpt__index *idx,
                              ckpt__err *err)
{
    char path[PATH_CAP];
    memset(idx, 0, sizeof *idx);
    int rc = step_path(path, dir, step, CKPT__MANIFEST_NAME, err);
    if (!rc)
        rc = ckpt__manifest_read(path, idx, err);
    if (rc)
        return rc;
    if (idx->step != step)
        rc = ckpt__err_set(err, CKPT_ECORRUPT, "manifest.h5 records step %lld",
                           (long long)idx->step);
    for (uint32_t r = 0; !rc && r < idx->nranks; r++) {
        char file[32];
        struct stat st;
        snprintf(file, sizeof file, "rank-%05u.h5", idx->ranks[r].rank);
        rc = step_path(path, dir, step, file, err);
        if (rc)
            break;
        if (lstat(path, &st) != 0)
            rc = errno == ENOENT ? ckpt__err_set(err, CKPT_ECORRUPT, "%s is missing", file)
                                 : ckpt__err_errno(err, errno, "stat %s", path);
        else if (!S_ISREG(st.st_mode))
            rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s is not a regular file", file);
        else if ((uint64_t)st.st_size != idx->ranks[r].file_bytes)
            rc = ckpt__err_set(err, CKPT_ECORRUPT, "%s is %lld bytes, the manifest says %llu",
                               file, (long long)st.st_size,
                               (unsigned long long)idx->ranks[r].file_bytes);
    }
    if (rc)
        ckpt__index_free(idx);
    return rc;
}

/* Data bytes (tensors and metadata) and tensor count of a checkpoint. */
void totals(const ckpt__index *idx, uint64_t *bytes, uint32_t *ntensors)
{
    *bytes = 0;
    *ntensors = 0;
    for (uint32_t i = 0; i < idx->nentries; i++) {
        *bytes += idx->entries[i].nbytes;
        *ntensors += idx->entries[i].kind == CKPT__ENTRY_TENSOR;
    }
}


static int is_hex32(const char *s)
{
    for (int i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[32] == '\0';
}

/* 1 and *out when name is a leftover folder's, else 0. */
int parse_leftover(const char *name, leftover *out)
{
    if (strncmp(name, "step-", 5) != 0)
        return 0;
    int64_t step = 0;
    for (int i = 5; i < 17; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        step = step * 10 + (name[i] - '0');
    }
    const char *rest = name + 17;
    int trash = strncmp(rest, ".trash-", 7) == 0;
    if (!trash && strncmp(rest, ".partial-", 9) != 0)
        return 0;
    if (!is_hex32(rest + (trash ? 7 : 9)))
        return 0;
    memcpy(out->name, name, strlen(name) + 1); /* at most 58 bytes, checked above */
    out->step = step;
    out->trash = trash;
    return 1;
}

static int cmp_leftover(const void *a, const void *b)
{
    const leftover *x = a, *y = b;
    if (x->step != y->step)
        return x->step < y->step ? 1 : -1;
    return strcmp(x->name, y->name);
}

/* Partial and trash folders of dir, newest step first (*out malloc'd). */
int scan_leftovers(const char *dir, leftover **out, size_t *n,
                                 ckpt__err *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return ckpt__err_errno(err, errno, "open folder %s", dir);
    size_t cap = 0;
    int rc = 0;
    struct dirent *de;
    leftover l;
    while ((de = readdir(d)) != NULL) {
        if (!parse_leftover(de->d_name, &l))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            leftover *v = realloc(*out, cap * sizeof *v);
            if (!v) {
                rc = ckpt__err_set(err, CKPT_ENOMEM, "scanning %s: out of memory", dir);
                break;
            }
            *out = v;
        }
        (*out)[(*n)++] = l;
    }
    closedir(d);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
        return rc;
    }
    if (*n > 1)
        qsort(*out, *n, sizeof **out, cmp_leftover);
    return 0;
}
