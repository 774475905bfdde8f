"""The sdist is what the wheel is built from: the package, its metadata and licence files. setuptools
adds ``tests/test*.py`` to an sdist by default, which shipped nine of the suite's files without the
``tests`` package, its conftest or the data and live Slurm they need (none of them could run there):
the test suite runs from a checkout only (docs/testing.md)."""

from __future__ import annotations

import tarfile

from tests.deploy.wheel_env import WheelEnv


def test_the_sdist_holds_no_fragment_of_the_test_suite(wheel_env: WheelEnv) -> None:
    with tarfile.open(wheel_env.sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    assert not [m for m in members if m == "tests" or m.startswith("tests/")], sorted(members)[:20]
    assert {"pyproject.toml", "README.md", "LICENSE", "NOTICE", "fabric_hpc/cli/main.py",
            "fabric_hpc/slurm_plugins/task_prolog.py", "fabric_hpc/fabrics/leaf-spine-16.yaml"} <= members
