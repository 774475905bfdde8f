"""CP-SAT's wall-clock guard is one budget for the whole call, not 30 s per phase.

The deterministic budget hardly counts CP-SAT's presolve (``gpus=15000,pp=3`` on a 16k SuperPOD:
~4 s of wall in phase 2's presolve for ~0.1 deterministic units, 18-24 s per call on a loaded
machine), so the wall-clock guard is what bounds such requests; it was ``max(30, 30·limit)`` s for
*each* of the two phases, so a call could run twice its documented guard plus the greedy and Slurm
baselines. Now both phases share one guard counted from the call's start; a phase with nothing
left is not started, and the answer says the guard (the machine's load) decided it. No wall-clock
asserts: the solvers' parameters and a guard of zero are checked."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, SolveOptions, place
from fabric_hpc.placement import cpsat_solve as cpsat_mod
from fabric_hpc.topology import build, generators


@pytest.fixture(scope="module")
def nvl8():
    return build(generators.nvl72(racks=8))


def _recording(monkeypatch) -> list[float]:
    seen: list[float] = []
    orig = cpsat_mod._new_solver

    def spy(options, budget, *rest):
        solver = orig(options, budget, *rest)
        seen.append(solver.parameters.max_time_in_seconds)
        return solver

    monkeypatch.setattr(cpsat_mod, "_new_solver", spy)
    return seen


def test_both_phases_share_one_wall_guard(nvl8, monkeypatch):
    seen = _recording(monkeypatch)
    options = SolveOptions()
    placed = place(nvl8, ClusterState(nvl8), "gpus=73", solver="cpsat", options=options)
    guard = cpsat_mod.wall_guard_s(options)
    assert guard == 30.0
    assert len(seen) == 2, placed.stats["phases"]
    assert seen[0] <= guard
    assert seen[1] < seen[0]  # phase 2 gets what phase 1 (and the model building) left, not 30 s afresh
    assert placed.stats["wall_guard_hit"] is False
    assert not any("wall-clock guard" in n for n in placed.notes)


def test_a_spent_guard_still_answers_and_says_why(nvl8, monkeypatch):
    """Nothing left of the guard: neither phase starts; greedy's answer, with a note naming the guard."""
    monkeypatch.setattr(cpsat_mod, "WALL_GUARD_MIN_S", 0.0)
    monkeypatch.setattr(cpsat_mod, "WALL_GUARD_PER_UNIT", 0.0)
    placed = place(nvl8, ClusterState(nvl8), "gpus=73", solver="cpsat")
    assert placed.stats["phases"] == ["collective:SKIPPED", "cost:SKIPPED"]
    assert placed.stats["wall_guard_hit"] is True and placed.stats["bound"] is None
    assert placed.optimal is False and len(placed.gpus) == 73
    assert placed.cost == pytest.approx(placed.stats["warm_cost"])
    assert any("wall-clock guard (0 s) hit" in n for n in placed.notes), placed.notes


def test_the_guard_scales_with_the_time_limit():
    assert cpsat_mod.wall_guard_s(SolveOptions(time_limit_s=0.01)) == 30.0
    assert cpsat_mod.wall_guard_s(SolveOptions(time_limit_s=4)) == 120.0
