"""Gang-aware preemption: whole gangs, cheapest set inside one domain, valid placement."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler import (Backfill, GangPreemption, MultifactorPriority, Scheduler, SchedulerInput,
                                  SolverPlacer, gpu_hours_lost)
from tests.scheduler.helpers import fabric, job, pend, run_on


def _policy() -> Scheduler:
    return Scheduler("p", MultifactorPriority(), SolverPlacer("greedy"), Backfill.easy(),
                     GangPreemption(restore_s=0.0))


def _spot_cluster(starts: dict[str, float]):
    """leaf1 = n1..n4, leaf2 = n5..n8, one 1-node spot gang per host started at ``starts[host]``."""
    fab = fabric(8, 4)
    st = ClusterState(fab)
    running = [run_on(st, job(f"s{h}", 1, tier="spot", wall=10_000), [h], start=t) for h, t in starts.items()]
    return st, running


def test_cheapest_victims_inside_one_leaf():
    now = 3600.0
    # lost GPU-hours = 8 GPUs x (now - start): n1 and n5 are the cheapest overall but in different
    # leaves; the cheapest pair inside one leaf is {n1, n2} (8 * (0.1 + 0.2) h)
    starts = {"n1": now - 360, "n2": now - 720, "n3": now - 3600, "n4": now - 3600,
              "n5": now - 400, "n6": now - 1800, "n7": now - 3600, "n8": now - 3600}
    st, running = _spot_cluster(starts)
    out = _policy().schedule(SchedulerInput(now, pend(job("H", 2, tier="high")), running, st))
    assert {p.job_id for p in out.preempt} == {"sn1", "sn2"}
    (j, placement), = out.start
    assert set(placement.hosts) == {"n1", "n2"}
    assert sum(p.gpu_hours_lost for p in out.preempt) == pytest.approx(8 * (360 + 720) / 3600)


def test_checkpoints_lower_the_cost_and_change_the_choice():
    now = 3600.0
    fab = fabric(8, 4)
    st = ClusterState(fab)
    running = [run_on(st, job(f"s{h}", 1, tier="spot", wall=10_000, ckpt=600 if h in ("n7", "n8") else None), [h],
                      start=0.0) for h in [f"n{i}" for i in range(1, 9)]]
    # all started at 0; n7/n8 checkpoint every 600 s: at 3600 they lose nothing
    assert gpu_hours_lost(running[6], now) == 0.0 and gpu_hours_lost(running[0], now) == 8.0
    out = _policy().schedule(SchedulerInput(now, pend(job("H", 2, tier="high")), running, st))
    assert {p.job_id for p in out.preempt} == {"sn7", "sn8"}


def test_spot_never_preempts_and_normal_jobs_are_never_victims():
    fab = fabric(4, 2)
    st = ClusterState(fab)
    running = [run_on(st, job("N", 4, tier="normal", wall=10_000), ["n1", "n2", "n3", "n4"])]
    out = _policy().schedule(SchedulerInput(10, pend(job("H", 1, tier="high")), running, st))
    assert out.preempt == [] and out.start == []
    st2 = ClusterState(fab)
    running2 = [run_on(st2, job("S", 4, tier="spot", wall=10_000), ["n1", "n2", "n3", "n4"])]
    out2 = _policy().schedule(SchedulerInput(10, pend(job("T", 1, tier="spot")), running2, st2))
    assert out2.preempt == [] and out2.start == []


def test_whole_gang_is_evicted_even_if_partly_needed():
    fab = fabric(4, 2)
    st = ClusterState(fab)
    running = [run_on(st, job("S", 4, tier="spot", wall=10_000), ["n1", "n2", "n3", "n4"], start=0)]
    out = _policy().schedule(SchedulerInput(100, pend(job("H", 1, tier="high")), running, st))
    assert [p.job_id for p in out.preempt] == ["S"]
    (j, placement), = out.start
    assert len(placement.gpus) == 8


class _SpotFirst(MultifactorPriority):
    """A user priority that ranks spot jobs above everything (tiers are only a preemption rule)."""

    def priorities(self, view: SchedulerInput) -> dict[str, float]:
        return {p.job.id: (1.0 if p.job.tier == "spot" else 0.0) for p in view.pending}

    ranked = None  # the scheduler then reads ``priorities``


def test_a_gang_started_in_a_step_is_never_preempted_in_the_same_step():
    # 4 free hosts; the spot gang (ranked first) takes 2 of them, then the high gang needs all 4:
    # it may not evict the spot gang that this very step started (the driver could not apply both)
    fab = fabric(4, 2)
    st = ClusterState(fab)
    pol = Scheduler("p", _SpotFirst(), SolverPlacer("greedy"), Backfill.easy(), GangPreemption(restore_s=0.0))
    out = pol.schedule(SchedulerInput(0.0, pend(job("S", 2, tier="spot"), job("H", 4, tier="high")), [], st))
    assert [j.id for j, _ in out.start] == ["S"]
    assert out.preempt == []
    assert out.reasons["H"] == "Resources"
    # a step later, with S running, H may evict it
    running = [run_on(st, job("S", 2, tier="spot"), [h for h in out.start[0][1].hosts])]
    out2 = pol.schedule(SchedulerInput(1.0, pend(job("H", 4, tier="high")), running, st))
    assert [p.job_id for p in out2.preempt] == ["S"] and [j.id for j, _ in out2.start] == ["H"]
