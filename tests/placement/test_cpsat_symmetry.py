"""CP-SAT orders the counts of interchangeable items (``cpsat_symmetry``).

``gpus=73`` on 64 idle NVL72 racks took ~6 s: phase 2 spent its whole deterministic budget (0.44
units, ``cost:FEASIBLE``) on permutations of one answer over identical racks (8 leaf groups of 8).
With each class's counts non-increasing the same optimum is proven in a fraction of the work. Work is
counted in CP-SAT's deterministic time, not wall clock."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, SolveOptions, place
from fabric_hpc.placement import cpsat as cpsat_mod
from fabric_hpc.placement.problem import Problem
from fabric_hpc.topology import build, generators

from .conftest import random_state


@pytest.fixture(scope="module")
def nvl16():
    return build(generators.nvl72(racks=16))


def test_identical_racks_form_classes(nvl16):
    p = Problem(nvl16, ClusterState(nvl16), "gpus=73")
    items = cpsat_mod.build_items(p, SolveOptions())
    classes = cpsat_mod.interchangeable(p, items)
    assert sorted(len(c) for c in classes) == [8, 8]  # two leaf groups of 8 racks
    staged = Problem(nvl16, ClusterState(nvl16), "gpus=144,pp=2")
    assert cpsat_mod.interchangeable(staged, cpsat_mod.build_items(staged, SolveOptions())) == []


def test_gpus_73_on_idle_racks_is_proven_in_little_work(nvl16):
    placed = place(nvl16, ClusterState(nvl16), "gpus=73", solver="cpsat")
    assert placed.stats["phases"] == ["collective:OPTIMAL", "cost:OPTIMAL"]
    assert placed.stats["deterministic_time"] < 0.1  # 0.33 units before (deterministic: a work count)
    assert placed.breakdown["comm_ms"] == pytest.approx(1.053, abs=1e-3)


@pytest.mark.parametrize("text", ["gpus=73", "gpus=100,tp=4", "nodes=10,gpus=4", "gpus=90,within=leaf",
                                  "nodes=6,gpus=4,tp=8"])
@pytest.mark.parametrize("busy", [0.0, 0.3])
def test_the_same_optimum_as_without_symmetry_breaking(text, busy, monkeypatch):
    fab = build(generators.nvl72(racks=4, racks_per_su=2))
    state = ClusterState(fab) if busy == 0 else random_state(fab, 3, busy)
    ordered = place(fab, state, text, solver="cpsat")
    monkeypatch.setattr(cpsat_mod, "interchangeable", lambda p, items: [])
    free = place(fab, state, text, solver="cpsat")
    if free.stats["phases"][-1] != "cost:OPTIMAL":  # not proven without the ordering: nothing to compare
        return
    assert ordered.stats["phases"][-1] == "cost:OPTIMAL"
    assert ordered.stats["objective"] == pytest.approx(free.stats["objective"], abs=1e-9)
    assert ordered.cost == pytest.approx(free.cost, abs=1e-9)
