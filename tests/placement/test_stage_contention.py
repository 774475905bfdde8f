"""The placement cost's TP and send parts see the running jobs' traffic (``CostWeights(contention=True)``):
the same max-min fair share, over the same background loads, as the data-parallel part."""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.placement import ClusterState
from fabric_hpc.placement.cost import CostWeights, evaluate
from fabric_hpc.placement.problem import Problem
from fabric_hpc.placement.request import parse_request
from fabric_hpc.placement.step import group_times, network_parts
from fabric_hpc.topology import build, generators


def _oversubscribed(hosts: int = 6, per_leaf: int = 2, ratio: float = 2.0):
    """leaf1: n1 n2, leaf2: n3 n4, leaf3: n5 n6 (one NIC per host); leaf uplinks 1/ratio of the NICs."""
    spec = generators.leaf_spine(hosts=hosts, hosts_per_leaf=per_leaf)
    groups = [g.model_copy(update={"uplink_gbps": g.uplink_gbps / ratio}) if g.uplink_gbps else g
              for g in spec.network.groups]
    return build(spec.model_copy(update={"network": spec.network.model_copy(update={"groups": groups})}))


def _gpus(fab, *hosts: str) -> np.ndarray:
    return np.array(sorted(fab.gpu_pos[g] for h in hosts for g in fab.host_gpus(h)), np.int64)


@pytest.fixture(scope="module")
def busy():
    """A data-parallel job on n2 and n4: its ring crosses leaf1's and leaf2's uplinks."""
    fab = _oversubscribed()
    state = ClusterState(fab)
    state.allocate("x", _gpus(fab, "n2", "n4"))
    return fab, state


def test_sends_across_a_running_jobs_uplinks_cost_more_with_contention(busy):
    fab, state = busy
    req = parse_request("gpus=16,pp=2")
    across, inside = _gpus(fab, "n1", "n3"), _gpus(fab, "n5", "n6")
    off = Problem(fab, state, req, CostWeights())
    on = Problem(fab, state, req, CostWeights(contention=True))
    a_off, b_off = evaluate(off, across)[1], evaluate(off, inside)[1]
    a_on, b_on = evaluate(on, across)[1], evaluate(on, inside)[1]
    assert a_off["comm_pp"] == pytest.approx(b_off["comm_pp"], rel=1e-3)  # alone: alike
    # beside x's ring on the 2:1 uplinks: per-flow max-min, the 8 send flows get 8/9 of an uplink
    assert a_on["comm_pp"] == pytest.approx(a_off["comm_pp"] * 9 / 8, rel=0.02)
    assert b_on["comm_pp"] == b_off["comm_pp"]  # leaf3 carries nobody else
    assert a_on["comm_dp"] == a_off["comm_dp"]  # each stage inside a host: NVLink only
    assert evaluate(on, across)[0] > evaluate(on, inside)[0]  # the cost now ranks the quiet leaf first


@pytest.mark.parametrize("text", ["gpus=16,pp=2", "gpus=32,pp=4", "gpus=16,tp=16", "gpus=24,tp=8,pp=3"])
def test_contended_group_times_are_never_below_the_times_alone(text):
    fab = _oversubscribed(hosts=8)
    rng = np.random.default_rng(7)
    req = parse_request(text)
    n = req.gpus
    grew = 0
    for _ in range(6):
        state = ClusterState(fab)
        perm = rng.permutation(len(fab.gpus))
        state.allocate("x", perm[n:n + 16])
        state.allocate("y", perm[n + 16:n + 24])
        gpus = np.sort(perm[:n])
        bg = Problem(fab, state, req, CostWeights(contention=True)).background()
        alone = group_times(fab, gpus, req.tp or 1, req.pp or 1)
        beside = group_times(fab, gpus, req.tp or 1, req.pp or 1, background=bg)
        assert beside[0] >= alone[0] and beside[1] >= alone[1]
        grew += beside != alone
    assert grew  # random placements on a 2:1 fabric do meet the running jobs' traffic


def test_sends_of_a_16k_gpu_pipeline_beside_a_running_job_stay_small():
    """``gpus=16368,pp=2`` on a 64-SU SuperPOD beside a job on its last host: 8,184 stage pairs.
    The parts and their fair share with the background are sparse (no pairs × resources matrix)."""
    import tracemalloc

    from fabric_hpc.placement.collective import job_load
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("superpod:sus=64")
    gpus = np.arange(16368)
    bg = [job_load(fab, np.arange(16368, 16384), 256 * 2**20)]
    alone = group_times(fab, gpus, 1, 2)[1]
    tracemalloc.start()
    try:
        (part,) = network_parts(fab, gpus, 1, 2)
        beside = group_times(fab, gpus, 1, 2, background=bg)[1]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert part.kind == "pp" and part.res.size > 0
    assert alone <= beside < np.inf
    assert peak < 256 * 2**20, f"peak {peak / 2**20:.0f} MiB"
