"""Speed-only shortcuts of the scheduler give the answers of the plain code they skip.

* ``may_fit`` (with the fabric levels: the ``max_domains`` check) never says "no" to a request the
  solver can place, so skipping the solver on its "no" changes nothing;
* the examined jobs come in the order of the plain Python sort by (priority, submit time, id), ties
  included;
* a replay with the shortcuts disabled (priority dict instead of ``ranked`` arrays, every examined
  job walked in full, no "no victim set" pre-checks) makes the same decisions.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_hpc.placement import ClusterState, PlacementInfeasible, Request, place
from fabric_hpc.placement.levels import fabric_levels
from fabric_hpc.scheduler import core, fabric_policy, preempt
from fabric_hpc.scheduler.placer import may_fit

from .helpers import fabric
from .test_pinned_schedule import _digest

FAB = fabric(hosts=8, per_leaf=2)
REQUESTS = [Request(nodes=2, gpus_per_node=8), Request(nodes=3, gpus_per_node=4), Request(gpus=12),
            Request(nodes=4, gpus_per_node=8, max_domains=2), Request(nodes=3, gpus_per_node=2, max_domains=1),
            Request(gpus=10, max_domains=1), Request(nodes=2, whole_hosts=True, max_domains=1)]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(REQUESTS), st.lists(st.booleans(), min_size=len(FAB.gpus), max_size=len(FAB.gpus)))
def test_may_fit_never_refuses_a_placeable_request(request, taken):
    state = ClusterState(FAB)
    busy = np.flatnonzero(taken)
    if busy.size:
        state.allocate("other", busy)
    try:
        place(FAB, state, request, solver="greedy")
    except PlacementInfeasible:
        return
    lv = fabric_levels(FAB)
    assert may_fit(request, state.free, FAB.index.gpu_host, lv.host_gpus, lv)


class _DictOnly:
    """A priority policy offering only ``priorities`` (the scheduler's fallback path)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def priorities(self, view):
        return self.inner.priorities(view)


@pytest.mark.parametrize("fab_ref,jobs,load", [("superpod:sus=2", 1000, 1.2)])
def test_replay_without_shortcuts_makes_the_same_decisions(monkeypatch, fab_ref, jobs, load):
    fast = _digest(fabric_policy(), fab_ref, jobs, load)
    plain = fabric_policy()
    plain.priority = _DictOnly(plain.priority)
    monkeypatch.setattr(core.Scheduler, "fast_walk", False)
    monkeypatch.setattr(core.Scheduler, "defer_reservations", False)
    monkeypatch.setattr(preempt, "may_fit", lambda *a, **k: True)
    # no memo of earliest starts either (its key: request, walltime, owners, release times, first GPUs)
    monkeypatch.setattr(core.Scheduler, "_earliest", lambda self, job, now, plan: self._search_earliest(job, now, plan))
    assert _digest(plain, fab_ref, jobs, load) == fast


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, -0.0, 1.0, 2.5, 1e5]), st.sampled_from([0.0, 3.0, 7.0]),
                          st.integers(0, 50)), min_size=0, max_size=40),
       st.sampled_from([1, 2, 5, 100]))
def test_examined_order_equals_the_python_sort(rows, limit):
    pol = fabric_policy(max_job_test=limit)
    ids = [f"j{r[2]:02d}-{k:02d}" for k, r in enumerate(rows)]  # id order is not position order
    prio = np.array([r[0] for r in rows], float)
    submit = np.array([r[1] for r in rows], float)
    pending = list(range(len(rows)))  # stands in for the PendingJob objects
    got = pol._examined(pending, ids, prio, submit)
    want = sorted(range(len(rows)), key=lambda k: (-prio[k], submit[k], ids[k], k))
    assert got == want[:limit]


def _plain_may_fit(request, free, gpu_host, host_gpus, levels=None) -> bool:
    """``may_fit`` before its early returns (every branch through the per-host counts)."""
    least = request.nodes if request.nodes is not None else (request.gpus or 0)
    if request.nodes is not None and request.gpus_per_node is not None:
        least *= request.gpus_per_node
    if np.count_nonzero(free) < least:
        return False
    per_host = np.bincount(gpu_host, weights=free, minlength=host_gpus.size)
    if request.nodes is not None:
        need = request.gpus_per_node
        if request.whole_hosts:
            ok = (per_host == host_gpus) & (host_gpus > 0)
            if need is not None:
                ok &= host_gpus == need
        else:
            ok = per_host >= (need or 1)
        units, want = ok.astype(float), float(request.nodes)
    elif request.whole_hosts:
        units, want = np.where(per_host == host_gpus, per_host, 0.0), float(request.gpus or 0)
    else:
        units, want = per_host, float(request.gpus or 0)
    if float(units.sum()) < want:
        return False
    if levels is None or not request.max_domains or request.max_domains_level not in levels.alias:
        return True
    caps = np.bincount(levels.host_dom[:, levels.alias[request.max_domains_level]], weights=units)
    return float(np.sort(caps)[::-1][: request.max_domains].sum()) >= want


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(REQUESTS + [Request(gpus=3), Request(gpus=20, whole_hosts=True),
                                   Request(nodes=2, gpus_per_node=3)]),
       st.lists(st.booleans(), min_size=len(FAB.gpus), max_size=len(FAB.gpus)), st.booleans())
def test_may_fit_equals_the_plain_check(request, taken, with_levels):
    free = ~np.array(taken)
    lv = fabric_levels(FAB)
    args = (request, free, FAB.index.gpu_host, lv.host_gpus, lv if with_levels else None)
    assert may_fit(*args) == _plain_may_fit(*args)
