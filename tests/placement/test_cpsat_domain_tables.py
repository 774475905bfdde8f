"""CP-SAT's channel and NVLink-share bounds read the fewest and the most GPUs a used NVLink domain
gets through element tables (``cpsat_comm._bandwidth``). Their length was the gang's GPU count + 1,
though no domain can hold more than the largest NVLink domain's GPUs: on 64 NVL72 racks
``gpus=2304,tp=72`` built tables of 2,305 entries and CP-SAT ran 134-188 s of wall time at the
default 1-unit budget (past its own 30 s guard; the deterministic time read 0.18). The tables now
stop at the largest NVLink domain (73 entries on NVL72), with the same bounds."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, SolveOptions, place
from fabric_hpc.placement import cpsat as cpsat_mod
from fabric_hpc.placement.levels import largest_domain_gpus
from fabric_hpc.placement.problem import Problem
from fabric_hpc.topology.io import open_fabric


def _element_sizes(fab, text: str) -> list[int]:
    p = Problem(fab, ClusterState(fab), text)
    items = cpsat_mod.build_items(p, SolveOptions())
    model, *_ = cpsat_mod._model_parts(p, items, None, cpsat_mod.rest_scale(p, items))
    return [len(ct.element.exprs) for ct in model.Proto().constraints if ct.has_element()]


@pytest.mark.parametrize("text", ["gpus=576,tp=72", "gpus=576", "gpus=300,tp=4"])
def test_domain_tables_stop_at_the_largest_nvlink_domain(text):
    fab = open_fabric("gb200-nvl72-8r")
    lv = Problem(fab, ClusterState(fab), "gpus=1").levels
    most = largest_domain_gpus(lv, lv.alias["nvlink"])
    assert most == 72
    sizes = _element_sizes(fab, text)
    assert sizes and max(sizes) <= most + 1, sizes


def test_many_racks_with_rack_wide_tp_groups_are_placed():
    """The tester's case, smaller: whole racks of tp=72 groups on 16 racks (every group one rack)."""
    fab = open_fabric("nvl72:racks=16")
    placed = place(fab, ClusterState(fab), "gpus=576,tp=72", solver="cpsat")
    greedy = place(fab, ClusterState(fab), "gpus=576,tp=72", solver="greedy")
    assert placed.domains["nvlink"] == 8 and len(placed.gpus) == 576
    assert placed.cost <= greedy.cost
