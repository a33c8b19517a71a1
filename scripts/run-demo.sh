#!/usr/bin/env bash
# The main job: installs what is missing, builds into build/, runs ckpt-demo
# (train, SIGKILL mid-run, resume, compare with an uninterrupted run).  The
# test suites are not built here (scripts/run-tests.sh builds them into the
# same folder).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh -DCKPT_BUILD_TESTS=OFF
exec build/bin/ckpt-demo "$@"
