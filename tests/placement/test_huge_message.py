"""A huge but accepted ``message_mb`` (the validator allows 2**30 MB) is a long collective, not "no
network": real times above the old sentinel ``NO_NETWORK_MS = 1e6`` ms read as a placement whose
hosts have no NIC, and every solver failed with "every placement found spans NVLink domains of hosts
without a NIC" on NVL72 racks that all have NICs."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, SolveOptions, place
from fabric_hpc.placement.cost import NO_NETWORK_MS
from fabric_hpc.topology import build, generators
from tests.placement.conftest import fabric_without_nics

OPTIONS = SolveOptions(time_limit_s=2.0)
HUGE = {"message_mb": 2**30}


@pytest.fixture(scope="module")
def nvl2():
    return build(generators.nvl72(racks=2))


@pytest.mark.parametrize("solver", ["cpsat", "greedy", "slurm-tree", "slurm-block"])
@pytest.mark.parametrize("text", ["gpus=100", "nodes=20,gpus=4", "gpus=144,tp=8,pp=2"])
def test_huge_message_places_across_racks(nvl2, solver, text):
    placed = place(nvl2, ClusterState(nvl2), text, solver=solver, weights=HUGE, options=OPTIONS)
    assert len(placed.gpus) in (80, 100, 144)
    assert 1e5 < placed.breakdown["comm_ms"] < NO_NETWORK_MS  # a real, long time: not the sentinel


def test_huge_message_cpsat_bound_holds(nvl2):
    """Past the old sentinel (1e6 ms) CP-SAT's collective bound stays a lower bound of the real time,
    and its answer is no worse than greedy's."""
    state = ClusterState(nvl2)
    placed = place(nvl2, state, "gpus=100", solver="cpsat", weights=HUGE, options=OPTIONS)
    greedy = place(nvl2, state, "gpus=100", solver="greedy", weights=HUGE, options=OPTIONS)
    assert placed.breakdown["comm_ms"] > 1e6
    assert placed.stats["comm_us_bound"] <= round(placed.breakdown["comm_ms"] * 1000)
    assert placed.cost <= greedy.cost


def test_hosts_without_a_nic_still_fail_with_a_huge_message():
    from fabric_hpc.placement import PlacementInfeasible

    fab = fabric_without_nics(hosts=3, gpus=2)
    with pytest.raises(PlacementInfeasible, match="NIC"):
        place(fab, ClusterState(fab), "gpus=4", solver="greedy", weights=HUGE)
