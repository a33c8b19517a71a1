#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The Python package's load against `ckpt-bench io`'s restore, on the same
checkpoint: ckpt-bench saves and restores SIZE bytes (--keep leaves the
checkpoint), then ckptrt.open(DIR).load() reads it back, every chunk
verified.  Prints both throughputs and their ratio (issue 14's target:
>= 0.5).  A measurement, not a test.

usage: python_load.py CKPT_BENCH DIR [SIZE]    (SIZE default 2G)
Run it with a python whose ckptrt, numpy, h5py and xxhash import (the
build's venv: build/venv/bin/python).
"""
import json
import os
import subprocess
import sys
import time

import ckptrt

bench, d = sys.argv[1], sys.argv[2]
size = sys.argv[3] if len(sys.argv) > 3 else "2G"
r = subprocess.run([bench, "io", "--dir", d, "--bytes", size, "--keep", "--json"],
                   check=True, capture_output=True, text=True)
doc = json.loads(r.stdout)
print(json.dumps(doc, indent=1)[:2000], file=sys.stderr)


def find(o, key):
    if isinstance(o, dict):
        for k, v in o.items():
            if k == key:
                return v
            f = find(v, key)
            if f is not None:
                return f
    if isinstance(o, list):
        for v in o:
            f = find(v, key)
            if f is not None:
                return f
    return None


restore = find(doc, "restore_gbps")
f = ckptrt.open(d)
info = f.checkpoints()[0]
t0 = time.perf_counter()
state = f.load()
dt = time.perf_counter() - t0
nbytes = sum(a.nbytes for a in state.values())
py = nbytes / dt / 1e9
print(f"checkpoint: step {info.step}, {info.bytes} bytes, {len(state)} tensors; XXH3 backend: "
      f"{ckptrt.XXH3_BACKEND}")
print(f"ckpt-bench io restore: {restore} GB/s")
print(f"ckptrt load (verify=True): {py:.3f} GB/s ({dt:.2f} s)")
if restore:
    print(f"ratio: {py / float(restore):.2f}")
