"""A request that asks more GPUs per host than a NUMA node has, with rail_aligned as well, was blamed
on rail_aligned ("no set of local GPU indices is free on any host; fix: relax rail_aligned"), but the
same request without numa places and without rail fails on NUMA: numa_local binds (GB200 trays:
4 GPUs, 2 per NUMA node)."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, PlacementInfeasible, place
from fabric_hpc.topology import build
from fabric_hpc.topology.generators import nvl72


@pytest.mark.parametrize("solver", ["greedy", "cpsat"])
def test_numa_local_is_named_where_it_binds(solver):
    fab = build(nvl72(2))
    state = ClusterState(fab)
    assert len(place(fab, state, "nodes=2,gpus=3,rail", solver="greedy").hosts) == 2
    with pytest.raises(PlacementInfeasible) as both:
        place(fab, state, "nodes=2,gpus=3,rail,numa", solver=solver)
    with pytest.raises(PlacementInfeasible) as numa:
        place(fab, state, "nodes=2,gpus=3,numa", solver=solver)
    assert both.value.explanation["constraint"] == "numa_local"
    assert "a NUMA node here has at most 2 GPUs" in both.value.message
    assert "a NUMA node here has at most 2 GPUs" in numa.value.message
    assert "rail_aligned:" not in both.value.message
    assert "numa_local" in (both.value.hint or "") and "rail_aligned" not in (both.value.hint or "")

