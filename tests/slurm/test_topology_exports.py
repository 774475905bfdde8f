"""Each topology export loaded by a live slurmctld, gang jobs placed by Slurm alone across blocks.

topology/block needs Slurm >= 23.11 and topology.yaml >= 25.05: those tests are marked ``slurm_min``, so
they exist only on the tiers that have that Slurm (the tree export runs on every tier). The fabric: 16 hosts, 4 per leaf, so 4 blocks of 4 hosts and
``BlockSizes=4,8,16``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from fabric_hpc.topology import build, generators
from fabric_hpc.topology import export as ex
from fabric_hpc.topology import export_yaml as exy

pytestmark = pytest.mark.slurm
BLOCKS = {"leaf1": {f"n{i}" for i in range(1, 5)}, "leaf2": {f"n{i}" for i in range(5, 9)},
          "leaf3": {f"n{i}" for i in range(9, 13)}, "leaf4": {f"n{i}" for i in range(13, 17)}}


@pytest.fixture(scope="module")
def fabric() -> Any:
    return build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=1, cpus=2))


def _hosts(cluster: Any, *args: str) -> set[str]:
    """Submit a short job, wait until it completes, return the hosts Slurm gave it."""
    job = cluster.sbatch(*args, wrap="true")
    return set(cluster.hostnames(cluster.wait_job(job, timeout=60)["NodeList"]))


def _blockers(cluster: Any, *nodes: str) -> list[int]:
    jobs = [cluster.sbatch("-N1", "-w", n, "--exclusive", wrap="sleep 300") for n in nodes]
    for job in jobs:
        cluster.wait_job(job, ["RUNNING"], timeout=30)
    return jobs


def _release(cluster: Any, blockers: list[int], timeout: float = 30) -> None:
    """Cancel the blockers and wait until they have left the queue: a slurmd still ending a job holds
    its SIGTERM for 5 s, after which stop() SIGKILLs it (5 s per stop spent waiting)."""
    cluster.run(["scancel", *map(str, blockers)])
    deadline = time.monotonic() + timeout
    while cluster.run(["squeue", "-h", "-o", "%i"]).stdout.strip():
        assert time.monotonic() < deadline, cluster.run(["squeue"]).stdout
        time.sleep(0.1)


def _blocks_of(hosts: set[str]) -> list[str]:
    return sorted(name for name, members in BLOCKS.items() if hosts & members)


def test_tree_export_keeps_a_gang_under_one_leaf(slurm_cluster_factory, fabric):
    cluster = slurm_cluster_factory(fabric, topology_plugin="tree")
    try:
        assert set(cluster.topology()) == {"leaf1", "leaf2", "leaf3", "leaf4", "spine"}
        blockers = _blockers(cluster, "n1", "n6")
        hosts = _hosts(cluster, "-N4", "--exclusive", "--switches=1")
        assert len(hosts) == 4 and len(_blocks_of(hosts)) == 1, hosts
        _release(cluster, blockers)
    finally:
        cluster.stop()


@pytest.mark.slurm_min(23, 11)  # topology/block
def test_block_export_gangs_stay_in_blocks_and_segments(slurm_cluster_factory, fabric):
    cluster = slurm_cluster_factory(fabric, topology_plugin="block")
    try:
        text = (cluster.etc_dir / "topology.conf").read_text()
        # 23.11 reads BlockLevels (BlockSizes came with 24.05): tests/topology/test_export_block_2311.py
        assert ("BlockLevels=0-2" if cluster.version[:2] < (24, 5) else "BlockSizes=4,8,16") in text
        config = cluster.run(["scontrol", "show", "config"]).stdout
        assert "topology/block" in config
        blockers = _blockers(cluster, "n1", "n13")  # leaf1 and leaf4 are no longer whole
        four = _hosts(cluster, "-N4", "--exclusive")
        assert _blocks_of(four) in (["leaf2"], ["leaf3"]), four  # one whole block, never split
        # 8 hosts as two segments of 4: each segment a whole block (leaf2 + leaf3: the only ones free);
        # 23.11 has no --segment (src/common/slurm_opt.c at slurm-23-11-11-1)
        if cluster.version[:2] >= (24, 5):
            eight = _hosts(cluster, "-N8", "--exclusive", "--segment=4")
            assert _blocks_of(eight) == ["leaf2", "leaf3"] and len(eight) == 8, eight
        _release(cluster, blockers)
    finally:
        cluster.stop()


@pytest.mark.slurm_min(25, 5)  # topology.yaml, Topology= per partition
def test_topology_yaml_chooses_a_topology_per_partition(slurm_cluster_factory, fabric):
    text = exy.topology_yaml(fabric, default="tree")
    partitions = ["PartitionName=tree Nodes=ALL Default=YES MaxTime=INFINITE State=UP Topology=tree",
                  "PartitionName=block Nodes=ALL MaxTime=INFINITE State=UP Topology=block"]
    cluster = slurm_cluster_factory(fabric, topology_plugin="tree", config_files={"topology.yaml": text},
                                    partitions=partitions)
    try:
        shown = cluster.run(["scontrol", "show", "partition", "block"]).stdout
        assert "Topology=block" in shown, shown
        blockers = _blockers(cluster, "n1", "n13")
        in_block = _hosts(cluster, "-p", "block", "-N8", "--exclusive", "--segment=4")
        assert _blocks_of(in_block) == ["leaf2", "leaf3"], in_block
        in_tree = _hosts(cluster, "-p", "tree", "-N3", "--exclusive", "--switches=1")
        assert len(_blocks_of(in_tree)) == 1, in_tree
        _release(cluster, blockers)
    finally:
        cluster.stop()
