#!/usr/bin/env bash
# The installed package, as a C project outside the tree would use it
# (ctest label `install`): installs BUILD into a fresh prefix, then
#   1. libckpt.so links no CUDA, NCCL or MPI library and exports only ckpt_*;
#      no installed library is, exports or links the test-only stand-in;
#   2. builds tests/install/consumer.c through find_package(ckpt CONFIG) and
#      through `pkg-config --cflags --libs ckpt`, runs both (each saves,
#      restores and compares its bytes) and checks that neither loads a
#      CUDA, NCCL or MPI library; where the CUDA plugin was installed, that
#      libckpt found it next to itself;
#   3. builds comm_consumer.c with the installed comm backends (CMake
#      components, and their pkg-config files) and runs it.
# Usage: run.sh BUILD_DIR LIBDIR CC PKG_CONFIG
set -euo pipefail
build=$1 libdir=$2 cc=$3 pkgconfig=$4
src=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-install-XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
lib=$prefix/$libdir
fail() {
  echo "install test: FAILED: $*" >&2
  exit 1
}
# A program's or library's GPU and MPI dependencies, one per line ("" if none).
gpu_mpi_deps() {
  ldd "$1" | awk '{print $1}' | grep -Ei 'cuda|nccl|mpi|nvidia' || true
}

cmake --install "$build" --prefix "$prefix" >"$work/install.log" ||
  { cat "$work/install.log" >&2; fail "cmake --install"; }
for f in include/ckpt/ckpt.h "$libdir/libckpt.so" "$libdir/libckpt.a" bin/ckpt \
  "$libdir/cmake/ckpt/ckptConfig.cmake" "$libdir/pkgconfig/ckpt.pc"; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done
soname=$(readelf -d "$lib/libckpt.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $soname =~ ^libckpt\.so\.[0-9]+$ ]] || fail "libckpt.so has soname '$soname'"
[ -e "$lib/$soname" ] || fail "no $soname in $lib"

# 1. The core library alone.
deps=$(gpu_mpi_deps "$lib/libckpt.so")
[ -z "$deps" ] || fail "libckpt.so links $deps"
other=$(nm -D --defined-only "$lib/libckpt.so" | awk '{print $3}' | grep -Ev '^ckpt_[a-z]' || true)
[ -z "$other" ] || fail "libckpt.so exports more than the ckpt_* API: $other"
echo "install test: libckpt.so ($soname): $(nm -D --defined-only "$lib/libckpt.so" | wc -l)" \
  "symbols, all ckpt_*; no CUDA, NCCL or MPI library"

# The CUDA/NCCL stand-in (tests/cudasim) is test-only: no installed file is
# one of its libraries, and no installed library exports or needs its
# symbols (all of its own start with cudasim_).
sim=$(find "$prefix" -name '*cudasim*' -o -name '*_sim.so*' | head -5)
[ -z "$sim" ] || fail "the stand-in was installed: $sim"
nlibs=0
while IFS= read -r so; do
  nlibs=$((nlibs + 1))
  bad=$(nm -D "$so" | grep -i 'cudasim' || true)
  [ -z "$bad" ] || fail "$so carries stand-in symbols: $bad"
  ! ldd "$so" | grep -q cudasim || fail "$so links the stand-in"
done < <(find "$prefix" -name '*.so*' -type f)
echo "install test: none of $nlibs installed libraries carries a cudasim symbol"

# Runs a consumer in a fresh folder and checks what it said.
run_consumer() {
  local exe=$1 how=$2 out
  out=$("$exe" "$work/ck-$how") || fail "$how consumer failed: $out"
  echo "$out" | sed "s/^/install test: $how: /"
  grep -q "bytes restored bit-exact" <<<"$out" || fail "$how consumer: no round trip"
  deps=$(gpu_mpi_deps "$exe")
  [ -z "$deps" ] || fail "$how consumer (CPU only) links $deps"
  if [ -e "$lib/libckpt_cuda.so.${soname##*.so.}" ]; then
    # The installed plugin was loaded from libckpt's folder: either CUDA
    # works here, or the reason is the plugin's own CUDA probe.
    grep -Eq "backend $lib/|cudaGetDeviceCount" <<<"$out" ||
      fail "$how consumer did not find the installed CUDA plugin: $out"
  fi
}

# 2a. find_package(ckpt CONFIG).
cmake -S "$src" -B "$work/cmake" -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release >"$work/cmake.log" 2>&1 ||
  { cat "$work/cmake.log" >&2; fail "configure of the find_package consumer"; }
cmake --build "$work/cmake" >"$work/build.log" 2>&1 ||
  { cat "$work/build.log" >&2; fail "build of the find_package consumer"; }
echo "install test: find_package components: $(cat "$work/cmake/components.txt")"
run_consumer "$work/cmake/consumer" find_package

# 2b. pkg-config.
export PKG_CONFIG_PATH=$lib/pkgconfig
flags=$("$pkgconfig" --cflags --libs ckpt) || fail "pkg-config ckpt"
pclib=$("$pkgconfig" --variable=libdir ckpt)
[ "$(cd "$pclib" && pwd)" = "$(cd "$lib" && pwd)" ] || fail "ckpt.pc's libdir is $pclib"
# shellcheck disable=SC2086 # the flags are words
"$cc" -o "$work/consumer-pc" "$src/consumer.c" $flags -Wl,-rpath,"$pclib" ||
  fail "build of the pkg-config consumer with: $flags"
echo "install test: pkg-config --cflags --libs ckpt: $flags"
run_consumer "$work/consumer-pc" pkg-config

# 3. The comm backends, both ways.
out=$("$work/cmake/comm_consumer" "$work/ck-comm") || fail "comm consumer: $out"
echo "$out" | sed 's/^/install test: find_package: /'
defs=() mods=()
for b in mpi nccl; do
  if [ -e "$lib/pkgconfig/ckpt-$b.pc" ]; then
    up=$(tr '[:lower:]' '[:upper:]' <<<"$b")
    defs+=("-DCONSUMER_$up=1")
    mods+=("ckpt-$b")
    grep -q "$b=1\|$b=TRUE\|$b=ON" "$work/cmake/components.txt" ||
      fail "ckpt-$b.pc installed but find_package found no $b component"
  fi
done
if [ ${#mods[@]} -gt 0 ]; then
  flags=$("$pkgconfig" --cflags --libs "${mods[@]}") || fail "pkg-config ${mods[*]}"
  # shellcheck disable=SC2086
  "$cc" -o "$work/comm-pc" "$src/comm_consumer.c" "${defs[@]}" -DOMPI_SKIP_MPICXX=1 $flags \
    -Wl,-rpath,"$pclib" || fail "build of the pkg-config comm consumer with: $flags"
  out=$("$work/comm-pc" "$work/ck-comm-pc") || fail "pkg-config comm consumer: $out"
  echo "$out" | sed 's/^/install test: pkg-config: /'
  grep -q "${#mods[@]} backend(s) checked" <<<"$out" || fail "comm consumer checked too few"
fi
echo "install test: passed"
