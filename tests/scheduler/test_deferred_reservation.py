"""A backfill pass that defers its reservation search decides as the plain pass.

With ``Scheduler.defer_reservations`` the last reservation a pass may give (EASY's only one) is
searched only when a later job could use free GPUs, a preemption attempt or the driver reads it,
where the placer fitting the job with every running gang's GPUs released proves that the search
finds a start. On random states the starts, evictions, backfills, reasons and reservations (read
after the step, also after the driver changed its state) equal those of the plain pass.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric_hpc.placement import ClusterState, Request
from fabric_hpc.scheduler import Job, PendingJob, RunningJob, SchedulerInput, core, fabric_policy
from fabric_hpc.scheduler.apply import apply_decisions

from .helpers import fabric

FAB = fabric(8, 2)  # 4 leaves x 2 hosts x 8 GPUs
SHAPES = [(1, 1), (1, 2), (1, 4), (1, 8), (2, 8), (3, 8), (4, 4), (6, 8)]

running_st = st.lists(st.tuples(st.integers(0, 7), st.sampled_from([1, 2, 4, 8]), st.integers(1, 40),
                                st.sampled_from(["normal", "spot"])), max_size=10)
pending_st = st.lists(st.tuples(st.sampled_from(SHAPES), st.integers(1, 40),
                                st.sampled_from(["high", "normal", "spot"]), st.integers(0, 500)),
                      min_size=1, max_size=14)


def _input(running_spec, pending_spec, now: float) -> SchedulerInput:
    state, running = ClusterState(FAB), []
    for k, (host, gpus, wall, tier) in enumerate(running_spec):
        free = [g for g in FAB.host_gpus(FAB.hosts[host]) if state.free[FAB.gpu_pos[g]]][:gpus]
        if len(free) < gpus:
            continue
        job = Job(id=f"r{k}", request=Request(gpus=gpus), submit=0.0, walltime=wall * 100.0, tier=tier)
        state.allocate(job.id, free)
        running.append(RunningJob(job, tuple(free), 0.0, 0.0))
    pending = [PendingJob(Job(id=f"p{k}", request=Request(nodes=n, gpus_per_node=g), submit=float(sub),
                              walltime=wall * 60.0, tier=tier, account="ab"[k % 2]))
               for k, ((n, g), wall, tier, sub) in enumerate(pending_spec)]
    return SchedulerInput(now, pending, running, state, {"a": 10.0, "b": 3.0}, backfill=True)


def _decide(view: SchedulerInput, defer: bool, monkeypatch) -> tuple:
    monkeypatch.setattr(core.Scheduler, "defer_reservations", defer)
    out = fabric_policy(compact_wait_s=None).schedule(view)
    return ([(j.id, p.gpus) for j, p in out.start], [(v.job_id, v.for_job) for v in out.preempt],
            sorted(out.backfilled), dict(out.reasons),
            {k: (r.start, r.end, r.gpus) for k, r in out.reservations.items()})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(running_st, pending_st, st.sampled_from([0.0, 700.0, 5000.0]))
def test_deferred_reservation_decides_as_the_plain_search(monkeypatch, running, pending, now):
    view = _input(running, pending, now)
    assert _decide(view, True, monkeypatch) == _decide(view, False, monkeypatch)


def test_a_deferred_reservation_read_after_the_driver_moved_on():
    # the top job (16 GPUs) waits for the running 8-GPU gangs; nothing else fits: its search is deferred
    running = [(h, 8, 10 + h, "normal") for h in range(7)]
    pending = [((2, 8), 5, "high", 0), ((2, 8), 5, "normal", 1)]
    view = _input(running, pending, now=0.0)
    policy = fabric_policy(compact_wait_s=None)
    out = policy.schedule(view)
    assert out.start == [] and isinstance(out.reservations, core.LazyDict)
    for run in view.running:  # the driver changes its state before reading the reservation
        view.state.release(run.job.id)
    plain = fabric_policy(compact_wait_s=None)
    plain.defer_reservations = False
    want = plain.schedule(_input(running, pending, now=0.0))
    assert {k: (r.start, r.gpus) for k, r in out.reservations.items()} == \
        {k: (r.start, r.gpus) for k, r in want.reservations.items()}
    assert list(out.reservations) == ["p0"] and out.reservations["p0"].start == 1000.0


@pytest.mark.parametrize("defer", [True, False])
def test_decisions_apply_the_same_with_and_without_deferral(monkeypatch, defer):
    # one job needs every host (a reservation at the last release); the small one starts beside the gangs
    view = _input([(0, 8, 5, "spot"), (1, 4, 9, "normal")],
                  [((8, 8), 3, "normal", 0), ((1, 4), 1, "normal", 2)], now=10.0)
    monkeypatch.setattr(core.Scheduler, "defer_reservations", defer)
    out = fabric_policy(compact_wait_s=None).schedule(view)
    pending = {p.job.id: p for p in view.pending}
    running = {r.job.id: r for r in view.running}
    applied = apply_decisions(out, view.now, view.state.copy(), pending, running)
    assert [r.job.id for _, r in applied.started] == ["p1"] and "p0" in out.reservations
    assert out.reservations["p0"].start == 900.0  # the last release
