"""Where CP-SAT's integer model cannot hold the magnitudes, cpsat answers with greedy's placement; with no
warm start (greedy found none) it asks greedy once more on the untouched problem: its PlacementInfeasible,
or its answer. Before, a greedy that placed there left ``None.cost`` (AttributeError)."""

from __future__ import annotations

import time

import pytest

from fabric_hpc.placement import ClusterState, Problem, SolveOptions
from fabric_hpc.placement.cpsat import _too_large
from fabric_hpc.placement.contract import PlacementInfeasible
from fabric_hpc.topology import build, generators

FAB = build(generators.leaf_spine(4, hosts_per_leaf=2, gpus=8, cpus=8))


def test_no_warm_start_and_a_greedy_that_places_gives_its_answer() -> None:
    p = Problem(FAB, ClusterState(FAB), "gpus=8")
    pl = _too_large(p, None, time.perf_counter(), "test", {"items": 1}, SolveOptions())
    assert pl.solver == "cpsat" and not pl.optimal and len(pl.gpus) == 8
    assert pl.stats["status"] == "MODEL_INVALID" and pl.stats["warm_cost"] == pl.cost
    assert any("cannot hold these magnitudes (test)" in n for n in pl.notes)


def test_no_warm_start_and_no_greedy_answer_is_greedys_infeasible() -> None:
    p = Problem(FAB, ClusterState(FAB), "gpus=64")
    with pytest.raises(PlacementInfeasible):
        _too_large(p, None, time.perf_counter(), "test", {"items": 1}, SolveOptions())
