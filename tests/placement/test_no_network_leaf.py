"""A fabric without a network is hosts on one non-blocking switch: switches=K and within=leaf hold."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import ClusterState, place
from fabric_hpc.topology import build

BOX = {"gpus": 2, "gpu_model": "L4", "gpu_memory_gb": 24, "sockets": 1, "cores_per_socket": 8,
       "memory_gb": 64, "nvlink_gbps": 0, "nvswitches": 0, "pcie_gbps": 32, "nics": 1, "nic_gbps": 25}


def _fab(hosts: str):
    return build({"fabric": 1, "name": "flat", "host_types": {"box": BOX},
                  "hosts": [{"names": hosts, "type": "box"}]})


@pytest.mark.parametrize("solver", ["cpsat", "greedy", "slurm-tree", "slurm-block"])
@pytest.mark.parametrize("request_", ["gpus=2,switches=1", "gpus=2,within=leaf", "gpus=4,switches=1",
                                      "nodes=2,gpus=2,within=leaf"])
def test_leaf_constraints_hold_without_a_network(solver, request_):
    fab = _fab("n[1-2]")
    p = place(fab, ClusterState(fab), request_, solver=solver)
    assert len(p.gpus) == (2 if request_.startswith("gpus=2") else 4)


def test_slurm_tree_on_one_host_without_a_network():
    fab = _fab("solo")
    assert place(fab, ClusterState(fab), "gpus=2,switches=1", solver="slurm-tree").hosts == ("solo",)


def test_other_levels_stay_unknown():
    fab = _fab("solo")
    with pytest.raises(ConfigError, match="unknown level 'spine'"):
        place(fab, ClusterState(fab), "gpus=2,within=spine")
