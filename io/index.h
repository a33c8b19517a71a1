/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint index: what each rank wrote (entries with dtype, shapes,
 * data offsets in the rank file, chunk hashes) and each rank file's size
 * and Merkle root.  One binary encoding (docs/FORMAT.md, "index") serves as
 * the done-record a rank leaves in the partial folder and as the /index
 * dataset of manifest.h5, so one hardened decoder reads both.
 *
 * Hash tree: leaf = XXH3-64 of one chunk (chunk_bytes of an entry's data,
 * the last one shorter); node = XXH3-64 over the entry's description and
 * its leaves (ckpt__entry_hash); rank root = XXH3-64 over the node hashes
 * of that rank's entries in index order; checkpoint root = XXH3-64 over the
 * rank roots in rank order.
 *
 * Format minor versions: 1.0; 1.1 whose rank records carry the hash of
 * the rank file's bytes outside tensor data in the u32 that 1.0 wrote as 0
 * (a 1.0 reader skips it); 1.2, whose index is 1.1's and whose rank files
 * lose their per-save attributes (CKPT__MINOR_LAYOUT_ONCE).  The encoder writes idx->minor, so a writer sets
 * it to CKPT__FORMAT_MINOR; the decoder reads every 1.x.
 *
 * Invariants of a decoded index: every field range-checked; names valid;
 * nbytes = prod(count) * dtype size without overflow; nchunks =
 * ceil(nbytes / chunk_bytes); chunk ranges disjoint and inside hashes[];
 * file ranges inside the rank's file size; (kind, rank, name) unique.
 */
#ifndef CKPT_IO_INDEX_H
#define CKPT_IO_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "io/strmap.h"
#include "base/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CKPT__FORMAT_MAJOR 1
#define CKPT__FORMAT_MINOR 2
/* The first minor version whose rank records carry meta_hash. */
#define CKPT__MINOR_META_HASH 1
/* The first minor version whose rank files hold nothing of one save but
 * its data (no hash, step, uuid or root attributes): their HDF5 metadata is
 * a function of the layout alone (io/rankfile.h). */
#define CKPT__MINOR_LAYOUT_ONCE 2
#define CKPT__NO_OFFSET UINT64_MAX

enum ckpt__entry_kind { CKPT__ENTRY_TENSOR = 1, CKPT__ENTRY_META = 2 };

typedef struct ckpt__entry {
    char *name;
    int kind;
    ckpt_dtype dtype;
    int ndim;
    int32_t rank;
    int64_t shape[CKPT_MAX_NDIM]; /* global shape */
    int64_t start[CKPT_MAX_NDIM]; /* this shard's offsets in the global tensor */
    int64_t count[CKPT_MAX_NDIM]; /* this shard's shape */
    uint64_t nbytes;
    uint64_t file_off;            /* data offset in the rank file, or NO_OFFSET */
    uint64_t chunk0;              /* first leaf in hashes[] */
    uint32_t nchunks;
    uint64_t hash;                /* node hash */
} ckpt__entry;

typedef struct ckpt__rankrec {
    uint32_t rank;
    uint64_t file_bytes;
    uint64_t root;
    uint32_t meta_hash; /* low 32 bits of the rank file's metadata hash
                           (rankfile.h); 0 and meaningless before minor 1 */
} ckpt__rankrec;

typedef struct ckpt__index {
    uint16_t minor;       /* format minor version: encoded as is, set by decode */
    int64_t step;
    int64_t created_unix;
    uint32_t world_size;
    uint64_t chunk_bytes;
    uint8_t uuid[16];
    ckpt__rankrec *ranks;
    uint32_t nranks;
    ckpt__entry *entries;
    uint32_t nentries;
    uint64_t *hashes;
    uint64_t nhashes;
    ckpt__strmap map; /* (name, kind << 24 | rank) -> entry index */
} ckpt__index;

/* A chunk of an index entry (index into entries[], chunk number): one
 * that failed verification, in the pipeline's and verify's reports. */
typedef struct ckpt__bad_chunk {
    uint32_t entry;
    uint32_t chunk;
} ckpt__bad_chunk;

/* Encodes idx; *buf is malloc'd, owned by the caller. */
int ckpt__index_encode(const ckpt__index *idx, uint8_t **buf, size_t *len, ckpt__err *err);
/* Decodes and validates (CKPT_ECORRUPT with a reason on any defect,
 * CKPT_EFORMAT for a newer major version); `what` names the source. */
int ckpt__index_decode(const uint8_t *buf, size_t len, const char *what, ckpt__index *out,
                       ckpt__err *err);
void ckpt__index_free(ckpt__index *idx);
/* Builds idx->map (decode does this); -1 when out of memory. */
int ckpt__index_build_map(ckpt__index *idx);
/* The entry (kind, rank, name), or NULL. */
const ckpt__entry *ckpt__index_find(const ckpt__index *idx, int kind, int32_t rank,
                                    const char *name);

uint64_t ckpt__entry_hash(const ckpt__entry *e, const uint64_t *leaves);
uint64_t ckpt__rank_root(const ckpt__index *idx, uint32_t rank);
uint64_t ckpt__index_root(const ckpt__index *idx);
/* Recomputes node hashes and roots: CKPT_ECORRUPT naming the first that
 * differs. */
int ckpt__index_check_tree(const ckpt__index *idx, const char *what, ckpt__err *err);

/* Element count product and byte size with overflow checks; -1 on overflow. */
int ckpt__shape_bytes(ckpt_dtype dtype, int ndim, const int64_t *count, uint64_t *nbytes);

#ifdef __cplusplus
}
#endif
#endif
