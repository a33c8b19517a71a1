#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The virtual environment the `python` tests run in: made from PYTHON (the
# Debian python3 whose h5py and numpy it keeps, --system-site-packages)
# with safetensors, pytest and xxhash from PyPI, numpy pinned to PYTHON's
# own so that Debian's h5py keeps working, and the package in python/
# installed into it.  Made once; later runs only check it.  Fails, saying
# why, when PYTHON lacks h5py or PyPI cannot be reached.
# usage: python-venv.sh PYTHON VENV SOURCE_DIR
set -euo pipefail
py=$1 venv=$2 src=$3
if [ -z "$py" ] || ! "$py" -c 'import h5py, numpy' 2>/dev/null; then
  echo "python-venv: no python3 that imports h5py and numpy ('$py'); install python3-h5py" \
       "python3-numpy python3-venv (scripts/deps.sh)" >&2
  exit 1
fi
stamp=$venv/.ckpt-ready
if [ ! -e "$stamp" ]; then
  start=$SECONDS
  rm -rf "$venv"
  "$py" -m venv --system-site-packages "$venv"
  np=$("$py" -c 'import numpy; print(numpy.__version__)')
  echo "numpy==$np" >"$venv/constraints.txt"
  # setuptools and wheel build the package below (a venv of Python >= 3.12
  # has no setuptools; Debian 12 setuptools needs wheel for bdist_wheel).
  "$venv/bin/pip" install -q --disable-pip-version-check -c "$venv/constraints.txt" \
    safetensors pytest xxhash setuptools wheel
  touch "$stamp"
  echo "python-venv: made $venv in $((SECONDS - start)) s"
fi
# The package itself, every time (it is what the tests test).
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation \
  --force-reinstall "$src/python" >/dev/null
"$venv/bin/python" -c 'import safetensors, pytest, xxhash, h5py, numpy, ckptrt'
