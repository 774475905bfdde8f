"""One source of tiers: ``Scheduler(tiers=...)`` reaches the priority and preemption policies."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler import Backfill, GangPreemption, MultifactorPriority, Scheduler, SolverPlacer
from fabric_hpc.scheduler.contract import DEFAULT_TIERS, SchedulerInput, Tier

from .helpers import fabric, job, pend, run_on


def _tiers() -> dict[str, Tier]:
    tiers = dict(DEFAULT_TIERS)
    tiers["batch"] = Tier("batch", 0.2, preemptible=True, preempted_by=("high",))
    return tiers


def test_scheduler_tiers_reach_priority_and_preemption():
    fab = fabric(2, 2)
    pol = Scheduler("s", MultifactorPriority(), SolverPlacer("greedy"), Backfill.easy(), GangPreemption(),
                    tiers=_tiers())
    st = ClusterState(fab)
    rb = run_on(st, job("b", 2, wall=36000, tier="batch"), ["n1", "n2"])
    d = pol.schedule(SchedulerInput(100, pend(job("H", 2, wall=100, tier="high")), [rb], st, {}))
    assert [p.job_id for p in d.preempt] == ["b"]  # the preemption policy knows "batch" is preemptible
    d = pol.schedule(SchedulerInput(100, pend(job("B2", 1, tier="batch"), job("N", 1)), [rb], st, {}))
    prio = dict(d.priorities)
    assert prio["N"] - prio["B2"] == pytest.approx(100_000 * (0.5 - 0.2), abs=1000)  # batch's factor 0.2


def test_scheduler_tiers_change_the_factor():
    tiers = dict(DEFAULT_TIERS)
    tiers["high"] = Tier("high", 0.9)
    v = SchedulerInput(0, pend(job("H", 1, tier="high")), [], ClusterState(fabric(2, 2)), {})
    custom = Scheduler("s", MultifactorPriority(), SolverPlacer("greedy"), tiers=tiers).schedule(v).priorities
    default = Scheduler("s", MultifactorPriority(), SolverPlacer("greedy")).schedule(v).priorities
    assert default["H"] - custom["H"] == pytest.approx(100_000 * 0.1)


def test_one_priority_object_serves_two_schedulers():
    prio = MultifactorPriority()
    Scheduler("a", prio, SolverPlacer("greedy"), tiers=_tiers())
    other = Scheduler("b", prio, SolverPlacer("greedy"))
    v = SchedulerInput(0, pend(job("B", 1, tier="batch")), [], ClusterState(fabric(2, 2)), {})
    with pytest.raises(ConfigError, match="unknown tier 'batch'"):
        other.schedule(v)  # the second scheduler's (default) tiers, not the first one's


@pytest.mark.parametrize("which", ["priority", "preemption"])
def test_mismatched_tiers_refused_at_construction(which):
    prio = MultifactorPriority(tiers=DEFAULT_TIERS) if which == "priority" else MultifactorPriority()
    pre = GangPreemption(tiers=DEFAULT_TIERS) if which == "preemption" else GangPreemption()
    with pytest.raises(ConfigError, match=f"{which} policy's tiers") as err:
        Scheduler("s", prio, SolverPlacer("greedy"), Backfill.easy(), pre, tiers=_tiers())
    assert "Scheduler(tiers=" in err.value.hint


def test_same_tiers_given_twice_are_accepted():
    tiers = _tiers()
    pol = Scheduler("s", MultifactorPriority(tiers=dict(tiers)), SolverPlacer("greedy"), Backfill.easy(),
                    GangPreemption(dict(tiers)), tiers=tiers)
    v = SchedulerInput(0, pend(job("B", 1, tier="batch")), [], ClusterState(fabric(2, 2)), {})
    assert [j.id for j, _ in pol.schedule(v).start] == ["B"]
