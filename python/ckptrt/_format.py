# SPDX-License-Identifier: Apache-2.0
"""The on-disk format (docs/FORMAT.md): the manifest's user block, the
binary index and its hash tree, checked the way the C reader checks them."""
import errno
import io
import os
import stat
import struct

from ._xxh import xxh3_64

FORMAT_MAJOR = 1
MANIFEST = "manifest.h5"
MANIFEST_MAX = 1 << 30
USER_BLOCK = 512
MAX_NDIM = 8
KIND_TENSOR, KIND_META = 1, 2

# ckpt_dtype values (include/ckpt/ckpt.h): name, size.
DTYPES = {1: ("f64", 8), 2: ("f32", 4), 3: ("f16", 2), 4: ("bf16", 2), 5: ("fp8_e4m3", 1),
          6: ("fp8_e5m2", 1), 7: ("i64", 8), 8: ("i32", 4), 9: ("i16", 2), 10: ("i8", 1),
          11: ("u8", 1), 12: ("bool", 1), 13: ("bytes", 1)}


class CkptError(Exception):
    """A checkpoint could not be read."""


class CorruptError(CkptError):
    """The checkpoint is damaged (CKPT_ECORRUPT)."""


class FormatError(CkptError):
    """An intact checkpoint of a newer major format version (CKPT_EFORMAT)."""


class Entry:
    __slots__ = ("name", "kind", "dtype", "ndim", "rank", "nchunks", "nbytes", "file_off",
                 "chunk0", "hash", "shape", "start", "count")

    @property
    def dtype_name(self):
        return DTYPES[self.dtype][0]


class Index:
    """A decoded, validated index: entries, rank records, leaves."""

    def __init__(self):
        self.minor = 0
        self.step = 0
        self.created_unix = 0
        self.world_size = 0
        self.chunk_bytes = 0
        self.uuid = b""
        self.ranks = {}  # rank -> (meta_hash, file_bytes, root)
        self.entries = []
        self.hashes = ()


def _bad(what, msg):
    return CorruptError(f"{what}: {msg}")


def decode_index(buf, what):
    """Decodes and validates the binary index: CorruptError for any defect,
    FormatError for a newer major version."""
    buf = bytes(buf)
    if len(buf) < 80 + 8:
        raise _bad(what, f"index is {len(buf)} bytes, too short")
    if xxh3_64(buf[:-8]) != struct.unpack_from("<Q", buf, len(buf) - 8)[0]:
        raise _bad(what, "index checksum mismatch (damaged or truncated)")
    if buf[:8] != b"CKPTIDX1":
        raise _bad(what, "not a ckpt index (bad magic)")
    major, minor, _flags = struct.unpack_from("<HHI", buf, 8)
    if major != FORMAT_MAJOR:
        cls = FormatError if major > FORMAT_MAJOR else CorruptError
        raise cls(f"{what}: format version {major}.{minor}, this reader reads "
                  f"{FORMAT_MAJOR}.x")
    idx = Index()
    idx.minor = minor
    (idx.step, idx.created_unix, idx.world_size, nranks, nentries, _res, nhashes,
     idx.chunk_bytes) = struct.unpack_from("<qqIIIIQQ", buf, 16)
    idx.uuid = buf[64:80]
    end = len(buf) - 8
    pos = 80
    if not 0 <= idx.step <= 999999999999:
        raise _bad(what, f"step {idx.step} out of range")
    if idx.world_size == 0 or idx.world_size > (1 << 20) or nranks == 0 or \
            nranks > idx.world_size:
        raise _bad(what, f"world size {idx.world_size} with {nranks} rank records")
    cb = idx.chunk_bytes
    if cb < 4096 or cb > (1 << 30) or cb % 4096:
        raise _bad(what, f"chunk size {cb}")
    left = end - pos
    if nranks * 24 > left or nentries * 48 > left or nhashes > left // 8:
        raise _bad(what, "counts exceed the record's size")
    last = -1
    for _ in range(nranks):
        rank, meta_hash, file_bytes, root = struct.unpack_from("<IIQQ", buf, pos)
        pos += 24
        if rank >= idx.world_size or rank <= last:
            raise _bad(what, "rank record out of order or range")
        last = rank
        idx.ranks[rank] = (meta_hash if minor >= 1 else 0, file_bytes, root)
    next_chunk = 0
    seen = set()
    for _ in range(nentries):
        if pos + 48 > end:
            raise _bad(what, "index length does not match its contents")
        e = Entry()
        (name_len, e.kind, e.dtype, e.ndim, z0, z1, z2, e.rank, e.nchunks, e.nbytes,
         e.file_off, e.chunk0, e.hash) = struct.unpack_from("<HBBBBBBiIQQQQ", buf, pos)
        pos += 48
        if e.kind not in (KIND_TENSOR, KIND_META) or e.dtype not in DTYPES or \
                not 0 <= e.ndim <= MAX_NDIM or (z0, z1, z2) != (0, 0, 0):
            raise _bad(what, "entry with a bad kind, dtype or ndim")
        n = 3 * e.ndim
        if pos + 8 * n + name_len > end:
            raise _bad(what, "index length does not match its contents")
        dims = struct.unpack_from(f"<{n}q", buf, pos)
        pos += 8 * n
        e.shape, e.start, e.count = dims[:e.ndim], dims[e.ndim:2 * e.ndim], dims[2 * e.ndim:]
        try:
            e.name = buf[pos:pos + name_len].decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(what, "entry name is not UTF-8") from None
        pos += name_len
        if not 1 <= name_len <= 255 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in e.name):
            raise _bad(what, "invalid entry name")
        if e.rank < 0 or e.rank >= idx.world_size or e.rank not in idx.ranks:
            raise _bad(what, f"'{e.name}': rank {e.rank} has no record")
        nel = 1
        for s, st, c in zip(e.shape, e.start, e.count):
            if s < 0 or st < 0 or c < 0 or st + c > s:
                raise _bad(what, f"'{e.name}': slice outside its shape")
            nel *= c
        if e.nbytes != nel * DTYPES[e.dtype][1] or e.nchunks != -(-e.nbytes // cb) or \
                e.chunk0 != next_chunk:
            raise _bad(what, f"'{e.name}': size or chunks do not add up")
        next_chunk += e.nchunks
        if e.nbytes:
            if e.file_off + e.nbytes > idx.ranks[e.rank][1]:
                raise _bad(what, f"'{e.name}': data range outside rank file {e.rank}")
        key = (e.kind, e.rank, e.name)
        if key in seen:
            raise _bad(what, "duplicate entry names")
        seen.add(key)
        idx.entries.append(e)
    if next_chunk != nhashes or pos + 8 * nhashes != end:
        raise _bad(what, "index length does not match its contents")
    idx.hashes = struct.unpack_from(f"<{nhashes}Q", buf, pos)
    check_tree(idx, what)
    return idx


def entry_hash(e, leaves):
    head = struct.pack("<BBBIQ", e.kind, e.dtype, e.ndim, e.rank & 0xFFFFFFFF, e.nbytes)
    dims = b"".join(struct.pack("<QQQ", s & (2**64 - 1), st & (2**64 - 1), c & (2**64 - 1))
                    for s, st, c in zip(e.shape, e.start, e.count))
    name = e.name.encode("utf-8")
    return xxh3_64(head + dims + struct.pack("<H", len(name)) + name +
                   struct.pack(f"<{len(leaves)}Q", *leaves))


def check_tree(idx, what):
    for e in idx.entries:
        if entry_hash(e, idx.hashes[e.chunk0:e.chunk0 + e.nchunks]) != e.hash:
            raise _bad(what, f"hash of entry '{e.name}' does not match its chunk hashes")
    for rank, (_m, _b, root) in idx.ranks.items():
        nodes = [e.hash for e in idx.entries if e.rank == rank]
        if xxh3_64(struct.pack(f"<Q{len(nodes)}Q", rank, *nodes)) != root:
            raise _bad(what, f"Merkle root of rank {rank} differs")


def index_root(idx):
    roots = [idx.ranks[r][2] for r in sorted(idx.ranks)]
    return xxh3_64(struct.pack(f"<{len(roots)}Q", *roots))


def read_manifest(path):
    """The verified index of a manifest.h5 (user block, whole-file checksum,
    index, hash tree, root attribute), as the C reader checks it."""
    import h5py
    import numpy as np

    what = path
    try:
        # O_NOFOLLOW: a symlink is damage; O_NONBLOCK: a FIFO must not hang.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as ex:
        if ex.errno in (errno.ENOENT, errno.ELOOP):
            raise _bad(what, "missing or a symbolic link") from None
        raise CkptError(f"open {path}: {ex.strerror}") from None
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _bad(what, "not a regular file")
        if st.st_size > MANIFEST_MAX:
            raise _bad(what, "larger than any manifest")
        data = f.read()
    if len(data) < USER_BLOCK or data[:8] != b"CKPTMAN1":
        raise _bad(what, "not a ckpt manifest (bad magic)")
    version, flags, length, body_hash, head_hash = struct.unpack_from("<IIQQQ", data, 8)
    hashed = False
    if flags & 1:
        blank = data[:32] + b"\0" * 8 + data[40:USER_BLOCK]
        if xxh3_64(blank) != head_hash:
            raise _bad(what, "user block header hash mismatch")
        hashed = True
    if version != 1 or flags & ~1:
        if hashed and version > 1:
            raise FormatError(f"{what}: manifest user-block version {version} (flags {flags}), "
                              "newer than this reader (1)")
        raise _bad(what, f"user-block version {version}, flags {flags}")
    if any(data[40 if hashed else 32:USER_BLOCK]):
        raise _bad(what, "reserved user-block bytes are not zero")
    if length != len(data) or xxh3_64(data[USER_BLOCK:]) != body_hash:
        raise _bad(what, "checksum mismatch (damaged or truncated)")
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            raw = np.asarray(f["index"][()], dtype=np.uint8).tobytes()
            root = int(f.attrs["root"])
    except (OSError, KeyError, ValueError) as ex:
        raise _bad(what, f"unreadable HDF5 ({ex})") from None
    idx = decode_index(raw, what)
    if index_root(idx) != root:
        raise _bad(what, "checkpoint root does not match the index")
    return idx
