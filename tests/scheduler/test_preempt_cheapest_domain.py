"""Review 27's gang-preemption defects: the cheapest victim set wins wherever it is, a victim's GPUs
promised to a reservation do not make the search give up, and NaN usage or shares are refused.

1. The domains of a level were taken by free GPUs (at most ``max_domains``), so on a cluster where
   every host runs a spot gang a high job evicted an 80 GPU-h gang on n1 while n8's held 0.8 GPU-h
   (or, with a benefit ratio, waited 3 h). They are now taken by a lower bound on their cost.
2. A victim on a reserved host and on a free one: the placement landed on the reserved GPUs and the
   scheduler dropped the whole preemption. Reserved GPUs now stay blocked in the trials.
3. An infinite usage made every priority NaN and the step examined nothing.
"""

from __future__ import annotations

import math

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import ClusterState, Request
from fabric_hpc.scheduler import (Backfill, GangPreemption, Job, MultifactorPriority, Scheduler,
                                  SchedulerInput, SolverPlacer)
from fabric_hpc.scheduler.priority import ClassicFairshare

from .helpers import fabric, job, pend, run_on

NOW = 36_000.0


def _busy(fab, wall_left: float | None = None):
    """Every host of ``fab`` runs a 1-GPU spot gang: n1..n7's since t=0, n8's for a minute (cheapest)."""
    st = ClusterState(fab)
    running = []
    for h in fab.hosts:
        start = NOW - 60 if h == "n8" else 0.0
        wall = 10**6 if wall_left is None else NOW + wall_left - start
        running.append(run_on(st, job(f"s{h}", 1, tier="spot", wall=wall), [h], start=start))
    return st, running


def _policy(**kw) -> Scheduler:
    return Scheduler("p", MultifactorPriority(), SolverPlacer("greedy"), Backfill.easy(), GangPreemption(),
                     **kw)


@pytest.mark.parametrize("reverse", [False, True])
def test_the_cheapest_victim_wins_beyond_max_domains(reverse):
    st, running = _busy(fabric(8, 4))
    out = _policy().schedule(SchedulerInput(NOW, pend(job("H", 1, tier="high")), running[::-1] if reverse
                                            else running, st))
    assert [(p.job_id, round(p.gpu_hours_lost, 2)) for p in out.preempt] == [("sn8", 0.8)]
    assert [(j.id, p.hosts) for j, p in out.start] == [("H", ("n8",))]


def test_a_benefit_ratio_passes_on_the_cheap_victim():
    """8 GPUs x 3 h saved >= 20 x 0.8 GPU-h: preempt sn8 (the 80 GPU-h ones would be refused)."""
    st, running = _busy(fabric(8, 4), wall_left=3 * 3600)
    out = _policy(preempt_benefit_ratio=20.0).schedule(
        SchedulerInput(NOW, pend(job("H", 1, tier="high", wall=3600)), running, st))
    assert [p.job_id for p in out.preempt] == ["sn8"] and [j.id for j, _ in out.start] == ["H"]
    assert not out.reservations


def test_a_victim_on_reserved_gpus_is_placed_around_them():
    """S23 spans n2 (reserved for A from t=600) and n3: evicting it and placing B on n3 is valid."""
    fab = fabric(4, 2)
    st = ClusterState(fab)
    running = [run_on(st, job("N1", 1, tier="normal", wall=600), ["n1"], start=0),
               run_on(st, job("S23", 2, tier="spot", wall=500), ["n2", "n3"], start=90),
               run_on(st, job("S4", 1, tier="spot", wall=10**6), ["n4"], start=-50_000)]
    a = Job("A", Request(nodes=2, gpus_per_node=8, include="n1,n2"), submit=0, walltime=5000, tier="high")
    b = job("B", 1, tier="high", wall=5000, submit=10)
    pol = Scheduler("p", MultifactorPriority(), SolverPlacer("greedy"), Backfill.easy(),
                    GangPreemption(restore_s=0.0))
    out = pol.schedule(SchedulerInput(100.0, pend(a, b), running, st))
    assert sorted({g.split("/")[0] for g in out.reservations["A"].gpus}) == ["n1", "n2"]
    assert [p.job_id for p in out.preempt] == ["S23"]
    assert [(j.id, p.hosts) for j, p in out.start] == [("B", ("n3",))]


@pytest.mark.parametrize("usage, shares, named", [
    ({"a": math.inf, "b": 1.0}, None, "usage of account 'a'"),
    ({"a": math.nan, "b": 1.0}, None, "usage of account 'a'"),
    ({"a": -5.0, "b": 1.0}, None, "usage of account 'a'"),
    ({"a": 1.0}, {"a": 1.0, "b": math.inf}, "share of account 'b'")])
def test_non_finite_usage_or_shares_are_refused(usage, shares, named):
    fab = fabric(4, 2)
    jobs = [job("h1", 1, tier="high", account="a"), job("n1", 1, account="b", submit=1)]
    pol = Scheduler("p", MultifactorPriority(), SolverPlacer("greedy"), Backfill.easy(max_job_test=1))
    with pytest.raises(ConfigError, match=named):
        pol.schedule(SchedulerInput(10, pend(*jobs), [], ClusterState(fab), usage=usage, shares=shares))
    with pytest.raises(ConfigError, match=named):
        ClassicFairshare().factors_for({"a", "b"}, usage, shares)


def test_huge_but_finite_usage_is_still_taken():
    assert ClassicFairshare().factors_for({"a", "b"}, {"a": 1e308, "b": 1e308}) == {"a": 1.0, "b": 1.0}
