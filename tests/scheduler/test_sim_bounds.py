"""The mean-JCT lower bound (``fabric_hpc.sim.bounds``): SRPT by hand, SRPT against other
preemptive orders, and the bound under the JCT of real replays of both stock policies."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import Request
from fabric_hpc.scheduler.contract import Job
from fabric_hpc.scheduler import fabric_policy, slurm_policy
from fabric_hpc.sim import Contention, Simulator, gang_workload, summarize
from fabric_hpc.sim.bounds import jct_lower_bound, srpt_completions
from tests.scheduler.helpers import fabric, job


def test_srpt_by_hand():
    # both at 0: the shorter first
    assert srpt_completions(np.array([0.0, 0.0]), np.array([2.0, 1.0])).tolist() == [3.0, 1.0]
    # a shorter job arriving preempts: job 0 runs 0-1, job 1 (1 s) 1-2, job 0 the rest 2-4
    assert srpt_completions(np.array([0.0, 1.0]), np.array([3.0, 1.0])).tolist() == [4.0, 2.0]
    # idle until the first release
    assert srpt_completions(np.array([5.0]), np.array([2.0])).tolist() == [7.0]


def _fixed_priority(release: np.ndarray, work: np.ndarray, rank: list[int]) -> np.ndarray:
    """Preemptive schedule on one machine that always runs the released job of lowest ``rank``."""
    rem, done, t = work.astype(float).copy(), np.full(work.size, np.nan), 0.0
    while np.isnan(done).any():
        ready = [i for i in range(work.size) if np.isnan(done[i]) and release[i] <= t]
        if not ready:
            t = float(min(release[i] for i in range(work.size) if np.isnan(done[i])))
            continue
        i = min(ready, key=lambda k: rank[k])
        later = [release[k] for k in range(work.size) if np.isnan(done[k]) and release[k] > t]
        step = min([rem[i]] + [r - t for r in later])
        rem[i] -= step
        t += step
        if rem[i] <= 1e-12:
            done[i] = t
    return done


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 10)), min_size=1, max_size=7), st.randoms())
def test_srpt_total_completion_is_at_most_any_preemptive_order(rows, rnd):
    release = np.array([r for r, _ in rows], float)
    work = np.array([w for _, w in rows], float)
    rank = list(range(len(rows)))
    rnd.shuffle(rank)
    srpt = srpt_completions(release, work)
    assert (srpt >= release + work - 1e-9).all()
    assert srpt.sum() <= _fixed_priority(release, work, rank).sum() + 1e-9


def test_bound_takes_the_larger_of_ideal_and_srpt():
    jobs = [job("a", 1, submit=0, wall=100, dur=100), job("b", 1, submit=0, wall=100, dur=100)]
    fab = fabric(2, 2)  # 16 GPUs: each job holds 8, both run at once
    b = jct_lower_bound(jobs, len(fab.gpus))
    assert b.ideal_s == 100.0 and b.mean_s == 100.0
    assert b.srpt_s == pytest.approx(75.0)  # 50 s of work each on a 16-GPU machine: done at 50 and 100
    one_host = jct_lower_bound(jobs, 8)  # the second must wait: SRPT (100 + 200) / 2 binds
    assert one_host.mean_s == pytest.approx(150.0) and one_host.srpt_s > one_host.ideal_s
    assert one_host.max_reduction(200.0) == pytest.approx(0.25)


def test_bound_refuses_jobs_without_a_duration_and_an_empty_cluster():
    live = Job(id="x", request=Request(gpus=2), submit=0.0, walltime=10.0)  # as the agent builds them
    with pytest.raises(ConfigError, match="duration"):
        jct_lower_bound([live], 8)
    with pytest.raises(ConfigError, match="cluster_gpus"):
        jct_lower_bound([], 0)


@pytest.mark.parametrize("load,seed", [(0.9, 1), (1.4, 2)])
def test_no_replay_beats_the_bound(load, seed):
    fab = fabric(8, 4)  # 8 hosts x 8 GPUs
    jobs = gang_workload(jobs=150, cluster_gpus=len(fab.gpus), load=load, seed=seed, max_duration_s=4 * 3600.0)
    bound = jct_lower_bound(jobs, len(fab.gpus))
    for make in (slurm_policy, fabric_policy):
        s = summarize(Simulator(fab, make(), jobs, slowdown=Contention(fab)).run())
        assert s["timeouts"] == 0  # the bound is for policies that finish every job
        assert s["mean_jct_s"] >= bound.mean_s - 1e-6, (make.__name__, s["mean_jct_s"], bound)
