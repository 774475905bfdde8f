"""The placement fast paths equal the plain computations they replace (same GPUs, same floats).

* ``cost.evaluate``: distinct domains per level from sets, against the former ``np.unique`` code
  kept here;
* ``greedy``: the per-fabric memo of domain host sets and child splits in ``_fill``, against the
  uncached ``np.flatnonzero`` / ``np.unique`` computation (patched in); the one-sort host-level fill
  (``_fill_hosts``) against the former step-by-step loop.
"""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.placement import PlacementInfeasible, parse_request, place
from fabric_hpc.placement import greedy as greedy_mod
from fabric_hpc.placement.cost import evaluate, host_counts, lex_cost, modelled_comm_ms, stranded
from fabric_hpc.placement.problem import Problem
from tests.placement.conftest import random_state

REQUESTS = ["gpus=3", "gpus=8", "gpus=13", "nodes=1,gpus_per_node=4", "nodes=2,gpus_per_node=8",
            "nodes=3,gpus_per_node=2", "nodes=2,gpus_per_node=4,rail_aligned=true",
            "gpus=16,max_domains=2,max_domains_level=leaf", "nodes=4,gpus_per_node=8", "gpus=20",
            "nodes=5,gpus_per_node=1", "nodes=2,whole_hosts=true",
            "nodes=2,gpus_per_node=2,slices=2,slice_level=leaf"]


def _old_evaluate(problem: Problem, gpus: np.ndarray) -> tuple[float, dict[str, float], dict[str, int]]:
    w, lv, idx = problem.weights, problem.levels, problem.fab.index
    gpus = np.asarray(gpus, np.int64)
    hosts, counts = np.unique(idx.gpu_host[gpus], return_counts=True)
    t = modelled_comm_ms(problem, gpus)
    doms = [np.unique(lv.host_dom[hosts, j]) for j in range(len(lv.chain))]
    spans = {lv.chain[j]: int(len(doms[j])) for j in range(len(lv.chain))}
    span_cost = sum(w.span_weight(j) * spans[name] for j, name in enumerate(lv.chain))
    free = problem.free_all[hosts]
    frag = float((stranded(free - counts, lv.host_gpus[hosts], w) - stranded(free, lv.host_gpus[hosts], w)).sum())
    broken = sum(int(problem.pristine[j][doms[j]].sum()) for j in range(1, len(lv.chain)))
    breakdown = {"comm_ms": t, "comm": t, "span": span_cost, "hosts": w.host * len(hosts),
                 "frag_gpus": frag, "frag": w.frag * frag, "pristine_broken": float(broken),
                 "pristine": w.pristine_break * broken}
    rest = breakdown["rest"] = span_cost + breakdown["hosts"] + breakdown["frag"] + breakdown["pristine"]
    return float(lex_cost(t, rest)), breakdown, spans


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
            if rng.random() < 0.4:  # GPUs of one host
                host = fab.index.gpu_host[free[int(rng.integers(free.size))]]
                pool = free[fab.index.gpu_host[free] == host]
                gpus = np.sort(rng.choice(pool, size=min(k, pool.size), replace=False))
            else:
                gpus = np.sort(rng.choice(free, size=k, replace=False))
            assert evaluate(problem, gpus) == _old_evaluate(problem, gpus)


def _plain_domain_hosts(p: Problem, level: int, d: int) -> np.ndarray:
    return np.flatnonzero(p.levels.host_dom[:, level] == d)


def _plain_children(p: Problem, members: np.ndarray, level: int):
    ids, inv = np.unique(p.levels.host_dom[members, level - 1], return_inverse=True)
    return ids, inv, [members[inv == k] for k in range(len(ids))], None  # None: the plain bincount


def _placements(fab, seeds: range, busy: float = 0.5, requests: list[str] = REQUESTS) -> list:
    out = []
    for seed in seeds:
        state = random_state(fab, seed, busy=busy)
        for req in map(parse_request, requests):  # outside the try: a typo must fail the test
            try:
                pl = place(fab, state, req, solver="greedy")
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


def _plain_fill(p: Problem, cap: np.ndarray, members: np.ndarray, level: int, need: int, out: dict) -> None:
    """The step-by-step ``_fill`` that ``_fill_hosts`` replaced one level above the hosts."""
    if level == 0:
        h = int(members[0])
        out[h] = out.get(h, 0) + need
        cap[h] -= need
        return
    hosts_level = level - 1 == 0
    if hosts_level:
        ids, inv = members, None
        ccap = cap[members].astype(np.int64)
    else:
        ids, inv, parts, _ = greedy_mod._children(p, members, level)
        ccap = np.bincount(inv, weights=cap[members], minlength=len(ids)).astype(np.int64)
    pristine = p.pristine[level - 1][ids]
    rem = need
    while rem > 0:
        avail = np.flatnonzero(ccap > 0)
        if not len(avail):
            raise greedy_mod._NoFit
        fit = avail[ccap[avail] >= rem]
        if len(fit):
            tie = greedy_mod._take_cost(p, ids[fit], rem) if hosts_level else np.zeros(len(fit))
            k = int(fit[np.lexsort((tie, ccap[fit], pristine[fit]))[0]])
            take = rem
        else:
            tie = (greedy_mod._take_cost(p, ids[avail], ccap[avail]) if hosts_level
                   else pristine[avail].astype(float))
            k = int(avail[np.lexsort((tie, -ccap[avail]))[0]])
            take = int(ccap[k])
        _plain_fill(p, cap, members[k:k + 1] if inv is None else parts[k], level - 1, take, out)
        ccap[k] -= take
        rem -= take


@pytest.mark.parametrize("fabric", ["pod", "small", "nvl"])
def test_greedy_host_fill_equals_step_by_step(fabric: str, request: pytest.FixtureRequest,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fab = request.getfixturevalue(fabric)
    extra = ["nodes=4,gpus_per_node=3", "nodes=2,gpus_per_node=5", "gpus=9", "gpus=30"]
    fast = [_placements(fab, range(40), busy, REQUESTS + extra) for busy in (0.2, 0.5)]
    monkeypatch.setattr(greedy_mod, "_fill", _plain_fill)
    assert [_placements(fab, range(40), busy, REQUESTS + extra) for busy in (0.2, 0.5)] == fast
    fast = fast[0] + fast[1]
    assert sum(isinstance(x, tuple) and len(x[4]) > 1 for x in fast) >= 20  # multi-host fills compared


def test_host_counts_equals_unique() -> None:
    rng = np.random.default_rng(0)
    for n in [0, 1, 5, 40, 300]:
        host = rng.integers(0, 300, n)
        hosts, counts = host_counts(host)
        want_hosts, want_counts = np.unique(host, return_counts=True)
        assert hosts.tolist() == want_hosts.tolist() and counts.tolist() == want_counts.tolist()
        assert hosts.dtype == want_hosts.dtype and counts.dtype == want_counts.dtype


@pytest.mark.parametrize("fabric", ["pod", "small", "nvl"])
def test_chosen_gpus_equal_the_per_host_pick(fabric: str, request: pytest.FixtureRequest) -> None:
    """The one-nonzero shortcut (every host gives all its free GPUs) picks what pick_gpus picks."""
    fab = request.getfixturevalue(fabric)
    shortcut = 0
    for seed in range(30):
        state = random_state(fab, seed, busy=0.3)
        for text in ["gpus=8", "gpus=13", "nodes=2,gpus_per_node=4", "nodes=3,gpus_per_node=1", "gpus=30"]:
            p = Problem(fab, state, parse_request(text))
            counts = greedy_mod.greedy_counts(p)
            if counts is None:
                continue
            hosts, gpus = p.chosen_gpus(counts)
            first = p.levels.first_gpu
            want = sorted(int(first[h]) + i for h, c in counts.items() if c > 0 for i in p.pick_gpus(h, c))
            assert gpus.tolist() == want and hosts == sorted(h for h, c in counts.items() if c > 0)
            shortcut += all(p._free_rows[h] == c for h, c in counts.items() if c > 0)
    assert shortcut >= 10  # the shortcut was exercised
