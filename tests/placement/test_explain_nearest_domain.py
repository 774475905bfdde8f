"""A within failure names the domain that could hold the request once jobs end (down GPUs stay down)."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, PlacementInfeasible, place
from fabric_hpc.topology import build, generators


def _state(fab, down: list[str]) -> ClusterState:
    state = ClusterState(fab)
    state.allocate("a", [g for h in ("r001-h01", "r001-h02", "r001-h03") for g in fab.host_gpus(h)])
    state.allocate("b", ["r002-h05/gpu0"])
    state.set_down(down)
    return state


@pytest.mark.parametrize("request_", ["gpus=72,within=nvlink", "nodes=18,gpus=4,within=rack"])
def test_blames_the_job_whose_end_helps(request_):
    fab = build(generators.nvl72(racks=2))
    with pytest.raises(PlacementInfeasible) as e:
        place(fab, _state(fab, ["r002-h18"]), request_)
    msg = str(e.value)
    assert "in r002" in msg and "in r001 would have to end first (the largest there: a)" in msg
    assert "b)" not in msg and e.value.explanation["blocking_jobs"] == 1


def test_down_gpus_leaving_no_domain_able_are_named():
    fab = build(generators.nvl72(racks=2))
    with pytest.raises(PlacementInfeasible) as e:
        place(fab, _state(fab, ["r002-h18", "r001-h17"]), "gpus=72,within=nvlink")
    assert "could hold it even if every job ended: down GPUs leave at most 68" in str(e.value)
    assert e.value.hint.startswith("bring back the down GPUs") and e.value.explanation["blocking_jobs"] == 0


def test_a_domain_too_small_on_an_idle_fabric_blames_no_down_gpus():
    fab = build(generators.nvl72(racks=2))
    with pytest.raises(PlacementInfeasible) as e:
        place(fab, ClusterState(fab), "gpus=76,within=nvlink")
    assert "down" not in str(e.value) and e.value.explanation["never"]
