#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Reads one ckptrt checkpoint with h5py and compares it with expected bytes.

Usage: h5py_check.py STEP_DIR EXPECTED_DIR

EXPECTED_DIR holds expected.json ({"step", "world_size", "items": [{"name",
"kind", "dtype", "shape", "file"}]}) and, per item, a file with the raw
little-endian bytes that were saved.  The script finds each tensor under
/tensors (each metadata blob under /meta) of rank-00000.h5 by its `name`
attribute, reads it the way a user would (ds[()]), turns the values back
into raw bytes of the stored dtype and compares them; it also reads the
bytes at the dataset's file offset directly, checks the attributes (format
1.2: none of a save's hashes, step or uuid in the rank file), the
link-name escaping, and manifest.h5's root attributes and /tensors table.
Exits 0 only when everything matches; prints every difference otherwise.
"""
import json
import os
import sys

import h5py
import numpy as np

errors = []


def fail(msg):
    errors.append(msg)


def text(v):
    """h5py gives variable-length strings as str or bytes depending on where."""
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.shape == ():
        return text(v[()])
    return str(v)


def escape(name):
    """The link name io/names.c makes of a tensor name."""
    out = []
    for i, ch in enumerate(name):
        if ch == "%":
            out.append("%25")
        elif ch == "/":
            out.append("%2F")
        elif i == 0 and ch == ".":
            out.append("%2E")
        else:
            out.append(ch)
    return "".join(out)


PLAIN = {
    "f64": "<f8",
    "f32": "<f4",
    "i64": "<i8",
    "i32": "<i4",
    "i16": "<i2",
    "i8": "|i1",
    "u8": "|u1",
    "bytes": "|u1",
    "fp8_e4m3": "|u1",
}


def exact_cast(values, dtype, what):
    """values.astype(dtype), failing unless every value survives unchanged."""
    cast = values.astype(dtype)
    a = values.astype(np.float64)
    b = cast.astype(np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if not np.all(same):
        fail("%s: h5py values %r do not convert exactly to %s" % (what, values, dtype))
    return cast


def to_raw(values, dtype, what):
    """Raw little-endian bytes of the stored dtype from what h5py returned."""
    values = np.asarray(values)
    if dtype in PLAIN:
        want = np.dtype(PLAIN[dtype])
        if values.dtype.newbyteorder("<") != want.newbyteorder("<"):
            fail("%s: h5py returned %s, expected %s" % (what, values.dtype, want))
        return values.astype(want).tobytes()
    if dtype == "bool":
        if values.dtype != np.bool_:
            fail("%s: h5py returned %s, expected bool" % (what, values.dtype))
        return values.astype(np.uint8).tobytes()
    if dtype == "f16":
        if values.dtype != np.float16:
            fail("%s: h5py returned %s, expected float16" % (what, values.dtype))
        return values.astype("<f2").tobytes()
    if dtype == "bf16":
        # bf16 is the upper half of a float32; h5py widens it losslessly.
        f32 = exact_cast(values, np.float32, what)
        bits = f32.view(np.uint32)
        if np.any(bits & 0xFFFF):
            fail("%s: float32 values %r are not bf16 values" % (what, f32))
        return (bits >> 16).astype("<u2").tobytes()
    if dtype == "fp8_e5m2":
        # e5m2 is the upper byte of a float16 (same exponent field).
        f16 = exact_cast(values, np.float16, what)
        bits = f16.view(np.uint16)
        if np.any(bits & 0xFF):
            fail("%s: float16 values %r are not e5m2 values" % (what, f16))
        return (bits >> 8).astype(np.uint8).tobytes()
    fail("%s: unknown dtype %s" % (what, dtype))
    return b""


def diff(what, got, want):
    if got == want:
        return
    n = min(len(got), len(want))
    first = next((i for i in range(n) if got[i] != want[i]), n)
    fail(
        "%s: %d bytes, expected %d; first difference at byte %d: got %s, expected %s"
        % (what, len(got), len(want), first, got[first:first + 8].hex(), want[first:first + 8].hex())
    )


def by_name(group, where):
    """{name attribute: (link name, dataset)} of a group's datasets."""
    found = {}
    for link in group:
        ds = group[link]
        if "name" not in ds.attrs:
            fail("%s/%s has no name attribute" % (where, link))
            continue
        found[text(ds.attrs["name"])] = (link, ds)
    return found


def check_rank_file(path, exp, expected_bytes):
    with open(path, "rb") as raw_file:
        file_bytes = raw_file.read()
    with h5py.File(path, "r") as f:
        a = f.attrs
        if list(np.asarray(a.get("ckpt_format_version", [])).tolist()) != [1, 2]:
            fail("%s: ckpt_format_version %r" % (path, a.get("ckpt_format_version")))
        for key, want in (("rank", 0), ("world_size", exp["world_size"])):
            if key not in a or int(a[key]) != want:
                fail("%s: root attribute %s is %r, expected %r" % (path, key, a.get(key), want))
        # Format 1.2: nothing of one save but its data (the manifest holds
        # the hashes, step and uuid).
        for key in ("step", "uuid", "root"):
            if key in a:
                fail("%s: per-save root attribute %s in a 1.2 rank file" % (path, key))
        groups = {"tensor": by_name(f["tensors"], "/tensors"), "meta": by_name(f["meta"], "/meta")}
        for kind in ("tensor", "meta"):
            names = {it["name"] for it in exp["items"] if it["kind"] == kind}
            extra = set(groups[kind]) - names
            if extra:
                fail("%s: unexpected %s entries %r" % (path, kind, sorted(extra)))
        offsets = {}
        for it in exp["items"]:
            name, kind, dtype = it["name"], it["kind"], it["dtype"]
            what = "%s '%s' (%s)" % (kind, name, dtype)
            if name not in groups[kind]:
                fail("%s: %s not found by its name attribute" % (path, what))
                continue
            link, ds = groups[kind][name]
            if link != escape(name):
                fail("%s: link name %r, expected %r" % (what, link, escape(name)))
            if text(ds.attrs.get("ckpt_dtype", b"")) != dtype:
                fail("%s: ckpt_dtype attribute %r" % (what, ds.attrs.get("ckpt_dtype")))
            shape = list(it["shape"])
            if list(ds.shape) != shape:
                fail("%s: dataset shape %r, expected %r" % (what, ds.shape, shape))
            if shape:
                got_shape = [int(x) for x in np.asarray(ds.attrs.get("shape", []))]
                if got_shape != shape:
                    fail("%s: shape attribute %r, expected %r" % (what, got_shape, shape))
            want = expected_bytes[name, kind]
            diff(what + " read by h5py", to_raw(ds[()], dtype, what), want)
            if want:
                off = ds.id.get_offset()
                if off is None:
                    fail("%s: no storage offset" % what)
                else:
                    offsets[name, kind] = off
                    diff(what + " at file offset %d" % off, file_bytes[off:off + len(want)], want)
            if "chunk_hashes" in ds.attrs or "hash" in ds.attrs:
                fail("%s: hash attributes in a 1.2 rank file" % what)
    return offsets


def check_manifest(path, exp, offsets):
    with h5py.File(path, "r") as f:
        a = f.attrs
        if list(np.asarray(a.get("ckpt_format_version", [])).tolist()) != [1, 2]:
            fail("%s: ckpt_format_version %r, expected [1, 2]" % (path, a.get("ckpt_format_version")))
        for key, want in (("step", exp["step"]), ("world_size", exp["world_size"])):
            if key not in a or int(a[key]) != want:
                fail("%s: root attribute %s is %r, expected %r" % (path, key, a.get(key), want))
        if len(text(a.get("uuid", b""))) != 32:
            fail("%s: uuid attribute %r" % (path, a.get("uuid")))
        if "index" not in f:
            fail("%s: /index missing" % path)
        table = f["tensors"][()]
        rows = {}
        for r in table:
            rows[text(r["name"]), text(r["kind"])] = r
        if len(rows) != len(table):
            fail("%s: /tensors has duplicate rows" % path)
        if len(rows) != len(exp["items"]):
            fail("%s: /tensors has %d rows, expected %d" % (path, len(rows), len(exp["items"])))
        for it in exp["items"]:
            key = (it["name"], it["kind"])
            what = "manifest row %r" % (key,)
            if key not in rows:
                fail("%s: missing" % what)
                continue
            r = rows[key]
            nd = len(it["shape"])
            if text(r["dtype"]) != it["dtype"]:
                fail("%s: dtype %r, expected %r" % (what, r["dtype"], it["dtype"]))
            if int(r["rank"]) != 0 or int(r["ndim"]) != nd:
                fail("%s: rank %r ndim %r" % (what, r["rank"], r["ndim"]))
            if [int(x) for x in r["shape"][:nd]] != it["shape"]:
                fail("%s: shape %r, expected %r" % (what, r["shape"][:nd], it["shape"]))
            if [int(x) for x in r["count"][:nd]] != it["shape"]:
                fail("%s: count %r" % (what, r["count"][:nd]))
            if any(int(x) for x in r["start"][:nd]):
                fail("%s: start %r" % (what, r["start"][:nd]))
            size = os.path.getsize(os.path.join(EXP_DIR, it["file"]))
            if int(r["nbytes"]) != size:
                fail("%s: nbytes %r, expected %d" % (what, r["nbytes"], size))
            if key in offsets and int(r["offset"]) != offsets[key]:
                fail("%s: offset %r, dataset at %r" % (what, r["offset"], offsets[key]))
            if size == 0 and int(r["offset"]) != 2**64 - 1:
                fail("%s: empty entry with offset %r" % (what, r["offset"]))


def main():
    global EXP_DIR
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    step_dir, EXP_DIR = sys.argv[1], sys.argv[2]
    with open(os.path.join(EXP_DIR, "expected.json"), encoding="utf-8") as fh:
        exp = json.load(fh)
    expected_bytes = {}
    for it in exp["items"]:
        with open(os.path.join(EXP_DIR, it["file"]), "rb") as fh:
            expected_bytes[it["name"], it["kind"]] = fh.read()
    offsets = check_rank_file(os.path.join(step_dir, "rank-00000.h5"), exp, expected_bytes)
    check_manifest(os.path.join(step_dir, "manifest.h5"), exp, offsets)
    if errors:
        print("h5py_check: %d difference(s):" % len(errors))
        for e in errors:
            print("  " + e)
        return 1
    print("h5py_check: checked %d items with h5py %s (HDF5 %s)"
          % (len(exp["items"]), h5py.__version__, h5py.version.hdf5_version))
    return 0


EXP_DIR = ""

if __name__ == "__main__":
    sys.exit(main())
