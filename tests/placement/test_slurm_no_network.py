"""slurm-tree and slurm-block on a fabric without a network: hosts on one non-blocking switch
(docs/topology.md), so a gang may span hosts as with cpsat and greedy; Slurm takes the nodes of
that one switch in index order."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, place
from tests.placement.test_no_network_leaf import _fab


@pytest.mark.parametrize("solver", ["slurm-tree", "slurm-block"])
@pytest.mark.parametrize("request_, hosts", [("gpus=4", ("n1", "n2")), ("gpus=6", ("n1", "n2", "n3")),
                                             ("nodes=2,gpus=2", ("n1", "n2")),
                                             ("gpus=4,switches=1", ("n1", "n2")),
                                             ("gpus=4,within=leaf", ("n1", "n2"))])
def test_a_gang_spans_hosts_without_a_network(solver, request_, hosts):
    fab = _fab("n[1-3]")
    p = place(fab, ClusterState(fab), request_, solver=solver)
    assert p.hosts == hosts and len(p.gpus) == 2 * len(hosts)


@pytest.mark.parametrize("solver", ["slurm-tree", "slurm-block", "greedy", "cpsat"])
def test_busy_gpus_are_skipped_and_the_answer_matches_the_other_solvers(solver):
    fab = _fab("n[1-4]")
    state = ClusterState(fab)
    state.allocate("a", ["n1/gpu0", "n3/gpu0", "n3/gpu1"])
    p = place(fab, state, "gpus=3", solver=solver)
    assert len(p.gpus) == 3 and not set(p.gpus) & set(state.job_gpus("a"))
    if solver == "slurm-tree":  # index order: n1's free GPU, then n2
        assert p.gpus == ("n1/gpu1", "n2/gpu0", "n2/gpu1")
