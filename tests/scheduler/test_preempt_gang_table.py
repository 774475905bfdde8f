"""The running gangs' arrays that gang preemption keeps from one call to the next are those it would
build anew: after victims leave, a gang joins, the order changes, time passes, a gang becomes
unpreemptible or releases its GPUs, or the fabric changes (issue 21: the agent's cycle at scale)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fabric_hpc.placement import ClusterState, Request
from fabric_hpc.scheduler import GangPreemption, Job, PendingJob, RunningJob, SchedulerInput
from fabric_hpc.scheduler.preempt import _unique
from fabric_hpc.topology import build, generators

FAB = build(generators.leaf_spine(hosts=8, hosts_per_leaf=2, gpus=8))
NOW = 10_000.0


def _running(fab, tiers=("spot", "spot", "normal", "spot")) -> tuple[ClusterState, list[RunningJob]]:
    st, out = ClusterState(fab), []
    for k, host in enumerate(fab.hosts):
        gpus = tuple(fab.host_gpus(host)[: 8 if k % 3 else 4])
        j = Job(id=f"r{k}", request=Request(nodes=1, gpus_per_node=len(gpus)), submit=0.0, walltime=9_000.0,
                tier=tiers[k % len(tiers)], checkpoint_interval=600.0 if k % 2 else None)
        st.allocate(j.id, gpus)
        out.append(RunningJob(j, gpus, NOW - 300.0 * (k + 1)))
    return st, out


JOB = Job(id="p", request=Request(nodes=2, gpus_per_node=8), submit=0.0, walltime=3600.0, tier="high")


def _same(kept: GangPreemption, running: list[RunningJob], st: ClusterState, now: float = NOW) -> None:
    """``kept`` (asked before) answers what a new policy object answers."""
    view = SchedulerInput(now, [PendingJob(JOB)], running, st)
    got, want = kept._candidates(JOB, view, st), GangPreemption()._candidates(JOB, view, st)
    if want is None:
        assert got is None
        return
    assert [id(r) for r in got.runs] == [id(r) for r in want.runs]
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(got.idx, want.idx, strict=True))
    for name in ("gpu", "of", "size", "cost"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name


def test_victims_leaving_cut_the_kept_arrays_down():
    st, running = _running(FAB)
    p = GangPreemption()
    _same(p, running, st)
    for gone in (running[1], running[4]):  # as the scheduler evicts: released, dropped from the list
        st.release(gone.job.id)
        running.remove(gone)
        _same(p, running, st)
    assert p._index.last is not None and len(p._index.last.c.runs) == len(running)


def test_a_new_gang_a_new_order_or_a_new_time_builds_them_anew():
    st, running = _running(FAB)
    p = GangPreemption()
    _same(p, running, st)
    extra = Job(id="x", request=Request(nodes=1, gpus_per_node=4), submit=0.0, walltime=9_000.0, tier="spot")
    st.release(running[0].job.id)
    gpus = tuple(FAB.host_gpus(FAB.hosts[0])[:4])
    st.allocate("x", gpus)
    running = [RunningJob(extra, gpus, NOW - 60.0), *running[1:]]
    _same(p, running, st)
    running.reverse()
    _same(p, running, st)
    _same(p, running, st, now=NOW + 1234.0)  # the costs are those of the new time


def test_unpreemptible_released_and_other_tiers_are_left_out():
    st, running = _running(FAB)
    p = GangPreemption()
    _same(p, running, st)
    running[2] = replace(running[2], preemptible=False)  # a requeue Slurm refused
    _same(p, running, st)
    st.release(running[5].job.id)  # still listed, holds nothing
    _same(p, running, st)
    st2, normal = _running(FAB, tiers=("normal",))
    _same(p, normal, st2)  # no candidate at all


def test_another_fabric_builds_them_anew():
    st, running = _running(FAB)
    p = GangPreemption()
    _same(p, running, st)
    other = build(generators.leaf_spine(hosts=8, hosts_per_leaf=4, gpus=8))
    st2, running2 = _running(other)
    _same(p, running2, st2)
    _same(p, running, st)


def test_a_gang_on_gpus_the_fabric_lacks_is_left_out_unless_a_candidate():
    st, running = _running(FAB)
    stray = RunningJob(Job(id="y", request=Request(nodes=1, gpus_per_node=1), submit=0.0, walltime=10.0,
                           tier="normal"), ("nowhere/gpu0",), NOW - 5.0)
    p = GangPreemption()
    _same(p, [*running, stray], st)  # not a candidate of a high job: ignored, as before


@pytest.mark.parametrize("keys", [[], [3], [1, 1, 2, 5, 5, 5, 9], [5, 1, 5, 2], [2, 2, 2], [-4, -4, 0, 7]])
def test_unique_is_numpys(keys):
    a = np.array(keys, np.int64)
    got = _unique(a)
    assert got.dtype == np.unique(a).dtype and np.array_equal(got, np.unique(a))


def test_holding_is_holds_of_each():
    st, running = _running(FAB)
    st.release(running[3].job.id)
    ids = [r.job.id for r in running] + ["never"]
    assert st.holding(ids).tolist() == [st.holds(j) for j in ids]
    assert st.holding([]).dtype == bool and st.holding([]).size == 0


@pytest.mark.parametrize("request_", [Request(nodes=2, gpus_per_node=8), Request(nodes=3, gpus_per_node=4),
                                      Request(nodes=2, whole_hosts=True), Request(nodes=5, gpus_per_node=2)])
def test_host_pairs_kept_with_the_arrays_give_the_same_bound(request_):
    """The whole-fabric bound of ``_hosts_loss`` from the (candidate, host) pairs kept with the arrays
    (cut down with them) equals the bound from the candidates' GPUs."""
    from fabric_hpc.placement.levels import fabric_levels
    from fabric_hpc.scheduler.preempt import _hosts_loss

    st, running = _running(FAB)
    st.allocate("fill", [g for g, free in zip(FAB.gpus, st.free) if free])  # no host can take a rank now
    p, lv, gpu_host = GangPreemption(), fabric_levels(FAB), FAB.index.gpu_host
    job = replace(JOB, request=request_)
    for gone in (None, running[2], running[5]):
        if gone is not None:  # evicted, its GPUs taken again at once (still no host free)
            st.release(gone.job.id)
            st.allocate(f"then-{gone.job.id}", gone.gpus)
            running.remove(gone)
        c = p._candidates(job, SchedulerInput(NOW, [PendingJob(job)], running, st), st)
        for _ in range(2):  # made, then kept
            fast = _hosts_loss(request_, st.free, c.gpu, c.of, c, lv, gpu_host)
            assert fast == _hosts_loss(request_, st.free, c.gpu.copy(), c.of, c, lv, gpu_host)
        assert c.pairs is not None


def test_host_pairs_are_numpys_unique_counts():
    from fabric_hpc.placement.levels import fabric_levels
    from fabric_hpc.scheduler.preempt import _Candidates, _host_pairs

    st, running = _running(FAB)
    c = GangPreemption()._candidates(JOB, SchedulerInput(NOW, [PendingJob(JOB)], running, st), st)
    nh, gpu_host = fabric_levels(FAB).host_gpus.size, FAB.index.gpu_host
    for gpu in (c.gpu, c.gpu[::-1].copy(), c.gpu[:0]):  # in order, against it, none
        of = c.of[: gpu.size] if gpu.size else c.of[:0]
        probe = _Candidates(c.runs, c.idx, gpu, of, c.size, c.cost)
        keys, count = np.unique(of * nh + gpu_host[gpu], return_counts=True)
        who, where, n = _host_pairs(probe, nh, gpu_host)
        assert who.tolist() == (keys // nh).tolist() and where.tolist() == (keys % nh).tolist()
        assert n.tolist() == count.tolist()


def test_one_scheduler_reused_across_steps_decides_as_fresh_ones():
    """The gang arrays and the walk's running ids are the step's own: a scheduler (and its preemption
    policy) asked step after step, about other running gangs each time, decides as new ones."""
    import random

    from fabric_hpc.scheduler import Backfill, MultifactorPriority, Scheduler, SolverPlacer
    from fabric_hpc.scheduler.core import _positions
    from fabric_hpc.scheduler.record import decisions_digest

    from .test_preempt_oracle import FABS, REQUESTS, _state

    def policy():
        return Scheduler("p", MultifactorPriority(), SolverPlacer("greedy"), Backfill.easy(),
                         GangPreemption())

    kept, preempted = policy(), 0
    for seed in range(10):
        fab, rng, now = FABS["superpod"], random.Random(2000 + seed), 10_000.0 + seed
        st, running = _state(fab, rng, now)
        pending = [PendingJob(Job(id=f"p{q}", request=rng.choice(REQUESTS), submit=float(q), walltime=3600.0,
                                  tier=rng.choice(["high", "normal", "spot"]))) for q in range(24)]
        view = SchedulerInput(now, pending, running, st)
        want = decisions_digest(policy().schedule(view))
        assert decisions_digest(kept.schedule(view)) == want, seed
        assert decisions_digest(kept.schedule(view)) == want, seed  # the same step again
        preempted += len(want["preempt"])
    assert preempted > 0
    assert _positions(["a", "b", "a", "c"], "a") == [0, 2] and _positions(["a"], "z") == []
