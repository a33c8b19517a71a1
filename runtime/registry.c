/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tensor registry and the metadata store: arrays in registration order
 * (the order tensors are laid out in the rank file) with a name map for
 * lookups.  Invariant: map holds exactly the names in v, each pointing at
 * its own index; removal moves the last element into the hole.
 *
 * Also the metadata providers (ckpt_set_meta_fn) and the capture of a
 * save's metadata from both: a key has a stored value, a provider, or both
 * (after a restore brought its value back); a save takes the provider's.
 * Providers keep their order (removal closes the gap), so they are called
 * in the order their keys were first given one.
 */
#include <stdlib.h>
#include <string.h>

#include "io/names.h"
#include "io/index.h"
#include "runtime/registry.h"

static int grow(void **v, uint32_t *cap, size_t elem)
{
    uint32_t n = *cap ? *cap * 2 : 16;
    void *p = realloc(*v, (size_t)n * elem);
    if (!p)
        return -1;
    *v = p;
    *cap = n;
    return 0;
}

/* A slice must lie inside its global shape. */
static int check_slice(const char *name, int ndim, const int64_t *count, const int64_t *gshape,
                       const int64_t *start, ckpt__err *err)
{
    if (ndim < 1)
        return ckpt__err_set(err, CKPT_EINVAL, "tensor '%s': a shard needs 1 or more dimensions",
                             name);
    if (!gshape || !start)
        return ckpt__err_set(err, CKPT_EINVAL, "tensor '%s': %s is NULL", name,
                             gshape ? "start" : "global_shape");
    for (int d = 0; d < ndim; d++)
        if (gshape[d] < 0 || start[d] < 0 || start[d] > gshape[d] ||
            count[d] > gshape[d] - start[d])
            return ckpt__err_set(err, CKPT_EINVAL,
                                 "tensor '%s': dimension %d: slice [%lld, +%lld) is not inside "
                                 "0..%lld",
                                 name, d, (long long)start[d], (long long)count[d],
                                 (long long)gshape[d]);
    uint64_t gbytes;
    if (ckpt__shape_bytes(CKPT_U8, ndim, gshape, &gbytes) != 0)
        return ckpt__err_set(err, CKPT_EINVAL, "tensor '%s': global size overflows", name);
    return 0;
}

int ckpt__registry_add(ckpt__registry *r, const char *name, void *ptr, ckpt_dtype dtype,
                       int ndim, const int64_t *shape, const int64_t *gshape,
                       const int64_t *start, ckpt__err *err)
{
    char pn[CKPT_MAX_NAME + 8];
    int rc = ckpt__name_check(name, "tensor name", err);
    if (rc)
        return rc;
    if (!ckpt_dtype_size(dtype))
        return ckpt__err_set(err, CKPT_EINVAL, "tensor '%s': unknown dtype %d",
                             ckpt__name_printable(name, pn, sizeof pn), (int)dtype);
    if (ndim < 0 || ndim > CKPT_MAX_NDIM)
        return ckpt__err_set(err, CKPT_EINVAL, "tensor '%s': %d dimensions (0..%d)", name,
                             ndim, CKPT_MAX_NDIM);
    if (ndim > 0 && !shape)
        return ckpt__err_set(err, CKPT_EINVAL, "tensor '%s': shape is NULL", name);
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0)
            return ckpt__err_set(err, CKPT_EINVAL, "tensor '%s': dimension %d is %lld", name,
                                 d, (long long)shape[d]);
    uint64_t nbytes;
    if (ckpt__shape_bytes(dtype, ndim, shape, &nbytes) != 0)
        return ckpt__err_set(err, CKPT_EINVAL, "tensor '%s': size overflows", name);
    if (nbytes > 0 && !ptr)
        return ckpt__err_set(err, CKPT_EINVAL, "tensor '%s': NULL data for %llu bytes", name,
                             (unsigned long long)nbytes);
    if ((gshape || start) && (rc = check_slice(name, ndim, shape, gshape, start, err)) != 0)
        return rc;
    if (ckpt__strmap_get(&r->map, name, 0, NULL))
        return ckpt__err_set(err, CKPT_EEXIST, "tensor '%s' is already registered", name);
    if (r->n == UINT32_MAX / 4)
        return ckpt__err_set(err, CKPT_EINVAL, "too many tensors");
    if (r->n == r->cap && grow((void **)&r->v, &r->cap, sizeof *r->v) != 0)
        return ckpt__err_set(err, CKPT_ENOMEM, "registering '%s': out of memory", name);
    ckpt__tensor *t = &r->v[r->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name || ckpt__strmap_put(&r->map, t->name, 0, r->n) != 0) {
        free(t->name);
        return ckpt__err_set(err, CKPT_ENOMEM, "registering '%s': out of memory", name);
    }
    t->ptr = ptr;
    t->dtype = dtype;
    t->ndim = ndim;
    t->sharded = gshape != NULL;
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        t->gshape[d] = gshape ? gshape[d] : shape[d];
        t->start[d] = start ? start[d] : 0;
    }
    t->nbytes = nbytes;
    r->n++;
    return 0;
}

int ckpt__registry_remove(ckpt__registry *r, const char *name, ckpt__err *err)
{
    uint32_t i;
    int rc = ckpt__name_check(name, "tensor name", err);
    if (rc)
        return rc;
    if (!ckpt__strmap_get(&r->map, name, 0, &i))
        return ckpt__err_set(err, CKPT_ENOTFOUND, "tensor '%s' is not registered", name);
    ckpt__strmap_del(&r->map, r->v[i].name, 0);
    free(r->v[i].name);
    if (i != r->n - 1) {
        r->v[i] = r->v[r->n - 1];
        ckpt__strmap_set(&r->map, r->v[i].name, 0, i);
    }
    r->n--;
    return 0;
}

void ckpt__registry_free(ckpt__registry *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        free(r->v[i].name);
    free(r->v);
    ckpt__strmap_free(&r->map);
    memset(r, 0, sizeof *r);
}

int ckpt__meta_put(ckpt__metastore *m, const char *key, const void *data, size_t len,
                   ckpt__err *err)
{
    int rc = ckpt__name_check(key, "metadata key", err);
    if (rc)
        return rc;
    if (len > CKPT_MAX_META)
        return ckpt__err_set(err, CKPT_EINVAL, "metadata '%s': %zu bytes (at most %u)", key,
                             len, CKPT_MAX_META);
    if (len > 0 && !data)
        return ckpt__err_set(err, CKPT_EINVAL, "metadata '%s': NULL data for %zu bytes", key,
                             len);
    uint8_t *val = malloc(len ? len : 1);
    if (!val)
        return ckpt__err_set(err, CKPT_ENOMEM, "metadata '%s': out of memory", key);
    if (len)
        memcpy(val, data, len);
    uint32_t i;
    if (ckpt__strmap_get(&m->map, key, 0, &i)) {
        free(m->v[i].val);
        m->v[i].val = val;
        m->v[i].len = len;
        return 0;
    }
    if (m->n == m->cap && grow((void **)&m->v, &m->cap, sizeof *m->v) != 0) {
        free(val);
        return ckpt__err_set(err, CKPT_ENOMEM, "metadata '%s': out of memory", key);
    }
    ckpt__kv *kv = &m->v[m->n];
    kv->key = strdup(key);
    if (!kv->key || ckpt__strmap_put(&m->map, kv->key, 0, m->n) != 0) {
        free(kv->key);
        free(val);
        return ckpt__err_set(err, CKPT_ENOMEM, "metadata '%s': out of memory", key);
    }
    kv->val = val;
    kv->len = len;
    m->n++;
    return 0;
}

const ckpt__kv *ckpt__meta_get(const ckpt__metastore *m, const char *key)
{
    uint32_t i;
    if (!ckpt__strmap_get(&m->map, key, 0, &i))
        return NULL;
    return &m->v[i];
}

int ckpt__meta_copy(ckpt__metastore *dst, const ckpt__metastore *src, ckpt__err *err)
{
    memset(dst, 0, sizeof *dst);
    for (uint32_t i = 0; i < src->n; i++) {
        int rc = ckpt__meta_put(dst, src->v[i].key, src->v[i].val, src->v[i].len, err);
        if (rc) {
            ckpt__meta_free(dst);
            return rc;
        }
    }
    return 0;
}

int ckpt__meta_del(ckpt__metastore *m, const char *key)
{
    uint32_t i;
    if (!ckpt__strmap_get(&m->map, key, 0, &i))
        return 0;
    ckpt__strmap_del(&m->map, m->v[i].key, 0);
    free(m->v[i].key);
    free(m->v[i].val);
    if (i != m->n - 1) {
        m->v[i] = m->v[m->n - 1];
        ckpt__strmap_set(&m->map, m->v[i].key, 0, i);
    }
    m->n--;
    return 1;
}

void ckpt__meta_free(ckpt__metastore *m)
{
    for (uint32_t i = 0; i < m->n; i++) {
        free(m->v[i].key);
        free(m->v[i].val);
    }
    free(m->v);
    ckpt__strmap_free(&m->map);
    memset(m, 0, sizeof *m);
}

/* ---- metadata providers ------------------------------------------------------- */

static ckpt__provider *find_provider(ckpt__providers *p, const char *key, uint32_t *pos)
{
    for (uint32_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].key, key) == 0) {
            if (pos)
                *pos = i;
            return &p->v[i];
        }
    return NULL;
}

int ckpt__provider_set(ckpt__providers *p, const char *key, ckpt_meta_fn fn, void *user,
                       ckpt__err *err)
{
    int rc = ckpt__name_check(key, "metadata key", err);
    if (rc)
        return rc;
    ckpt__provider *have = find_provider(p, key, NULL);
    if (!fn) {
        if (!have)
            return ckpt__err_set(err, CKPT_ENOTFOUND, "metadata '%s' has no provider", key);
        ckpt__provider_drop(p, key);
        return 0;
    }
    if (have) {
        have->fn = fn;
        have->user = user;
        return 0;
    }
    /* The scratch buffer comes with the first provider, so a save never
     * allocates a megabyte and a context without providers never holds one. */
    if (!p->buf && !(p->buf = malloc(CKPT_MAX_META)))
        return ckpt__err_set(err, CKPT_ENOMEM, "metadata '%s': out of memory", key);
    if (p->n == p->cap && grow((void **)&p->v, &p->cap, sizeof *p->v) != 0)
        return ckpt__err_set(err, CKPT_ENOMEM, "metadata '%s': out of memory", key);
    char *k = strdup(key);
    if (!k)
        return ckpt__err_set(err, CKPT_ENOMEM, "metadata '%s': out of memory", key);
    p->v[p->n++] = (ckpt__provider){k, fn, user};
    return 0;
}

int ckpt__provider_drop(ckpt__providers *p, const char *key)
{
    uint32_t i;
    if (!key || !find_provider(p, key, &i))
        return 0;
    free(p->v[i].key);
    memmove(&p->v[i], &p->v[i + 1], (p->n - i - 1) * sizeof *p->v);
    p->n--;
    return 1;
}

void ckpt__providers_free(ckpt__providers *p)
{
    for (uint32_t i = 0; i < p->n; i++)
        free(p->v[i].key);
    free(p->v);
    free(p->buf);
    memset(p, 0, sizeof *p);
}

int ckpt__meta_capture(ckpt__metastore *dst, const ckpt__metastore *m, ckpt__providers *p,
                       ckpt__err *err)
{
    int rc = ckpt__meta_copy(dst, m, err);
    for (uint32_t i = 0; !rc && i < p->n; i++) {
        const ckpt__provider *pv = &p->v[i];
        size_t len = 0;
        int frc = pv->fn(pv->user, p->buf, CKPT_MAX_META, &len);
        if (frc)
            rc = ckpt__err_set(err, CKPT_EINVAL,
                               "metadata provider of '%s' failed (returned %d); nothing saved",
                               pv->key, frc);
        else if (len > CKPT_MAX_META)
            rc = ckpt__err_set(err, CKPT_ERANGE,
                               "metadata provider of '%s' gave %zu bytes, more than "
                               "CKPT_MAX_META (%u); nothing saved",
                               pv->key, len, CKPT_MAX_META);
        else
            rc = ckpt__meta_put(dst, pv->key, p->buf, len, err);
    }
    if (rc)
        ckpt__meta_free(dst);
    return rc;
}
