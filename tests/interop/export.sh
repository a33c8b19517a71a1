#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `ckpt export` end to end (label `python`): interop_job saves its model of
# every dtype on 4 MPI ranks; the export is read back by the safetensors
# package from PyPI and by numpy (check_export.py), then the command's
# refusals: bad arguments (exit 2), an existing FILE without --force, and a
# damaged chunk (exit 1, naming tensor and chunk, no FILE left behind).
# usage: export.sh CKPT INTEROP_JOB VENV_PYTHON MPIRUN [MPIRUN_FLAGS...]
set -euo pipefail
ckpt=$1 job=$2 py=$3
shift 3
mpirun=("$@")
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-export-XXXXXX")
trap 'rm -rf "$dir"' EXIT
fail() { echo "export.sh: $*" >&2; exit 1; }
export PYTHONPATH=$here

"${mpirun[@]}" -np 4 "$job" save "$dir/ck" 7
"$ckpt" export "$dir/ck" --format safetensors --out "$dir/m.safetensors"
"$ckpt" export "$dir/ck" --step 7 --format npz --out "$dir/m.npz"
"$py" "$here/check_export.py" "$dir/m.safetensors" "$dir/m.npz" 7

# ckpt import of that file: a one-rank checkpoint that restores bit-equal on
# 2 ranks; a job that registers BYTES where the file holds U8 gets today's
# CKPT_EMISMATCH.
"$ckpt" import --from "$dir/m.safetensors" "$dir/im" --step 7
"$ckpt" verify "$dir/im" >/dev/null
"${mpirun[@]}" -np 2 "$job" check-imported "$dir/im" 7
rc=0
out=$("${mpirun[@]}" -np 2 "$job" check "$dir/im" 7 2>&1) || rc=$?
[ "$rc" -ne 0 ] && grep -q "tensor 'blob' is u8 in the checkpoint, registered as bytes" <<<"$out" ||
  fail "mismatch after import: $out"
rc=0; "$ckpt" import --from "$dir/m.safetensors" "$dir/im" --step 7 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "import over an existing step: exit $rc"
"$ckpt" import --from "$dir/m.safetensors" "$dir/im2" --rename w.f32=renamed.w
"$py" -c 'import ckptrt,sys; t=ckptrt.open(sys.argv[1]).tensors(); assert "renamed.w" in t and "w.f32" not in t' "$dir/im2"
# Malformed files: exit 2, nothing committed.
"$py" - "$dir" <<'PY'
import json, struct, sys
d = sys.argv[1]
def write(name, header, data, hlen=None):
    h = json.dumps(header).encode()
    with open(f"{d}/{name}", "wb") as f:
        f.write(struct.pack("<Q", len(h) if hlen is None else hlen) + h + data)
t = lambda dt, shape, a, b: {"dtype": dt, "shape": shape, "data_offsets": [a, b]}
write("bad-len.st", {"a": t("F32", [1], 0, 4)}, b"\0" * 4, hlen=1 << 40)
write("bad-overlap.st", {"a": t("F32", [2], 0, 8), "b": t("F32", [1], 4, 8)}, b"\0" * 8)
write("bad-dtype.st", {"a": t("U32", [1], 0, 4)}, b"\0" * 4)
write("bad-size.st", {"a": t("F32", [2], 0, 4)}, b"\0" * 4)
write("bad-beyond.st", {"a": t("F32", [1], 4, 8)}, b"\0" * 4)
write("bad-hole.st", {"a": t("F32", [1], 4, 8)}, b"\0" * 8)
write("bad-member.st", {"a": dict(t("F32", [1], 0, 4), extra=1)}, b"\0" * 4)
PY
for f in "$dir"/bad-*.st; do
  rc=0; out=$("$ckpt" import --from "$f" "$dir/bad" 2>&1) || rc=$?
  [ "$rc" -eq 2 ] || fail "import $f: exit $rc: $out"
  grep -q "^ckpt import: .*$(basename "$f")" <<<"$out" || fail "import $f: $out"
done
[ ! -e "$dir/bad" ] || [ -z "$(ls "$dir/bad")" ] || fail "a malformed import committed: $(ls "$dir/bad")"
rm -rf "$dir/bad" "$dir"/bad-*.st

# Usage errors: exit 2 with a message, nothing written.
expect2() {
  local rc=0 out
  out=$("$ckpt" export "$@" 2>&1) || rc=$?
  [ "$rc" -eq 2 ] || fail "ckpt export $*: exit $rc, not 2: $out"
  grep -q "^ckpt: \|^ckpt export: " <<<"$out" || fail "ckpt export $*: no message: $out"
}
expect2 "$dir/ck" --out "$dir/x.safetensors"
expect2 "$dir/ck" --format safetensors
expect2 "$dir/ck" --format onnx --out "$dir/x"
expect2 "$dir/ck" --format safetensors --out "$dir/x" --dtype f8
expect2 "$dir/ck" --format safetensors --out "$dir/x" --step 3
expect2 "$dir/ck" --format safetensors --out "$dir/x" --step -1
expect2 "$dir/ck" --format safetensors --out "$dir/x" --bogus
expect2 "$dir/ck" "$dir/other" --format safetensors --out "$dir/x"
expect2 "$dir/nothing" --format safetensors --out "$dir/x"
expect2 "$dir/ck" --format safetensors --out
[ ! -e "$dir/x" ] || fail "a refused export wrote its FILE"
"$ckpt" export --help | grep -q "usage: ckpt export" || fail "no help"

# An existing FILE is kept without --force, replaced with it.
cp "$dir/m.npz" "$dir/keep.safetensors"
expect2 "$dir/ck" --format safetensors --out "$dir/keep.safetensors"
cmp -s "$dir/m.npz" "$dir/keep.safetensors" || fail "FILE was changed without --force"
"$ckpt" export "$dir/ck" --format safetensors --out "$dir/keep.safetensors" --force
cmp -s "$dir/m.safetensors" "$dir/keep.safetensors" || fail "--force did not replace FILE"

# --include / --exclude and --dtype f32.
"$ckpt" export "$dir/ck" --format safetensors --out "$dir/sel.safetensors" \
  --include 'w.*' --include 'fp8.*' --exclude '*.cols' --dtype f32
"$py" - "$dir/sel.safetensors" <<'PY'
import sys
import numpy as np
from safetensors.numpy import load_file
import expected as E
t = load_file(sys.argv[1])
want = {"w.f32", "w.f64", "w.f16", "w.bf16", "fp8.e4m3", "fp8.e5m2"}
assert set(t) == want, sorted(t)
for k, a in t.items():
    assert a.dtype == np.float32 and a.shape == E.MODEL[k][1], (k, a.dtype, a.shape)
raw = np.frombuffer(E.tensor_bytes("w.bf16", 7), np.uint16).astype(np.uint32) << 16
b = raw.view(np.float32).reshape(E.MODEL["w.bf16"][1])
assert np.array_equal(t["w.bf16"], b, equal_nan=True), "bf16 -> f32 is exact"
h = np.frombuffer(E.tensor_bytes("w.f16", 7), np.float16).astype(np.float32)
assert np.array_equal(t["w.f16"].ravel(), h, equal_nan=True), "f16 -> f32 is exact"
print("selection and --dtype f32: ok")
PY

# --dtype bf16 rounds to nearest even (checked against numpy's own rounding
# of the f32 bits; NaNs stay NaN).
"$ckpt" export "$dir/ck" --format npz --out "$dir/sel.npz" --include w.f32 --include i32 \
  --dtype bf16
"$py" - "$dir/sel.npz" <<'PY'
import sys
import numpy as np
import expected as E
z = np.load(sys.argv[1])
assert z["i32"].tobytes() == E.tensor_bytes("i32", 7), "integers are kept"
f = np.frombuffer(E.tensor_bytes("w.f32", 7), np.uint32)
nan = (f & 0x7FFFFFFF) > 0x7F800000
want = ((f.astype(np.uint64) + 0x7FFF + ((f >> 16) & 1)) >> 16).astype(np.uint16)
got = z["w.f32"].ravel()
assert z["w.f32"].dtype == np.uint16 and z["w.f32"].shape == E.MODEL["w.f32"][1]
assert np.array_equal(got[~nan], want[~nan]), "bf16 rounding"
assert (((got[nan] >> 7) & 0xFF) == 0xFF).all() and ((got[nan] & 0x7F) != 0).all(), "NaN"
print("--dtype bf16: ok")
PY

# A damaged chunk: exit 1, tensor and chunk named, no FILE, no temp file.
"$py" - "$dir/ck/step-000000000007/rank-00001.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    off = f["tensors/u8"].id.get_offset()
with open(sys.argv[1], "r+b") as f:
    f.seek(off + 65536 + 10)   # chunk 1 of rank 1's slice of "u8"
    b = f.read(1)
    f.seek(off + 65536 + 10)
    f.write(bytes([b[0] ^ 0x40]))
PY
rc=0
out=$("$ckpt" export "$dir/ck" --format safetensors --out "$dir/bad.safetensors" 2>&1) || rc=$?
[ "$rc" -eq 1 ] || fail "damaged chunk: exit $rc, not 1: $out"
grep -q "rank-00001.h5: tensor 'u8' chunk 1 failed its checksum" <<<"$out" ||
  fail "damaged chunk: message does not name it: $out"
[ -z "$(ls -A "$dir" | grep -v '^ck$\|^im2\?$\|^m\.\|^keep\.\|^sel\.')" ] ||
  fail "files left behind: $(ls -A "$dir")"
echo "export.sh: ok"
