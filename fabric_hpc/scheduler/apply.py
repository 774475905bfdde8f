"""The driver's side of a step, shared by the simulator, the Slurm agent and the property tests.

:func:`snapshot` builds the :class:`SchedulerInput` of a step from the driver's pending and running
jobs; :func:`apply_decisions` applies a step's :class:`Decisions` to them: preemptions first (each
victim's GPUs released whole, the gang requeued), then starts (each gang gets exactly the GPUs of
its placement, all of them or an error). :class:`Cadence` says which steps are backfill passes.
What a driver does beyond that (the simulator's run segments, the agent's ``scontrol`` calls) it
does with the returned :class:`Applied`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field

from fabric_hpc.errors import FabricError
from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler.contract import Decisions, PendingJob, RunningJob, SchedulerInput


def snapshot(now: float, pending: Mapping[str, PendingJob], running: Mapping[str, RunningJob],
             state: ClusterState, usage: Mapping[str, float] | None = None, *,
             backfill: bool = True, shares: Mapping[str, float] | None = None,
             queue: list[PendingJob] | None = None) -> SchedulerInput:
    """The input of one step: the pending and running jobs in the driver's order. ``queue``: a
    list the driver already made of ``pending.values()`` (unchanged since), used as is; the
    driver must not change it afterwards (the simulator keeps one while its queue is unchanged)."""
    return SchedulerInput(now, list(pending.values()) if queue is None else queue, list(running.values()), state,
                          dict(usage or {}), backfill=backfill, shares=None if shares is None else dict(shares))


def requeue_plain(run: RunningJob, now: float) -> PendingJob:
    """A preempted gang back in the queue, requeued (``requeues=1``), no work saved. Drivers that
    count requeues or model checkpoints (the simulator) pass their own ``requeue``."""
    return PendingJob(run.job, requeues=1, queued_since=now)


@dataclass
class Applied:
    """What :func:`apply_decisions` changed: the evicted gangs and the started ones (each with the
    pending entry it left), in decision order."""

    preempted: list[RunningJob] = field(default_factory=list)
    started: list[tuple[PendingJob, RunningJob]] = field(default_factory=list)


def apply_decisions(decisions: Decisions, now: float, state: ClusterState,
                    pending: MutableMapping[str, PendingJob], running: MutableMapping[str, RunningJob], *,
                    requeue: Callable[[RunningJob, float], PendingJob] | None = None) -> Applied:
    """Apply ``decisions`` in place: victims released and requeued, then starts allocated.

    ``requeue(run, now)`` makes the pending entry of an evicted gang (default :func:`requeue_plain`).
    A victim that is not running, a start that is not pending, or a placement on
    a GPU that is not free is a bug of the step: :class:`FabricError` (nothing after it applied).
    """
    out = Applied()
    for victim in decisions.preempt:
        run = running.pop(victim.job_id, None)
        if run is None:
            raise FabricError(f"step preempted job {victim.job_id}, which is not running")
        state.release(victim.job_id)
        pending[victim.job_id] = (requeue or requeue_plain)(run, now)
        out.preempted.append(run)
    for job, placement in decisions.start:
        if job.id not in pending:
            raise FabricError(f"step started job {job.id}, which is not pending")
        state.allocate(job.id, placement.gpus, **job.request.parallel_meta())  # raises if a GPU is not free
        was = pending.pop(job.id)
        run = RunningJob(job, tuple(placement.gpus), now, now, placement)
        running[job.id] = run
        out.started.append((was, run))
    return out


@dataclass
class Cadence:
    """Which steps are backfill passes: at most one every ``backfill_interval_s`` (Slurm's
    ``bf_interval``), main passes (priority order, stop at the first blocked job) in between.
    ``backfill_interval_s = 0``: every step is a backfill pass."""

    backfill_interval_s: float = 30.0
    last: float = -math.inf

    def backfill(self, now: float) -> bool:
        """Whether the step at ``now`` is a backfill pass (and remember it if so)."""
        if now >= self.last + self.backfill_interval_s:
            self.last = now
            return True
        return False

    @property
    def next_backfill(self) -> float:
        """When the next backfill pass is due."""
        return self.last + self.backfill_interval_s
