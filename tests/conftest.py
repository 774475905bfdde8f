"""Shared fixtures: the live Slurm test cluster (see docs/testing.md).

``slurm_cluster`` is one session-wide cluster built from a fabric model (16 hosts n1..n16 under
four leaf switches, 8 fake GPUs and 8 CPUs each). Tests that need their own ``slurm.conf``
(job_submit Lua, prologs, jobcomp, preemption) ask ``slurm_cluster_factory`` for one; every
cluster is stopped at the end of the session, also when tests fail or the run is interrupted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.real import require_commands, require_real
from tests.strict_json import strict_json_outputs  # noqa: F401 - autouse: every --json output is strict JSON

SLURM_COMMANDS = ("slurmctld", "slurmd", "munged", "sbatch", "srun", "sinfo", "scontrol", "squeue")


def _require_slurm() -> None:
    require_commands("slurm", *SLURM_COMMANDS)
    require_real("slurm", os.geteuid() == 0, "the live Slurm test cluster runs slurmd and munged as root")


@pytest.fixture(scope="session")
def require_slurm() -> None:
    """Fail in CI (skip locally) unless Slurm, munge and root are there."""
    _require_slurm()


@pytest.fixture(scope="session")
def slurm_fabric() -> Any:
    """The fabric model behind ``slurm_cluster``: leaf/spine, 16 hosts, 4 per leaf, 8 GPUs each."""
    from fabric_hpc.topology import build, generators

    return build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))


@pytest.fixture(scope="session")
def slurm_cluster_factory(require_slurm: None,
                          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """``make(fabric=None, **kwargs)`` -> a started SlurmTestCluster; all are stopped at session end.

    With ``fabric`` the cluster is ``SlurmTestCluster.from_fabric(fabric, **kwargs)``, otherwise
    ``SlurmTestCluster(**kwargs)``. Its files stay under pytest's temporary directory for debugging.
    """
    from fabric_hpc.testing import SlurmTestCluster

    clusters: list[SlurmTestCluster] = []

    def make(fabric: Any = None, **kwargs: Any) -> SlurmTestCluster:
        kwargs.setdefault("base_dir", tmp_path_factory.mktemp("slurm"))
        if fabric is not None:
            cluster = SlurmTestCluster.from_fabric(fabric, **kwargs)
        else:
            cluster = SlurmTestCluster(**kwargs)
        clusters.append(cluster)
        return cluster.start()

    try:
        yield make
    finally:  # also on KeyboardInterrupt: pytest tears session fixtures down
        for cluster in reversed(clusters):
            cluster.stop()


@pytest.fixture(scope="session")
def slurm_cluster(slurm_cluster_factory: Callable[..., Any], slurm_fabric: Any) -> Any:
    """The shared live cluster (16 nodes x 8 GPUs, topology.conf and gres.conf from the fabric)."""
    return slurm_cluster_factory(slurm_fabric)
