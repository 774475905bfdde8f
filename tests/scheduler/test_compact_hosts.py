"""The compact-placement hold counts hosts as well as GPUs: a ``nodes=N`` gang needs at least
``ceil(N / hosts per domain)`` domains, so a gang of 36 two-GPU hosts on NVL72 (72 GPUs: one rack
in GPUs, but 18 hosts a rack) is held for two racks, not for one it can never fit (which made it
wait the whole ``compact_wait_s`` while two racks were idle)."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, Request
from fabric_hpc.scheduler import Job, fabric_policy
from fabric_hpc.scheduler.contract import SchedulerInput
from fabric_hpc.scheduler.placer import compact_job
from fabric_hpc.topology import build, generators

from .helpers import pend

NVL = build(generators.nvl72(3))  # 3 racks of 18 hosts × 4 GPUs
POD = build(generators.superpod(2))  # 2 leaves of 32 hosts × 8 GPUs


def _job(jid: str, nodes: int, gpn: int, submit: float = 0.0) -> Job:
    return Job(id=jid, request=Request(nodes=nodes, gpus_per_node=gpn), submit=submit, walltime=3600)


@pytest.mark.parametrize(("fab", "nodes", "gpn", "k"), [
    (NVL, 36, 2, 2),  # 72 GPUs fit one rack, 36 hosts need two
    (NVL, 19, 1, 2),
    (NVL, 18, 4, 1),
    (NVL, 20, 4, 2),  # GPUs and hosts agree
    (NVL, 40, 4, 3),  # 160 GPUs: 3 racks by GPUs and by hosts
    (POD, 40, 1, 2),  # 40 GPUs fit one 256-GPU leaf, 40 hosts need two 32-host leaves
    (POD, 32, 1, 1),
])
def test_compact_target_counts_hosts(fab, nodes, gpn, k):
    held = compact_job(_job("j", nodes, gpn), fab)
    assert held.request.max_domains == k


def test_whole_host_gang_counts_hosts():
    j = Job(id="w", request=Request(nodes=36, whole_hosts=True), submit=0, walltime=3600)
    assert compact_job(j, NVL).request.max_domains == 2


@pytest.mark.parametrize(("fab", "nodes", "gpn"), [(NVL, 36, 2), (POD, 40, 1)])
def test_gang_spanning_domains_by_hosts_starts_at_once(fab, nodes, gpn):
    st = ClusterState(fab)
    d = fabric_policy().schedule(SchedulerInput(10, pend(_job("G", nodes, gpn)), [], st, {}))
    assert d.reasons.get("G") != "Topology"
    assert [j.id for j, _ in d.start] == ["G"]
    hosts = {g.split("/")[0] for _, p in d.start for g in p.gpus}
    assert len(hosts) == nodes
