# SPDX-License-Identifier: Apache-2.0
"""The bytes interop_job saves: the same model and formula as
tests/interop/interop_job.cpp, for the checks that read its checkpoints."""
import numpy as np

# name -> (ckpt dtype, global shape); interop_job.cpp's kModel.
MODEL = {
    "w.f32": ("f32", (37, 19)),
    "w.f64": ("f64", (1001,)),
    "w.f16": ("f16", (5, 7, 9)),
    "w.bf16": ("bf16", (300, 131)),
    "w.bf16.cols": ("bf16", (400, 515)),
    "fp8.e4m3": ("fp8_e4m3", (33, 65)),
    "fp8.e5m2": ("fp8_e5m2", (129,)),
    "i64": ("i64", (3, 4)),
    "i32": ("i32", (77, 3)),
    "i16": ("i16", (70001,)),
    "i8": ("i8", (2, 3, 5, 7)),
    "u8": ("u8", (1000, 301)),
    "mask": ("bool", (41, 3)),
    "blob": ("bytes", (1000,)),
    "scalar": ("f32", ()),
    "empty": ("f32", (0, 4)),
    "layer.0/attn.q \u00fc": ("f32", (8, 8)),
}

SIZE = {"f64": 8, "f32": 4, "f16": 2, "bf16": 2, "fp8_e4m3": 1, "fp8_e5m2": 1,
        "i64": 8, "i32": 4, "i16": 2, "i8": 1, "u8": 1, "bool": 1, "bytes": 1}

# The safetensors dtype ckpt export writes for each.
ST_DTYPE = {"f64": "F64", "f32": "F32", "f16": "F16", "bf16": "BF16",
            "fp8_e4m3": "F8_E4M3", "fp8_e5m2": "F8_E5M2", "i64": "I64", "i32": "I32",
            "i16": "I16", "i8": "I8", "u8": "U8", "bool": "BOOL", "bytes": "U8"}

META_CONFIG = '{"lr": 0.001, "note": "caf\u00e9 \\"q\\"\\n"}'
META_RNG = bytes([0, 1, 2, 0xff, 0xfe, 0, 7, 9])


def seed(name, step):
    h = 2166136261
    for b in name.encode("utf-8"):
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h ^ step


def tensor_bytes(name, step):
    """The whole tensor's bytes, row-major, as saved at step."""
    dt, shape = MODEL[name]
    n = int(np.prod(shape, dtype=np.int64)) * SIZE[dt]
    o = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        v = ((o * np.uint64(0x9E3779B1) + np.uint64(seed(name, step))) >> np.uint64(11))
    b = (v & np.uint64(0xFF)).astype(np.uint8)
    if dt == "bool":
        b &= 1
    return b.tobytes()
