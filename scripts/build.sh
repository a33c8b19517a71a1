#!/usr/bin/env bash
# Configures and builds ckptrt into build/ (or $CKPT_BUILD_DIR); extra
# arguments go to cmake's configure step.  Configure's output goes to
# DIR/configure.log and is shown in full when it fails; otherwise only the
# line that says which backends are built.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${CKPT_BUILD_DIR:-build}
start=$SECONDS
mkdir -p "$dir"
if ! cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCKPT_WERROR=ON "$@" \
  >"$dir/configure.log" 2>&1; then
  cat "$dir/configure.log" >&2
  echo "build: cmake configure failed (output above, also in $dir/configure.log)" >&2
  exit 1
fi
grep -- '-- ckptrt:' "$dir/configure.log" || true
cmake --build "$dir" -j"$(nproc)"
echo "build: $dir built in $((SECONDS - start)) s"
