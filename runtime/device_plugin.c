/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See device_plugin.h: where a device plugin is looked for, and the checks
 * its table passes before the core calls any of it.
 *
 * Invariants: at most one file is dlopen'ed per load, and every failure
 * dlcloses what it opened; a table of another CKPT__DEVICE_VERSION is never
 * called into (not even its probe); the error message lists every place
 * looked at, in order, so "why is device=auto on host?" has one answer.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/device_plugin.h"

/* The folder of the image this code is linked into, without the trailing
 * '/': the shared libckpt, or for a static libckpt the program itself
 * (whose name the loader records as "", so /proc/self/exe names it).
 * 0 on success. */
static int own_folder(char *out, size_t cap)
{
    Dl_info info;
    struct link_map *lm = NULL;
    if (!dladdr1((void *)own_folder, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm)
        return -1;
    char path[4096];
    if (lm->l_name && lm->l_name[0]) {
        snprintf(path, sizeof path, "%s", lm->l_name);
    } else {
        ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
        if (n <= 0 || (size_t)n >= sizeof path - 1)
            return -1;
        path[n] = '\0';
    }
    char *slash = strrchr(path, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    if ((size_t)snprintf(out, cap, "%s", path[0] ? path : "/") >= cap)
        return -1;
    return 0;
}

/* Every method a backend must have, so the core never calls through NULL. */
static const char *missing_method(const ckpt__device_methods *m)
{
    if (!m->name)
        return "name";
    if (!m->probe)
        return "probe";
    if (!m->open || !m->close)
        return "open/close";
    if (!m->register_staging || !m->check_tensor)
        return "register_staging/check_tensor";
    if (!m->save_begin || !m->copy_out || !m->fence || !m->copy_in)
        return "save_begin/copy_out/fence/copy_in";
    return NULL;
}

/* dlopens `what` (a path, or a bare soname for the loader's search) and
 * checks its table.  0 on success; else the reason is appended to err. */
static int try_open(const char *what, ckpt__plugin *p, ckpt__err *err)
{
    /* RTLD_LOCAL: the plugin's symbols (its static CUDA runtime is hidden
     * anyway) never serve other libraries' lookups. */
    void *h = dlopen(what, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h) {
        const char *why = dlerror();
        return ckpt__err_append(err, CKPT_EDEVICE, "dlopen: %s", why ? why : what);
    }
    ckpt__device_plugin_fn entry;
    void *sym = dlsym(h, CKPT__DEVICE_PLUGIN_ENTRY);
    memcpy(&entry, &sym, sizeof entry); /* ISO C has no object-to-function cast */
    const ckpt__device_methods *m = entry ? entry() : NULL;
    const char *gap = NULL;
    if (!entry)
        ckpt__err_append(err, CKPT_EDEVICE, "%s: no symbol %s", what,
                         CKPT__DEVICE_PLUGIN_ENTRY);
    else if (!m)
        ckpt__err_append(err, CKPT_EDEVICE, "%s: %s() returned NULL", what,
                         CKPT__DEVICE_PLUGIN_ENTRY);
    else if (m->version != CKPT__DEVICE_VERSION)
        ckpt__err_append(err, CKPT_EDEVICE,
                         "%s: device interface version %d, this libckpt needs %d (a plugin "
                         "of another build)",
                         what, m->version, CKPT__DEVICE_VERSION);
    else if ((gap = missing_method(m)) != NULL)
        ckpt__err_append(err, CKPT_EDEVICE, "%s: its table lacks %s", what, gap);
    else {
        p->handle = h;
        p->m = m;
        snprintf(p->path, sizeof p->path, "%s", what);
        return 0;
    }
    dlclose(h);
    return err->code;
}

int ckpt__plugin_load(const char *soname, const char *env, ckpt__plugin *p, ckpt__err *err)
{
    memset(p, 0, sizeof *p);
    ckpt__err why;
    ckpt__err_clear(&why);
    int rc;
    const char *forced = env ? secure_getenv(env) : NULL;
    if (forced && forced[0]) {
        rc = try_open(forced, p, &why);
        if (rc)
            return ckpt__err_set(err, rc, "backend %s (from %s): %s", soname, env, why.msg);
        return 0;
    }
    char dir[4096], path[4200];
    if (own_folder(dir, sizeof dir) == 0) {
        const char *const subs[] = {"", "/../lib"};
        for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
            snprintf(path, sizeof path, "%s%s/%s", dir, subs[i], soname);
            if (access(path, F_OK) != 0) {
                ckpt__err_append(&why, CKPT_EDEVICE, "not in %s%s", dir, subs[i]);
                continue;
            }
            rc = try_open(path, p, &why);
            if (rc)
                return ckpt__err_set(err, rc, "backend %s: %s", soname, why.msg);
            return 0;
        }
    }
    rc = try_open(soname, p, &why);
    if (rc)
        return ckpt__err_set(err, rc, "backend %s not found: %s", soname, why.msg);
    return 0;
}

void ckpt__plugin_unload(ckpt__plugin *p)
{
    if (p->handle)
        dlclose(p->handle);
    memset(p, 0, sizeof *p);
}
