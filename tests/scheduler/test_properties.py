"""Invariants under random workloads (hypothesis): stateful driver of the step function, and replays."""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fabric_hpc.placement import ClusterState, Request
from fabric_hpc.scheduler import (Backfill, ClassicFairshare, GangPreemption, Job, MultifactorPriority, PendingJob,
                                  RunningJob, Scheduler, SchedulerInput, SolverPlacer, UsageLedger)
from fabric_hpc.scheduler.apply import apply_decisions
from fabric_hpc.sim import Simulator, summarize
from tests.scheduler.helpers import fabric

FAB = fabric(8, 4)  # 2 leaves x 4 hosts x 8 GPUs


class _ArbitraryOrder:
    """Any user priority policy: a fixed pseudo-random order of job ids that ignores tiers (so a
    spot gang may rank above the high gang that preempts it)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def priorities(self, view: SchedulerInput) -> dict[str, float]:
        return {p.job.id: float(zlib.crc32(f"{self.seed}:{p.job.id}".encode())) for p in view.pending}


def _policy(kind: str, order: int | None = None) -> Scheduler:
    bf = {"easy": Backfill.easy(), "conservative": Backfill.conservative(20), "none": Backfill.none()}[kind]
    solver = "slurm-tree" if kind == "none" else "greedy"
    prio = MultifactorPriority() if order is None else _ArbitraryOrder(order)
    return Scheduler(kind, prio, SolverPlacer(solver), bf, GangPreemption(restore_s=30))


job_specs = st.tuples(st.sampled_from([(1, 1), (1, 4), (1, 8), (2, 8), (3, 8), (4, 8), (6, 8)]),
                      st.integers(10, 300), st.floats(0.1, 1.0), st.sampled_from(["high", "normal", "spot"]),
                      st.sampled_from(["a", "b", "c"]))


def _job(i: int, spec, now: float) -> Job:
    (nodes, gpn), wall, frac, tier, acct = spec
    return Job(id=f"j{i}", request=Request(nodes=nodes, gpus_per_node=gpn), submit=now, walltime=float(wall),
               duration=wall * frac, tier=tier, account=acct)


class SchedulerMachine(RuleBasedStateMachine):
    """A tiny driver: submit, advance the clock (jobs end at their duration), schedule and apply."""

    def __init__(self) -> None:
        super().__init__()
        self.state = ClusterState(FAB)
        self.now = 0.0
        self.pending: dict[str, PendingJob] = {}
        self.running: dict[str, tuple[RunningJob, float]] = {}
        self.n = 0
        self.policy = _policy("easy")
        self.ledger = UsageLedger(3600)

    @rule(kind=st.sampled_from(["easy", "conservative", "none"]), order=st.none() | st.integers(0, 99))
    def switch_policy(self, kind, order):
        self.policy = _policy(kind, order)

    @rule(spec=job_specs)
    def submit(self, spec):
        self.n += 1
        j = _job(self.n, spec, self.now)
        self.pending[j.id] = PendingJob(j)

    @rule(dt=st.floats(0, 200))
    def advance(self, dt):
        before = self.now
        self.now += dt
        assert self.now >= before
        for jid, (r, end) in sorted(self.running.items()):
            if end <= self.now:
                self.state.release(jid)
                del self.running[jid]
        self.ledger.advance(self.now, {})

    @precondition(lambda self: self.pending)
    @rule()
    def schedule(self):
        view = SchedulerInput(self.now, list(self.pending.values()), [r for r, _ in self.running.values()],
                              self.state, self.ledger.usage())
        busy_before = self.state.owner.copy()
        d = self.policy.schedule(view)
        assert np.array_equal(busy_before, self.state.owner), "schedule() mutated its input"
        for r in d.reservations.values():
            assert r.start >= self.now
        for job, p in d.start:  # a backfilled job never delays a reservation
            if job.id in d.backfilled:
                for r in d.reservations.values():
                    assert set(p.gpus).isdisjoint(r.gpus) or self.now + job.walltime <= r.start
            assert len(p.gpus) == job.gpus  # the whole gang
        assert {v.job_id for v in d.preempt} <= set(self.running), "only running gangs are preempted"
        running = {jid: r for jid, (r, _) in self.running.items()}
        applied = apply_decisions(d, self.now, self.state, self.pending, running)  # the drivers' code
        for r in applied.preempted:
            assert r.job.tier == "spot"
            assert self.pending[r.job.id].requeues == 1 and not self.state.holds(r.job.id)
        ends = {jid: end for jid, (_, end) in self.running.items() if jid in running}
        for _, rj in applied.started:
            assert rj.start == self.now and self.state.job_gpus(rj.job.id) == sorted(rj.gpus, key=FAB.gpu_pos.get)
            ends[rj.job.id] = self.now + min(rj.job.duration or rj.job.walltime, rj.job.walltime)
        self.running = {jid: (r, ends[jid]) for jid, r in running.items()}

    @invariant()
    def no_gpu_double_booked(self):
        seen: set[str] = set()
        for r, _ in self.running.values():
            assert seen.isdisjoint(r.gpus)
            seen |= set(r.gpus)
        assert len(seen) == int((self.state.owner >= 0).sum())


TestSchedulerMachine = SchedulerMachine.TestCase
TestSchedulerMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(st.tuples(job_specs, st.floats(0, 400)), min_size=1, max_size=40),
       kind=st.sampled_from(["easy", "conservative", "none"]))
def test_replay_every_job_finishes_and_time_moves_forward(specs, kind):
    jobs, t = [], 0.0
    for i, (spec, gap) in enumerate(specs):
        t += gap
        jobs.append(_job(i, spec, t))
    res = Simulator(FAB, _policy(kind), jobs, restore_s=30).run()
    assert all(r.end is not None for r in res.records), "a job starved: no events left while it waits"
    assert all(r.job.submit <= r.first_start <= r.end for r in res.records)
    assert all(a <= b for a, b in zip(res.timeline["t"], res.timeline["t"][1:], strict=False))
    assert max(res.timeline["busy"]) <= len(FAB.gpus)


@pytest.mark.parametrize("shares", [{"a": 1, "b": 1}, {"a": 3, "b": 1}, {"a": 1, "b": 4}])
def test_fairshare_converges_to_shares_under_saturation(shares):
    fab = fabric(2, 2, gpus=4)  # 8 GPUs
    jobs = [Job(id=f"{acct}{i:04d}", request=Request(nodes=1, gpus_per_node=1), submit=0.0, walltime=100.0,
                duration=100.0, account=acct) for acct in ("a", "b") for i in range(500)]
    prio = MultifactorPriority(weight_age=0, weight_size=0, fairshare=ClassicFairshare(shares))
    pol = Scheduler("fs", prio, SolverPlacer("greedy"), Backfill.easy(20))
    res = Simulator(fab, pol, jobs, half_life_s=600.0).run()
    want = shares["a"] / (shares["a"] + shares["b"])
    # GPU-seconds per account over a window where both still have a backlog
    lo, hi = 1000.0, 4000.0
    used = {"a": 0.0, "b": 0.0}
    for r in res.records:
        s, e = r.first_start, r.end
        used[r.job.account] += max(0.0, min(e, hi) - max(s, lo))
    got = used["a"] / (used["a"] + used["b"])
    assert got == pytest.approx(want, abs=0.05)
    assert summarize(res)["finished"] == 1000


class _Recorder:
    """Wraps a policy and remembers every reservation it promised."""

    def __init__(self, inner: Scheduler) -> None:
        self.inner, self.name, self.promised = inner, inner.name, []

    def schedule(self, view):
        d = self.inner.schedule(view)
        self.promised.extend((view.now, r) for r in d.reservations.values())
        return d


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(st.tuples(job_specs, st.floats(0, 200)), min_size=2, max_size=40))
def test_reservations_are_kept_under_fifo(specs):
    """EASY: with FIFO priority (newcomers never overtake) and run time <= walltime, every job starts
    no later than any reservation it was promised: backfilling never delayed it. (Conservative
    reservations are re-planned every pass, so only the head's promise is firm; see docs.)"""
    jobs, t = [], 0.0
    for i, (spec, gap) in enumerate(specs):
        t += gap
        jobs.append(_job(i, spec, t))
    fifo = MultifactorPriority(weight_fairshare=0, weight_size=0, weight_tier=0, weight_age=1000)
    rec = _Recorder(Scheduler("fifo", fifo, SolverPlacer("greedy"), Backfill.easy(50)))
    res = Simulator(FAB, rec, jobs, max_events=50_000).run()
    assert res.stats["events"] < 50_000, "the replay did not terminate"
    start = {r.job.id: r.first_start for r in res.records}
    for made_at, r in rec.promised:
        assert start[r.job_id] <= r.start + 1e-9, (made_at, r)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(running=st.lists(st.sampled_from([1, 2, 4]), max_size=4), pending=st.lists(job_specs, min_size=1, max_size=8),
       order=st.integers(0, 99))
def test_one_step_never_starts_and_evicts_the_same_gang(running, pending, order):
    """Whatever the priority order, a step's victims are gangs that were running before it."""
    state = ClusterState(FAB)
    hosts = iter(FAB.hosts)
    gangs = []
    for k, nodes in enumerate(running):
        on = [next(hosts, None) for _ in range(nodes)]
        if None in on:
            break
        j = Job(id=f"r{k}", request=Request(nodes=nodes, gpus_per_node=8), submit=0.0, walltime=1000.0,
                duration=1000.0, tier="spot")
        gpus = tuple(g for h in on for g in FAB.host_gpus(h))
        state.allocate(j.id, gpus)
        gangs.append(RunningJob(j, gpus, 0.0, 0.0))
    jobs = [PendingJob(_job(i, spec, 10.0)) for i, spec in enumerate(pending)]
    d = _policy("easy", order).schedule(SchedulerInput(10.0, jobs, gangs, state))
    evicted = {v.job_id for v in d.preempt}
    assert evicted <= {g.job.id for g in gangs}
    assert evicted.isdisjoint(j.id for j, _ in d.start)


def test_a_job_past_its_walltime_still_gives_the_top_job_its_reservation():
    """On a live cluster a job may run past its time limit (OverTimeLimit, UNLIMITED read as 1 h):
    its GPUs are released "now" for the reservation search; without them the top job had no
    reservation and a 10-hour job was backfilled onto its GPUs."""
    from fabric_hpc.placement import ClusterState
    from fabric_hpc.placement.request import Request
    from fabric_hpc.scheduler import Job, PendingJob, RunningJob, SchedulerInput, slurm_policy
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("leaf-spine:hosts=4,hosts_per_leaf=2")
    nodes = lambda n: Request(nodes=n, gpus_per_node=8)  # noqa: E731
    for now in (50.0, 200.0):  # before and after the running job's walltime end (100)
        state = ClusterState(fab)
        state.allocate("r1", fab.gpus[:24])
        running = [RunningJob(Job("r1", nodes(3), 0.0, 100.0), tuple(fab.gpus[:24]), 0.0)]
        pending = [PendingJob(Job("A", nodes(4), 0.0, 3600.0, tier="high")),
                   PendingJob(Job("B", nodes(1), 0.0, 36000.0))]
        d = slurm_policy().schedule(SchedulerInput(now, pending, running, state))
        assert [j.id for j, _ in d.start] == [] and not d.backfilled, now
        assert d.reservations["A"].start == max(now, 100.0)


@pytest.mark.parametrize("make, kwargs, needle", [
    ("fabric", {"max_job_test": 0}, "max_job_test must be a whole number >= 1"),
    ("slurm", {"max_job_test": 1.5}, "max_job_test"),
    ("fabric", {"weight_walltime": float("nan")}, "weight_walltime must be a finite number"),
    ("fabric", {"shares": {"llm": -1}}, "shares['llm']"),
    ("fabric", {"compact_wait_s": -5}, "compact_wait_s"),
    ("fabric", {"preempt_benefit_ratio": float("nan")}, "preempt_benefit_ratio"),
    ("fabric", {"restore_s": -300}, "restore_s"),
    ("fabric", {"cpsat_time_limit_s": 0}, "cpsat_time_limit_s must be a finite number > 0"),
    ("fabric", {"preempting_tiers": "high"}, "preempting_tiers must be a list"),
    ("slurm", {"backfill": "none"}, "the slurm policy takes no backfill"),
])
def test_policy_parameters_are_checked_by_name(make, kwargs, needle):
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.scheduler.policies import make_policy

    with pytest.raises(ConfigError, match=re.escape(needle)):
        make_policy(make, **kwargs)


@pytest.mark.parametrize("field, value", [("submit", float("nan")), ("walltime", float("inf")), ("walltime", 0),
                                          ("duration", float("nan")), ("duration", -1),
                                          ("checkpoint_interval", -1000), ("checkpoint_interval", float("nan")),
                                          ("walltime", "100"), ("id", 7), ("id", "")])
def test_job_numbers_are_finite_and_in_range(field, value):
    """A NaN submit or duration looped the simulator forever; a negative checkpoint interval gave
    negative GPU-hours lost."""
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.placement.request import Request
    from fabric_hpc.scheduler import Job

    args = {"id": "a", "request": Request(gpus=1), "submit": 0.0, "walltime": 100.0, "duration": 10.0}
    with pytest.raises(ConfigError, match=re.escape(field) if field != "id" else "job id"):
        Job(**{**args, field: value})
    assert Job(**args, checkpoint_interval=None).walltime == 100.0
