/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The resharding read (restore step 5 for a registered slice that no saved
 * slice matches): the parts of saved entries that overlap registered
 * boxes, read through the writer backend, up to a queue depth of reads
 * ahead (a read: one chunk, or neighbouring chunks in the file that fit
 * one chunk's buffer), verified, and copied into the tensors in batches
 * of device copy-ins.
 *
 * Invariants:
 *   1. Exactly the chunks the overlaps touch are read, each once per part,
 *      in the order the overlaps consume them (io/assemble.h's walks).
 *   2. No byte of a chunk reaches a tensor before its read completed and
 *      (with verify) it matched its leaf.
 *   3. A buffer is read into again only after every copy-in from it
 *      returned, so memory stays at depth buffers of a chunk each.
 *   4. When it returns, every read it submitted has completed: no backend
 *      thread touches a buffer, a tensor or the file after.
 */
#ifndef CKPT_RUNTIME_RESHARD_H
#define CKPT_RUNTIME_RESHARD_H

#include <stdint.h>

#include "io/index.h"
#include "io/shard.h"
#include "runtime/engine.h"

/* One overlap to read: saved entry e into the registered slice box, whose
 * row-major bytes start at dst. */
typedef struct ckpt__reshard_part {
    const ckpt__entry *e;
    ckpt__box box;
    void *dst;
} ckpt__reshard_part;

/*
 * Reads parts[0..n) of the rank file wf (opened for reading through eng's
 * writer; `path` names it in messages), all of whose entries are in idx,
 * and copies them into their tensors through eng's device on `stream`.
 * At most `depth` reads are in flight, their buffers in eng's
 * staging pool (which must be free: no pipeline runs meanwhile).  verify:
 * every chunk is hashed against its leaf first.  Errors name the file,
 * tensor and chunk the way ckpt__chunk_read does; a tensor may then be
 * partly written.  Blocks; the caller's thread.
 */
int ckpt__reshard_read(ckpt__engine *eng, const ckpt__index *idx, ckpt__wfile *wf,
                       const ckpt__reshard_part *parts, uint32_t n, int depth, int verify,
                       const char *path, void *stream, ckpt__err *err);

#endif
