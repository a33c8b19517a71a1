#!/usr/bin/env bash
# Installs what is missing, builds into build/ (or $CKPT_BUILD_DIR) and runs
# the whole test suite; extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh -DCKPT_BUILD_TESTS=ON "$@"
ctest --test-dir "${CKPT_BUILD_DIR:-build}" --output-on-failure -j"$(nproc)"
