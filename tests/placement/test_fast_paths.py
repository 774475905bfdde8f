"""The placement fast paths equal the plain computations they replace (same GPUs, same floats).

* ``cost.evaluate``: distinct domains per level from sets, and a one-host shortcut in
  ``ring_edges``, against the former ``np.unique`` / ``np.lexsort`` code kept here;
* ``greedy``: the per-fabric memo of domain host sets and child splits in ``_fill``, against the
  uncached ``np.flatnonzero`` / ``np.unique`` computation (patched in).
"""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.placement import PlacementInfeasible, parse_request, place
from fabric_hpc.placement import greedy as greedy_mod
from fabric_hpc.placement.cost import _edge_pairs, comm_ms, evaluate, ring_edges, stranded
from fabric_hpc.placement.problem import Problem
from tests.placement.conftest import random_state

REQUESTS = ["gpus=3", "gpus=8", "gpus=13", "nodes=1 gpus_per_node=4", "nodes=2 gpus_per_node=8",
            "nodes=3 gpus_per_node=2", "nodes=2 gpus_per_node=4 rail_aligned=true", "gpus=16 max_domains=2 "
            "max_domains_level=leaf"]


def _old_ring_edges(problem: Problem, gpus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx, lv = problem.fab.index, problem.levels
    host = idx.gpu_host[gpus]
    order = np.lexsort((idx.gpu_local[gpus], *[lv.host_dom[host, j] for j in range(lv.host_dom.shape[1])][::-1]))
    g = gpus[order]
    h = idx.gpu_host[g]
    same = h[:-1] == h[1:]
    if len(np.unique(h)) >= 2:
        return ring_edges(problem, gpus)  # the multi-host path is unchanged
    return g[:-1][same], g[1:][same]


def _old_evaluate(problem: Problem, gpus: np.ndarray) -> tuple[float, dict[str, float], dict[str, int]]:
    w, lv, idx = problem.weights, problem.levels, problem.fab.index
    gpus = np.asarray(gpus, np.int64)
    hosts, counts = np.unique(idx.gpu_host[gpus], return_counts=True)
    a, b = _old_ring_edges(problem, gpus)
    if len(a):
        bw, lat = _edge_pairs(problem.fab, a, b)
        t = comm_ms(len(gpus), float(bw.min()), float(lat.max()), w)
    else:
        t = 0.0
    doms = [np.unique(lv.host_dom[hosts, j]) for j in range(len(lv.chain))]
    spans = {lv.chain[j]: int(len(doms[j])) for j in range(len(lv.chain))}
    span_cost = sum(w.span_weight(j) * spans[name] for j, name in enumerate(lv.chain))
    free = problem.free_all[hosts]
    frag = float((stranded(free - counts, lv.host_gpus[hosts], w) - stranded(free, lv.host_gpus[hosts], w)).sum())
    broken = sum(int(problem.pristine[j][doms[j]].sum()) for j in range(1, len(lv.chain)))
    breakdown = {"comm_ms": t, "comm": w.comm * t, "span": span_cost, "hosts": w.host * len(hosts),
                 "frag_gpus": frag, "frag": w.frag * frag, "pristine_broken": float(broken),
                 "pristine": w.pristine_break * broken}
    total = breakdown["comm"] + span_cost + breakdown["hosts"] + breakdown["frag"] + breakdown["pristine"]
    return float(total), breakdown, spans


@pytest.mark.parametrize("fabric", ["pod", "small", "nvl"])
def test_evaluate_equals_plain(fabric: str, request: pytest.FixtureRequest) -> None:
    fab = request.getfixturevalue(fabric)
    rng = np.random.default_rng(7)
    for seed in range(40):
        state = random_state(fab, seed, busy=0.4)
        problem = Problem(fab, state, parse_request("gpus=1"))
        free = np.flatnonzero(state.free)
        if not free.size:
            continue
        for _ in range(5):
            k = int(rng.integers(1, min(free.size, 24) + 1))
            if rng.random() < 0.4:  # GPUs of one host (the ring_edges shortcut)
                host = fab.index.gpu_host[free[int(rng.integers(free.size))]]
                pool = free[fab.index.gpu_host[free] == host]
                gpus = np.sort(rng.choice(pool, size=min(k, pool.size), replace=False))
            else:
                gpus = np.sort(rng.choice(free, size=k, replace=False))
            a, b = ring_edges(problem, gpus)
            a0, b0 = _old_ring_edges(problem, gpus)
            assert a.tolist() == a0.tolist() and b.tolist() == b0.tolist()
            assert evaluate(problem, gpus) == _old_evaluate(problem, gpus)


def _plain_domain_hosts(p: Problem, level: int, d: int) -> np.ndarray:
    return np.flatnonzero(p.levels.host_dom[:, level] == d)


def _plain_children(p: Problem, members: np.ndarray, level: int):
    ids, inv = np.unique(p.levels.host_dom[members, level - 1], return_inverse=True)
    return ids, inv, [members[inv == k] for k in range(len(ids))]


def _placements(fab, seeds: range) -> list:
    out = []
    for seed in seeds:
        state = random_state(fab, seed, busy=0.5)
        for text in REQUESTS:
            try:
                pl = place(fab, state, parse_request(text), solver="greedy")
                out.append((pl.gpus, pl.cost, pl.breakdown, pl.domains, pl.hosts))
            except PlacementInfeasible:
                out.append(None)
            except Exception as exc:  # e.g. an unknown level on this fabric: must match too
                out.append(type(exc).__name__)
    return out


@pytest.mark.parametrize("fabric", ["pod", "small"])
def test_greedy_fill_memo_equals_plain(fabric: str, request: pytest.FixtureRequest,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fab = request.getfixturevalue(fabric)
    fast = _placements(fab, range(30))
    monkeypatch.setattr(greedy_mod, "_domain_hosts", _plain_domain_hosts)
    monkeypatch.setattr(greedy_mod, "_children", _plain_children)
    assert _placements(fab, range(30)) == fast
    assert any(isinstance(x, tuple) for x in fast)
