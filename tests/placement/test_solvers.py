"""Every solver on the same states (networkx-style cross-checks), property tests and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fabric_hpc.errors import ConfigError, InfeasibleError
from fabric_hpc.placement import SOLVERS, ClusterState, PlacementInfeasible, SolveOptions, parse_request, place
from fabric_hpc.placement.cpsat import cpsat
from fabric_hpc.placement.problem import Problem
from fabric_hpc.placement.verify import violations
from tests.placement.brute import brute_force
from tests.placement.conftest import random_state

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
EXACT = SolveOptions(time_limit_s=10.0)

node_requests = st.builds(
    lambda n, g, extra: f"nodes={n},gpus={g}" + extra,
    st.integers(1, 4), st.sampled_from([1, 2, 4]),
    st.sampled_from(["", ",within=leaf", ",switches=2", ",numa_local", ",rail_aligned", ",slices=2,slice_level=leaf",
                     ",exclude=n[1-2]", ",whole_hosts=true"]))
total_requests = st.builds(lambda n, extra: f"gpus={n}" + extra, st.integers(1, 12),
                           st.sampled_from(["", ",within=leaf", ",numa_local", ",switches=1", ",within=host"]))


def _run_all(fab, state, text):
    """solver -> Placement or the PlacementInfeasible it raised; checks the invariants on the way."""
    out = {}
    for solver in SOLVERS:
        before = state.owner.copy()
        try:
            placed = place(fab, state, text, solver=solver, options=EXACT)
        except PlacementInfeasible as exc:
            assert exc.explanation["constraint"] and exc.message
            out[solver] = exc
            continue
        assert np.array_equal(state.owner, before), "place() must not change the state"
        idx = np.array([fab.gpu_pos[g] for g in placed.gpus])
        problem = Problem(fab, state, parse_request(text))
        problem.set_pattern(tuple(sorted({fab.gpu(int(i)).index for i in idx}))
                            if problem.request.rail_aligned and problem.patterns else problem.pattern)
        assert violations(problem, idx) == [], (solver, text)
        assert len(set(placed.gpus)) == len(placed.gpus) and state.free[idx].all()
        out[solver] = placed
    return out


def _check(fab, state, text):
    try:
        parse_request(text)
    except ConfigError:
        assume(False)
    results = _run_all(fab, state, text)
    optimum = brute_force(Problem(fab, state, parse_request(text)))
    if optimum is None:  # infeasible requests are infeasible for every solver
        assert all(isinstance(r, PlacementInfeasible) for r in results.values()), (text, results)
        return
    cp, gr = results["cpsat"], results["greedy"]
    assert not isinstance(cp, Exception), (text, cp)
    if not isinstance(gr, Exception):
        assert cp.cost <= gr.cost + 1e-9
    assert cp.cost >= optimum - 1e-6
    if cp.optimal:
        assert cp.cost == pytest.approx(optimum, abs=1e-3), text
    for r in results.values():
        if not isinstance(r, Exception):
            assert r.cost >= optimum - 1e-6


@FAST
@given(seed=st.integers(0, 10_000), text=node_requests)
def test_nodes_requests_against_brute_force(small, seed, text):
    _check(small, random_state(small, seed, busy=0.4), text)


@FAST
@given(seed=st.integers(0, 10_000), text=total_requests)
def test_total_gpu_requests_against_brute_force(tiny, seed, text):
    _check(tiny, random_state(tiny, seed, busy=0.4), text)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), extra=st.sampled_from(["", ",within=leaf", ",rail_aligned"]))
def test_rail_optimised_pod(pod, seed, n, extra):
    state = random_state(pod, seed, busy=0.3)
    results = _run_all(pod, state, f"nodes={n},gpus=4{extra}")
    cp, gr = results["cpsat"], results["greedy"]
    assert isinstance(cp, Exception) == isinstance(gr, Exception)
    if not isinstance(cp, Exception):
        assert cp.cost <= gr.cost + 1e-9


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), solver=st.sampled_from(SOLVERS),
       sizes=st.lists(st.sampled_from(["gpus=3", "gpus=8", "nodes=2,gpus=4", "nodes=1,gpus=8,numa_local=false",
                                       "gpus=2,numa_local", "nodes=2,gpus=2,within=leaf"]), min_size=5, max_size=15))
def test_sequential_commits_never_double_book(pod, seed, solver, sizes):
    state = random_state(pod, seed, busy=0.2)
    busy = int((state.owner >= 0).sum())
    for k, text in enumerate(sizes):
        try:
            placed = place(pod, state, text, solver=solver, options=SolveOptions(time_limit_s=2))
        except PlacementInfeasible:
            continue
        state.allocate(f"new-{k}", placed.gpus)  # raises if any GPU were already taken
        busy += len(placed.gpus)
        assert int((state.owner >= 0).sum()) == busy


def test_hierarchical_model_matches_host_model(pod):
    state = ClusterState(pod)
    state.allocate("a", pod.host_gpus("su01-h01"))
    state.allocate("b", pod.host_gpus("su02-h02")[:4] + pod.host_gpus("su02-h03")[:6])
    for text in ("nodes=5,gpus=8", "nodes=3,gpus=2,switches=1", "nodes=4,gpus=4,slices=2,slice_level=leaf"):
        p1 = Problem(pod, state, parse_request(text))
        p2 = Problem(pod, state, parse_request(text))
        by_host = cpsat(p1, SolveOptions(time_limit_s=10, host_item_limit=10_000))
        by_domain = cpsat(p2, SolveOptions(time_limit_s=10, host_item_limit=0))
        assert by_domain.stats["item_level"] == "leaf" and by_host.stats["item_level"] == "host"
        assert by_domain.cost == pytest.approx(by_host.cost, abs=1e-6), text
        # proven optimal only where the linearised collective time is tight (here it misses the
        # rail crossings of partly used hosts in one case, and the portfolio keeps greedy's answer)
        assert by_domain.optimal == by_host.optimal


def test_cpsat_packs_gpus_into_fewest_hosts_and_nvlink(nvl):
    state = ClusterState(nvl)
    state.allocate("old", nvl.host_gpus("r001-h01")[:2] + nvl.host_gpus("r002-h05")[:1])
    placed = place(nvl, state, "gpus=40", solver="cpsat", options=EXACT)
    assert placed.domains["nvlink"] == 1  # one NVL72 rack holds 40 GPUs
    assert placed.optimal is True and placed.breakdown["comm_ms"] > 0


def test_deterministic(pod):
    state = random_state(pod, 3, busy=0.3)
    a = place(pod, state, "nodes=5,gpus=4", solver="cpsat", options=EXACT)
    b = place(pod, state, "nodes=5,gpus=4", solver="cpsat", options=EXACT)
    assert a.gpus == b.gpus and a.cost == b.cost


def test_time_limit_returns_best_feasible_not_proven(pod):
    state = random_state(pod, 5, busy=0.3)
    placed = place(pod, state, "gpus=37", solver="cpsat", options=SolveOptions(time_limit_s=1e-6))
    assert placed.optimal is False and len(placed.gpus) == 37


def test_infeasible_is_exit_code_4(pod):
    with pytest.raises(InfeasibleError) as e:
        place(pod, ClusterState(pod), "nodes=9,gpus=8", solver="greedy")
    assert e.value.exit_code == 4


def test_unknown_solver_and_level(pod):
    with pytest.raises(ConfigError, match="solvers: cpsat"):
        place(pod, ClusterState(pod), "gpus=1", solver="magic")
    with pytest.raises(ConfigError, match="levels of this fabric"):
        place(pod, ClusterState(pod), "gpus=1,within=galaxy")


def test_greedy_placement_does_not_import_ortools():
    """Only the cpsat solver needs OR-Tools: a greedy or slurm-tree placement never imports it."""
    import subprocess
    import sys

    code = ("import sys\nfrom fabric_hpc.placement import ClusterState, place\nfrom fabric_hpc.topology import open_fabric\n"
            "fab = open_fabric()\n"
            "for s in ('greedy', 'slurm-tree', 'slurm-block'):\n"
            "    place(fab, ClusterState(fab), 'nodes=2,gpus_per_node=8', solver=s)\n"
            "print('ortools' in sys.modules)\n"
            "place(fab, ClusterState(fab), 'nodes=2,gpus_per_node=8', solver='cpsat')\n"
            "print('ortools' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


@pytest.fixture(scope="module")
def mixed():
    """Two 4-GPU hosts on one leaf, two 8-GPU hosts on another (a GB200-tray-and-DGX-like mix)."""
    from fabric_hpc.topology import build

    small = {"gpus": 4, "gpu_model": "GB200", "gpu_memory_gb": 186, "sockets": 2, "cores_per_socket": 72,
             "memory_gb": 960, "nvlink_gbps": 1800, "nvswitches": 2, "pcie_gbps": 64, "nics": 4, "nic_gbps": 50}
    big = {**small, "gpus": 8, "gpu_model": "H100-SXM5-80GB", "nvlink_gbps": 900, "nics": 8}
    return build({"fabric": 1, "name": "mixed", "host_types": {"gb": small, "dgx": big},
                  "hosts": [{"names": "g[1-2]", "type": "gb"}, {"names": "d[1-2]", "type": "dgx"}],
                  "network": {"levels": ["leaf", "spine"], "groups": [
                      {"name": "l1", "level": "leaf", "switches": 4, "hosts": "g[1-2]", "uplink_gbps": 800},
                      {"name": "l2", "level": "leaf", "switches": 8, "hosts": "d[1-2]", "uplink_gbps": 800},
                      {"name": "sp", "level": "spine", "switches": 4, "children": ["l1", "l2"]}]}})


@pytest.mark.parametrize("extra", ["", ",whole_hosts", ",numa_local", ",whole_hosts,numa_local", ",within=leaf",
                                   ",slices=2,slice_level=host,within=leaf", ",slices=2,slice_level=leaf"])
def test_mixed_host_sizes_and_combined_constraints_against_brute_force(mixed, extra):
    """Whole hosts of unequal sizes, whole hosts with NUMA locality, slices inside `within`: every
    solver returns a valid placement or says it cannot (each used to break its own constraints)."""
    for seed in range(4):
        state = random_state(mixed, seed, busy=0.15)
        for n in (2, 4, 6, 8, 9, 12, 16):
            text = f"gpus={n}{extra}"
            try:
                parse_request(text)
            except ConfigError:
                continue
            _check(mixed, state, text)
