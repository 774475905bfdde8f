"""CP-SAT drops interchangeable hosts before it models a total-GPU request (``cpsat._prune_total``):
it kept ``ceil(gpus / free GPUs)`` hosts of each class. With ``tp`` groups that must stay inside one
host (PCIe hosts, or a DGX whose NVLink domain is the host) a host holds fewer GPUs of the gang than
it has free (``tp=3`` on 4-GPU hosts: 3), so too few hosts were kept: ``gpus=12,tp=3`` on six free
4-GPU PCIe hosts was "proven" infeasible by CP-SAT while greedy placed it on four, and on a
leaf-spine of 8-GPU hosts ``gpus=24,tp=3`` fitted one leaf only by greedy's answer (CP-SAT's own
spanned two leaves)."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, SolveOptions, place
from fabric_hpc.topology import build
from fabric_hpc.topology.io import open_fabric

OPTIONS = SolveOptions(time_limit_s=5.0)


def pcie_hosts(n: int = 6):
    host = {"gpus": 4, "gpu_model": "L4", "gpu_memory_gb": 24, "sockets": 2, "cores_per_socket": 16,
            "memory_gb": 256, "nvlink_gbps": 0, "nvswitches": 0, "pcie_gbps": 64, "nics": 1, "nic_gbps": 50}
    return build({"fabric": 1, "name": "pcie-hosts", "host_types": {"l4": host},
                  "hosts": [{"names": f"p[1-{n}]", "type": "l4"}],
                  "network": {"levels": ["leaf"], "groups": [
                      {"name": "leaf", "level": "leaf", "switches": 1, "hosts": f"p[1-{n}]",
                       "uplink_gbps": 400}]}})


@pytest.mark.parametrize(("text", "hosts"),
                         [("gpus=12,tp=3", 4), ("gpus=18,tp=3", 6), ("gpus=12,tp=3,pp=2", 4)])
def test_tp_groups_inside_pcie_hosts_are_placed_by_cpsat(text, hosts):
    fab = pcie_hosts()
    placed = place(fab, ClusterState(fab), text, solver="cpsat", options=OPTIONS)
    greedy = place(fab, ClusterState(fab), text, solver="greedy")
    assert len(placed.hosts) == hosts and len(placed.gpus) == int(text.split(",")[0].split("=")[1])
    assert placed.cost <= greedy.cost
    assert not any("greedy's answer" in n for n in placed.notes), placed.notes


def test_cpsat_own_answer_keeps_tp_groups_in_one_leaf():
    fab = open_fabric("leaf-spine-16")
    placed = place(fab, ClusterState(fab), "gpus=24,tp=3", solver="cpsat", options=OPTIONS)
    assert placed.domains["leaf"] == 1 and len(placed.hosts) == 4
    assert not any("greedy's answer" in n for n in placed.notes), placed.notes
