#!/usr/bin/env bash
# The main job: installs what is missing, builds into build/, runs ckpt-demo
# (train, SIGKILL mid-run, resume, compare with an uninterrupted run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
exec build/bin/ckpt-demo "$@"
