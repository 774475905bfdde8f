"""Golden tests: Slurm's topology/tree selection on the example tree of Slurm's Topology Guide.

The guide (slurm.schedmd.com/topology.html, "Configuration for Hierarchical Networks") uses::

    SwitchName=s0 Nodes=tux[0-3]
    SwitchName=s1 Nodes=tux[4-7]
    SwitchName=s2 Nodes=tux[8-11]
    SwitchName=s3 Switches=s[0-2]

Our generator numbers hosts from 1, so tux[0-3] is tux[1-4] here. Expected results are worked by
hand from ``_eval_nodes_topo`` / ``_topo_compare_switches`` (eval_nodes_tree.c): the tightest leaf
that fits the remainder wins; if none fits, the leaf with most free nodes; then leaves closest to
those already used; nodes in index order inside a leaf.
"""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, PlacementInfeasible, place
from fabric_hpc.topology import build, generators


@pytest.fixture(scope="module")
def guide():
    fab = build(generators.leaf_spine(hosts=12, hosts_per_leaf=4, gpus=1, prefix="tux"))
    state = ClusterState(fab)
    state.allocate("busy", ["tux1/gpu0", "tux2/gpu0"])  # s0 keeps 2 free nodes, s1 and s2 keep 4
    return fab, state


@pytest.mark.parametrize("nodes, expected", [
    (1, ["tux3"]),                                        # tightest leaf s0 (2 free), first node in order
    (2, ["tux3", "tux4"]),                                # s0 fits exactly
    (3, ["tux5", "tux6", "tux7"]),                        # s0 cannot, s1 and s2 tie: first in table order
    (4, ["tux5", "tux6", "tux7", "tux8"]),
    (6, ["tux3", "tux4", "tux5", "tux6", "tux7", "tux8"]),  # no leaf fits: largest (s1), then tightest (s0)
    (9, ["tux3"] + [f"tux{i}" for i in range(5, 13)]),      # s1, then s2 (more free than s0), then s0
])
def test_tree_selection_matches_hand_worked_examples(guide, nodes, expected):
    fab, state = guide
    placed = place(fab, state, f"nodes={nodes},gpus=1", solver="slurm-tree")
    assert list(placed.hosts) == sorted(expected, key=fab.hosts.index)


def test_switches_limit_keeps_job_pending(guide):
    fab, state = guide
    with pytest.raises(PlacementInfeasible) as e:
        place(fab, state, "nodes=6,gpus=1,switches=1", solver="slurm-tree")
    assert e.value.explanation["constraint"] == "max_domains"  # no single leaf has 6 free nodes


def test_switches_limit_respected_when_possible(guide):
    fab, state = guide
    placed = place(fab, state, "nodes=5,gpus=1,switches=2", solver="slurm-tree")
    assert placed.domains["leaf"] <= 2


def test_block_smallest_level_that_fits():
    fab = build(generators.nvl72(racks=4))
    state = ClusterState(fab)
    state.allocate("a", [g for h in fab.hosts[:10] for g in fab.host_gpus(h)])  # rack r001 keeps 8 hosts
    placed = place(fab, state, "nodes=8,gpus=4", solver="slurm-block")
    assert {h[:4] for h in placed.hosts} == {"r001"}  # best-fit base block
    placed = place(fab, state, "nodes=20,gpus=4", solver="slurm-block")
    assert {h[:4] for h in placed.hosts} == {"r003", "r004"} or {h[:4] for h in placed.hosts} <= {"r001", "r002"}


def test_slices_look_only_at_domains_that_can_hold_them(monkeypatch):
    """slurm-tree places each slice in the first domain that holds it; domains with too few free
    GPUs are skipped without running the algorithm on them (it cannot find more than there is).
    Scanning from the first host for every one of 64 tp groups took 2,080 runs (and 131k runs,
    ~70 s, for 512 groups at 16k GPUs); a host's slices are now counted without a run, and 16
    slices of 32 GPUs at the leaf level take one run each."""
    from fabric_hpc.placement import slurm

    calls = []
    real = slurm._Tree.run
    monkeypatch.setattr(slurm._Tree, "run", lambda self, cap, need: calls.append(need) or real(self, cap, need))
    fab = build(generators.superpod(sus=8))
    placed = place(fab, ClusterState(fab), "gpus=512,tp=8", solver="slurm-tree")
    assert len(placed.hosts) == 64 and not calls
    placed = place(fab, ClusterState(fab), "gpus=512,slices=16,slice_level=leaf", solver="slurm-tree")
    assert len(placed.hosts) == 64 and len(calls) == 16
