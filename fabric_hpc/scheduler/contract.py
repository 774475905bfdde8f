"""The scheduler contract: a pure step function plus small, swappable strategy objects.

Modelled on vLLM v1's scheduler: the scheduler does no I/O and keeps no hidden clock. A driver
(the simulator in :mod:`fabric_hpc.sim`, or the Slurm placement agent) builds a
:class:`SchedulerInput` snapshot, calls :meth:`SchedulingPolicy.schedule` and applies the returned
:class:`Decisions` itself (start jobs on the chosen GPUs, requeue preempted gangs)::

    view = SchedulerInput(now=t, pending=[...], running=[...], state=cluster_state, usage=ledger.usage(t))
    decisions = policy.schedule(view)
    for job, placement in decisions.start: ...          # all-or-nothing: the whole gang, these GPUs
    for victim in decisions.preempt: ...                # whole gangs, requeue them
    decisions.reasons[job_id]                           # why each pending job still waits

``schedule`` never mutates ``view.state`` (it works on copies). The pieces it is built from are
the Protocols below; :class:`fabric_hpc.scheduler.Scheduler` composes them and
:func:`fabric_hpc.scheduler.slurm_policy` / :func:`fabric_hpc.scheduler.fabric_policy` give the
two stock configurations. Times are seconds (floats) on the driver's clock; usage is GPU-seconds.
"""

from __future__ import annotations

import math
import numbers

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.contract import Placement
from fabric_hpc.placement.request import Request

if TYPE_CHECKING:
    from fabric_hpc.placement.state import ClusterState

#: Stock tiers, highest first. ``spot`` gangs may be preempted by ``high`` and ``normal`` gangs.
TIERS: tuple[str, ...] = ("high", "normal", "spot")


@dataclass(frozen=True)
class Tier:
    """A priority tier (a Slurm partition / QOS): its rank in the priority sum and its preemption rights."""

    name: str
    #: Normalised tier factor in [0, 1] (Slurm's PriorityWeightPartition/QOS factor).
    factor: float
    #: Gangs of this tier may be preempted by gangs of a tier listed in ``preempted_by``.
    preemptible: bool = False
    preempted_by: tuple[str, ...] = ()


DEFAULT_TIERS: dict[str, Tier] = {
    "high": Tier("high", 1.0),
    "normal": Tier("normal", 0.5),
    "spot": Tier("spot", 0.0, preemptible=True, preempted_by=("high", "normal")),
}


class UnsetTiers(dict):
    """``DEFAULT_TIERS`` as a policy's default ``tiers`` (a copy): a
    :class:`~fabric_hpc.scheduler.core.Scheduler` replaces it by its own tiers, while tiers a
    policy was given (even equal ones) must agree with the Scheduler's."""


#: (field, check, words) for a Job's numbers: each must also be finite (NaN loops a replay forever)
_JOB_NUMBERS = (("submit", lambda v: True, "a finite number"), ("walltime", lambda v: v > 0, "a finite number > 0"),
                ("duration", lambda v: v >= 0, "a finite number >= 0 (or None)"),
                ("checkpoint_interval", lambda v: v > 0, "a finite number > 0 (or None)"))


@dataclass(frozen=True)
class Job:
    """One gang job. ``request`` is the placement request (``nodes × gpus_per_node`` or ``gpus``)."""

    id: str
    request: Request
    #: Submit time (s).
    submit: float
    #: Requested walltime limit (s): used for reservations; the driver ends the job at this limit.
    walltime: float
    account: str = "default"
    user: str = "user"
    tier: str = "normal"
    #: Actual run time at an ideal placement (s). Simulator only; the Slurm agent leaves it None.
    duration: float | None = None
    #: Seconds between checkpoints (None: never checkpoints, so preemption loses all progress).
    checkpoint_interval: float | None = None
    #: Free-form extras (e.g. ``comm_fraction`` / ``comm_bytes``: the simulator's communication profile).
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ConfigError(f"a job id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.request, Request):
            raise ConfigError(f"job {self.id}: request must be a placement Request (parse_request('gpus=8')), "
                              f"got {type(self.request).__name__}")
        for name, ok, rule in _JOB_NUMBERS:
            v = getattr(self, name)
            if v is None and name in ("duration", "checkpoint_interval"):
                continue
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or not ok(v):
                raise ConfigError(f"job {self.id}: {name} must be {rule} (got {v!r})")

    @cached_property
    def gpus(self) -> int:
        """GPUs the gang holds (0 for ``whole_hosts`` requests without ``gpus_per_node``: unknown)."""
        r = self.request
        if r.nodes is not None:
            return r.nodes * (r.gpus_per_node or 0)
        return int(r.gpus or 0)

    @property
    def nodes(self) -> int | None:
        return self.request.nodes


@dataclass(frozen=True)
class PendingJob:
    """A job waiting to start (first submission or after a requeue)."""

    job: Job
    #: Times the gang was preempted and requeued so far.
    requeues: int = 0
    #: When the job (re-)entered the queue; priority age counts from ``job.submit``.
    queued_since: float | None = None
    #: Work already done and saved by checkpoints (s of ideal run time) — survives a requeue.
    saved_work: float = 0.0


@dataclass(frozen=True)
class RunningJob:
    """A running gang: where it runs and since when."""

    job: Job
    gpus: tuple[str, ...]
    #: Start of the current run segment (after the last (re)start).
    start: float
    #: Time of the last checkpoint taken in this segment (``start`` when none yet).
    last_checkpoint: float | None = None
    placement: Placement | None = None
    #: False: never a preemption victim, whatever its tier (the Slurm agent: a job Slurm will not requeue,
    #: ``--no-requeue`` / ``JobRequeue=0``, or whose requeue Slurm refused).
    preemptible: bool = True

    @property
    def walltime_end(self) -> float:
        """The latest time the job can still run (start + requested walltime): used for reservations."""
        return self.start + self.job.walltime


@dataclass
class SchedulerInput:
    """Everything a scheduling step may look at (a snapshot; the policy must not mutate it)."""

    now: float
    pending: Sequence[PendingJob]
    running: Sequence[RunningJob]
    state: ClusterState
    #: Decayed usage per account (GPU-seconds), e.g. from :class:`fabric_hpc.scheduler.UsageLedger`.
    usage: Mapping[str, float] = field(default_factory=dict)
    #: False for a main-scheduler pass (Slurm's event-driven ``schedule()``): jobs start in priority
    #: order up to the first that cannot; no reservations, no backfill. Drivers run the backfill
    #: pass (True) every ``bf_interval`` like Slurm's sched/backfill.
    backfill: bool = True
    #: Raw fairshare shares per account for this step (e.g. Slurm's ``fairshare=`` from ``sshare``): when
    #: given they replace the fairshare policy's configured shares; None: the configured shares.
    shares: Mapping[str, float] | None = None


@dataclass(frozen=True)
class Reservation:
    """A pending job's planned start: at ``start`` on these GPUs (walltime-based, EASY/conservative)."""

    job_id: str
    start: float
    end: float
    gpus: tuple[str, ...]


@dataclass(frozen=True)
class Preemption:
    """Evict a whole running gang ``job_id`` so that ``for_job`` can start."""

    job_id: str
    for_job: str
    #: GPU-hours of work since the victim's last checkpoint, lost by evicting it now.
    gpu_hours_lost: float


@dataclass
class Decisions:
    """The result of one scheduling step."""

    #: Jobs to start now, each on exactly these GPUs (the whole gang: all-or-nothing).
    start: list[tuple[Job, Placement]] = field(default_factory=list)
    #: Gangs to evict (all of their GPUs) and requeue; applied before ``start``.
    preempt: list[Preemption] = field(default_factory=list)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    #: Why each still-pending job waits (Slurm-style reason words: Priority, Resources, ...).
    reasons: dict[str, str] = field(default_factory=dict)
    #: Started jobs that jumped ahead of a higher-priority blocked job (backfill).
    backfilled: set[str] = field(default_factory=set)
    #: Priority of every pending job this step (higher runs first).
    priorities: dict[str, float] = field(default_factory=dict)


# -- strategy protocols --------------------------------------------------------------------
@runtime_checkable
class FairsharePolicy(Protocol):
    """``factors(view) -> {account: f}`` with f in [0, 1]: 1 = far under its share, 0 = far over."""

    def factors(self, view: SchedulerInput) -> dict[str, float]: ...


@runtime_checkable
class PriorityPolicy(Protocol):
    """``priorities(view) -> {job_id: priority}`` for every pending job; higher starts first."""

    def priorities(self, view: SchedulerInput) -> dict[str, float]: ...


@runtime_checkable
class Placer(Protocol):
    """Chooses GPUs for a gang on a given state, or returns None when it cannot be placed there.

    The answer must depend only on ``job.request`` and ``state`` (not on the job's id, tier or
    times): within one step the scheduler reuses a "no" for another job with the same request on
    the same free GPUs.
    """

    name: str

    def place(self, job: Job, state: ClusterState) -> Placement | None: ...


# -- optional capabilities (fast paths a strategy may offer; checked with isinstance) -----------
@runtime_checkable
class RankedPriority(Protocol):
    """A priority policy that also returns its priorities as arrays (the same numbers as
    ``priorities``): ``ranked(view) -> (job ids, priorities, submit times)`` in ``view.pending`` order; the ids are any
    sequence of strings (a numpy object array in ``MultifactorPriority``)."""

    def ranked(self, view: SchedulerInput) -> tuple[Sequence[str], Any, Any]: ...


@runtime_checkable
class TieredPolicy(Protocol):
    """A priority or preemption policy that reads tiers (``None`` or :class:`UnsetTiers`: left out,
    the Scheduler hands it its own)."""

    tiers: Mapping[str, Tier] | None


@runtime_checkable
class AccountFairshare(Protocol):
    """A fairshare policy whose factors can be computed from the set of accounts present and the
    usage alone (no pass over the pending jobs): ``factors_for(accounts, usage, shares)`` (``shares``: the
    step's :attr:`SchedulerInput.shares`)."""

    def factors_for(self, found: set[str], usage: Mapping[str, float],
                    shares: Mapping[str, float] | None = None) -> dict[str, float]: ...


@runtime_checkable
class GpuFitter(Protocol):
    """A placer that can answer "which GPUs" without building a full Placement (the same GPUs its
    ``place`` would choose): used by reservation and preemption probes."""

    def fit(self, job: Job, state: ClusterState) -> tuple[str, ...] | None: ...


#: What :meth:`CostAwarePreemption.victims_within` answers when its search stopped early (see there).
TOO_COSTLY = "too costly"


@runtime_checkable
class CostAwarePreemption(Protocol):
    """A preemption policy that can stop its search once no answer could be accepted:
    ``victims_within(job, view, state, placer, rejects)`` answers as ``victims`` or, instead,
    :data:`TOO_COSTLY` when ``victims`` would answer None or a victim set whose summed
    ``gpu_hours_lost`` (in victim order) ``rejects`` (a test true from some loss up) refuses.
    The scheduler uses it with ``preempt_benefit_ratio`` (both answers leave the job waiting)."""

    def victims_within(self, job: Job, view: SchedulerInput, state: ClusterState, placer: Placer,
                       rejects: Callable[[float], bool]
                       ) -> tuple[list[Preemption], Placement] | str | None: ...


@runtime_checkable
class KeepsReserved(Protocol):
    """A preemption policy whose ``victims`` and ``victims_within`` take ``reserved=``: a bool mask of
    the GPUs promised to reservations over the job's walltime, which its placement leaves alone even
    where a victim frees them (so it tries another set instead of one landing there). The scheduler
    refuses the answer of any other policy whose placement uses such a GPU."""

    keeps_reserved: bool


@runtime_checkable
class HoldsJobs(Protocol):
    """A policy that may hold a startable job for a while (e.g. a gang waiting for a compact
    placement): ``hold_until(job)`` is when that hold ends (None: never held). A driver that steps
    only on events wakes the policy then, as Slurm's scheduler and the agent run on a timer."""

    def hold_until(self, job: Job) -> float | None: ...


@runtime_checkable
class PlacerStats(Protocol):
    """A placer that counts its work (reported by the simulator's ``stats``)."""

    calls: int
    solver_calls: int
    solver_s: float


@runtime_checkable
class BackfillPolicy(Protocol):
    """How far the scheduler looks past a blocked job.

    ``reservations``: how many blocked jobs get a reservation (0 = strict priority order, no
    backfill; 1 = EASY; a large number = conservative). ``max_job_test``: pending jobs examined
    per step (Slurm's ``bf_max_job_test``).
    """

    name: str
    reservations: int
    max_job_test: int


@runtime_checkable
class PreemptionPolicy(Protocol):
    """For a blocked job, the running gangs to evict (whole gangs) so that it can be placed now.

    Returns ``(victims, placement)`` where ``placement`` is valid on the state with the victims
    released, or None when no allowed victim set frees a placement.
    """

    def victims(self, job: Job, view: SchedulerInput, state: ClusterState,
                placer: Placer) -> tuple[list[Preemption], Placement] | None: ...


@runtime_checkable
class PreemptingPolicy(Protocol):
    """A scheduling policy that says which tiers it has and whether it preempts at all (``None``:
    never): what the Slurm agent's pin rules follow (a waiting gang takes an unstarted pin's hosts
    only where the policy would preempt that pin's tier)."""

    tiers: Mapping[str, Tier]
    preemption: PreemptionPolicy | None


@runtime_checkable
class SchedulingPolicy(Protocol):
    """The step function the simulator and the Slurm agent call."""

    name: str

    def schedule(self, view: SchedulerInput) -> Decisions: ...
