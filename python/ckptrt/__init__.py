# SPDX-License-Identifier: Apache-2.0
"""Read ckptrt checkpoints from Python.

    import ckptrt
    ck = ckptrt.open("/ckpt/run1")
    for c in ck.checkpoints():          # newest first
        print(c.step, c.valid, c.world_size, c.bytes)
    state = ck.load()                   # {name: numpy array}, newest valid step
    w = ck.read_slice("emb", (0, 0), (16, 64))

Tensors are assembled whole from the slices the ranks saved (any number of
ranks).  With ``verify=True`` (the default) every chunk read is hashed with
XXH3-64 and compared with the manifest's leaf, after the manifest itself
(user block, whole-file checksum, index, hash tree) verified: a damaged
byte raises ``CorruptError`` naming the tensor and chunk.  A checkpoint of
a newer major format raises ``FormatError``.

dtypes: f64 f32 f16 i64 i32 i16 i8 u8 bool as numpy's own; bf16,
fp8_e4m3 and fp8_e5m2 as ``ml_dtypes.bfloat16`` / ``float8_e4m3fn`` /
``float8_e5m2`` when ml_dtypes is installed, else (the fallback) their raw
bits as ``uint16`` / ``uint8`` arrays; ``meta(name).dtype`` and
``tensors()`` always say the saved dtype.  ``bytes`` tensors are uint8.
"""
import errno
import mmap
import os
import re
import stat
from collections import namedtuple

import numpy as np

from . import _format
from ._format import CkptError, CorruptError, FormatError, KIND_META, KIND_TENSOR
from ._xxh import BACKEND as XXH3_BACKEND
from ._xxh import xxh3_64

__all__ = ["open", "Folder", "CheckpointInfo", "TensorInfo", "CkptError", "CorruptError",
           "FormatError", "numpy_dtype", "XXH3_BACKEND"]
__version__ = "0.1.0"

try:
    import ml_dtypes as _ml
except ImportError:  # the documented fallback: raw bits
    _ml = None

_NUMPY = {"f64": np.float64, "f32": np.float32, "f16": np.float16, "i64": np.int64,
          "i32": np.int32, "i16": np.int16, "i8": np.int8, "u8": np.uint8, "bool": np.bool_,
          "bytes": np.uint8}
_RAW = {"bf16": np.uint16, "fp8_e4m3": np.uint8, "fp8_e5m2": np.uint8}
_ML = {"bf16": "bfloat16", "fp8_e4m3": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2"}

CheckpointInfo = namedtuple("CheckpointInfo", "step valid world_size bytes error")
CheckpointInfo.__doc__ = "One committed checkpoint: valid says its manifest and rank-file " \
                         "sizes checked (data is not read); error says why not."
TensorInfo = namedtuple("TensorInfo", "name dtype shape")

_STEP = re.compile(r"step-(\d{12})\Z")

_PIECE = 32 << 20  # bytes one thread reads and hashes at a time
_ALIGN = 4096      # O_DIRECT: offsets, lengths and addresses
_DIRECT_MIN = 1 << 20  # smaller reads go through the page cache


def _empty(shape, dtype):
    """np.empty, page-aligned (anonymous mmap) when large, so that O_DIRECT
    can read into it."""
    n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if n < _DIRECT_MIN:
        return np.empty(shape, dtype=dtype)
    m = mmap.mmap(-1, n)
    if hasattr(m, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
        m.madvise(mmap.MADV_HUGEPAGE)  # fewer page faults on first touch
    return np.frombuffer(m, dtype=dtype).reshape(shape)
_POOL = []


def _pool():
    """The reader threads, made on first use (one process-wide pool: the
    threads hold no state of any checkpoint)."""
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor
        _POOL.append(ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1)),
                                        thread_name_prefix="ckptrt-read"))
    return _POOL[0]


def numpy_dtype(ckpt_dtype, raw=False):
    """The numpy dtype arrays of a ckpt dtype ("bf16", ...) load as."""
    if ckpt_dtype in _NUMPY:
        return np.dtype(_NUMPY[ckpt_dtype])
    if _ml is not None and not raw:
        return np.dtype(getattr(_ml, _ML[ckpt_dtype]))
    return np.dtype(_RAW[ckpt_dtype])


def open(path):  # noqa: A001 - the package's entry point, as the issue names it
    """A checkpoint folder (DIR of ckpt_config.dir)."""
    return Folder(path)


class _Checkpoint:
    """One verified manifest and the rank files it names."""

    def __init__(self, folder, step):
        self.dir = os.path.join(folder, f"step-{step:012d}")
        self.idx = _format.read_manifest(os.path.join(self.dir, _format.MANIFEST))
        if self.idx.step != step:
            raise CorruptError(f"{self.dir}: manifest records step {self.idx.step}")
        self._fds, self._dfds = {}, {}
        self.tensors = {}
        for e in self.idx.entries:
            if e.kind == KIND_TENSOR:
                self.tensors.setdefault(e.name, []).append(e)
        self._check_layout()

    def _check_layout(self):
        """The slices of each name agree on dtype and shape and tile it."""
        for name, es in self.tensors.items():
            e0 = es[0]
            vol = 1
            for s in e0.shape:
                vol *= s
            total = 0
            for e in es:
                if e.dtype != e0.dtype or e.shape != e0.shape:
                    raise CorruptError(f"{self.dir}: tensor '{name}': slices disagree")
                n = 1
                for c in e.count:
                    n *= c
                total += n
            boxes = [(e.start, e.count) for e in es]
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    if _intersect(boxes[i], boxes[j], 1):
                        raise CorruptError(f"{self.dir}: tensor '{name}': slices overlap")
            if total != vol:
                raise CorruptError(f"{self.dir}: tensor '{name}': slices do not cover it")

    def close(self):
        for fd in list(self._fds.values()) + list(self._dfds.values()):
            if fd is not None:
                os.close(fd)
        self._fds, self._dfds = {}, {}

    def fd(self, rank):
        if rank not in self._fds:
            path = os.path.join(self.dir, f"rank-{rank:05d}.h5")
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError:
                raise CorruptError(f"{path} is missing") from None
            except OSError as ex:
                raise CorruptError(f"{path}: {ex.strerror}") from None
            st = os.fstat(fd)
            want = self.idx.ranks[rank][1]
            if not stat.S_ISREG(st.st_mode) or st.st_size != want:
                os.close(fd)
                raise CorruptError(f"{path} is {st.st_size} bytes, the manifest says {want} "
                                   "(truncated or replaced)")
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)  # larger readahead
            self._fds[rank] = fd
        return self._fds[rank]

    def dfd(self, rank):
        """The rank file opened with O_DIRECT (the same inode as fd(rank)),
        or None where the file system refuses it."""
        if rank not in self._dfds:
            fd = self.fd(rank)
            d = None
            if hasattr(os, "O_DIRECT"):
                try:
                    d = os.open(os.path.join(self.dir, f"rank-{rank:05d}.h5"),
                                os.O_RDONLY | os.O_DIRECT | os.O_NOFOLLOW | os.O_NONBLOCK |
                                os.O_CLOEXEC)
                    if os.fstat(d).st_ino != os.fstat(fd).st_ino:
                        os.close(d)
                        d = None
                except OSError:
                    d = None
            self._dfds[rank] = d
        return self._dfds[rank]

    def read_chunks(self, e, c0, c1, out, verify):
        """Chunks [c0, c1) of entry e into the writable buffer out (their
        bytes), each hashed against its leaf."""
        self.run_pieces(self.pieces(e, c0, c1, out), verify)

    def pieces(self, e, c0, c1, out):
        """The reads of chunks [c0, c1) of entry e into out, in pieces of
        about _PIECE bytes (run_pieces runs them).  The files are opened
        here, on the caller's thread."""
        cb = self.idx.chunk_bytes
        mv = memoryview(out).cast("B")
        fds = (self.fd(e.rank), self.dfd(e.rank) if mv.nbytes >= _DIRECT_MIN else None,
               np.frombuffer(mv, np.uint8).ctypes.data if mv.nbytes else 0)
        per = max(1, _PIECE // cb)
        return [(fds, e, c0, c, min(c + per, c1), mv) for c in range(c0, c1, per)]

    def run_pieces(self, jobs, verify):
        """Reads and hashes the pieces, several at once on a few threads
        (os.preadv and xxhash release the GIL), as the C runtime keeps
        several reads in flight; raises the first piece's error in order."""
        if len(jobs) == 1:
            self._read_piece(*jobs[0], verify)
            return
        futures = [_pool().submit(self._read_piece, *j, verify) for j in jobs]
        for f in futures:  # every piece finishes before a buffer is handed back
            f.exception()
        for f in futures:
            f.result()

    def _read_piece(self, fds, e, c0, a, b, mv, verify):
        fd, dfd, base = fds
        cb = self.idx.chunk_bytes
        lo, hi = (a - c0) * cb, min(b * cb, e.nbytes) - c0 * cb
        off = e.file_off + c0 * cb
        got = 0
        # O_DIRECT for the aligned part, as the C restore reads (no page
        # cache copy); the unaligned tail and any refusal go buffered.
        if dfd is not None and (off + lo) % _ALIGN == 0 and (base + lo) % _ALIGN == 0:
            n = (hi - lo) // _ALIGN * _ALIGN
            try:
                while got < n:
                    r = os.preadv(dfd, [mv[lo + got:lo + n]], off + lo + got)
                    if r <= 0 or r % _ALIGN:
                        got += max(r, 0)
                        break
                    got += r
            except OSError as ex:
                if ex.errno != errno.EINVAL:
                    raise
        while lo + got < hi:
            r = os.preadv(fd, [mv[lo + got:hi]], off + lo + got)
            if r == 0:
                raise CorruptError(f"{self.dir}/rank-{e.rank:05d}.h5: tensor '{e.name}' is "
                                   "cut short")
            got += r
        if verify:
            for c in range(a, b):
                x = (c - c0) * cb
                if xxh3_64(mv[x:min(x + cb, hi)]) != self.idx.hashes[e.chunk0 + c]:
                    kind = "metadata" if e.kind == KIND_META else "tensor"
                    raise CorruptError(f"{self.dir}/rank-{e.rank:05d}.h5: {kind} '{e.name}' "
                                       f"chunk {c} failed its checksum")

    def out_array(self, name, count, raw, out):
        """out checked for the box of shape count of tensor name, or a new
        array for it."""
        e0 = self.tensors[name][0]
        dt = numpy_dtype(e0.dtype_name, raw)
        esz = _format.DTYPES[e0.dtype][1]
        if out is None:
            return _empty(tuple(count), dt)
        if out.shape != tuple(count) or out.dtype.itemsize != esz or \
                not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError(f"out['{name}'] must be a writable C-contiguous array of shape "
                             f"{tuple(count)} with {esz}-byte elements")
        return out

    def whole_pieces(self, name, out):
        """The reads of tensor name into out when one saved entry holds it
        whole (then out takes its bytes as they are), else None."""
        es = self.tensors[name]
        e = es[0]
        if len(es) != 1 or e.ndim == 0 or tuple(e.start) != (0,) * e.ndim or \
                tuple(e.count) != tuple(e.shape):
            return None
        return self.pieces(e, 0, e.nchunks, out.reshape(-1).view(np.uint8)) if e.nbytes else []

    def read_box(self, name, start, count, verify, raw=False, out=None):
        es = self.tensors[name]
        e0 = es[0]
        dt = numpy_dtype(e0.dtype_name, raw)
        esz = _format.DTYPES[e0.dtype][1]
        out = self.out_array(name, count, raw, out)
        want = (tuple(start), tuple(count))
        cb = self.idx.chunk_bytes
        for e in es:
            part = _intersect(want, (e.start, e.count), 0)
            if part is None:
                continue
            if e.ndim == 0 or (tuple(e.start) == want[0] and tuple(e.count) == want[1]):
                if e.nbytes:
                    self.read_chunks(e, 0, e.nchunks, out.reshape(-1).view(np.uint8), verify)
                continue
            # Only the chunks holding the overlap's first to last byte.
            pst, pcnt = part
            lo = _flat(pst, e.start, e.count) * esz
            hi = (_flat([s + c - 1 for s, c in zip(pst, pcnt)], e.start, e.count) + 1) * esz
            c0, c1 = lo // cb, -(-hi // cb)
            buf = _empty((e.nbytes,), np.uint8)  # untouched pages cost nothing
            self.read_chunks(e, c0, c1, buf[c0 * cb:min(c1 * cb, e.nbytes)], verify)
            src = buf.view(dt).reshape(e.count)
            out[tuple(slice(s - ws, s - ws + c) for s, ws, c in zip(pst, start, pcnt))] = \
                src[tuple(slice(s - es_, s - es_ + c) for s, es_, c in zip(pst, e.start, pcnt))]
        return out

    def meta(self, key, rank, verify):
        for e in self.idx.entries:
            if e.kind == KIND_META and e.name == key and e.rank == rank:
                buf = bytearray(e.nbytes)
                if e.nbytes:
                    self.read_chunks(e, 0, e.nchunks, buf, verify)
                return bytes(buf)
        raise KeyError(f"{self.dir}: no metadata '{key}' of rank {rank}")


def _intersect(a, b, strict):
    """The box a ∩ b as (start, count), or None when they share no element."""
    st, ct = [], []
    for s1, c1, s2, c2 in zip(a[0], a[1], b[0], b[1]):
        lo, hi = max(s1, s2), min(s1 + c1, s2 + c2)
        if hi <= lo:
            return None
        st.append(lo)
        ct.append(hi - lo)
    return (st, ct)


def _flat(pos, start, count):
    i = 0
    for p, s, c in zip(pos, start, count):
        i = i * c + (p - s)
    return i


class Folder:
    """A checkpoint folder.  Readers only: nothing here writes to it."""

    def __init__(self, path):
        if not os.path.isdir(path):
            raise CkptError(f"{path} is not a folder")
        self.path = path

    def steps(self):
        """Committed steps, newest first (folders named step-NNNNNNNNNNNN;
        symlinks are ignored, as the C catalog ignores them)."""
        out = []
        with os.scandir(self.path) as it:
            for d in it:
                m = _STEP.match(d.name)
                if m and d.is_dir(follow_symlinks=False):
                    out.append(int(m.group(1)))
        return sorted(out, reverse=True)

    def checkpoints(self):
        """CheckpointInfo per committed step, newest first: valid when the
        manifest verifies and every rank file has its recorded size."""
        res = []
        for step in self.steps():
            try:
                ck = _Checkpoint(self.path, step)
                try:
                    for r in ck.idx.ranks:
                        ck.fd(r)
                finally:
                    ck.close()
                total = sum(e.nbytes for e in ck.idx.entries)
                res.append(CheckpointInfo(step, True, ck.idx.world_size, total, None))
            except FormatError as ex:
                res.append(CheckpointInfo(step, False, None, None, str(ex)))
            except CorruptError as ex:
                res.append(CheckpointInfo(step, False, None, None, str(ex)))
        return res

    def _open(self, step):
        """The checkpoint of step, or the newest whose manifest verifies."""
        if step is not None:
            if step not in self.steps():
                raise CkptError(f"no committed checkpoint for step {step} in {self.path}")
            return _Checkpoint(self.path, step)
        newest = None
        for s in self.steps():
            try:
                return _Checkpoint(self.path, s)
            except FormatError:
                raise
            except CorruptError as ex:
                newest = newest or ex
        if newest:
            raise CorruptError(f"no valid checkpoint in {self.path}; newest failure: {newest}")
        raise CkptError(f"no checkpoint in {self.path}")

    def tensors(self, step=None):
        """TensorInfo (name, ckpt dtype, global shape) per tensor."""
        ck = self._open(step)
        return {n: TensorInfo(n, es[0].dtype_name, tuple(es[0].shape))
                for n, es in ck.tensors.items()}

    def load(self, step=None, names=None, verify=True, out=None, _raw=False):
        """{name: numpy array} of every tensor (or those named), whole.
        step None: the newest checkpoint whose manifest verifies.  out: a
        dict of arrays to read into (as ckpt_restore fills registered
        memory) for the tensors it names, instead of new ones; each must be
        C-contiguous, writable, of the tensor's shape and element size."""
        ck = self._open(step)
        try:
            want = list(ck.tensors) if names is None else list(names)
            res, jobs = {}, []
            for n in want:
                if n not in ck.tensors:
                    raise KeyError(f"{ck.dir}: no tensor '{n}'")
                shape = ck.tensors[n][0].shape
                a = ck.out_array(n, shape, _raw, out.get(n) if out else None)
                p = ck.whole_pieces(n, a)
                if p is None:  # slices: assembled one tensor at a time
                    res[n] = ck.read_box(n, (0,) * len(shape), shape, verify, _raw, a)
                else:  # whole tensors: every piece of all of them at once
                    res[n] = a
                    jobs += p
            ck.run_pieces(jobs, verify)
            return res
        finally:
            ck.close()

    def load_torch(self, step=None, names=None, verify=True):
        """As load, as torch tensors (bf16 as torch.bfloat16, fp8 as
        torch.float8_e4m3fn / float8_e5m2; bytes as uint8)."""
        import torch

        infos = self.tensors(step)
        arrays = self.load(step, names, verify, _raw=True)
        tdt = {"bf16": torch.bfloat16, "fp8_e4m3": getattr(torch, "float8_e4m3fn", None),
               "fp8_e5m2": getattr(torch, "float8_e5m2", None)}
        out = {}
        for n, a in arrays.items():
            t = torch.from_numpy(np.ascontiguousarray(a))
            d = infos[n].dtype
            if d in tdt:
                if tdt[d] is None:
                    raise CkptError(f"this torch has no {d} dtype")
                t = t.view(tdt[d])
            out[n] = t
        return out

    def meta(self, name, step=None, rank=0, verify=True):
        """A user metadata blob (bytes) as rank `rank` saved it."""
        ck = self._open(step)
        try:
            return ck.meta(name, rank, verify)
        finally:
            ck.close()

    def read_slice(self, name, start, count, step=None, verify=True):
        """The box start[d] .. start[d] + count[d] of tensor `name`, reading
        (and verifying) only the chunks that hold it."""
        ck = self._open(step)
        try:
            if name not in ck.tensors:
                raise KeyError(f"{ck.dir}: no tensor '{name}'")
            shape = ck.tensors[name][0].shape
            start, count = tuple(int(s) for s in start), tuple(int(c) for c in count)
            if len(start) != len(shape) or len(count) != len(shape) or any(
                    s < 0 or c < 0 or s + c > g for s, c, g in zip(start, count, shape)):
                raise ValueError(f"box {start} + {count} is not inside {name}'s shape {shape}")
            return ck.read_box(name, start, count, verify)
        finally:
            ck.close()
