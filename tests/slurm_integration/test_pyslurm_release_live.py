"""pyslurm 25.11 against a slurmctld of another release (admin probe 7, on the 22.05 tier): `fabric slurm
nodes --backend pyslurm` read "pyslurm load nodes failed: Zero Bytes were transmitted or received, fix: is
slurmctld up?"; it now says that pyslurm 25.11 talks to Slurm 25.11 only, which Slurm this is, and names
the cli and rest backends. Unit: tests/slurm/test_pyslurm_release.py."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.real import require_real

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slurm, pytest.mark.slurm_max(25, 5)]  # any tier pyslurm 25.11 cannot talk to


def test_pyslurm_on_another_slurm_release_says_so(slurm_cluster_factory: Any) -> None:
    from fabric_hpc.topology import build, generators

    require_real("pyslurm", importlib.util.find_spec("pyslurm") is not None, "pyslurm is not installed")
    cluster = slurm_cluster_factory(build(generators.leaf_spine(2, hosts_per_leaf=2, gpus=8, cpus=8)))
    proc = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", "slurm", "nodes", "--backend", "pyslurm"],
                          env={**cluster.env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=120, cwd=str(cluster.work_dir))
    assert proc.returncode == 5, proc.stdout + proc.stderr
    said = r"pyslurm 25\.11\.\d+ talks to Slurm 25\.11 only; this Slurm is 2[2-5]\.\d"
    assert re.search(said, proc.stderr), proc.stderr
    assert 'backend = "cli" or "rest"' in proc.stderr and "Traceback" not in proc.stderr
