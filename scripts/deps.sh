#!/usr/bin/env bash
# Installs the Debian 12 packages ckptrt needs, only those missing, and says
# which while it does: the packages it installs, apt's download size, each
# package as it is set up, and the time it took.  As root it runs apt-get;
# otherwise it prints the exact command and exits 1.
set -euo pipefail
# clang and libclang-rt-14-dev (libFuzzer, which clang only recommends) serve scripts/fuzz.sh.
pkgs=(build-essential cmake pkg-config libhdf5-dev hdf5-tools liburing-dev libxxhash-dev
      libgtest-dev python3 python3-h5py python3-numpy python3-venv clang
      libclang-rt-14-dev
      libopenmpi-dev openmpi-bin)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "ckptrt needs these packages; run:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
start=$SECONDS
log=$(mktemp "${TMPDIR:-/tmp}/ckpt-deps-XXXXXX.log")
trap 'rm -f "$log"' EXIT
echo "deps: installing ${#missing[@]} packages and what they need: ${missing[*]}"

# apt-get's own lines, filtered to what it is doing: the download size,
# each package as it is set up, errors and warnings.  The whole output is
# shown when apt-get fails.
run_apt() {
  local rc=0
  apt-get "$@" >"$log" 2>&1 &
  local pid=$!
  tail -n +1 -f --pid="$pid" "$log" |
    grep --line-buffered -E '^(Need to get|Fetched|Setting up|E:|W:|Err:)' |
    sed -u 's/^/deps: /' || true
  wait "$pid" || rc=$?
  return "$rc"
}

if ! run_apt install -y -q "${missing[@]}"; then
  # A fresh machine has no (or stale) package lists: fetch them and retry.
  echo "deps: apt-get install failed; updating the package lists and trying again"
  if ! run_apt update -q || ! run_apt install -y -q "${missing[@]}"; then
    echo "deps: apt-get failed; its output:" >&2
    cat "$log" >&2
    exit 1
  fi
fi
echo "deps: installed ${missing[*]} in $((SECONDS - start)) s"
