"""benchmarks.placement.bound.comm_lower_bound is a lower bound on the modelled collective of every
placement: every host choice of small random instances (brute force, the shared GPU picker) and
random GPU sets the picker would not choose, with and without other jobs' traffic."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.placement.bound import comm_lower_bound
from fabric_hpc.placement import ClusterState, CostWeights
from fabric_hpc.placement.cost import modelled_comm_ms
from fabric_hpc.placement.problem import PlacementBug, Problem
from fabric_hpc.placement.request import parse_request
from fabric_hpc.topology import build, generators
from tests.placement.brute import _choices
from tests.placement.conftest import random_state


@pytest.fixture(scope="module")
def dgx4():
    """4 DGX H100 hosts (8 GPUs, 8 rails each) in one SU: several NICs per NVLink domain."""
    return build(generators.superpod(sus=1, hosts_per_su=4))


def _all_placements(p: Problem) -> list[float]:
    """modelled_comm_ms of every placement brute force finds (every host choice, every pattern)."""
    out = []
    for pattern in (p.patterns or [p.pattern]):
        p.set_pattern(pattern)
        for counts in _choices(p):
            try:
                out.append(p.finish(counts, "brute", 0.0, optimal=True).breakdown["comm_ms"])
            except PlacementBug:
                continue
    return out


CASES = [("tiny", "gpus=3"), ("tiny", "gpus=6"), ("tiny", "gpus=9"), ("small", "nodes=2,gpus=2"),
         ("small", "nodes=3,gpus=2"), ("small", "nodes=4,gpus=1"), ("dgx4", "nodes=2,gpus=4"),
         ("dgx4", "nodes=3,gpus=6"), ("dgx4", "nodes=2,gpus=2")]


@pytest.mark.parametrize("contention", [False, True])
@pytest.mark.parametrize("fixture,text", CASES)
def test_bound_below_every_brute_force_placement(request, fixture, text, contention):
    fab = request.getfixturevalue(fixture)
    weights = CostWeights(contention=contention)
    checked = 0
    for seed in range(6):
        state = random_state(fab, seed, busy=0.25)
        bound = comm_lower_bound(Problem(fab, state, parse_request(text), weights)).ms
        times = _all_placements(Problem(fab, state, parse_request(text), weights))
        if not times:
            continue
        assert bound <= min(times) + 1e-12, (seed, bound, min(times))
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("fixture,text", [("dgx4", "gpus=12"), ("dgx4", "gpus=20"), ("nvl", "gpus=40"),
                                          ("nvl", "gpus=90"), ("tiny", "gpus=7")])
def test_bound_below_random_gpu_sets(request, fixture, text):
    """Placements the picker would not make: random free GPUs within each host's capacity."""
    fab = request.getfixturevalue(fixture)
    rng = np.random.default_rng(7)
    n = parse_request(text).units
    for seed in range(3):
        state = random_state(fab, seed, busy=0.3)
        p = Problem(fab, state, parse_request(text), CostWeights(contention=True))
        bound = comm_lower_bound(p).ms
        free = np.flatnonzero(state.free)
        for _ in range(15):
            gpus = np.sort(rng.choice(free, size=n, replace=False))
            assert bound <= modelled_comm_ms(p, gpus) + 1e-12


@pytest.mark.parametrize("spec,text", [(generators.superpod(sus=1, hosts_per_su=4), "gpus=8"),
                                       (generators.superpod(sus=1, hosts_per_su=4), "nodes=2,gpus=8"),
                                       (generators.superpod(sus=2, hosts_per_su=4), "nodes=6,gpus=8"),
                                       (generators.leaf_spine(hosts=8, hosts_per_leaf=2, gpus=4), "nodes=3,gpus=4")])
def test_bound_is_reached_on_empty_fabrics(spec, text):
    """Not vacuous: on empty fabrics (one host; whole DGX hosts; gangs that must cross leaves, so
    the forced latency counts) the best placement is at the bound (1 µs: two floors)."""
    fab = build(spec)
    state = ClusterState(fab)
    bound = comm_lower_bound(Problem(fab, state, parse_request(text))).ms
    assert bound <= min(_all_placements(Problem(fab, state, parse_request(text)))) <= bound + 0.0011
