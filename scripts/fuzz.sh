#!/usr/bin/env bash
# Fuzzes the checkpoint readers: builds the libFuzzer targets of tests/fuzz
# with clang into build-fuzz/ (or $CKPT_FUZZ_DIR), writes their seed corpora
# from a real checkpoint, and runs each target for its share of SECONDS
# (default 60).  Exits non-zero on any crash, leak or timeout and prints
# where the reproducer is and how to replay it.  Installs nothing: it only
# checks that clang and its libFuzzer runtime are there.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
if ! [[ $secs =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS]" >&2
  exit 2
fi
dir=${CKPT_FUZZ_DIR:-build-fuzz}

probe='int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }'
if ! command -v clang >/dev/null || ! command -v clang++ >/dev/null ||
  ! echo "$probe" | clang -x c -fsanitize=fuzzer - -o /dev/null 2>/dev/null; then
  echo "scripts/fuzz.sh needs clang with its libFuzzer runtime; run:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y clang libclang-rt-14-dev" >&2
  exit 1
fi

echo "== fuzz: build ($dir)"
CC=clang CXX=clang++ cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCKPT_FUZZ=ON \
  -DCKPT_BUILD_TESTS=OFF -DCKPT_WERROR=ON >/dev/null
cmake --build "$dir" -j"$(nproc)" --target ckpt_fuzz >/dev/null

root=$PWD/$dir
mkdir -p "$root/tmp" "$root/artifacts" "$root/logs"
# Scratch folders of the targets go here, so a crashed run leaves nothing in /tmp.
export TMPDIR=$root/tmp
# Set here rather than inherited (.ci/run exports its own).  Leak detection
# is on for every target, with nothing suppressed: an input that makes the
# readers (or libhdf5 behind them) lose memory fails the run.  A smaller ASan
# quarantine keeps LeakSanitizer's scans cheap.
export ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=64
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
unset LSAN_OPTIONS

echo "== fuzz: seed corpora from a real checkpoint"
rm -rf "$root/corpus"
"$root/bin/ckpt-fuzz-corpus" "$root/corpus"
# target:corpus:weight; the HDF5 targets are slower per input, so get more time.
plan=(fuzz_index:index:1 fuzz_manifest:manifest:1 fuzz_manifest_sealed:manifest:2
      fuzz_rankfile:rankfile:2)
total=0
for p in "${plan[@]}"; do total=$((total + ${p##*:})); done
failed=0
for p in "${plan[@]}"; do
  IFS=: read -r t sub w <<<"$p"
  share=$((secs * w / total))
  [ "$share" -ge 1 ] || share=1
  grown=$root/grown/$t
  log=$root/logs/$t.log
  mkdir -p "$grown"
  rc=0
  "$root/bin/$t" -max_total_time="$share" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$root/artifacts/$t-" "$grown" "$root/corpus/$sub" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1 || true)
  printf '%-22s %3ss  %8s runs  %6s exec/s  %s\n' "$t" "$share" "${runs:-?}" "${rate:-?}" \
    "${cov:-cov: ?}"
  if [ "$rc" -ne 0 ]; then
    failed=1
    echo "!! $t failed (exit $rc); log: $log" >&2
    grep -E 'ERROR|SUMMARY|==[0-9]+==|runtime error|#[0-9]+ 0x' "$log" | head -n 30 >&2 || true
    unit=$(sed -n 's/.*Test unit written to //p' "$log" | tail -n 1)
    if [ -n "$unit" ]; then
      echo "!! reproducer: $unit" >&2
      echo "!! replay: TMPDIR=/tmp $root/bin/$t $unit" >&2
    fi
  fi
done
exit "$failed"
