"""CP-SAT's running-jobs term (``contention`` on, issue 13): a used domain's uplink bound is scaled by
``cap / (cap − kept)``, ``kept`` the bandwidth the running jobs keep on its uplinks whatever the new
job does (``busy.reserved``). It must stay a lower bound of the exact model beside the running jobs
(cpsat's ``optimal`` relies on it), appear only with contention and running multi-GPU jobs, and
change nothing otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.placement import ClusterState, CostWeights, SolveOptions, place
from fabric_hpc.placement import cpsat_comm
from fabric_hpc.placement.busy import reserved
from fabric_hpc.placement.cost import evaluate
from fabric_hpc.placement.problem import Problem
from fabric_hpc.topology import build, generators

CONTENTION = CostWeights(contention=True)
OPTIONS = SolveOptions(time_limit_s=2.0, workers=1)


def _leaf_spine(ratio: float = 4.0):
    spec = generators.leaf_spine(hosts=16, hosts_per_leaf=4)
    groups = [g.model_copy(update={"uplink_gbps": g.uplink_gbps / ratio}) if g.uplink_gbps else g
              for g in spec.network.groups]
    return build(spec.model_copy(update={"network": spec.network.model_copy(update={"groups": groups})}))


FABRICS = {"leaf-spine-4to1": _leaf_spine,
           "superpod-2su": lambda: build(generators.superpod(sus=2, hosts_per_su=8))}


def _random_jobs(fab, seed: int, busy: float = 0.5) -> ClusterState:
    rng = np.random.default_rng(seed)
    state = ClusterState(fab)
    hosts = list(fab.hosts)
    for job in range(4 * len(hosts)):
        if 1 - state.free.mean() >= busy:
            break
        picked = rng.choice(len(hosts), size=int(rng.integers(2, 5)), replace=False)
        gpus = [g for i in picked for g in fab.host_gpus(hosts[i])
                if state.free[fab.gpu_pos[g]] and rng.random() < 0.7]
        if gpus:
            state.allocate(f"job-{job}", gpus)
    return state


def _busy_bounds(p: Problem, gpus: np.ndarray) -> list[int]:
    """The model's busy-uplink terms (µs) of every domain a ring on ``gpus`` leaves."""
    k = cpsat_comm._scale(p, len(gpus))
    kept = cpsat_comm._kept(p, k)
    lv, out = p.levels, []
    hosts = p.fab.index.gpu_host[gpus]
    for j, name in enumerate(lv.chain):
        doms = np.unique(lv.host_dom[hosts, j])
        if name not in p.fab.levels or len(doms) < 2:
            continue
        for d in doms.tolist():
            alone = cpsat_comm._uplink_us(p, j, d, k)
            out.append(int(np.floor(alone * cpsat_comm._domain_slowdown(p, j, d, kept) + 1e-6)))
    return out


@pytest.mark.parametrize("name,seed", [(n, s) for n in FABRICS for s in (1, 2, 3)])
def test_busy_uplink_term_is_a_lower_bound(name, seed):
    """Random gangs on free GPUs of busy states: every busy-uplink term ≤ the exact modelled
    all-reduce beside the running jobs, and at least one term is slowed by them."""
    fab = FABRICS[name]()
    state = _random_jobs(fab, seed)
    rng = np.random.default_rng(100 + seed)
    free = np.flatnonzero(state.free)
    slowed = 0
    for size in (8, 12, 16, 24, 32):
        for _ in range(6):
            gpus = np.sort(rng.choice(free, size=size, replace=False))
            p = Problem(fab, state, f"gpus={size}", CONTENTION)
            exact_us = evaluate(p, gpus)[1]["comm_ms"] * 1000
            bounds = _busy_bounds(p, gpus)
            alone = Problem(fab, state, f"gpus={size}")
            k = cpsat_comm._scale(alone, size)
            used = p.levels.host_dom[fab.index.gpu_host[gpus]]
            doms = [np.unique(used[:, j]) for j in range(len(p.levels.chain))]
            plain = [cpsat_comm._uplink_us(alone, j, d, k) for j, name_ in enumerate(p.levels.chain)
                     if name_ in fab.levels and len(doms[j]) > 1 for d in doms[j].tolist()]
            slowed += sum(b > a for b, a in zip(bounds, plain, strict=True))
            assert all(b <= exact_us + 1 for b in bounds), (size, bounds, exact_us)
    assert slowed > 0


def test_cpsat_sees_the_busy_uplinks_and_stays_honest():
    """A job over two leaves of a 4:1 leaf-spine: cpsat's model gets busy-uplink terms (stats), its
    bound never exceeds its answer's exact collective, and it avoids the busy leaves."""
    fab = _leaf_spine()
    state = ClusterState(fab)
    state.allocate("big", [g for h in ("n1", "n2", "n3", "n5", "n6", "n7") for g in fab.host_gpus(h)])
    for h in ("n9", "n10", "n11", "n13", "n14", "n15"):
        state.allocate(f"one-{h}", fab.host_gpus(h))
    placed = place(fab, state, "gpus=16", solver="cpsat", weights=CONTENTION, options=OPTIONS)
    assert placed.stats["busy_uplink_terms"] >= 2
    assert placed.stats["comm_us_bound"] <= round(placed.breakdown["comm_ms"] * 1000)
    assert sorted(placed.hosts) == ["n12", "n16"]


def test_no_term_without_contention_or_running_jobs():
    """Contention off, or no multi-GPU job running: no reserved bandwidth, no busy terms, and the
    answer is the same as without the term."""
    fab = _leaf_spine()
    state = _random_jobs(fab, 1)
    assert reserved(Problem(fab, state, "gpus=16"), 1, 1) is None
    assert reserved(Problem(fab, ClusterState(fab), "gpus=16", CONTENTION), 1, 1) is None
    on = place(fab, state, "gpus=16", solver="cpsat", options=OPTIONS)
    cpsat_comm.BACKGROUND_TERM = False
    try:
        off = place(fab, state, "gpus=16", solver="cpsat", options=OPTIONS)
    finally:
        cpsat_comm.BACKGROUND_TERM = True
    assert "busy_uplink_terms" not in on.stats
    assert (on.gpus, on.cost, on.optimal) == (off.gpus, off.cost, off.optimal)
