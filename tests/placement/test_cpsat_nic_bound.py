"""CP-SAT's channel bound counts the NICs an NVLink domain has, not only its GPUs: on hosts with one
NIC for several GPUs (leaf-spine, the live Slurm test cluster) a ring crossing hosts has one channel,
and the bound assumed one per GPU (8× too low), so CP-SAT never proved a multi-host answer optimal
there (``comm_us_bound`` 1,416 µs against 10,786)."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, SolveOptions, place
from fabric_hpc.topology import build, generators, open_fabric
from tests.placement.brute import checked_optimal_claims

OPTIONS = SolveOptions(time_limit_s=5.0, workers=1)


def test_one_nic_hosts_are_proven_optimal_at_the_bound():
    fab = open_fabric("leaf-spine-16")  # 16 hosts × 8 GPUs, one NIC each
    placed = place(fab, ClusterState(fab), "nodes=2,gpus=8", solver="cpsat", options=OPTIONS)
    assert placed.optimal is True
    assert placed.stats["comm_us_bound"] == round(placed.breakdown["comm_ms"] * 1000)


@pytest.mark.parametrize("text", ["gpus=6", "gpus=9", "nodes=3,gpus=2"])
def test_an_optimal_claim_on_one_nic_hosts_is_brute_force_optimal(text):
    """Soundness of the tighter bound: where CP-SAT says optimal, no placement is cheaper."""
    fab = build(generators.leaf_spine(hosts=4, hosts_per_leaf=2, gpus=4))  # one NIC per 4 GPUs
    claimed = checked_optimal_claims(fab, text, range(4), 0.25, OPTIONS)
    assert claimed >= 2
