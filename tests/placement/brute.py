"""Brute force over every host choice (tiny fabrics): the reference optimum of the cost model."""

from __future__ import annotations

import itertools

import numpy as np

from fabric_hpc.placement.problem import PlacementBug, Problem


def brute_force(p: Problem) -> float | None:
    """Minimum cost over all valid placements (None: infeasible). Uses the shared GPU picker."""
    best = None
    for pattern in (p.patterns or [p.pattern]):
        p.set_pattern(pattern)
        for counts in _choices(p):
            try:
                placed = p.finish(counts, "brute", 0.0, optimal=True)
            except PlacementBug:
                continue
            if best is None or placed.cost < best - 1e-12:
                best = placed.cost
    return best


def _choices(p: Problem):
    hosts = np.flatnonzero(p.cap > 0)
    if p.nodes_mode:
        for combo in itertools.combinations(hosts.tolist(), p.units):
            yield {h: p.gpn for h in combo}
        return
    for xs in itertools.product(*[range(int(p.cap[h]) + 1) for h in hosts]):
        if sum(xs) == p.units:
            yield {int(h): x for h, x in zip(hosts, xs, strict=True) if x}


def checked_optimal_claims(fab, text: str, seeds, busy: float, options) -> int:
    """Place ``text`` with cpsat on random busy states of ``fab`` (one per seed; tiny fabrics): its
    cost is never below brute force's, and where it claims optimal it equals it. The count of claims."""
    import pytest

    from fabric_hpc.placement import place
    from fabric_hpc.placement.request import parse_request
    from tests.placement.conftest import random_state

    claimed = 0
    for seed in seeds:
        state = random_state(fab, seed, busy=busy)
        best = brute_force(Problem(fab, state, parse_request(text)))
        if best is None:
            continue
        placed = place(fab, state, text, solver="cpsat", options=options)
        assert placed.cost >= best - 1e-9  # brute force's is the least
        if placed.optimal:
            assert placed.cost == pytest.approx(best, abs=1e-9), (text, seed, placed.hosts)
            claimed += 1
    return claimed
