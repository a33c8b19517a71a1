# SPDX-License-Identifier: Apache-2.0
"""ckptrt against checkpoints the C library wrote (conftest.py)."""
import os
import struct

import numpy as np
import pytest

import ckptrt
from ckptrt import _format, _xxh

import expected as E

STEP = 7


def damage(path, off, mask=0x40):
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ mask]))


def tensor_offset(ck_dir, rank, name):
    """The file offset of `name`'s data in rank-R.h5 (from the manifest)."""
    idx = _format.read_manifest(os.path.join(ck_dir, f"step-{STEP:012d}", "manifest.h5"))
    e = [e for e in idx.entries if e.name == name and e.rank == rank and e.kind == 1][0]
    return e.file_off, idx.chunk_bytes


def test_xxh3_known_values():
    assert _xxh.xxh3_64(b"") == 0x2D06800538D394C2
    # Every length class of XXH3 agrees with libxxhash, the C library's.
    import ctypes
    lib = ctypes.CDLL("libxxhash.so.0")
    lib.XXH3_64bits.restype = ctypes.c_uint64
    lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    for n in (1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1024, 100000):
        data = bytes((i * 7 + n) & 0xFF for i in range(n))
        assert _xxh.xxh3_64(data) == lib.XXH3_64bits(data, n), n


def test_lists_checkpoints_newest_first(saved):
    cks = ckptrt.open(saved[1]).checkpoints()
    assert [c.step for c in cks] == [7, 3]
    assert all(c.valid and c.world_size == 1 for c in cks)
    total = sum(len(E.tensor_bytes(n, 7)) for n in E.MODEL)
    meta = len(E.META_CONFIG.encode()) + len(E.META_RNG) + len("rank 0 of 1")
    assert cks[0].bytes == total + meta
    four = ckptrt.open(saved[4]).checkpoints()
    assert [(c.step, c.valid, c.world_size) for c in four] == [(7, True, 4)]


@pytest.mark.parametrize("ranks", [1, 4])
def test_load_every_dtype_bit_exact(saved, ranks):
    state = ckptrt.open(saved[ranks]).load()
    assert set(state) == set(E.MODEL)
    for name, (dt, shape) in E.MODEL.items():
        a = state[name]
        assert a.shape == shape, name
        assert a.dtype == ckptrt.numpy_dtype(dt), name
        assert a.tobytes() == E.tensor_bytes(name, STEP), name


def test_dtypes_without_ml_dtypes_are_raw_bits():
    assert ckptrt.numpy_dtype("bf16", raw=True) == np.uint16
    assert ckptrt.numpy_dtype("fp8_e4m3", raw=True) == np.uint8
    assert ckptrt.numpy_dtype("bool") == np.bool_


def test_load_names_and_older_step(saved):
    f = ckptrt.open(saved[1])
    got = f.load(step=3, names=["w.f32", "mask"])
    assert set(got) == {"w.f32", "mask"}
    assert got["w.f32"].tobytes() == E.tensor_bytes("w.f32", 3)
    with pytest.raises(KeyError):
        f.load(names=["nope"])
    with pytest.raises(ckptrt.CkptError):
        f.load(step=5)


def test_meta(saved):
    f = ckptrt.open(saved[4])
    assert f.meta("config").decode() == E.META_CONFIG
    assert f.meta("rng") == E.META_RNG
    assert f.meta("who", rank=3) == b"rank 3 of 4"
    with pytest.raises(KeyError):
        f.meta("absent")


@pytest.mark.parametrize("ranks", [1, 4])
def test_read_slice_matches_the_whole(saved, ranks):
    f = ckptrt.open(saved[ranks])
    whole = f.load()
    for name, start, count in [("w.bf16.cols", (10, 100), (50, 300)), ("u8", (3, 7), (990, 1)),
                               ("i8", (1, 0, 2, 3), (1, 3, 3, 4)), ("i16", (65000,), (5001,)),
                               ("scalar", (), ()), ("empty", (0, 1), (0, 2))]:
        s = f.read_slice(name, start, count)
        box = tuple(slice(a, a + c) for a, c in zip(start, count))
        assert s.tobytes() == whole[name][box].tobytes(), name
    with pytest.raises(ValueError):
        f.read_slice("u8", (999, 0), (2, 1))


def test_read_slice_reads_only_the_chunks_it_needs(saved, copy_of):
    d = copy_of(saved[1])
    off, cb = tensor_offset(d, 0, "i16")        # 140002 bytes: chunks 0, 1, 2
    damage(os.path.join(d, f"step-{STEP:012d}", "rank-00000.h5"), off + 2 * cb + 5)
    f = ckptrt.open(d)
    ok = f.read_slice("i16", (0,), (cb // 2,))  # chunk 0 only
    assert ok.tobytes() == E.tensor_bytes("i16", STEP)[:cb]
    with pytest.raises(ckptrt.CorruptError, match=r"tensor 'i16' chunk 2 failed its checksum"):
        f.read_slice("i16", (cb,), (10,))


@pytest.mark.parametrize("ranks", [1, 4])
def test_damaged_chunk_is_detected(saved, copy_of, ranks):
    d = copy_of(saved[ranks])
    rank = ranks - 1
    off, cb = tensor_offset(d, rank, "u8")
    damage(os.path.join(d, f"step-{STEP:012d}", f"rank-{rank:05d}.h5"), off + cb + 3)
    f = ckptrt.open(d)
    with pytest.raises(ckptrt.CorruptError,
                       match=rf"rank-{rank:05d}.h5: tensor 'u8' chunk 1 failed its checksum"):
        f.load(step=STEP)
    # Without verification the damaged byte comes back as it is.
    a = f.load(step=STEP, names=["u8"], verify=False)["u8"]
    assert a.tobytes() != E.tensor_bytes("u8", STEP)


def test_damaged_manifest_falls_back(saved, copy_of):
    d = copy_of(saved[1])
    damage(os.path.join(d, f"step-{STEP:012d}", "manifest.h5"), 2000)
    f = ckptrt.open(d)
    cks = f.checkpoints()
    assert (cks[0].step, cks[0].valid) == (7, False) and "checksum" in cks[0].error
    assert (cks[1].step, cks[1].valid) == (3, True)
    assert f.load(names=["w.f32"])["w.f32"].tobytes() == E.tensor_bytes("w.f32", 3)


def test_truncated_rank_file(saved, copy_of):
    d = copy_of(saved[4])
    path = os.path.join(d, f"step-{STEP:012d}", "rank-00002.h5")
    os.truncate(path, os.path.getsize(path) - 1)
    f = ckptrt.open(d)
    assert not f.checkpoints()[0].valid
    with pytest.raises(ckptrt.CorruptError, match="truncated or replaced"):
        f.load()


def _reseal(data):
    """A manifest's user block with its header hash recomputed."""
    b = bytearray(data)
    b[32:40] = b"\0" * 8
    b[32:40] = struct.pack("<Q", _xxh.xxh3_64(bytes(b[:512])))
    return bytes(b)


def test_newer_major_format_is_refused(saved, copy_of):
    d = copy_of(saved[1])
    path = os.path.join(d, f"step-{STEP:012d}", "manifest.h5")
    data = bytearray(open(path, "rb").read())
    data[8:12] = struct.pack("<I", 2)  # user-block version 2, intact header
    open(path, "wb").write(_reseal(data))
    with pytest.raises(ckptrt.FormatError, match="newer than this reader"):
        ckptrt.open(d).load(step=STEP)
    # The same change without resealing is damage, not a newer format.
    data[8:12] = struct.pack("<I", 3)
    open(path, "wb").write(bytes(data))
    with pytest.raises(ckptrt.CorruptError):
        ckptrt.open(d).load(step=STEP)


def test_newer_major_index_is_refused(saved):
    import h5py
    import io
    path = os.path.join(saved[1], f"step-{STEP:012d}", "manifest.h5")
    with h5py.File(io.BytesIO(open(path, "rb").read()), "r") as f:
        raw = bytearray(np.asarray(f["index"][()], dtype=np.uint8).tobytes())
    _format.decode_index(bytes(raw), "index")  # intact: decodes
    raw[8:10] = struct.pack("<H", 2)
    raw[-8:] = struct.pack("<Q", _xxh.xxh3_64(bytes(raw[:-8])))
    minor = struct.unpack_from("<H", raw, 10)[0]  # the writer's minor version, kept
    with pytest.raises(ckptrt.FormatError,
                       match=rf"format version 2\.{minor}, this reader reads 1\.x"):
        _format.decode_index(bytes(raw), "index")


def test_load_torch(saved):
    torch = pytest.importorskip("torch", reason="torch is optional; not installed here")
    t = ckptrt.open(saved[4]).load_torch()
    assert t["w.bf16"].dtype == torch.bfloat16
    for name in E.MODEL:
        x = t[name].contiguous()
        b = x.reshape(-1).view(torch.uint8).numpy().tobytes() if x.numel() else b""
        assert b == E.tensor_bytes(name, STEP), name


def test_load_into_existing_arrays(saved):
    f = ckptrt.open(saved[4])
    first = f.load(names=["w.bf16", "u8"])
    into = {k: np.zeros_like(a) for k, a in first.items()}
    got = f.load(names=["w.bf16", "u8"], out=into)
    for k in into:
        assert got[k] is into[k] and into[k].tobytes() == E.tensor_bytes(k, STEP), k
    with pytest.raises(ValueError, match="C-contiguous"):
        f.load(names=["u8"], out={"u8": np.zeros((301, 1000), np.uint8).T})


def test_ctypes_fallback_when_xxhash_is_missing(saved):
    """Without the xxhash module the package hashes through libxxhash.so.0
    and still verifies a whole checkpoint."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['xxhash'] = None\n"
            "import ckptrt, numpy as np\n"
            "from ckptrt import _xxh\n"
            "assert _xxh.BACKEND == 'libxxhash (ctypes)', _xxh.BACKEND\n"
            "assert _xxh.xxh3_64(b'') == 0x2D06800538D394C2\n"
            "assert _xxh.xxh3_64(bytearray(b'abc' * 100)) == _xxh.xxh3_64(b'abc' * 100)\n"
            f"s = ckptrt.open({saved[4]!r}).load()\n"
            "print(len(s))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(len(E.MODEL))
