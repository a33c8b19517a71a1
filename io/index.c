/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binary encoding of the checkpoint index (layout in docs/FORMAT.md).  All
 * integers little-endian; the last 8 bytes are XXH3-64 of everything before
 * them.  The decoder trusts nothing: it checks the trailer first, then every
 * count against the bytes actually present before allocating, so a hostile
 * or truncated record costs at most its own size in memory.
 */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "io/index.h"
#include "io/names.h"

static const char magic[8] = {'C', 'K', 'P', 'T', 'I', 'D', 'X', '1'};

#define HEADER_BYTES 80u
#define RANK_BYTES 24u
#define ENTRY_FIXED 48u
#define MAX_WORLD (1u << 20)

/* ---- little-endian cursor ---------------------------------------------- */

typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} wbuf;

static void put(wbuf *b, const void *src, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_u8(wbuf *b, uint8_t v) { put(b, &v, 1); }

static void put_u16(wbuf *b, uint16_t v)
{
    uint8_t t[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(b, t, 2);
}

static void put_u32(wbuf *b, uint32_t v)
{
    uint8_t t[4];
    for (int i = 0; i < 4; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, 4);
}

static void put_u64(wbuf *b, uint64_t v)
{
    uint8_t t[8];
    for (int i = 0; i < 8; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, 8);
}

typedef struct rbuf {
    const uint8_t *p;
    size_t len, pos;
    int short_read;
} rbuf;

static const uint8_t *take(rbuf *b, size_t n)
{
    if (b->short_read || n > b->len - b->pos) {
        b->short_read = 1;
        return NULL;
    }
    const uint8_t *p = b->p + b->pos;
    b->pos += n;
    return p;
}

static uint64_t get_le(rbuf *b, size_t n)
{
    const uint8_t *p = take(b, n);
    uint64_t v = 0;
    if (p)
        for (size_t i = 0; i < n; i++)
            v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- hash tree ----------------------------------------------------------- */

static void hash_u64(XXH3_state_t *st, uint64_t v)
{
    uint8_t t[8];
    for (int k = 0; k < 8; k++)
        t[k] = (uint8_t)(v >> (8 * k));
    XXH3_64bits_update(st, t, 8);
}


uint64_t ckpt__entry_hash(const ckpt__entry *e, const uint64_t *leaves)
{
    wbuf b = {0};
    uint8_t local[64 + 24 * CKPT_MAX_NDIM + CKPT_MAX_NAME];
    b.p = local;
    b.cap = sizeof local;
    /* Fixed-size description; a stack buffer avoids any allocation. */
    put_u8(&b, (uint8_t)e->kind);
    put_u8(&b, (uint8_t)e->dtype);
    put_u8(&b, (uint8_t)e->ndim);
    put_u32(&b, (uint32_t)e->rank);
    put_u64(&b, e->nbytes);
    for (int d = 0; d < e->ndim; d++) {
        put_u64(&b, (uint64_t)e->shape[d]);
        put_u64(&b, (uint64_t)e->start[d]);
        put_u64(&b, (uint64_t)e->count[d]);
    }
    size_t nlen = strlen(e->name);
    put_u16(&b, (uint16_t)nlen);
    put(&b, e->name, nlen);
    /* Streaming state from the heap: its layout is private to libxxhash. */
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return 0; /* never matches a real hash: the check fails loudly */
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, b.p, b.len);
    for (uint32_t i = 0; i < e->nchunks; i++)
        hash_u64(st, leaves[i]);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

uint64_t ckpt__rank_root(const ckpt__index *idx, uint32_t rank)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return 0;
    XXH3_64bits_reset(st);
    hash_u64(st, rank);
    for (uint32_t i = 0; i < idx->nentries; i++)
        if ((uint32_t)idx->entries[i].rank == rank)
            hash_u64(st, idx->entries[i].hash);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

uint64_t ckpt__index_root(const ckpt__index *idx)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return 0;
    XXH3_64bits_reset(st);
    for (uint32_t r = 0; r < idx->nranks; r++)
        hash_u64(st, idx->ranks[r].root);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

int ckpt__index_check_tree(const ckpt__index *idx, const char *what, ckpt__err *err)
{
    for (uint32_t i = 0; i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        if (ckpt__entry_hash(e, idx->hashes + e->chunk0) != e->hash)
            return ckpt__err_set(err, CKPT_ECORRUPT,
                                 "%s: hash of entry '%s' does not match its chunk hashes",
                                 what, e->name);
    }
    for (uint32_t r = 0; r < idx->nranks; r++)
        if (ckpt__rank_root(idx, idx->ranks[r].rank) != idx->ranks[r].root)
            return ckpt__err_set(err, CKPT_ECORRUPT, "%s: Merkle root of rank %u differs",
                                 what, idx->ranks[r].rank);
    return 0;
}

/* ---- shapes -------------------------------------------------------------- */

int ckpt__shape_bytes(ckpt_dtype dtype, int ndim, const int64_t *count, uint64_t *nbytes)
{
    uint64_t n = ckpt_dtype_size(dtype);
    if (n == 0 || ndim < 0 || ndim > CKPT_MAX_NDIM)
        return -1;
    for (int d = 0; d < ndim; d++) {
        if (count[d] < 0)
            return -1;
        uint64_t c = (uint64_t)count[d];
        if (c != 0 && n > UINT64_MAX / c)
            return -1;
        n *= c;
    }
    if (n > (UINT64_MAX >> 2)) /* keeps offset arithmetic far from overflow */
        return -1;
    *nbytes = n;
    return 0;
}

/* ---- encode -------------------------------------------------------------- */

int ckpt__index_encode(const ckpt__index *idx, uint8_t **out, size_t *outlen, ckpt__err *err)
{
    wbuf b = {0};
    put(&b, magic, 8);
    put_u16(&b, CKPT__FORMAT_MAJOR);
    put_u16(&b, idx->minor);
    put_u32(&b, 0);
    put_u64(&b, (uint64_t)idx->step);
    put_u64(&b, (uint64_t)idx->created_unix);
    put_u32(&b, idx->world_size);
    put_u32(&b, idx->nranks);
    put_u32(&b, idx->nentries);
    put_u32(&b, 0);
    put_u64(&b, idx->nhashes);
    put_u64(&b, idx->chunk_bytes);
    put(&b, idx->uuid, 16);
    for (uint32_t r = 0; r < idx->nranks; r++) {
        put_u32(&b, idx->ranks[r].rank);
        put_u32(&b, idx->minor >= CKPT__MINOR_META_HASH ? idx->ranks[r].meta_hash : 0);
        put_u64(&b, idx->ranks[r].file_bytes);
        put_u64(&b, idx->ranks[r].root);
    }
    for (uint32_t i = 0; i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        size_t nlen = strlen(e->name);
        put_u16(&b, (uint16_t)nlen);
        put_u8(&b, (uint8_t)e->kind);
        put_u8(&b, (uint8_t)e->dtype);
        put_u8(&b, (uint8_t)e->ndim);
        put_u8(&b, 0);
        put_u16(&b, 0);
        put_u32(&b, (uint32_t)e->rank);
        put_u32(&b, e->nchunks);
        put_u64(&b, e->nbytes);
        put_u64(&b, e->file_off);
        put_u64(&b, e->chunk0);
        put_u64(&b, e->hash);
        for (int d = 0; d < e->ndim; d++)
            put_u64(&b, (uint64_t)e->shape[d]);
        for (int d = 0; d < e->ndim; d++)
            put_u64(&b, (uint64_t)e->start[d]);
        for (int d = 0; d < e->ndim; d++)
            put_u64(&b, (uint64_t)e->count[d]);
        put(&b, e->name, nlen);
    }
    for (uint64_t i = 0; i < idx->nhashes; i++)
        put_u64(&b, idx->hashes[i]);
    if (!b.oom)
        put_u64(&b, XXH3_64bits(b.p, b.len));
    if (b.oom) {
        free(b.p);
        return ckpt__err_set(err, CKPT_ENOMEM, "encoding the index: out of memory");
    }
    *out = b.p;
    *outlen = b.len;
    return 0;
}

/* ---- decode -------------------------------------------------------------- */

void ckpt__index_free(ckpt__index *idx)
{
    if (!idx)
        return;
    if (idx->entries)
        for (uint32_t i = 0; i < idx->nentries; i++)
            free(idx->entries[i].name);
    free(idx->entries);
    free(idx->ranks);
    free(idx->hashes);
    ckpt__strmap_free(&idx->map);
    memset(idx, 0, sizeof *idx);
}

static uint32_t map_tag(int kind, int32_t rank)
{
    return ((uint32_t)kind << 24) ^ (uint32_t)rank;
}

int ckpt__index_build_map(ckpt__index *idx)
{
    ckpt__strmap_free(&idx->map);
    for (uint32_t i = 0; i < idx->nentries; i++) {
        const ckpt__entry *e = &idx->entries[i];
        if (ckpt__strmap_put(&idx->map, e->name, map_tag(e->kind, e->rank), i) != 0)
            return -1;
    }
    return 0;
}

const ckpt__entry *ckpt__index_find(const ckpt__index *idx, int kind, int32_t rank,
                                    const char *name)
{
    uint32_t i;
    if (!ckpt__strmap_get(&idx->map, name, map_tag(kind, rank), &i))
        return NULL;
    return &idx->entries[i];
}

#define BAD(...) ckpt__err_set(err, CKPT_ECORRUPT, __VA_ARGS__)

static const ckpt__rankrec *find_rank(const ckpt__index *idx, uint32_t rank)
{
    for (uint32_t r = 0; r < idx->nranks; r++)
        if (idx->ranks[r].rank == rank)
            return &idx->ranks[r];
    return NULL;
}

static int decode_entry(rbuf *b, ckpt__index *idx, uint32_t i, uint64_t *next_chunk,
                        const char *what, ckpt__err *err)
{
    ckpt__entry *e = &idx->entries[i];
    uint64_t nlen = get_le(b, 2);
    uint64_t kind = get_le(b, 1), dtype = get_le(b, 1), ndim = get_le(b, 1);
    (void)get_le(b, 3);
    uint64_t rank = get_le(b, 4), nchunks = get_le(b, 4);
    e->nbytes = get_le(b, 8);
    e->file_off = get_le(b, 8);
    e->chunk0 = get_le(b, 8);
    e->hash = get_le(b, 8);
    if (b->short_read)
        return BAD("%s: entry %u is cut short", what, i);
    if (kind != CKPT__ENTRY_TENSOR && kind != CKPT__ENTRY_META)
        return BAD("%s: entry %u has unknown kind %u", what, i, (unsigned)kind);
    if (!ckpt_dtype_size((ckpt_dtype)dtype))
        return BAD("%s: entry %u has unknown dtype %u", what, i, (unsigned)dtype);
    if (ndim > CKPT_MAX_NDIM)
        return BAD("%s: entry %u has %u dimensions", what, i, (unsigned)ndim);
    e->kind = (int)kind;
    e->dtype = (ckpt_dtype)dtype;
    e->ndim = (int)ndim;
    e->rank = (int32_t)rank;
    e->nchunks = (uint32_t)nchunks;
    int64_t *dims[3] = {e->shape, e->start, e->count};
    for (int a = 0; a < 3; a++)
        for (uint64_t d = 0; d < ndim; d++)
            dims[a][d] = (int64_t)get_le(b, 8);
    const uint8_t *name = take(b, nlen);
    if (!name)
        return BAD("%s: entry %u is cut short", what, i);
    e->name = malloc(nlen + 1);
    if (!e->name)
        return ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", what);
    memcpy(e->name, name, nlen);
    e->name[nlen] = '\0';
    ckpt__err why;
    if (ckpt__name_check_n(e->name, nlen, "entry name", &why) != 0)
        return BAD("%s: entry %u: %s", what, i, why.msg);
    if (memchr(name, 0, nlen))
        return BAD("%s: entry %u: name holds a NUL byte", what, i);

    for (uint64_t d = 0; d < ndim; d++) {
        if (e->shape[d] < 0 || e->start[d] < 0 || e->count[d] < 0 ||
            e->start[d] > e->shape[d] || e->count[d] > e->shape[d] - e->start[d])
            return BAD("%s: '%s': dimension %u out of range", what, e->name, (unsigned)d);
    }
    if (e->kind == CKPT__ENTRY_META && (e->dtype != CKPT_BYTES || e->ndim != 1))
        return BAD("%s: metadata '%s' is not a byte string", what, e->name);
    uint64_t nbytes;
    if (ckpt__shape_bytes(e->dtype, e->ndim, e->count, &nbytes) != 0 || nbytes != e->nbytes)
        return BAD("%s: '%s': byte size %llu does not match its shape", what, e->name,
                   (unsigned long long)e->nbytes);
    uint64_t want = (nbytes + idx->chunk_bytes - 1) / idx->chunk_bytes;
    if (e->nchunks != want)
        return BAD("%s: '%s': %u chunks, expected %llu", what, e->name, e->nchunks,
                   (unsigned long long)want);
    if (e->chunk0 != *next_chunk || e->nchunks > idx->nhashes - *next_chunk)
        return BAD("%s: '%s': chunk hashes out of place", what, e->name);
    *next_chunk += e->nchunks;
    if (rank >= idx->world_size)
        return BAD("%s: '%s': rank %u outside world size %u", what, e->name, (unsigned)rank,
                   idx->world_size);
    const ckpt__rankrec *rr = find_rank(idx, (uint32_t)rank);
    if (!rr)
        return BAD("%s: '%s': rank %u has no file record", what, e->name, (unsigned)rank);
    if (nbytes == 0) {
        if (e->file_off != CKPT__NO_OFFSET)
            return BAD("%s: '%s': empty entry with a data offset", what, e->name);
    } else if (e->file_off == CKPT__NO_OFFSET || e->file_off > rr->file_bytes ||
               nbytes > rr->file_bytes - e->file_off) {
        return BAD("%s: '%s': data range outside rank file %u", what, e->name, (unsigned)rank);
    }
    return 0;
}

int ckpt__index_decode(const uint8_t *buf, size_t len, const char *what, ckpt__index *idx,
                       ckpt__err *err)
{
    memset(idx, 0, sizeof *idx);
    if (!buf || len < HEADER_BYTES + 8)
        return BAD("%s: index is %zu bytes, too short", what, len);
    uint64_t want = XXH3_64bits(buf, len - 8), have = 0;
    for (int k = 0; k < 8; k++)
        have |= (uint64_t)buf[len - 8 + k] << (8 * k);
    if (want != have)
        return BAD("%s: index checksum mismatch (damaged or truncated)", what);
    rbuf b = {buf, len - 8, 0, 0};
    if (memcmp(take(&b, 8), magic, 8) != 0)
        return BAD("%s: not a ckpt index (bad magic)", what);
    uint64_t major = get_le(&b, 2), minor = get_le(&b, 2);
    (void)get_le(&b, 4);
    if (major != CKPT__FORMAT_MAJOR)
        return ckpt__err_set(err, major > CKPT__FORMAT_MAJOR ? CKPT_EFORMAT : CKPT_ECORRUPT,
                             "%s: format version %u.%u, this library reads %d.x", what,
                             (unsigned)major, (unsigned)minor, CKPT__FORMAT_MAJOR);
    idx->minor = (uint16_t)minor;
    idx->step = (int64_t)get_le(&b, 8);
    idx->created_unix = (int64_t)get_le(&b, 8);
    idx->world_size = (uint32_t)get_le(&b, 4);
    idx->nranks = (uint32_t)get_le(&b, 4);
    uint64_t nentries = get_le(&b, 4);
    (void)get_le(&b, 4);
    uint64_t nhashes = get_le(&b, 8);
    idx->chunk_bytes = get_le(&b, 8);
    memcpy(idx->uuid, take(&b, 16), 16);
    if (idx->step < 0 || idx->step > 999999999999LL)
        return BAD("%s: step %lld out of range", what, (long long)idx->step);
    if (idx->world_size == 0 || idx->world_size > MAX_WORLD || idx->nranks == 0 ||
        idx->nranks > idx->world_size)
        return BAD("%s: world size %u with %u rank records", what, idx->world_size,
                   idx->nranks);
    if (idx->chunk_bytes < 4096 || idx->chunk_bytes > (1u << 30) ||
        idx->chunk_bytes % 4096 != 0)
        return BAD("%s: chunk size %llu", what, (unsigned long long)idx->chunk_bytes);
    /* Bound every count by the bytes left before allocating for it. */
    size_t left = b.len - b.pos;
    if ((uint64_t)idx->nranks * RANK_BYTES > left || nentries * ENTRY_FIXED > left ||
        nhashes > left / 8)
        return BAD("%s: counts exceed the record's size", what);
    idx->nentries = (uint32_t)nentries;
    idx->nhashes = nhashes;
    idx->ranks = calloc(idx->nranks, sizeof *idx->ranks);
    idx->entries = calloc(nentries ? nentries : 1, sizeof *idx->entries);
    idx->hashes = malloc((nhashes ? nhashes : 1) * sizeof *idx->hashes);
    if (!idx->ranks || !idx->entries || !idx->hashes) {
        ckpt__index_free(idx);
        return ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", what);
    }
    int rc = 0;
    for (uint32_t r = 0; r < idx->nranks && !rc; r++) {
        ckpt__rankrec *rr = &idx->ranks[r];
        rr->rank = (uint32_t)get_le(&b, 4);
        rr->meta_hash = (uint32_t)get_le(&b, 4);
        if (idx->minor < CKPT__MINOR_META_HASH)
            rr->meta_hash = 0; /* 1.0 wrote 0 there; never read as a hash */
        rr->file_bytes = get_le(&b, 8);
        rr->root = get_le(&b, 8);
        if (rr->rank >= idx->world_size || (r > 0 && rr->rank <= idx->ranks[r - 1].rank))
            rc = BAD("%s: rank record %u is out of order or range", what, r);
    }
    uint64_t next_chunk = 0;
    for (uint32_t i = 0; i < idx->nentries && !rc; i++)
        rc = decode_entry(&b, idx, i, &next_chunk, what, err);
    if (!rc && next_chunk != nhashes)
        rc = BAD("%s: %llu chunk hashes, entries use %llu", what, (unsigned long long)nhashes,
                 (unsigned long long)next_chunk);
    for (uint64_t i = 0; i < nhashes && !rc; i++)
        idx->hashes[i] = get_le(&b, 8);
    if (!rc && (b.short_read || b.pos != b.len))
        rc = BAD("%s: index length does not match its contents", what);
    if (!rc && ckpt__index_build_map(idx) != 0)
        rc = ckpt__err_set(err, CKPT_ENOMEM, "%s: out of memory", what);
    if (!rc && idx->map.len != idx->nentries)
        rc = BAD("%s: duplicate entry names", what);
    if (rc)
        ckpt__index_free(idx);
    return rc;
}
