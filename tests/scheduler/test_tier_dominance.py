"""Tiers dominate the stock policies' priority: the gap between adjacent tiers' terms exceeds the
largest sum every other term can reach together (age, fairshare, size, walltime: each factor in [0, 1])."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler import fabric_policy, slurm_policy
from fabric_hpc.scheduler.contract import Job, PendingJob, SchedulerInput
from fabric_hpc.sim import Contention, Simulator

from .helpers import fabric, job

WEEK = 7 * 86_400.0
POLICIES = [slurm_policy(), fabric_policy(), fabric_policy(weight_walltime=250_000.0),
            fabric_policy(favor_small=False, weight_walltime=0.0)]


def _other_terms_max(prio) -> float:
    """Every non-tier term at its largest factor (1) at once."""
    return prio.weight_age + prio.weight_fairshare + prio.weight_size + prio.weight_walltime


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p.name}-{p.priority.weight_walltime:g}")
def test_adjacent_tiers_are_further_apart_than_all_other_terms(policy):
    prio = policy.priority
    factors = sorted({t.factor for t in policy.tiers.values()})
    gaps = [b - a for a, b in zip(factors, factors[1:])]
    assert min(gaps) * prio.weight_tier > _other_terms_max(prio)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p.name}-{p.priority.weight_walltime:g}")
def test_worst_high_job_outranks_best_normal_job(policy):
    fab = fabric(2, 2)
    worst = Job(id="H", request=job("H", 2).request, submit=WEEK, walltime=WEEK, tier="high", account="heavy")
    best = Job(id="N", request=job("N", 1, gpn=1).request, submit=0.0, walltime=1.0, account="light")
    view = SchedulerInput(WEEK, [PendingJob(worst), PendingJob(best)], [], ClusterState(fab),
                          {"heavy": 1e12, "light": 0.0})
    prio = dict(policy.schedule(view).priorities)
    assert prio["H"] > prio["N"]


def test_stream_of_short_normal_jobs_does_not_starve_a_high_week_job():
    fab = fabric(1, 1)
    jobs = [job(f"n{i:03d}", 1, submit=i * 60, wall=60) for i in range(40)]
    jobs.append(job("H", 1, submit=10, wall=WEEK, tier="high"))
    res = Simulator(fab, fabric_policy(), jobs, slowdown=Contention(fab, contention=False)).run()
    first = {r.job.id: r.first_start for r in res.records}
    assert first["H"] == 60  # next, once n000 (the one running at its arrival) ends
