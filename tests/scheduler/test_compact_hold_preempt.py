"""A gang held for a compact placement (``compact_wait_s``) preempts only for a real benefit: not
when it fits the free GPUs now on a placement as fast as a compact one (here a non-blocking
leaf-spine: tests/scheduler/test_held_gang_value.py has the NVL72 case), and its wait without
preemption ends with its hold at the latest."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler import fabric_policy
from fabric_hpc.scheduler.contract import SchedulerInput

from .helpers import fabric, job, pend, run_on

FAB = fabric(4, 2)  # leaves {n1, n2} and {n3, n4}


def _spot(st: ClusterState) -> list:
    return [run_on(st, job("sa", 1, wall=36000, tier="spot"), ["n1"]),
            run_on(st, job("sb", 1, wall=36000, tier="spot"), ["n3"])]


@pytest.mark.parametrize("ratio", [0.0, 20.0])
def test_fits_free_gpus_now_is_no_reason_to_preempt(ratio):
    st = ClusterState(FAB)
    high = job("H", 2, submit=100, wall=3600, tier="high")
    policy = fabric_policy(preempt_benefit_ratio=ratio)
    d = policy.schedule(SchedulerInput(100, pend(high), _spot(st), st, {}))
    assert d.preempt == [] and d.start == []
    assert d.reasons["H"] == "Topology"  # waits for a compact placement, then takes n2 + n4
    st = ClusterState(FAB)
    later = fabric_policy(preempt_benefit_ratio=ratio).schedule(
        SchedulerInput(1000, pend(high), _spot(st), st, {}))
    assert later.preempt == []
    assert [sorted({g.split("/")[0] for g in p.gpus}) for _, p in later.start] == [["n2", "n4"]]


def test_benefit_wait_ends_with_the_hold():
    # n2 free, n4 busy until 500: any placement (n2 + n4) at 500, a compact one only after 10 h
    # (or by evicting a spot gang); the hold ends at 1000, so preempting saves 900 s of 16 GPUs
    # (4 GPU-hours), less than 20 × the ~0.9 GPU-hours a victim loses
    st = ClusterState(FAB)
    running = _spot(st) + [run_on(st, job("n", 1, wall=500), ["n4"])]
    high = job("H", 2, submit=100, wall=3600, tier="high")
    d = fabric_policy().schedule(SchedulerInput(100, pend(high), running, st, {}))
    assert d.preempt == [] and d.start == []
    # without a hold the same check sees the 400 s to the start at 500: no preemption either
    d = fabric_policy(compact_wait_s=None).schedule(SchedulerInput(100, pend(high), running, st, {}))
    assert d.preempt == []
    # a hold that lasts 11 h makes the compact start (10 h away) the wait: worth preempting
    d = fabric_policy(compact_wait_s=40_000.0).schedule(SchedulerInput(100, pend(high), running, st, {}))
    assert [p.job_id for p in d.preempt] in (["sa"], ["sb"])
