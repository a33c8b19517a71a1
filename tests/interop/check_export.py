# SPDX-License-Identifier: Apache-2.0
"""Checks an export of interop_job's model at STEP against what was saved,
through the safetensors package from PyPI and through the raw bytes.

usage: check_export.py FILE.safetensors FILE.npz STEP
"""
import json
import struct
import sys

import numpy as np
from safetensors import safe_open

import expected as E

st_path, npz_path, step = sys.argv[1], sys.argv[2], int(sys.argv[3])

# The header, parsed by hand: every tensor with its dtype and shape, and the
# file's bytes equal to what was saved.
raw = open(st_path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
base = 8 + n
meta = header.pop("__metadata__")
assert meta["config"] == E.META_CONFIG, meta
assert meta["format"] == "pt", meta
assert "rng" not in meta, "binary metadata must be left out"
# Rank 0's "who" under its key, the other ranks' (which differ) under rankR/.
assert meta["who"].startswith("rank 0 of "), meta
world = int(meta["who"].split()[-1])
for r in range(1, world):
    assert meta[f"rank{r}/who"] == f"rank {r} of {world}", meta
assert not any(k.startswith("rank") and k.endswith("/config") for k in meta), meta
assert set(header) == set(E.MODEL), sorted(set(header) ^ set(E.MODEL))
for name, (dt, shape) in E.MODEL.items():
    t = header[name]
    assert t["dtype"] == E.ST_DTYPE[dt], (name, t)
    assert tuple(t["shape"]) == shape, (name, t)
    b, e = t["data_offsets"]
    assert raw[base + b:base + e] == E.tensor_bytes(name, step), f"{name}: bytes differ"

# safetensors' own reader: every tensor listed with its dtype and shape, and
# those its numpy loader supports loaded bit-equal.
numpy_ok = {"F64", "F32", "F16", "I64", "I32", "I16", "I8", "U8", "BOOL"}
loaded = 0
with safe_open(st_path, "np") as f:
    assert set(f.keys()) == set(E.MODEL)
    for name, (dt, shape) in E.MODEL.items():
        sl = f.get_slice(name)
        assert sl.get_dtype() == E.ST_DTYPE[dt], (name, sl.get_dtype())
        assert tuple(sl.get_shape()) == shape, (name, sl.get_shape())
        if E.ST_DTYPE[dt] in numpy_ok:
            a = f.get_tensor(name)
            assert a.shape == shape and a.tobytes() == E.tensor_bytes(name, step), name
            loaded += 1

# With torch present, every dtype through safetensors.torch.
try:
    import torch  # noqa: F401
    from safetensors.torch import load_file
except ImportError:
    print("check_export: torch is not installed: the torch load is not checked")
else:
    tensors = load_file(st_path)
    for name in E.MODEL:
        t = tensors[name]
        # reshape: a 0-d tensor cannot be viewed as bytes of another size.
        b = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        assert b == E.tensor_bytes(name, step), f"torch: {name}"

# numpy's npz reader.
z = np.load(npz_path)
assert set(z.files) == set(E.MODEL), sorted(set(z.files) ^ set(E.MODEL))
for name, (dt, shape) in E.MODEL.items():
    a = z[name]
    assert a.shape == shape and a.tobytes() == E.tensor_bytes(name, step), f"npz: {name}"
print(f"check_export: {len(E.MODEL)} tensors match ({loaded} loaded by safetensors' numpy "
      "loader, the rest compared as bytes); npz matches")
