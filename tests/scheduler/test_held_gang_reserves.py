"""A gang held for a compact placement (``compact_wait_s``) that cannot start on any placement (too few
GPUs free) is blocked like any other job: it gets a reservation and later jobs only backfill around it.
It held none and blocked nothing: a later, lower-tier job started in front of it and delayed it by its
whole walltime (an admin's burst on the Slurm agent, tests/slurm/test_backfill_reservation_view.py).
A held gang whose GPUs are free in number still only waits for a compact placement ("Topology")."""

from __future__ import annotations

from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler import SchedulerInput, fabric_policy
from tests.scheduler.helpers import fabric, job, pend, run_on


def test_a_held_gang_with_too_few_gpus_free_gets_the_reservation_and_nothing_jumps_it() -> None:
    fab = fabric(4, 2)
    st = ClusterState(fab)
    running = [run_on(st, job("A", 3, wall=100), ["n1", "n2", "n3"])]
    g = job("G", 4, submit=5, wall=300, tier="high")  # held: waited 5 s of 900
    s = job("S", 1, submit=6, wall=600)  # on n4 it would hold G back until 610
    d = fabric_policy().schedule(SchedulerInput(10, pend(g, s), running, st))
    assert d.start == []
    assert d.reservations["G"].start == 100 and len(d.reservations["G"].gpus) == 32
    assert d.reasons == {"G": "Resources", "S": "Priority"}


def test_a_short_job_still_backfills_in_front_of_a_held_gangs_reservation() -> None:
    fab = fabric(4, 2)
    st = ClusterState(fab)
    running = [run_on(st, job("A", 3, wall=100), ["n1", "n2", "n3"])]
    g = job("G", 4, submit=5, wall=300, tier="high")
    s = job("S", 1, submit=6, wall=50)  # ends at 60: delays nothing
    d = fabric_policy().schedule(SchedulerInput(10, pend(g, s), running, st))
    assert [j.id for j, _ in d.start] == ["S"] and d.backfilled == {"S"}
    assert d.reservations["G"].start == 100


def test_a_held_gang_whose_gpus_are_free_only_waits_for_a_compact_placement() -> None:
    fab = fabric(4, 2)  # leaf1: n1 n2, leaf2: n3 n4
    st = ClusterState(fab)
    running = [run_on(st, job("B", 1, wall=100), ["n1"]), run_on(st, job("C", 1, wall=100), ["n4"])]
    g = job("G", 2, submit=5, wall=300, tier="high")  # n2 + n3 free: a placement, across leaves
    s = job("S", 1, submit=6, wall=600)
    d = fabric_policy().schedule(SchedulerInput(10, pend(g, s), running, st))
    assert d.reasons["G"] == "Topology" and "G" not in d.reservations
    assert [j.id for j, _ in d.start] == ["S"]  # as before: the hold keeps nothing
