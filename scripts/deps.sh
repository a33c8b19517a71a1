#!/usr/bin/env bash
# Installs the Debian 12 packages ckptrt needs, only those missing.  As root
# it runs apt-get; otherwise it prints the exact command and exits 1.
set -euo pipefail
# clang and libclang-rt-14-dev (libFuzzer, which clang only recommends) serve scripts/fuzz.sh.
pkgs=(build-essential cmake pkg-config libhdf5-dev hdf5-tools liburing-dev libxxhash-dev
      libgtest-dev python3 python3-h5py python3-numpy clang libclang-rt-14-dev
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
apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
  { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
echo "installed: ${missing[*]}"
