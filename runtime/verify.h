/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Full verification of a committed checkpoint (runtime/verify.c), for
 * `ckpt verify` and the tests.  C++-safe: the engine is only named.
 */
#ifndef CKPT_RUNTIME_VERIFY_H
#define CKPT_RUNTIME_VERIFY_H

#include <stdint.h>

#include "io/index.h"
#include "base/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ckpt__engine ckpt__engine;

typedef struct ckpt__verify_report {
    int64_t step;
    uint64_t bytes;           /* data bytes read and hashed */
    uint32_t ntensors, nmeta;
    uint32_t nunhashed;       /* rank files without a metadata hash (format 1.0):
                                 their HDF5 metadata was checked by structure only */
    ckpt__bad_chunk *bads;    /* malloc'd: chunks that failed */
    uint32_t nbads;
    ckpt__index idx;          /* the manifest's index */
    /* Optional, set before the call: progress of the data pass, per rank
     * file (done and total restart for each rank file). */
    void (*progress)(void *user, uint64_t done, uint64_t total);
    void *progress_user;
} ckpt__verify_report;

/* Verifies one committed checkpoint of dir: manifest, every rank file's
 * size, the hash of its bytes outside tensor data (its HDF5 metadata, before
 * HDF5 parses any of it) and then its HDF5 structure, every chunk.  0 when
 * every byte of the checkpoint verified; CKPT_ECORRUPT when not (err names
 * the first problem, report->bads lists bad chunks); other codes for I/O
 * errors.  The engine's slabs must hold a chunk. */
int ckpt__verify_step(ckpt__engine *eng, const char *dir, int64_t step,
                      ckpt__verify_report *report, ckpt__err *err);
/* One rank file of a folder: rank's file in sdir (a committed step folder,
 * or a replica's partial folder) against idx (a full or a part manifest's
 * index that lists rank): its size, its metadata hash, its HDF5 structure
 * and every chunk hash of rank's entries.  0 when all verified;
 * CKPT_ECORRUPT naming the first problem (CKPT_ENOTFOUND: idx lists no
 * such rank); other codes for I/O errors.  The engine's slabs must hold a
 * chunk; call from the one thread that uses eng. */
int ckpt__verify_rank_file(ckpt__engine *eng, const char *sdir, const ckpt__index *idx,
                           uint32_t rank, ckpt__err *err);
/* Same, with an engine of its own (pwrite writer, 64 MiB staging). */
int ckpt__verify(const char *dir, int64_t step, ckpt__verify_report *report, ckpt__err *err);

/* An engine kept for many verifications of checkpoints whose chunks are at
 * most chunk_bytes (what ckpt__verify opens for one call; the tests' byte
 * sweeps verify thousands of times). */
typedef struct ckpt__verifier ckpt__verifier;
int ckpt__verifier_open(uint64_t chunk_bytes, ckpt__verifier **out, ckpt__err *err);
int ckpt__verifier_run(ckpt__verifier *v, const char *dir, int64_t step,
                       ckpt__verify_report *report, ckpt__err *err);
void ckpt__verifier_close(ckpt__verifier *v); /* NULL is a no-op */
void ckpt__verify_report_free(ckpt__verify_report *r);

#ifdef __cplusplus
}
#endif
#endif
