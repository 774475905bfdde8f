"""``nodes=K,exclusive`` on hosts of mixed sizes takes K hosts of the largest size (docs/placement.md,
"Limits"). On 32 hosts of 4 GPUs and 8 of 8, ``nodes=40,exclusive`` said "the fabric has only 192
GPUs on 40 hosts; 40 host(s) × all GPU(s) … cannot ever fit; fix: ask for at most 8 nodes": the
fabric has 40 hosts, and the fix left out the requests that do fit."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, PlacementInfeasible, place
from fabric_hpc.topology import build

H4 = {"gpus": 4, "gpu_model": "H100", "gpu_memory_gb": 80, "sockets": 2, "cores_per_socket": 32,
      "memory_gb": 1024, "nvlink_gbps": 900, "nvswitches": 2, "pcie_gbps": 64, "nics": 4, "nic_gbps": 50}
A8 = {**H4, "gpus": 8, "gpu_model": "A100", "nvlink_gbps": 600, "nvswitches": 6, "nic_gbps": 25}


@pytest.fixture(scope="module")
def fab():
    return build({"fabric": 1, "name": "mixed-sizes", "host_types": {"h4": H4, "a8": A8},
                  "hosts": [{"names": "a[01-32]", "type": "h4"}, {"names": "c[01-08]", "type": "a8"}],
                  "network": {"levels": ["leaf", "spine"], "groups": [
                      {"name": "la", "level": "leaf", "switches": 4, "hosts": "a[01-32]", "uplink_gbps": 200},
                      {"name": "lc", "level": "leaf", "switches": 4, "hosts": "c[01-08]", "uplink_gbps": 100},
                      {"name": "spine", "level": "spine", "switches": 4, "children": ["la", "lc"]}]}})


@pytest.mark.parametrize("solver", ["greedy", "cpsat"])
def test_the_message_names_the_host_size_and_fixes_that_fit(fab, solver):
    state = ClusterState(fab)
    with pytest.raises(PlacementInfeasible) as exc:
        place(fab, state, "nodes=40,exclusive", solver=solver)
    msg, hint = exc.value.message, exc.value.hint or ""
    assert "only 192 GPUs on 40 hosts" not in msg
    assert "8 GPUs" in msg and "largest" in msg and "8 of the fabric's 40 hosts" in msg, msg
    assert "gpus=4" in hint and "gpus=192,exclusive" in hint, hint
    # every fix the hint names does fit
    assert len(place(fab, state, "nodes=8,exclusive", solver=solver).hosts) == 8
    assert len(place(fab, state, "nodes=32,gpus=4,exclusive", solver=solver).hosts) == 32
    assert len(place(fab, state, "gpus=192,exclusive", solver=solver).hosts) == 40
