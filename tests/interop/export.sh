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
[ -z "$(ls -A "$dir" | grep -v '^ck$\|^m\.\|^keep\.\|^sel\.')" ] ||
  fail "files left behind: $(ls -A "$dir")"
echo "export.sh: ok"
