#!/usr/bin/env bash
# Configures and builds ckptrt into build/ (or $CKPT_BUILD_DIR); extra
# arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${CKPT_BUILD_DIR:-build}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCKPT_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
