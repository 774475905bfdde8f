"""A job name or comment that is not UTF-8 read alike by the three backends on a live Slurm 25.11 (pyslurm
exists for 25.11 only): U+FFFD for each bad byte. pyslurm's property raised UnicodeDecodeError, so one
user's `sbatch -J $'bad\\xff'` failed every `jobs()` of the pyslurm agent (every cycle, for everyone);
the cli backend's answer did not decode at all (test_sec_invalid_utf8_live.py, both tiers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fabric_hpc.slurm import SlurmClient
from fabric_hpc.topology import build, generators
from tests.slurm_integration.backends import every_backend

pytestmark = [pytest.mark.slurm, pytest.mark.slurm_min(25, 11)]


@pytest.fixture(scope="module")
def cluster(slurm_cluster_factory: Any) -> Iterator[Any]:
    from tests.slurm_integration.restd import jwt_cluster

    fabric = build(generators.leaf_spine(2, hosts_per_leaf=2, gpus=1, cpus=2))
    with jwt_cluster(slurm_cluster_factory, fabric, "fabric-utf8-") as c:
        yield c


@pytest.fixture(scope="module")
def clients(cluster: Any) -> Iterator[dict[str, SlurmClient]]:
    with every_backend(cluster) as found:
        yield found


def test_every_backend_reads_a_name_that_is_not_utf8(cluster: Any, clients: dict[str, SlurmClient]) -> None:
    # os.fsencode: b"bad\xff\xfename" and b"x\xffy" on sbatch's command line
    jid = cluster.sbatch("-J", "bad\udcff\udcfename", "--comment=x\udcffy", "-H", wrap="true")
    try:
        for name, client in clients.items():
            (listed,) = [j for j in client.jobs() if j.job_id == jid]
            one = client.job(jid)
            for job in (listed, one):
                assert (job.name, job.comment) == ("bad\ufffd\ufffdname", "x\ufffdy"), (name, job)
    finally:
        cluster.run(["scancel", str(jid)], check=False)
