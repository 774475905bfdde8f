"""The preemption benefit check asks for a job's wait without preemption only where a lower bound
of it does not already decide (``Scheduler._wait_floor_h``: no start comes before the first release
time or reservation end from now on). The bound never exceeds the wait, and the decisions are the
same with and without it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler import PendingJob, core, fabric_policy
from fabric_hpc.scheduler.apply import snapshot

from .helpers import fabric, job, run_on
from .test_pinned_schedule import CASES, _digest


def _checked(monkeypatch) -> dict[str, int]:
    """Wrap ``_try_preempt``: before each call, the floor is at most the job's real wait."""
    seen = {"asked": 0, "bounded": 0}
    plain = core.Scheduler._try_preempt

    def wrapped(self, job, view, plan, running, out, held=None, spread=None):
        if spread is None:
            floor = self._wait_floor_h(view.now, plan)
            wait = self._wait_h(job, view.now, plan, held)
            seen["asked"] += 1
            if floor is not None:
                seen["bounded"] += 1
                assert floor <= wait or (math.isinf(floor) and math.isinf(wait))
        return plain(self, job, view, plan, running, out, held, spread)

    monkeypatch.setattr(core.Scheduler, "_try_preempt", wrapped)
    return seen


@pytest.mark.parametrize("case", ["fabric-superpod", "fabric-nvl72"])
def test_the_floor_never_exceeds_the_wait(monkeypatch, case):
    make, fab_ref, jobs, load, kw, want, _ = CASES[case]
    seen = _checked(monkeypatch)
    assert _digest(make(), fab_ref, jobs, load, **kw)[0] == want  # the pinned decisions, checks and all
    assert seen["bounded"] > 0  # the workload does ask (preemption with the benefit ratio)


@pytest.mark.parametrize("case", ["fabric-superpod", "fabric-nvl72"])
def test_decisions_without_the_floor_are_the_same(monkeypatch, case):
    make, fab_ref, jobs, load, kw, want, _ = CASES[case]
    monkeypatch.setattr(core.Scheduler, "wait_floor", False)
    assert _digest(make(), fab_ref, jobs, load, **kw)[0] == want


def _full_cluster(starts: list[float], walls: list[float], ckpts: list[float | None], now: float,
                  ratio: float, high: list[int]):
    """8 hosts, each running a whole-host spot gang; high gangs of ``high`` hosts each pending."""
    fab = fabric(hosts=8, per_leaf=2)
    state = ClusterState(fab)
    running = {}
    for k, (start, wall, ckpt) in enumerate(zip(starts, walls, ckpts)):
        j = job(f"s{k}", 1, tier="spot", wall=wall, submit=start, ckpt=ckpt)
        running[j.id] = run_on(state, j, [fab.hosts[k]], start=start)
    pending = {f"h{k}": PendingJob(job(f"h{k}", n, tier="high", submit=now - 60.0 * (k + 1),
                                       wall=3600.0)) for k, n in enumerate(high)}
    policy = fabric_policy(preempt_benefit_ratio=ratio, compact_wait_s=None)
    return policy, snapshot(now, pending, running, state)


def _decisions(policy, view) -> tuple:
    d = policy.schedule(view)
    victims = [(v.job_id, v.for_job, v.gpu_hours_lost) for v in d.preempt]
    return [(j.id, p.gpus) for j, p in d.start], victims, dict(d.reasons)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([-7200.0, -600.0, 0.0, 300.0, 590.0]), min_size=8, max_size=8),
       st.lists(st.sampled_from([600.0, 3600.0, 86_400.0]), min_size=8, max_size=8),
       st.lists(st.sampled_from([None, 60.0, 1800.0]), min_size=8, max_size=8),
       st.sampled_from([0.5, 1.0, 5.0, 20.0]), st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_small_full_clusters_decide_the_same_without_the_floor(starts, walls, ckpts, ratio, high):
    """Spot gangs of any age (some past their walltime), checkpointed or not: the same decisions."""
    now = 600.0
    try:
        core.Scheduler.wait_floor = True
        fast = _decisions(*_full_cluster(starts, walls, ckpts, now, ratio, high))
        core.Scheduler.wait_floor = False
        plain = _decisions(*_full_cluster(starts, walls, ckpts, now, ratio, high))
    finally:
        core.Scheduler.wait_floor = True
    assert fast == plain


def test_the_floor_spares_the_search_on_a_full_cluster(monkeypatch):
    """Spot gangs started 10 minutes ago with 1 h limits and a ratio of 1 (the agent benchmark's
    shape): the wait to their end already outweighs their loss, so no earliest-start search is made
    for the benefit check, and the high gangs still preempt."""
    searches = {"n": 0}
    plain = core.Scheduler._search_earliest

    def counted(self, job, now, plan):
        searches["n"] += 1
        return plain(self, job, now, plan)

    monkeypatch.setattr(core.Scheduler, "_search_earliest", counted)
    args = ([0.0] * 8, [3600.0] * 8, [None] * 8, 600.0, 1.0, [2, 2])
    fast = _decisions(*_full_cluster(*args))
    assert searches["n"] == 0 and len(fast[1]) == 4
    monkeypatch.setattr(core.Scheduler, "wait_floor", False)
    assert _decisions(*_full_cluster(*args)) == fast and searches["n"] > 0
