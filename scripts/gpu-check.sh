#!/usr/bin/env bash
# The GPU check (issue #5), in two halves, because the GPU machine has CUDA
# but none of ckptrt's libraries and no network:
#
#   scripts/gpu-check.sh bundle [DIR]     on a build machine with the CUDA
#       toolkit (no GPU needed): builds build-gpu with the CUDA backend and
#       copies the GPU test and bench programs, with every shared library a
#       bare CUDA machine lacks, into DIR (default .gpu).
#   scripts/gpu-check.sh run OUT [DIR]    on the GPU machine, from the
#       repository root: runs the `gpu` tests, the CUDA backend tests and the
#       demo on the CUDA backend from DIR; logs and gtest XML go under OUT,
#       a short table to stdout.  Exit status 0 only if everything passed.
#
# Not done yet (issue #5): the CUDA training example, `ckpt-bench` on device
# tensors and the PyTorch peer benchmark; this runs what exists.
set -euo pipefail
cd "$(dirname "$0")/.."

# Copies each program or library and the shared libraries it loads, except
# the C library, the CUDA driver and NCCL, which the GPU machine has.
bundle_into() {
  local out=$1 f name path
  shift
  mkdir -p "$out/bin" "$out/lib"
  local keep='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libcuda\.so|libnvidia|libnccl)'
  for f in "$@"; do
    case "$f" in
      *.so*) cp -L "$f" "$out/lib/" ;;
      *) cp -L "$f" "$out/bin/" ;;
    esac
    while read -r name path; do
      [[ $name =~ $keep ]] && continue
      [ -f "$path" ] && cp -Ln "$path" "$out/lib/" 2>/dev/null || true
    done < <(ldd "$f" | awk '/=>/ {print $1, $3}')
  done
}

case "${1:-}" in
bundle)
  dir=${2:-.gpu}
  command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] ||
    { echo "gpu-check: no CUDA toolkit (nvcc) here" >&2; exit 2; }
  cmake -S . -B build-gpu -DCKPT_WERROR=ON -DCKPT_WITH_CUDA=ON -DCKPT_WITH_MPI=OFF >/dev/null
  cmake --build build-gpu -j"$(nproc)" --target test_gpu test_cuda ckpt-demo ckpt-bench ckpt >/dev/null
  rm -rf "$dir"
  bundle_into "$dir" build-gpu/bin/test_gpu build-gpu/bin/test_cuda build-gpu/bin/ckpt-demo \
    build-gpu/bin/ckpt-bench build-gpu/bin/ckpt
  echo "gpu-check: $(ls "$dir/bin" | wc -l) programs, $(ls "$dir/lib" | wc -l) libraries," \
    "$(du -sh "$dir" | cut -f1) in $dir"
  ;;
run)
  out=${2:?usage: gpu-check.sh run OUT [DIR]}
  dir=${3:-.gpu}
  mkdir -p "$out"
  export LD_LIBRARY_PATH="$PWD/$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
  results=()
  step() { # name, command...
    local name=$1 rc=0
    shift
    "$@" >"$out/$name.log" 2>&1 || rc=$?
    results+=("$(printf '%-14s %s' "$name" "$([ $rc -eq 0 ] && echo passed || echo "FAILED ($rc)")")")
    return 0
  }
  step test_gpu "$dir/bin/test_gpu" --gtest_output="xml:$out/test_gpu.xml"
  step test_cuda "$dir/bin/test_cuda" --gtest_output="xml:$out/test_cuda.xml"
  # The demo on the CUDA backend (host tensors copied by the CUDA engine).
  step demo env CKPT_LOG=info "$dir/bin/ckpt-demo" --dir "$out/demo"
  # A skipped gpu test means this machine has no usable GPU: not a pass.
  if grep -q '<skipped' "$out/test_gpu.xml" 2>/dev/null; then
    results+=("test_gpu       SKIPPED: no usable GPU (see $out/test_gpu.log)")
  fi
  printf '%s\n' "${results[@]}" | tee "$out/summary.txt"
  ! grep -q 'FAILED\|SKIPPED' "$out/summary.txt"
  ;;
*)
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
