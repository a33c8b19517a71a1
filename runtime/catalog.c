/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint folder's directory: which entries are committed
 * checkpoints, which are leftovers, and how either is removed.
 *
 * Which name is which is io/paths.h's rule (ckpt__folder_parse): a
 * committed step, a partial save, a trash folder, or foreign.
 * Anything foreign in DIR is never touched (here; policy.c
 * removes the request file an application names).  A symlink is never
 * followed: a symlink named like a checkpoint is skipped by the scan, and
 * removal unlinks the link itself.  All removal happens through file
 * descriptors opened with O_NOFOLLOW below DIR, so nothing outside DIR is
 * ever deleted.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/paths.h"
#include "runtime/internal.h"

#define MAX_DEPTH 8

static int is_leftover(const char *name)
{
    int64_t step;
    ckpt__folder_kind k = ckpt__folder_parse(name, &step);
    return k == CKPT__FOLDER_PARTIAL || k == CKPT__FOLDER_TRASH;
}

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int ckpt__catalog_scan(const char *dir, int64_t **steps, size_t *n, ckpt__err *err)
{
    *steps = NULL;
    *n = 0;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return ckpt__err_errno(err, errno, "open folder %s", dir);
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = errno;
        close(dfd);
        return ckpt__err_errno(err, e, "read folder %s", dir);
    }
    size_t cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int64_t step;
        if (ckpt__folder_parse(de->d_name, &step) != CKPT__FOLDER_COMMITTED)
            continue;
        struct stat st;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            int64_t *v = realloc(*steps, cap * sizeof *v);
            if (!v) {
                rc = ckpt__err_set(err, CKPT_ENOMEM, "scanning %s: out of memory", dir);
                break;
            }
            *steps = v;
        }
        (*steps)[(*n)++] = step;
    }
    closedir(d);
    if (rc) {
        free(*steps);
        *steps = NULL;
        *n = 0;
        return rc;
    }
    if (*n > 1)
        qsort(*steps, *n, sizeof **steps, cmp_desc);
    return 0;
}

/* Removes the entry `name` inside the open folder pfd. */
static int remove_at(int pfd, const char *name, int depth, ckpt__err *err)
{
    struct stat st;
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? 0 : ckpt__err_errno(err, errno, "stat %s", name);
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(pfd, name, 0) != 0 && errno != ENOENT)
            return ckpt__err_errno(err, errno, "unlink %s", name);
        return 0;
    }
    if (depth >= MAX_DEPTH)
        return ckpt__err_set(err, CKPT_EIO, "%s: folders nested too deep to remove", name);
    int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return ckpt__err_errno(err, errno, "open %s", name);
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return ckpt__err_errno(err, e, "read %s", name);
    }
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = remove_at(fd, de->d_name, depth + 1, err);
    }
    closedir(d);
    if (!rc && unlinkat(pfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        rc = ckpt__err_errno(err, errno, "remove folder %s", name);
    return rc;
}

int ckpt__remove_tree(const char *dir, const char *name, ckpt__err *err)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return ckpt__err_errno(err, errno, "open folder %s", dir);
    int rc = remove_at(dfd, name, 0, err);
    close(dfd);
    return rc;
}

int ckpt__fsync_dir(const char *path, ckpt__err *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ckpt__err_errno(err, errno, "open folder %s", path);
    int rc = 0;
    if (fsync(fd) != 0 && errno != EINVAL) /* some file systems refuse fsync on folders */
        rc = ckpt__err_errno(err, errno, "fsync folder %s", path);
    close(fd);
    return rc;
}

int ckpt__catalog_cleanup(const char *dir, ckpt__log *log, ckpt__err *err)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return ckpt__err_errno(err, errno, "open folder %s", dir);
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = errno;
        close(dfd);
        return ckpt__err_errno(err, e, "read folder %s", dir);
    }
    /* Collect first: removing while readdir runs may skip entries. */
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        if (!is_leftover(de->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            char **v = realloc(names, cap * sizeof *v);
            if (!v) {
                rc = ckpt__err_set(err, CKPT_ENOMEM, "cleaning %s: out of memory", dir);
                break;
            }
            names = v;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = ckpt__err_set(err, CKPT_ENOMEM, "cleaning %s: out of memory", dir);
            break;
        }
        n++;
    }
    /* A leftover that cannot be removed (permissions, hostile nesting) is
     * logged and left: it must not stop a job from starting. */
    for (size_t i = 0; i < n; i++) {
        ckpt__err e;
        ckpt__err_clear(&e);
        if (remove_at(dfd, names[i], 0, &e) != 0)
            ckpt__logf(log, CKPT_LOG_WARN, "could not remove leftover %s/%s: %s", dir, names[i],
                       e.msg);
        else
            ckpt__logf(log, CKPT_LOG_INFO, "removed leftover %s/%s", dir, names[i]);
        free(names[i]);
    }
    free(names);
    closedir(d);
    if (!rc && n)
        rc = ckpt__fsync_dir(dir, err);
    return rc;
}

int ckpt__catalog_delete(const char *dir, int64_t step, ckpt__err *err)
{
    char name[CKPT__FNAME_MAX], trash[CKPT__FNAME_MAX];
    uint8_t r[16];
    ckpt__step_name(step, name);
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return ckpt__err_errno(err, errno, "getrandom");
    ckpt__trash_name(step, r, trash);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return ckpt__err_errno(err, errno, "open folder %s", dir);
    int rc = 0;
    /* Inv. (catalog): a committed name never names a half-deleted folder. */
    if (renameat(dfd, name, dfd, trash) != 0)
        rc = ckpt__err_errno(err, errno, "rename %s/%s to trash", dir, name);
    else if (fsync(dfd) != 0 && errno != EINVAL)
        rc = ckpt__err_errno(err, errno, "fsync folder %s", dir);
    if (!rc)
        rc = remove_at(dfd, trash, 0, err);
    close(dfd);
    return rc;
}
