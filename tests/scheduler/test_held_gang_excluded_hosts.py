"""A gang held for a compact placement (``compact_wait_s``) whose GPUs are free in number, but not on the
hosts it may use (its ``exclude``/``include``: a Slurm ``-x``), cannot start on any placement: it is blocked
like any other job, with a reservation, instead of "Topology" (its GPUs free, waiting only for a compact
placement) and no reservation, so later jobs could take its hosts for up to ``compact_wait_s``. Seen live
(22.05): ``sbatch -N2 --gres=gpu:2 -x n[1-5]`` on 8 hosts with n6-n8 busy; ``fabric slurm why`` said "its
GPUs are free, but not in at most 1 leaf"."""

from __future__ import annotations

from dataclasses import replace

from fabric_hpc.placement import ClusterState
from fabric_hpc.placement.request import Request
from fabric_hpc.scheduler import SchedulerInput, fabric_policy
from tests.scheduler.helpers import fabric, job, pend, run_on


def _gang(**request):
    g = job("G", 2, submit=5, wall=300, tier="high")  # held: waited 5 s of 900
    return replace(g, request=Request(nodes=2, gpus_per_node=8, **request))


def _decide(g):
    fab = fabric(4, 2)  # leaf1: n1 n2, leaf2: n3 n4
    st = ClusterState(fab)
    running = [run_on(st, job("A", 1, wall=100), ["n3"])]  # 24 GPUs free, 16 of them on n1, n2
    s = job("S", 1, submit=6, wall=600)  # on n4 it would hold G back until 610 (n1, n2: no harm)
    return fabric_policy().schedule(SchedulerInput(10, pend(g, s), running, st))


def test_a_held_gang_whose_free_gpus_are_on_excluded_hosts_gets_a_reservation() -> None:
    d = _decide(_gang(exclude="n[1-2]"))
    assert d.reasons["G"] == "Resources" and d.reservations["G"].start == 100, d.reasons
    assert all("n4" not in p.hosts for _, p in d.start), d.start  # S on n4 would delay G: not there


def test_the_same_with_include() -> None:
    d = _decide(_gang(include="n[3-4]"))
    assert d.reasons["G"] == "Resources" and "G" in d.reservations, d.reasons


def test_a_held_gang_with_free_gpus_in_reach_still_waits_for_a_compact_placement() -> None:
    d = _decide(_gang(exclude="n3"))  # n1, n2 free: compact already, so it starts
    assert [j.id for j, _ in d.start][:1] == ["G"], d
