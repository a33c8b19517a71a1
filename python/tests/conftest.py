# SPDX-License-Identifier: Apache-2.0
"""Checkpoints written by the C library for the tests: interop_job (the
build's tests/interop/interop_job) saves its model of every dtype on 1 rank
(steps 3 and 7) and on 4 MPI ranks (step 7).  CKPTRT_TEST_JOB names the job
and CKPTRT_TEST_MPIRUN the mpirun command line; ctest sets both (label
`python`).  Without them the tests fail: they cannot run against nothing."""
import os
import shlex
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.environ.get("CKPTRT_TEST_EXPECTED",
                                  os.path.join(os.path.dirname(__file__), "..", "..", "tests",
                                               "interop")))


def _job(*args, np_=1):
    job = os.environ.get("CKPTRT_TEST_JOB")
    mpirun = os.environ.get("CKPTRT_TEST_MPIRUN")
    if not job or not mpirun:
        pytest.fail("CKPTRT_TEST_JOB and CKPTRT_TEST_MPIRUN must name the build's interop_job "
                    "and mpirun (ctest -L python sets them)")
    subprocess.run(shlex.split(mpirun) + ["-np", str(np_), job] + list(args), check=True)


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """{1: DIR saved on one rank (steps 3, 7), 4: DIR saved on four (step 7)}."""
    base = tmp_path_factory.mktemp("ckpts")
    one, four = str(base / "one"), str(base / "four")
    _job("save", one, "3")
    _job("save", one, "7")
    _job("save", four, "7", np_=4)
    return {1: one, 4: four}


@pytest.fixture
def copy_of(tmp_path):
    """A private copy of a saved folder, to damage."""
    def make(src):
        dst = str(tmp_path / "ck")
        shutil.copytree(src, dst)
        return dst
    return make
