"""The deterministic discrete-event simulator: replays jobs through a scheduling policy.

Events (a heap ordered by time, then kind — completions before arrivals — then a sequence
number) are job arrivals and run-segment ends (natural end or walltime limit). After every batch
of events at one instant the simulator advances the fairshare ledger, calls the policy's
``schedule`` step (the same code the Slurm agent runs) and applies its decisions: preempted gangs
are released whole and requeued (their progress since the last checkpoint lost, a restore cost paid
on restart), started gangs get exactly the GPUs of their placement. Nothing depends on wall-clock
time or unordered iteration, so the same inputs give the same outputs.

Run time of a segment: ``restore (after a requeue) + remaining work × stretch`` where ``stretch``
comes from :class:`~fabric_hpc.sim.contention.Contention` (the collective-time model with the
other running jobs' traffic) and changes whenever a job that shares network links starts or ends:
the work done so far is kept and the rest runs at the new stretch. A segment that would pass the
job's walltime is ended at the walltime (status ``timeout``), as Slurm does.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler.apply import Cadence, apply_decisions, snapshot
from fabric_hpc.scheduler.caches import offers
from fabric_hpc.scheduler.contract import HoldsJobs, Job, PendingJob, PlacerStats, RunningJob, SchedulingPolicy
from fabric_hpc.scheduler.core import Scheduler
from fabric_hpc.scheduler.idorder import sort_by_time_then_id
from fabric_hpc.scheduler.placer import request_key
from fabric_hpc.scheduler.priority import UsageLedger
from fabric_hpc.sim.contention import Contention
from fabric_hpc.topology import Fabric

_END, _ARRIVE, _WAKE, _HOLD_ENDS = 0, 1, 2, 3


@dataclass
class JobRecord:
    job: Job
    first_start: float | None = None
    end: float | None = None
    status: str = "pending"  # pending | running | done | timeout | rejected
    preemptions: int = 0
    gpu_hours_lost: float = 0.0
    stretch: float = 1.0
    domains: dict[str, int] = field(default_factory=dict)
    hosts: int = 0
    gpus: int = 0  # GPUs the gang held (a whole-host request without a GPU count has job.gpus 0)
    backfilled: bool = False
    run_time: float = 0.0  # wall time spent running (all segments)
    reason: str | None = None  # why a rejected job can never fit the fabric


@dataclass
class _Segment:
    start: float
    end: float
    restore: float
    stretch: float
    token: int
    timeout: bool
    work: float = 0.0  # work this segment is to do (ideal seconds)
    mark: float = 0.0  # since when the current stretch applies (≥ start + restore)
    done: float = 0.0  # work done before ``mark``

    def progress(self, t: float) -> float:
        """Work done by time ``t``."""
        return self.done + max(t - self.mark, 0.0) / self.stretch


@dataclass
class SimResult:
    policy: str
    fabric: str
    gpus: int
    records: list[JobRecord]
    timeline: dict[str, list[float]]
    stats: dict[str, Any]
    state: ClusterState
    peak_state: ClusterState | None = None
    peak_time: float = 0.0
    #: rows of the trace its reader skipped, per reason (``Trace.skipped_by``; empty for a list of jobs)
    skipped_by: dict[str, int] = field(default_factory=dict)


def _check_inputs(fab: Any, policy: Any, jobs: Any) -> None:
    """A Simulator's arguments, checked before anything uses them (a policy name instead of a policy, a
    spec instead of a built fabric, None for the jobs) with a ConfigError naming the fix."""
    if not isinstance(fab, Fabric):
        raise ConfigError(f"simulator: fab must be a built Fabric, not {type(fab).__name__}",
                          hint="fabric_hpc.topology.build(spec) or load(path)")
    if not isinstance(policy, SchedulingPolicy):
        raise ConfigError(f"simulator: policy must be a scheduling policy, not {type(policy).__name__} "
                          f"{policy!r:.40}", hint="e.g. fabric_hpc.scheduler.make_policy('fabric')")
    if isinstance(jobs, (str, bytes)) or not isinstance(jobs, Sequence) \
            or not all(isinstance(j, Job) for j in jobs):
        raise ConfigError(f"simulator: jobs must be a list of scheduler Jobs, not {type(jobs).__name__}",
                          hint="e.g. load_trace('tiresias:FILE') (a list of Jobs)")


class Simulator:
    """``Simulator(fab, policy, jobs).run() -> SimResult`` (see module doc)."""

    def __init__(self, fab: Fabric, policy: SchedulingPolicy, jobs: Sequence[Job], *,
                 slowdown: Contention | None = None, restore_s: float = 300.0,
                 half_life_s: float = 7 * 86_400.0, backfill_interval_s: float = 30.0, progress: bool = False,
                 max_events: int | None = None) -> None:
        _check_inputs(fab, policy, jobs)
        ids = [j.id for j in jobs]
        if len(set(ids)) != len(ids):
            from collections import Counter

            twice = next(i for i, n in Counter(ids).items() if n > 1)
            raise ConfigError(f"simulator: job id {twice[:60]!r} is given more than once", hint="give each job its own id")
        self.fab, self.policy = fab, policy
        skipped = getattr(jobs, "skipped_by", None)
        self.skipped_by = {str(k): int(v) for k, v in skipped.items()} if isinstance(skipped, dict) else {}
        self.jobs = list(jobs)
        sort_by_time_then_id(self.jobs, attrgetter("submit"), attrgetter("id"))  # ties: job 9 before 10
        self.slowdown = slowdown or Contention(fab)
        self.restore_s = restore_s
        self.ledger = UsageLedger(half_life_s)
        self.progress = progress
        self.max_events = max_events
        #: Backfill passes run at most this often (Slurm's ``bf_interval``, default 30 s); the steps
        #: in between are main-scheduler passes (priority order, stop at the first blocked job).
        self.backfill_interval_s = backfill_interval_s
        self.cadence = Cadence(backfill_interval_s)
        self._wake_at: float | None = None
        #: the policy may hold a gang (compact wait): the simulator steps again when the hold ends
        self._holding = offers(policy, HoldsJobs)
        self.state = ClusterState(fab)
        self.records = {j.id: JobRecord(j) for j in self.jobs}
        self.pending: dict[str, PendingJob] = {}
        #: ``list(self.pending.values())`` while the queue is unchanged (None: make it again); never changed
        self._queue: list[PendingJob] | None = None
        self.running: dict[str, RunningJob] = {}
        self.segments: dict[str, _Segment] = {}
        self.now = -math.inf
        self._heap: list[tuple[float, int, int, str, int]] = []
        self._seq = 0
        self._token = 0
        self._by_account: dict[str, int] = {}
        self.timeline: dict[str, list[float]] = {"t": [], "busy": [], "queue": [], "frag_t": [], "frag": []}
        self.steps = 0
        #: GPUs were freed or taken, or the pending jobs' needs changed, since the last fragmentation sample
        self._frag_dirty = True
        self.finished = 0
        self._saved: dict[str, float] = {}
        self.events = 0
        self._host_sizes = np.bincount(fab.index.gpu_host, minlength=len(fab.hosts))
        capacity = int(self._host_sizes.max(initial=0))
        self._host_gpus = capacity
        #: per-host need (see ``_per_host_need``) -> how many pending jobs have it
        self._needs: dict[int, int] = {}
        #: request -> why it never fits (``_never_fits``): keyed by its size when it sets nothing
        #: else (most jobs: no JSON key to build), else by :func:`request_key`
        self._fits: dict[tuple[int, int | None, int | None] | str, str | None] = {}
        #: The cluster state at the busiest moment of the replay (for the topology report).
        self.peak_state: ClusterState | None = None
        self.peak_time = 0.0
        self._peak_busy = -1

    # -- public -------------------------------------------------------------------------------
    def run(self) -> SimResult:
        t0 = time.perf_counter()
        for j in self.jobs:
            self._push(j.submit, _ARRIVE, j.id)
        bar = _Progress(len(self.jobs)) if self.progress else None
        try:
            while self._heap:
                t = self._heap[0][0]
                if t < self.now:
                    raise AssertionError(f"time ran backwards: {t} < {self.now}")
                self.now = t
                self.ledger.advance(t, self._by_account)  # charge the interval that just ended
                step = False
                while self._heap and self._heap[0][0] == t:
                    _, kind, _, job_id, token = heapq.heappop(self._heap)
                    self.events += 1
                    step = self._handle(kind, job_id, token) or step
                if self.pending and step:
                    self._step()
                self._sample()
                if bar:
                    bar.update(self.finished if self.steps % 100 == 0 else None)
                if self.max_events and self.events >= self.max_events:
                    break
        finally:
            if bar:
                bar.close()
        placer = self.policy.placer if isinstance(self.policy, Scheduler) else None
        counted = isinstance(placer, PlacerStats)
        stats = {"events": self.events, "steps": self.steps, "wall_s": time.perf_counter() - t0,
                 "placer_calls": placer.calls if counted else None,
                 "solver_calls": placer.solver_calls if counted else None,
                 "solver_s": placer.solver_s if counted else None}
        return SimResult(self.policy.name, self.fab.name, len(self.fab.gpus), list(self.records.values()),
                         self.timeline, stats, self.state, self.peak_state, self.peak_time,
                         dict(self.skipped_by))

    def _never_fits(self, job: Job) -> str | None:
        """Why ``job`` can never run on this fabric, even on an empty cluster (None if it can):
        :func:`never_fits`, remembered per request (its only input besides the fabric)."""
        r = job.request
        key = (job.gpus, r.nodes, r.gpus_per_node) if r.model_fields_set <= _SIZE_FIELDS else request_key(r)
        if key not in self._fits:
            self._fits[key] = never_fits(job, self.fab, self._host_sizes)
        return self._fits[key]

    # -- events -------------------------------------------------------------------------------
    def _push(self, t: float, kind: int, job_id: str, token: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, kind, self._seq, job_id, token))

    def _handle(self, kind: int, job_id: str, token: int) -> bool:
        """Apply one event; whether it calls for a scheduling step (the end of a hold of a job that
        has started meanwhile does not)."""
        if kind == _WAKE:
            self._wake_at = None
            return True
        if kind == _HOLD_ENDS:  # the policy held this gang for a compact placement until now
            return job_id in self.pending and self._wake_for_hold()
        rec = self.records[job_id]
        if kind == _ARRIVE:
            reason = self._never_fits(rec.job)
            if reason is not None:
                rec.status, rec.reason = "rejected", reason
                return True
            self.pending[job_id] = PendingJob(rec.job, queued_since=self.now)
            self._queue = None
            self._need(rec.job, 1)
            until = self.policy.hold_until(rec.job) if self._holding else None
            if until is not None and until > self.now:
                self._push(until, _HOLD_ENDS, job_id)
            return True
        seg = self.segments.get(job_id)
        if seg is None or seg.token != token:
            return True  # a stale end of a preempted segment
        self._finish(job_id, "timeout" if seg.timeout else "done")
        return True

    def _wake_for_hold(self) -> bool:
        """A held gang is examined by the next scheduler pass, as Slurm's timer-driven backfill would:
        now if a backfill pass is due, else at the next one (unless a wake-up is set already); an
        event before then steps anyway. Whether to step now."""
        due = self.cadence.next_backfill
        if due <= self.now:
            return True
        if self._wake_at is None:
            self._wake_at = due
            self._push(due, _WAKE, "")
        return False

    def _finish(self, job_id: str, status: str) -> None:
        rec = self.records[job_id]
        seg = self.segments.pop(job_id)
        run = self.running.pop(job_id)
        self.state.release(job_id)
        self._frag_dirty = True
        self._by_account[run.job.account] -= len(run.gpus)
        rec.end, rec.status = self.now, status
        self.finished += 1
        rec.run_time += self.now - seg.start
        if status == "done" and seg.work > 0:
            rec.stretch = (self.now - seg.start - seg.restore) / seg.work  # effective, over the segment
        self._restretch(self.slowdown.end(job_id))

    def _step(self) -> None:
        self.steps += 1
        self._compact()
        backfill = self.cadence.backfill(self.now)
        if not backfill and self._wake_at is None:
            self._wake_at = self.cadence.next_backfill
            self._push(self._wake_at, _WAKE, "")
        if self._queue is None:
            self._queue = list(self.pending.values())
        view = snapshot(self.now, self.pending, self.running, self.state, self.ledger.usage(), backfill=backfill,
                        queue=self._queue)
        decisions = self.policy.schedule(view)
        applied = apply_decisions(decisions, self.now, self.state, self.pending, self.running,
                                  requeue=self._requeue)
        if applied.preempted or applied.started:
            self._queue = None
        for run in applied.preempted:
            self._need(run.job, 1)
        for was, run in applied.started:
            self._need(run.job, -1)
            self._started(was, run, run.job.id in decisions.backfilled)

    def _need(self, job: Job, count: int) -> None:
        """Count ``job``'s per-host need in (+1) or out of (-1) the pending jobs' needs."""
        need = _per_host_need(job, self._host_gpus)
        self._frag_dirty = True  # (every start and requeue comes here too)
        left = self._needs.get(need, 0) + count
        if left:
            self._needs[need] = left
        else:
            del self._needs[need]

    def _started(self, pend: PendingJob, run: RunningJob, backfilled: bool) -> None:
        """Bookkeeping of a gang :func:`apply_decisions` started: its run segment and record."""
        job, placement = run.job, run.placement
        assert placement is not None
        rec = self.records[job.id]
        changed = self.slowdown.start(job.id, job, placement.gpus)
        stretch = changed.pop(job.id)
        restore = self.restore_s if pend.requeues else 0.0
        work = max((job.duration if job.duration is not None else job.walltime) - pend.saved_work, 0.0)
        natural = self.now + restore + work * stretch
        limit = self.now + job.walltime
        self._token += 1
        seg = _Segment(self.now, min(natural, limit), restore, stretch, self._token, natural > limit,
                       work, self.now + restore)
        self.segments[job.id] = seg
        self._restretch(changed)
        self._by_account[job.account] = self._by_account.get(job.account, 0) + len(placement.gpus)
        if rec.first_start is None:
            rec.first_start, rec.stretch = self.now, stretch
            rec.domains, rec.hosts, rec.backfilled = dict(placement.domains), len(placement.hosts), backfilled
            rec.gpus = len(placement.gpus)
        rec.status = "running"
        self._push(seg.end, _END, job.id, seg.token)

    def _requeue(self, run: RunningJob, now: float) -> PendingJob:
        """A gang :func:`apply_decisions` evicted: work since its last checkpoint lost, back in the queue."""
        job_id = run.job.id
        seg = self.segments.pop(job_id)
        rec = self.records[job_id]
        self._by_account[run.job.account] -= len(run.gpus)
        self._restretch(self.slowdown.end(job_id))
        elapsed = now - seg.start
        done = seg.progress(now)
        ci = run.job.checkpoint_interval
        saved = math.floor(done / ci) * ci if ci else 0.0
        old_saved = self._saved.get(job_id, 0.0)
        self._saved[job_id] = old_saved + saved
        rec.preemptions += 1
        per_work = (now - seg.start - seg.restore) / done if done > 0 else seg.stretch  # mean stretch
        rec.gpu_hours_lost += len(run.gpus) * (elapsed - saved * per_work) / 3600.0
        rec.run_time += elapsed
        rec.status = "pending"
        return PendingJob(run.job, requeues=rec.preemptions, queued_since=now, saved_work=old_saved + saved)

    def _restretch(self, changed: dict[str, float]) -> None:
        """Running jobs whose stretch changed now: keep the work done, run the rest at the new one."""
        for job_id in sorted(changed):
            seg = self.segments[job_id]
            seg.done, seg.mark = seg.progress(self.now), max(self.now, seg.mark)
            seg.stretch = changed[job_id]
            natural = seg.mark + max(seg.work - seg.done, 0.0) * seg.stretch
            limit = seg.start + self.records[job_id].job.walltime
            self._token += 1
            seg.end, seg.timeout, seg.token = min(natural, limit), natural > limit, self._token
            self._push(seg.end, _END, job_id, seg.token)

    def _compact(self) -> None:
        """ClusterState keeps every job id it ever saw; rebuild it when finished ids dominate."""
        if self.state.known_jobs > 4 * self.state.held_jobs + 512:
            self.state = self.state.compacted()

    def _sample(self) -> None:
        tl = self.timeline
        free = self.state.free
        busy = int(len(self.fab.gpus) - np.count_nonzero(free))
        if busy > self._peak_busy:
            self._peak_busy, self.peak_state, self.peak_time = busy, self.state.copy(), self.now
        tl["t"].append(self.now)
        tl["busy"].append(busy)
        tl["queue"].append(len(self.pending))
        if self.pending and self._frag_dirty:  # a step function: a sample wherever it may have changed
            self._frag_dirty = False
            tl["frag_t"].append(self.now)
            tl["frag"].append(self._fragmentation(free))

    def _fragmentation(self, free: np.ndarray) -> float:
        """Free GPUs no waiting job could use (hosts with fewer free GPUs than the smallest per-host
        demand among pending jobs), as a fraction of all GPUs."""
        need = min(self._needs)
        if need <= 1:  # a one-GPU need fits any free GPU
            return 0.0
        per_host = np.bincount(self.fab.index.gpu_host, weights=free, minlength=len(self.fab.hosts))
        return float(per_host[per_host < need].sum() / len(self.fab.gpus))


_SIZE_FIELDS = frozenset({"nodes", "gpus_per_node", "gpus"})


def never_fits(job: Job, fab: Fabric, host_sizes: np.ndarray | None = None) -> str | None:
    """Why ``job`` can never run on ``fab`` (None if it may fit an empty cluster): its size against
    the hosts' GPU counts (``host_sizes``, computed when None), then the placement's necessary
    conditions with every GPU free (numa_local, within, rail_aligned, ...:
    :func:`fabric_hpc.placement.explain.never_fits`)."""
    from fabric_hpc.placement.explain import never_fits as placement_never_fits

    r = job.request
    sizes = np.bincount(fab.index.gpu_host, minlength=len(fab.hosts)) if host_sizes is None else host_sizes
    total_gpus = len(fab.gpus)
    if job.gpus > total_gpus:
        return f"needs {_n(job.gpus, 'GPU')}, the fabric has {total_gpus}"
    if r.nodes is not None and r.gpus_per_node is not None:
        big = int((sizes >= r.gpus_per_node).sum())
        if big < r.nodes:
            largest = int(sizes.max(initial=0))
            if r.gpus_per_node > largest:
                return f"needs {_n(r.gpus_per_node, 'GPU')} per host, the largest host has {largest}"
            return f"needs {_n(r.nodes, 'host')} with {_n(r.gpus_per_node, 'GPU')}, the fabric has {big}"
    found = placement_never_fits(fab, r)
    return None if found is None else found.message


def _n(count: int, word: str) -> str:
    """``1 GPU``, ``2 GPUs``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _per_host_need(job: Job, host_gpus: int) -> int:
    r = job.request
    if r.nodes is not None:
        return r.gpus_per_node or host_gpus
    return 1 if not r.whole_hosts else host_gpus


class _Progress:
    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                           transient=True)
        self._task = self._p.add_task("replay", total=total)
        self._p.start()

    def update(self, done: int | None) -> None:
        if done is not None:
            self._p.update(self._task, completed=done)

    def close(self) -> None:
        self._p.stop()
