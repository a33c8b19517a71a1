#!/usr/bin/env bash
# The layering rules of docs/ARCHITECTURE.md, checked on the #include lines
# of the source tree (no build needed).  Each folder may include, with
# "folder/file.h", only the layers at or below it:
#
#   include/ckpt  ckpt/                       (the public API stands alone)
#   base/         base/ ckpt/                 (errors, log, clock, worker pool)
#   io/           io/ base/ ckpt/             (byte layouts, the writers)
#   cuda/         base/ ckpt/ and, of runtime/, only the interfaces a backend
#                 implements: runtime/device.h, runtime/comm.h
#   runtime/      runtime/ io/ base/ ckpt/
#   tools/        tools/ runtime/ io/ base/ ckpt/
#   bench/        bench/ tools/ runtime/ io/ base/ ckpt/
#   examples/     examples/ ckpt/             (written against the public API)
#
# An include without a folder ("x.h") must name a file of the same folder;
# one with ".." is refused.  tests/ may include anything.
#
#   scripts/check-layers.sh [ROOT]   checks ROOT (default: this repository);
#                                    exit 1 listing file:line of each upward include
#   scripts/check-layers.sh --self-test
#                                    proves the check fails: plants one upward
#                                    include per rule in a copy and expects each found
set -euo pipefail

allowed() { # folder -> the include prefixes it may use
  case $1 in
    include) echo "ckpt" ;;
    base) echo "base ckpt" ;;
    io) echo "io base ckpt" ;;
    cuda) echo "base ckpt runtime/device.h runtime/comm.h" ;;
    runtime) echo "runtime io base ckpt" ;;
    tools) echo "tools runtime io base ckpt" ;;
    bench) echo "bench tools runtime io base ckpt" ;;
    examples) echo "examples ckpt" ;;
  esac
}

check() {
  local root=$1 bad=0 layer file line inc ok p
  for layer in include base io cuda runtime tools bench examples; do
    [ -d "$root/$layer" ] || continue
    while IFS=: read -r file line inc; do
      inc=${inc#*\"}
      inc=${inc%%\"*}
      ok=0
      if [[ $inc == *..* ]]; then
        ok=0
      elif [[ $inc != */* ]]; then
        [ -e "$(dirname "$root/$file")/$inc" ] && ok=1
      else
        for p in $(allowed "$layer"); do
          if [[ $p == */* ]]; then
            [ "$inc" = "$p" ] && ok=1
          elif [[ $inc == "$p"/* ]]; then
            ok=1
          fi
        done
      fi
      if [ "$ok" = 0 ]; then
        echo "check-layers: $file:$line: $layer/ includes \"$inc\" (allowed: $(allowed "$layer"))" >&2
        bad=1
      fi
    done < <(cd "$root" && grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' \
      --include='*.c' --include='*.h' --include='*.cu' --include='*.cpp' "$layer" || true)
  done
  return "$bad"
}

self_test() {
  local repo tmp fails=0 plant
  repo=$(cd "$(dirname "$0")/.." && pwd)
  check "$repo" || { echo "check-layers: self-test: the tree itself fails" >&2; return 1; }
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-layers-XXXXXX")
  trap 'rm -rf "$tmp"' RETURN
  for plant in "base/err.h:io/index.h" "base/clock.h:runtime/device.h" "io/writer.h:runtime/internal.h" \
    "io/index.h:cuda/x.h" "cuda/device_cuda.c:runtime/internal.h" "runtime/save.c:tools/folder.h" \
    "runtime/ctx.c:bench/bench_util.h" "tools/folder.c:bench/bench_util.h" \
    "examples/demo.c:runtime/internal.h" "include/ckpt/ckpt.h:base/err.h" "io/index.c:../runtime/err.h" \
    "base/log.c:nosuchfile.h"; do
    rm -rf "$tmp/tree" && mkdir "$tmp/tree"
    (cd "$repo" && cp -r include base io cuda runtime tools bench examples "$tmp/tree/")
    printf '#include "%s"\n' "${plant#*:}" >>"$tmp/tree/${plant%%:*}"
    if check "$tmp/tree" 2>"$tmp/out"; then
      echo "check-layers: self-test: missed \"${plant#*:}\" planted in ${plant%%:*}" >&2
      fails=1
    elif ! grep -q "^check-layers: ${plant%%:*}:[0-9]*: " "$tmp/out"; then
      echo "check-layers: self-test: found the plant in ${plant%%:*} but did not name it:" >&2
      cat "$tmp/out" >&2
      fails=1
    fi
  done
  [ "$fails" = 0 ] && echo "check-layers: self-test passed (12 upward includes planted, 12 found)"
  return "$fails"
}

case ${1:-} in
  --self-test) self_test ;;
  -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' ;;
  *)
    root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
    check "$root" && echo "check-layers: every include runs downward"
    ;;
esac
