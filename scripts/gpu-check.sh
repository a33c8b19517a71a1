#!/usr/bin/env bash
# The GPU check and benchmark (issue #5), in two halves, because the GPU
# machine has CUDA but none of ckptrt's libraries and no network:
#
#   scripts/gpu-check.sh bundle [DIR]     on a build machine with the CUDA
#       toolkit (no GPU needed): builds build-gpu with the CUDA and NCCL
#       backends and the sm_90 kernels, and copies the GPU tests, the
#       examples, ckpt-bench and the CLI, with every shared library a bare
#       CUDA machine lacks (HDF5, liburing, xxHash, the CUDA plugin
#       libckpt_cuda.so.0; not NCCL, which it has; the CUDA runtime is
#       linked statically), into DIR (default .gpu).
#   scripts/gpu-check.sh run OUT [DIR]    on the GPU machine, from the
#       repository root: the `gpu` tests (CUDA backend, NCCL comm), the CPU
#       demo on device=auto, the CUDA training example (kill, resume,
#       bit-identical), ckpt-bench d2h and train on device tensors at 1, 8
#       and 32 GiB, and bench/peers/torch_ckpt.py where torch imports.
#       Logs, gtest XML and one JSON per benchmark go under OUT; a short
#       table goes to stdout and OUT/summary.txt.  Exit status 0 only if
#       every step passed (a skipped GPU test is a failure here).
#
# Environment for `run`: CKPT_GPU_SCRATCH (checkpoint folders, default
# /tmp/ckpt-gpu: a local disk with room for two 32 GiB checkpoints),
# CKPT_GPU_QUICK=1 (smaller sizes: a smoke run of every step in ~2 min),
# NCCL_LIB (where libnccl.so.2 is; default: the nvidia.nccl Python package).
set -euo pipefail
cd "$(dirname "$0")/.."

# Copies each program and the shared libraries it loads, except the C
# library, the CUDA driver and NCCL, which the GPU machine has.
bundle_into() {
  local out=$1 f name path
  shift
  mkdir -p "$out/bin" "$out/lib"
  local keep='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libcuda\.so|libnvidia|libnccl)'
  for f in "$@"; do
    cp -L "$f" "$out/bin/"
    while read -r name path; do
      [[ $name =~ $keep ]] && continue
      [ -f "$path" ] && cp -Ln "$path" "$out/lib/" 2>/dev/null || true
    done < <(ldd "$f" | awk '/=>/ {print $1, $3}')
  done
}

programs=(test_gpu test_cuda internal_test_nccl_gpu ckpt-demo ckpt-cuda-train ckpt-bench ckpt)

case "${1:-}" in
bundle)
  dir=${2:-.gpu}
  command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] ||
    { echo "gpu-check: no CUDA toolkit (nvcc) here" >&2; exit 2; }
  cmake -S . -B build-gpu -DCKPT_WERROR=ON -DCKPT_WITH_CUDA=ON -DCKPT_WITH_NCCL=ON \
    -DCKPT_WITH_CUDA_KERNELS=ON -DCKPT_WITH_MPI=OFF >/dev/null
  cmake --build build-gpu -j"$(nproc)" --target "${programs[@]}" >/dev/null
  rm -rf "$dir"
  bundle_into "$dir" "${programs[@]/#/build-gpu/bin/}"
  # The CUDA backend is a plugin the programs load at ckpt_open (ldd does
  # not list it); they look for it in ../lib next to themselves.
  cp -L build-gpu/lib/libckpt_cuda.so.0 "$dir/lib/"
  mkdir -p "$dir/peers"
  cp bench/peers/*.py "$dir/peers/"
  cp bench/gpu_table.py "$dir/"
  echo "gpu-check: $(ls "$dir/bin" | wc -l) programs, $(ls "$dir/lib" | wc -l) libraries," \
    "$(du -sh "$dir" | cut -f1) in $dir"
  ;;
run)
  out=${2:?usage: gpu-check.sh run OUT [DIR]}
  dir=${3:-.gpu}
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  scratch=${CKPT_GPU_SCRATCH:-/tmp/ckpt-gpu}
  rm -rf "$scratch"
  mkdir -p "$scratch"
  if [ -z "${NCCL_LIB:-}" ]; then
    NCCL_LIB=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0] + "/lib")' \
      2>/dev/null || true)
  fi
  export LD_LIBRARY_PATH="$PWD/$dir/lib${NCCL_LIB:+:$NCCL_LIB}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  bin=$PWD/$dir/bin
  {
    nvidia-smi || true
    echo "NCCL_LIB=${NCCL_LIB:-}"
    df -h "$scratch" || true
    free -g || true
  } >"$out/machine.txt" 2>&1
  if [ "${CKPT_GPU_QUICK:-0}" = 1 ]; then
    sizes=(256M 1G) d2h_size=1G
  else
    sizes=(1G 8G 32G) d2h_size=4G
  fi

  results=()
  # step NAME SECONDS COMMAND...: runs with a time limit, output to
  # OUT/NAME.log; exit 77 is a skip (counted as a failure: this machine is
  # supposed to have a GPU).
  step() {
    local name=$1 limit=$2 rc=0 t0=$SECONDS verdict
    shift 2
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1 || rc=$?
    case $rc in
      0) verdict=passed ;;
      77) verdict="SKIPPED (no usable GPU)" ;;
      124 | 137) verdict="FAILED (timed out after ${limit}s)" ;;
      *) verdict="FAILED ($rc)" ;;
    esac
    results+=("$(printf '%-22s %-28s %4ds' "$name" "$verdict" $((SECONDS - t0)))")
    printf '%s\n' "${results[-1]}" >&2
    return 0
  }
  step test_gpu 300 "$bin/test_gpu" --gtest_output="xml:$out/test_gpu.xml"
  step test_nccl_gpu 300 "$bin/internal_test_nccl_gpu" --gtest_output="xml:$out/test_nccl_gpu.xml"
  step test_cuda 300 "$bin/test_cuda" --gtest_output="xml:$out/test_cuda.xml"
  for x in "$out"/test_gpu.xml "$out"/test_nccl_gpu.xml; do
    if grep -q '<skipped' "$x" 2>/dev/null; then
      results+=("$(basename "$x" .xml)  SKIPPED inside: no usable GPU (see its log)")
    fi
  done
  step demo_auto 300 env CKPT_LOG=info "$bin/ckpt-demo" --dir "$scratch/demo"
  step cuda_train 300 env TMPDIR="$scratch" "$bin/ckpt-cuda-train"

  run_bench() { # NAME SECONDS ckpt-bench arguments...; JSON on stdout, table on stderr
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" sh -c 'exec "$@" >"'"$out/$name.json"'"' sh \
      "$bin/ckpt-bench" "$@" --json
  }
  run_bench d2h_smoke 120 d2h --dir "$scratch/bench" --size 256M --reps 1
  run_bench train_gpu_smoke 120 train --device cuda --dir "$scratch/bench" --state 256M \
    --steps 4 --every 2
  run_bench d2h 300 d2h --dir "$scratch/bench" --size "$d2h_size" --reps 3
  for s in "${sizes[@]}"; do
    extra=()
    # 32 GiB: one save (the disk holds the checkpoint once, beside nothing else).
    [ "$s" = 32G ] && extra=(--steps 10 --every 10)
    run_bench "train_gpu_$s" 400 train --device cuda --dir "$scratch/bench" --state "$s" \
      "${extra[@]}"
  done
  rm -rf "$scratch/bench"

  if [ -f "$dir/peers/torch_ckpt.py" ] && python3 -c 'import torch' 2>/dev/null; then
    step torch_peers 400 python3 "$dir/peers/torch_ckpt.py" --state "${sizes[0]}" \
      --dir "$scratch/torch" --out "$out"
  else
    results+=("torch_peers            SKIPPED (no torch or no bench/peers/torch_ckpt.py)")
  fi
  rm -rf "$scratch"

  {
    printf '%s\n' "${results[@]}"
    echo
    python3 "$PWD/$dir/gpu_table.py" "$out" 2>&1 || echo "(no table: gpu_table.py failed)"
  } | tee "$out/summary.txt"
  ! grep -q 'FAILED\|SKIPPED' "$out/summary.txt"
  ;;
*)
  sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
