"""Explanations that say what is true, and errors that say how to fix them (a new-user probe)."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, PlacementInfeasible, place
from fabric_hpc.topology import build, generators


@pytest.fixture(scope="module")
def su():
    """One SuperPOD SU: 32 DGX hosts of 8 GPUs."""
    return build(generators.superpod(sus=1))


def _one_small_job_per_host(fab, hosts) -> ClusterState:
    state = ClusterState(fab)
    for i, h in enumerate(hosts):
        state.allocate(f"j{i}", [fab.host_gpus(h)[0]])
    return state


@pytest.mark.parametrize("solver", ["cpsat", "greedy", "slurm-tree", "slurm-block"])
def test_whole_hosts_short_counts_entirely_free_hosts_and_the_jobs_that_free_one(su, solver):
    """Hosts 2-32 each run one 1-GPU job: 225 GPUs are free but only host 1's 8 are on an entirely
    free host, and ending one job frees another (it said "only 8 are free; at least 8 running
    job(s) would have to end")."""
    state = _one_small_job_per_host(su, su.hosts[1:])
    with pytest.raises(PlacementInfeasible) as e:
        place(su, state, "gpus=16,whole_hosts", solver=solver)
    ex, text = e.value.explanation, str(e.value)
    assert ex["constraint"] == "capacity" and ex["largest"] == 8 and ex["blocking_jobs"] == 1
    assert "only 8 GPUs are on entirely free hosts (225 are free in all)" in text
    assert "at least 1 running job(s)" in text and ex["unit"] == "GPUs on entirely free hosts"


def test_whole_hosts_within_a_domain_counts_jobs_per_host():
    """The same count inside one domain (``within``): 24 GPUs fit in all (8 + 16 on free hosts),
    the fullest leaf group holds 16, and one job there ends to free one more host."""
    fab = build(generators.superpod(sus=2))
    state = _one_small_job_per_host(fab, fab.hosts[1:32] + fab.hosts[34:])
    with pytest.raises(PlacementInfeasible) as e:
        place(fab, state, "gpus=24,whole_hosts,within=leaf", solver="greedy")
    ex = e.value.explanation
    assert ex["constraint"] == "within" and ex["largest"] == 16 and ex["blocking_jobs"] == 1, str(e.value)
