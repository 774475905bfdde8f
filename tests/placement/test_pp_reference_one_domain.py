"""The stage sends' reference ``e_ref`` (a send between two NVLink domains) was 0 on a fabric with one
NVLink domain, so ``comm_pp`` was the share's constant there: gpus=8,pp=2 on one DGX gave comm_pp
0.937 ms alone, 0.119 ms on a SuperPOD, for the same sends (0.137 ms); and gpus=8,pp=8 gave 0 for
sends of 0.137 ms. The reference is now the send such hosts would make, so the fabric's size does
not change the cost of a placement inside one host."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, place
from fabric_hpc.topology import build
from fabric_hpc.topology.generators import superpod

DGX = {"gpus": 8, "gpu_model": "H100", "gpu_memory_gb": 80, "sockets": 2, "cores_per_socket": 56,
       "memory_gb": 2048, "nvlink_gbps": 900, "nvswitches": 4, "pcie_gbps": 64, "nics": 8, "nic_gbps": 50}


def solo(nics: int = 8):
    ht = {**DGX, "nics": nics, "nic_gbps": 50 if nics else 0}
    return build({"fabric": 1, "name": "single", "host_types": {"dgx": ht},
                  "hosts": [{"names": "solo", "type": "dgx"}]})


@pytest.mark.parametrize("text", ["gpus=8,pp=2", "gpus=8,pp=4", "gpus=8,tp=2,pp=2"])
def test_one_host_costs_the_same_alone_and_in_a_superpod(text):
    one, pod = solo(), build(superpod(1))
    a = place(one, ClusterState(one), text, solver="greedy").breakdown
    b = place(pod, ClusterState(pod), text, solver="greedy").breakdown
    assert a["comm_pp"] == pytest.approx(b["comm_pp"], abs=0.002), (a, b)
    assert a["comm_ms"] == pytest.approx(b["comm_ms"], abs=0.003), (a, b)
    assert a["comm_pp"] < 0.5


@pytest.mark.parametrize("nics", [8, 0])
def test_sends_alone_cost_their_time(nics):
    """gpus=8,pp=8: no data-parallel all-reduce (one-GPU rings); the sends' part is their own time."""
    fab = solo(nics)
    b = place(fab, ClusterState(fab), "gpus=8,pp=8", solver="greedy").breakdown
    assert b["comm_pp"] > 0, b
    assert b["comm_ms"] == pytest.approx(b["comm_pp"], abs=0.002)
