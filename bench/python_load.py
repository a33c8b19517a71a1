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


restore = float(find(doc, "restore_gbps"))
f = ckptrt.open(d)
info = f.checkpoints()[0]
print(f"checkpoint: step {info.step}, {info.bytes} bytes; XXH3 backend: {ckptrt.XXH3_BACKEND}")
print(f"ckpt-bench io restore (O_DIRECT, from the disk): {restore:.3f} GB/s")


def drop_cache():
    """The rank files' pages out of the page cache (theirs only), so the
    first load reads the disk as ckpt-bench's O_DIRECT restore did."""
    step = os.path.join(d, f"step-{info.step:012d}")
    for name in os.listdir(step):
        fd = os.open(os.path.join(step, name), os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


# New arrays (load() allocates and first-touches every page: on a VM that
# alone can cost a second per 2 GiB), then into the arrays of the last load
# (load(out=...)), as ckpt_restore fills memory the job already holds, which
# is what ckpt-bench's restore measures.  Each from the disk, the median of 3.
state = None
for what in ("new arrays", "into existing arrays"):
    times = []
    for _ in range(3):
        drop_cache()
        into = state if what.startswith("into") else None
        if into is None:
            state = None
        t0 = time.perf_counter()
        state = f.load(out=into)
        times.append(time.perf_counter() - t0)
    dt = sorted(times)[1]
    nbytes = sum(a.nbytes for a in state.values())
    py = nbytes / dt / 1e9
    print(f"ckptrt load, verify=True, {what}: {py:.3f} GB/s ({nbytes} bytes in {dt:.2f} s, "
          f"median of 3); ratio {py / restore:.2f}")
