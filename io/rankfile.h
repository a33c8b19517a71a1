/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rank files (rank-NNNNN.h5): plain HDF5 whose bulk bytes bypass the HDF5
 * library.  The layout (one contiguous dataset per entry, allocated early,
 * never filled, big ones 4 KiB-aligned) is created through HDF5; the data
 * is then written by the writer backend at each dataset's file offset;
 * finally HDF5 closes the file.
 *
 *   /                    ckpt_format_version, rank, world_size, chunk_bytes
 *   /tensors/<escaped>   one dataset per tensor: name, ckpt_dtype, shape,
 *                        [start]
 *   /meta/<escaped>      one u8 dataset per metadata blob, same attributes
 *
 * Format 1.2: nothing of one save but its data is in the file (the chunk
 * and entry hashes, the root, step and uuid live in the done-record and the
 * manifest, which are the authority; 1.0 and 1.1 files also carried them as
 * attributes, and the structure check still compares those), and no object
 * header tracks times.  So every byte outside the entries' data ranges is a
 * function of the layout (the entries' names, kinds, dtypes, shapes,
 * slices and sizes, the rank, world size and chunk size): the runtime
 * builds it through HDF5 once, keeps its image (ckpt__rankfile_image_read)
 * and writes later files of the same layout from it without HDF5
 * (ckpt__rankfile_image_write), the same bytes HDF5 would write.
 *
 * Invariant: between create and finish nothing but the writer touches the
 * tensors' data ranges, and HDF5 writes nothing inside them (fill time
 * NEVER); an image covers exactly the bytes outside every entry's range.
 *
 * Every byte of a finished rank file is covered by a hash in the index:
 * the bytes of each entry's data range by its chunk hashes, every other
 * byte (HDF5's superblock, object headers, heaps, attributes, padding) by
 * the metadata hash (ckpt__rankfile_meta_hash, format 1.1), which is
 * checked without HDF5 so that damaged metadata never reaches its parser.
 */
#ifndef CKPT_IO_RANKFILE_H
#define CKPT_IO_RANKFILE_H

#include "io/index.h"

typedef struct ckpt__rankfile ckpt__rankfile;

/* Layout rule: the data of an entry of at least this many bytes starts
 * 4 KiB-aligned in its rank file (HDF5's alignment property), so its
 * writes can take the O_DIRECT path; smaller ones are packed tightly. */
#define CKPT__RANKFILE_ALIGN_MIN 65536u
static inline int ckpt__rankfile_data_aligned(uint64_t nbytes)
{
    return nbytes >= CKPT__RANKFILE_ALIGN_MIN;
}

/*
 * Creates `path` (which must not exist) with a dataset per entry of `rank`
 * in idx, writes metadata entries' bytes (meta_data[i] for entry i) through
 * HDF5, and sets every entry's file_off.  *data_end gets the end of the
 * last data byte (for preallocation).  The file stays open.
 */
int ckpt__rankfile_create(const char *path, ckpt__index *idx, uint32_t rank,
                          const void *const *meta_data, uint64_t *data_end,
                          ckpt__rankfile **out, ckpt__err *err);
/* Closes the file, HDF5's last metadata copied into it (format 1.2 adds
 * nothing of the save). */
int ckpt__rankfile_finish(ckpt__rankfile *rf, const ckpt__index *idx, uint32_t rank,
                          ckpt__err *err);
/* Closes without finishing (after a failed save). NULL is a no-op. */
void ckpt__rankfile_abort(ckpt__rankfile *rf);
/* A new read-write descriptor of the file on disk (a dup: no lookup), the
 * caller's to close, or -1 (errno set). */
int ckpt__rankfile_dup_fd(const ckpt__rankfile *rf);
/*
 * The metadata hash: XXH3-64, in file order, of the bytes of [0, file_bytes)
 * that lie outside the data range [file_off, file_off + nbytes) of every
 * entry of `rank` in idx (tensors and metadata blobs alike: their bytes have
 * chunk hashes).  Reads the file with pread; no HDF5, no lock needed.
 * CKPT_ECORRUPT when path is not a regular file of file_bytes bytes.
 */
int ckpt__rankfile_meta_hash(const char *path, const ckpt__index *idx, uint32_t rank,
                             uint64_t file_bytes, uint64_t *hash, ckpt__err *err);
/*
 * The image of a finished rank file: its bytes outside every entry's data
 * range (what the metadata hash covers) as pieces in file order, pages of
 * zeros left out (a new file reads zeros there), with the file's size and
 * its metadata hash.
 */
typedef struct ckpt__rankfile_piece {
    uint64_t off, len;
} ckpt__rankfile_piece;
typedef struct ckpt__rankfile_image {
    uint64_t file_bytes;
    uint64_t meta_hash;          /* all 64 bits (the index keeps the tag) */
    ckpt__rankfile_piece *piece; /* sorted, disjoint, outside every data range */
    size_t npieces;
    uint8_t *bytes;              /* the pieces' bytes, concatenated */
    uint64_t nbytes;
} ckpt__rankfile_image;
/* Reads path's image (and hashes it, as ckpt__rankfile_meta_hash does: one
 * pass); *img is the caller's to free with ckpt__rankfile_image_free.  fd:
 * a descriptor of path open for reading, used and left open (no lookup:
 * the writer's, just after the save wrote it), or -1 to open path. */
int ckpt__rankfile_image_read(const char *path, int fd, const ckpt__index *idx, uint32_t rank,
                              uint64_t file_bytes, ckpt__rankfile_image *img,
                              ckpt__err *err);
void ckpt__rankfile_image_free(ckpt__rankfile_image *img);
/*
 * Creates `path` (which must not exist; never through a link) holding img,
 * the bytes of the metadata entries of `rank` (meta_data[i] for entry i, at
 * their file_off, which idx must hold) and img->file_bytes long; the
 * tensors' data ranges are left for the writer.  The result is the file
 * ckpt__rankfile_create + finish would make of idx's layout, once the data
 * is in.  No HDF5.  Errors name path and map errno (ENOSPC -> CKPT_ENOSPC).
 * fd_out: NULL closes the file; else it receives the read-write descriptor
 * (for the writer, ckpt__writer_file_open), -1 on failure.
 */
int ckpt__rankfile_image_write(const char *path, const ckpt__rankfile_image *img,
                               const ckpt__index *idx, uint32_t rank,
                               const void *const *meta_data, int *fd_out, ckpt__err *err);
/* What the index records of that hash (ckpt__rankrec.meta_hash): the low
 * 32 bits, the room a 1.0 reader skips in the rank record. */
static inline uint32_t ckpt__meta_hash_tag(uint64_t hash)
{
    return (uint32_t)hash;
}
/*
 * Checks rr's rank file against the metadata hash idx records: 0 when it
 * matches, CKPT_ECORRUPT naming the file when it does not (or the file is
 * not a regular file of its recorded size).  An index older than format
 * 1.1 records none: *hashed = 0 and nothing is read.
 */
int ckpt__rankfile_check_meta(const char *path, const ckpt__index *idx,
                              const ckpt__rankrec *rr, int *hashed, ckpt__err *err);
/*
 * Bytes HDF5 reserves at a time for the metadata of rank's file
 * (H5Pset_meta_block_size): 4 KiB, plus 1 KiB and 8 bytes per chunk for each
 * entry, rounded up to 4 KiB, at most 1 MiB (docs/FORMAT.md).
 */
uint64_t ckpt__rankfile_meta_block(const ckpt__index *idx, uint32_t rank);
/*
 * Checks the HDF5 structure of a finished rank file against idx: every
 * entry's dataset exists with the right type, shape and offset, and, in a
 * file older than format 1.2, the hash and root attributes match idx.  Data
 * bytes are not read here.
 */
int ckpt__rankfile_check(const char *path, const ckpt__index *idx, uint32_t rank,
                         ckpt__err *err);

#endif
