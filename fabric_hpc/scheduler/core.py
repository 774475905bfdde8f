"""The scheduling step: priority order, all-or-nothing gang starts, backfill with reservations, preemption.

One call of :meth:`Scheduler.schedule` walks the pending jobs in priority order (ties: submit
time, then id) and for each one, on a private copy of the cluster state:

1. *start now* if the whole gang can be placed on GPUs that are free and not promised to a
   reservation overlapping ``[now, now + walltime)`` (all-or-nothing: one placement for all ranks);
2. else *preempt* if the job's tier may evict spot gangs and the preemption policy finds a victim
   set that frees a valid placement (the victims' GPUs go to this job in the same step);
3. else, while the backfill policy allows more reservations (EASY: 1, conservative: many), give it a
   *reservation*: the earliest time ``t`` at which, with running jobs ended at their walltime
   limits and earlier reservations honoured over ``[t, t + walltime)``, the gang can be placed —
   and the GPUs it would get. Later (lower-priority) jobs start now only on GPUs outside every
   reservation that overlaps their own walltime, so a backfilled job never delays a reservation.

With ``reservations == 0`` (no backfill), or in a main-scheduler pass (``view.backfill`` False),
the walk stops at the first job that cannot start. With ``compact_wait_s`` a multi-host gang that
has waited less than that only accepts a compact placement (reason ``Topology`` meanwhile, no
reservation). With ``preempt_benefit_ratio`` preemption happens only when the waiting it saves
(gang GPUs × time to the earliest start without it) outweighs the victims' lost GPU-hours; a
held gang's earliest start without it is at the latest its earliest start on any placement after the
hold. A held gang that fits the free GPUs now preempts only for the run time it would lose there
(the simulator's stretch, :mod:`fabric_hpc.scheduler.slowdown`): when that alone pays for the
victims' lost GPU-hours and, with the wait to its hold's end, passes the ratio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, is_dataclass, replace
from functools import cache, partial
from operator import attrgetter
from typing import ClassVar

import numpy as np

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import Placement
from fabric_hpc.placement.levels import fabric_levels
from fabric_hpc.scheduler.caches import StepCaches, offers
from fabric_hpc.scheduler.idorder import id_key
from fabric_hpc.scheduler.contract import (DEFAULT_TIERS, TOO_COSTLY, BackfillPolicy, CostAwarePreemption,
                                           Decisions, Job, KeepsReserved, Placer, PreemptionPolicy,
                                           PriorityPolicy, RankedPriority, SchedulerInput, Tier, TieredPolicy,
                                           UnsetTiers)
from fabric_hpc.scheduler.placer import (compact_job, free_in_reach, gang_gpus, masked_state, may_fit,
                                         request_key)
from fabric_hpc.scheduler.plan import Plan as _Plan, late_reservations
from fabric_hpc.scheduler.starts import EarliestStarts
from fabric_hpc.scheduler.slowdown import stretch_loss

_JOB_ID = attrgetter("job.id")


@dataclass(frozen=True)
class Backfill:
    """Backfill configuration (a :class:`~fabric_hpc.scheduler.contract.BackfillPolicy`).

    ``Backfill.easy()`` (Slurm's ``sched/backfill`` as EASY: one reservation),
    ``Backfill.conservative()`` (every examined blocked job gets one), ``Backfill.none()``.
    ``max_job_test`` is Slurm's ``bf_max_job_test`` (pending jobs examined per step).
    """

    name: str = "easy"
    reservations: int = 1
    max_job_test: int = 100

    @classmethod
    def easy(cls, max_job_test: int = 100) -> Backfill:
        return cls("easy", 1, max_job_test)

    @classmethod
    def conservative(cls, max_job_test: int = 100) -> Backfill:
        return cls("conservative", max_job_test, max_job_test)

    @classmethod
    def none(cls, max_job_test: int = 100) -> Backfill:
        return cls("none", 0, max_job_test)


@dataclass
class Scheduler(EarliestStarts):
    """A :class:`~fabric_hpc.scheduler.contract.SchedulingPolicy` composed of strategy objects."""

    name: str
    priority: PriorityPolicy
    placer: Placer
    backfill: BackfillPolicy = field(default_factory=Backfill.easy)
    preemption: PreemptionPolicy | None = None
    #: The one source of tiers: a priority or preemption policy built without its own ``tiers``
    #: gets a copy of itself holding these; one given others is refused (see ``_bind_tiers``).
    tiers: dict[str, Tier] = field(default_factory=lambda: dict(DEFAULT_TIERS))
    #: Topology-aware admission: a multi-host gang that has waited less than this (s) starts only on
    #: a compact placement (fewest domains of the lowest multi-host level); None: take any placement.
    compact_wait_s: float | None = None
    #: Preempt only when the waiting avoided (gang GPUs × time to its earliest start without
    #: preemption) is at least this many times the GPU-hours the victims lose. 0: always preempt.
    preempt_benefit_ratio: float = 0.0
    #: Skip, after a blocked job, the jobs the walk could only give a reason (see ``_walk``). A
    #: speed switch (the tests turn it off to check that the decisions do not change).
    fast_walk: ClassVar[bool] = True
    #: Search the last reservation a pass may give only when a later job or the driver reads it,
    #: where its existence is known without it (see ``_will_find``). A speed switch, as above.
    defer_reservations: ClassVar[bool] = True

    def __post_init__(self) -> None:
        #: everything remembered between steps (bounded; decisions never depend on it)
        self.caches = StepCaches()
        self._fab: object = None  # the fabric the caches are about
        self._ids: list[str] = []  # the job ids of the walk's running gangs (``_walk``, ``_evict``)
        self._fixed: tuple[str, ...] | None = None  # those of them not preemptible (``_try_preempt``)
        _check_tiers(self.tiers)
        self.priority = _bind_tiers(self.priority, self.tiers, "priority", _factors)
        if self.preemption is not None:
            self.preemption = _bind_tiers(self.preemption, self.tiers, "preemption", _rights)

    def schedule(self, view: SchedulerInput) -> Decisions:
        """One scheduling step: rank the first ``max_job_test`` pending jobs by priority; start each
        gang the placer fits now (all its GPUs or nothing; multi-host gangs may wait for a compact
        placement, ``compact_wait_s``), else preempt spot gangs for it where the tiers allow, else
        reserve for it (up to the backfill's reservations) and let later jobs backfill around them.
        ``view.state`` is not changed (the step fills its own copy); the :class:`Decisions` say what
        to start, preempt and reserve, and why every other pending job waits."""
        if view.state.fab is not self._fab:  # one policy object reused on another fabric
            self.caches.clear()
            self._fab = view.state.fab
        self._trim_compact(view.pending)
        ids, prio, submit = self._priorities(view)
        if np.isnan(prio).any():  # it would sort anywhere and cut the examined jobs at random
            bad = ids[int(np.flatnonzero(np.isnan(prio))[0])]
            raise ConfigError(f"the priority policy gave job {bad!r} a NaN priority",
                              hint="give it finite weights, usage and shares")
        out = Decisions()
        plan = _Plan(view.state, timeline=lambda: self.caches.releases.update(
            view.running if isinstance(view.running, list) else list(view.running), view.state.fab.gpu_pos))
        plan.free_n = int(np.count_nonzero(plan.state.free))
        blocked_before = self._walk(self._examined(view.pending, ids, prio, submit), view, plan, out)
        if plan.deferred is not None:  # no decision needed that search: made if the driver reads it
            out.reservations = LazyDict(partial(late_reservations, plan.detached()))  # type: ignore[arg-type]
        # every pending job's priority and reason, built when first read (a driver that reads
        # neither, like the simulator, then pays nothing per pending job)
        out.priorities = LazyDict(lambda: dict(zip(ids, prio.tolist())))  # type: ignore[assignment]
        out.reasons = LazyDict(partial(_all_reasons, ids, "Priority" if blocked_before else "Resources",
                                       out.reasons, [j.id for j, _ in out.start]))  # type: ignore[assignment]
        return out

    def _walk(self, examined: list, view: SchedulerInput, plan: _Plan, out: Decisions) -> bool:
        """Start, preempt for or reserve each examined job in order; True if one was blocked."""
        running = list(view.running)  # preemption candidates: never a gang started in this step
        self._ids, self._fixed = [], None  # read (``_walk_ids``, ``_try_preempt``) where a job may preempt
        victims_for = self._victim_tiers(running)
        reservations = self.backfill.reservations if view.backfill else 0
        now, fab, wait = view.now, view.state.fab, self.compact_wait_s
        blocked_before = skip = False  # skip: the fast path below is on and no reservation is left
        for pending in examined:
            job = pending.job
            if blocked_before:
                if reservations == 0:
                    break
                # fast path, the outcome of the full walk below: the job is too big for the free
                # GPUs, may not preempt, and no reservation is left to give, so its reason is the
                # default one ("Priority", also for a held job: no placement exists, compact or not)
                if skip and job.gpus > plan.free_n and job.tier not in victims_for:
                    continue
            # ``now - submit < wait``: the first test of ``_holds``, without the calls
            hold = self._compact_hold(job, now, fab) if wait is not None and now - job.submit < wait else None
            placement = self._try_now(hold or job, now, plan)
            if placement is None and job.tier in victims_for:
                # a held job that fits the free GPUs now (``spread``) starts there when its hold ends
                spread = self._try_now(job, now, plan) if hold is not None else None
                placement = self._try_preempt(hold or job, view, plan, running, out, job if hold else None,
                                              spread)
                if placement is not None:  # ``running`` changes only when victims were evicted
                    victims_for = self._victim_tiers(running)
            if placement is not None:
                self._commit(job, placement, now, plan, out)
                if blocked_before:
                    out.backfilled.add(job.id)
                continue
            if hold is not None and job.gpus <= plan.free_n \
                    and job.gpus <= free_in_reach(job.request, plan.state.free, fab):
                # its GPUs are free in number on the hosts it may use: it waits for a compact placement,
                # holds nothing meanwhile; else no placement exists at all, and it is blocked as any job
                # (reservation, backfill)
                out.reasons[job.id] = "Topology"
                continue
            if len(out.reservations) + (plan.deferred is not None) < reservations:
                if (self.defer_reservations and not plan._resv and reservations - len(out.reservations) == 1
                        and self._will_find(job, view, plan)):
                    # the last reservation allowed, and it exists: searched only when something reads it
                    plan.deferred = (job, now, self._reserve, out.reservations)
                else:
                    resv = self._reserve(job, view.now, plan)
                    if resv is not None:
                        out.reservations[job.id] = resv
            out.reasons[job.id] = "Priority" if blocked_before else "Resources"
            blocked_before = True
            skip = self.fast_walk and len(out.reservations) + (plan.deferred is not None) >= reservations
        return blocked_before

    def _priorities(self, view: SchedulerInput) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(ids, priorities, submit times) of ``view.pending`` as arrays: from the priority policy's
        ``ranked`` where it has one (the same numbers as its ``priorities``), else from the dict."""
        if offers(self.priority, RankedPriority):
            return self.priority.ranked(view)
        by_id = self.priority.priorities(view)
        ids = list(map(_JOB_ID, view.pending))
        submit = np.array([p.job.submit for p in view.pending], float)
        return ids, np.fromiter(map(by_id.__getitem__, ids), float, len(ids)), submit

    def _examined(self, pending, ids: list[str], prio: np.ndarray, submit: np.ndarray) -> list:
        """The first ``max_job_test`` pending jobs in priority order (ties: submit time, then id)."""
        limit = self.backfill.max_job_test
        cand = None
        if len(ids) > limit > 0:  # only jobs at least as high as the limit-th priority can be in it
            cand = np.flatnonzero(prio >= np.partition(prio, len(ids) - limit)[len(ids) - limit])
            prio, submit = prio[cand], submit[cand]
        neg = -prio  # (exact: a sign flip)
        order = np.lexsort((submit, neg))  # by priority, then submit time (stable)
        a, b = neg[order], submit[order]
        pos = order if cand is None else cand[order]  # positions in ``pending``
        if np.count_nonzero((a[1:] == a[:-1]) & (b[1:] == b[:-1])):  # a full tie: the job id decides
            n = pos.tolist()
            keys = sorted(zip(a.tolist(), b.tolist(), [id_key(ids[k]) for k in n], n))
            return [pending[k[3]] for k in keys[:limit]]
        return list(map(pending.__getitem__, pos[:limit].tolist()))

    def _victim_tiers(self, running: list) -> set[str]:
        """Tiers that may preempt at least one running gang (none without a preemption policy)."""
        out: set[str] = set()
        if self.preemption is None:
            return out
        for tier in self.caches.running_tiers.update(running):
            t = self.tiers.get(tier)
            if t is not None and t.preemptible:
                out.update(t.preempted_by)
        return out

    # -- pieces -----------------------------------------------------------------------------
    def _try_now(self, job: Job, now: float, plan: _Plan) -> Placement | None:
        if job.gpus > plan.free_n:  # may_fit's first test, without building a key
            return None
        if plan.deferred is not None:  # a job that cannot fit the free GPUs needs no reservation searched
            free_key = ("free", request_key(job.request))
            if free_key in plan.fails:
                return None
            lv = fabric_levels(plan.state.fab)
            if not may_fit(job.request, plan.state.free, plan.state.fab.index.gpu_host, lv.host_gpus, lv):
                plan.fails.add(free_key)  # (emptied, as the others, when GPUs are taken or freed)
                return None
        key = plan.fail_key("now", job, now, now + job.walltime)
        if key in plan.fails:
            return None
        placement = self._place_now(job, now, plan)
        if placement is None:
            plan.fails.add(key)
        return placement

    def _place_now(self, job: Job, now: float, plan: _Plan) -> Placement | None:
        blocked = plan.blocked(now, now + job.walltime)
        if not blocked.any():
            return self.placer.place(job, plan.state)
        lv = fabric_levels(plan.state.fab)
        if not may_fit(job.request, plan.state.free & ~blocked, plan.state.fab.index.gpu_host, lv.host_gpus, lv):
            return None
        return self.placer.place(job, masked_state(plan.state, blocked))

    def _commit(self, job: Job, placement: Placement, now: float, plan: _Plan, out: Decisions) -> None:
        if plan.state.holds(job.id):  # an O(1) check where it matters: the gang would start twice
            raise ConfigError(f"job {job.id!r} is in the step's input twice (pending twice, or pending and "
                              "running)", hint="give each job once: build the input with scheduler.snapshot "
                                               "from pending and running jobs keyed by id")
        pos = plan.state.fab.gpu_pos
        idx = np.fromiter(map(pos.__getitem__, placement.gpus), np.int64, count=len(placement.gpus))
        plan.own().allocate(job.id, idx, **job.request.parallel_meta())
        plan.fails.clear()
        plan.free_n -= idx.size
        plan.add_end(now + job.walltime, idx)
        out.start.append((job, placement))

    def _try_preempt(self, job: Job, view: SchedulerInput, plan: _Plan, running: list,
                     out: Decisions, held: Job | None = None,
                     spread: Placement | None = None) -> Placement | None:
        """Evict victims for ``job`` (for a held job its compact copy, ``held`` the job itself, and
        ``spread`` its placement on the free GPUs now if it has one)."""
        key = plan.fail_key("preempt", job, view.now, view.now + job.walltime)
        if key in plan.fails:
            return None
        blocked = plan.blocked(view.now, view.now + job.walltime)
        state = masked_state(plan.state, blocked) if blocked.any() else plan.state
        # "no victim set" depends on the request, tier, GPUs and running gangs (their ids in order, and
        # which may not be preempted), not on the time (costs only rank the sets that work), so it is
        # remembered across steps too
        if self._fixed is None:  # (no victim is among them: the same from the walk's start on)
            self._fixed = tuple(r.job.id for r in running if not r.preemptible)
        keeps = blocked.any() and offers(self.preemption, KeepsReserved)  # reserved GPUs victims hold too
        seen = (key[1], key[2], state.owner.tobytes(), tuple(self._walk_ids(running)), self._fixed,
                np.packbits(blocked).tobytes() if keeps else b"")
        if seen in self.caches.no_victims:
            plan.fails.add(key)
            return None
        sub = SchedulerInput(view.now, view.pending, running, state, view.usage, shares=view.shares)
        checked = self.preempt_benefit_ratio > 0 or spread is not None
        costly = self._benefit_test(job, view.now, plan, held, spread)
        if costly is None:  # holding out for a compact placement loses no run time: nothing pays
            plan.fails.add(key)
            return None
        if checked and offers(self.preemption, CostAwarePreemption):  # may skip sets that cannot pay off
            found = self.preemption.victims_within(  # type: ignore[union-attr]
                job, sub, state, self.placer, costly, **({"reserved": blocked} if keeps else {}))
            if found is TOO_COSTLY:  # None or a refused set: the job waits either way (see below)
                plan.fails.add(key)
                return None
        else:
            found = self.preemption.victims(  # type: ignore[union-attr]
                job, sub, state, self.placer, **({"reserved": blocked} if keeps else {}))
        if found is None:
            plan.fails.add(key)
            self.caches.no_victims.put(seen, True)
            return None
        victims, placement = found
        if blocked.any() and not keeps:  # never take GPUs promised to a reservation (victims may hold some)
            pos = plan.state.fab.gpu_pos
            if blocked[[pos[g] for g in placement.gpus]].any():
                return None
        if checked:
            if costly(sum(v.gpu_hours_lost for v in victims)):
                plan.fails.add(key)  # the same victims again until the allocation changes
                return None
        self._evict(victims, plan, running)
        out.preempt.extend(victims)
        return placement

    def _benefit_test(self, job: Job, now: float, plan: _Plan, held: Job | None,
                      spread: Placement | None) -> Callable[[float], bool] | None:
        """Whether victims losing that many GPU-hours cost more than preempting saves ``job`` (see
        ``preempt_benefit_ratio``); None where nothing can pay (a held job that loses no run time on
        ``spread``)."""
        ratio, gpus = self.preempt_benefit_ratio, gang_gpus(job, plan.state.fab)
        if spread is None:
            wait_h = cache(partial(self._wait_h, job, now, plan, held))  # a search: only when asked
            floor_h = cache(partial(self._wait_floor_h, now, plan))

            def costly(lost: float) -> bool:  # (no search where a lower bound of the wait decides)
                floor = floor_h()
                if floor is not None and gpus * floor >= ratio * lost:
                    return False
                return gpus * wait_h() < ratio * lost
            return costly
        # the run time lost on ``spread`` (stretch, alone) must pay for the victims' loss by itself
        loss = stretch_loss(plan.state.fab, held, spread.gpus, self.caches.stretch)
        run_h = held.walltime / 3600 * loss  # type: ignore[union-attr]
        end = held.submit + self.compact_wait_s  # type: ignore[operator, union-attr]
        hold_h = max(0.0, end - now) / 3600
        if run_h <= 0:
            return None
        return lambda lost: gpus * run_h <= lost or gpus * (hold_h + run_h) < ratio * lost

    def _walk_ids(self, running: list) -> list[str]:
        """The ids of the walk's ``running`` gangs, in order (kept by ``_walk`` and ``_evict``)."""
        if len(self._ids) != len(running):  # (first read in the walk, or not the walk's list)
            self._ids[:] = [r.job.id for r in running]
        return self._ids

    def _evict(self, victims: list, plan: _Plan, running: list) -> None:
        """Release the victims' GPUs in the step's state and drop them from ``running`` and the timeline."""
        gone = {v.job_id for v in victims}
        for v in victims:
            plan.own().release(v.job_id)
        plan.fails.clear()
        plan.free_n = int(np.count_nonzero(plan.state.free))
        ids = self._walk_ids(running)
        for k in sorted((k for j in gone for k in _positions(ids, j)), reverse=True):
            del running[k], ids[k]  # the few victims out, the others kept in order
        at, firsts, idx = plan.at, plan.firsts, plan.idx  # releases of GPUs still held (in step)
        first = np.array(firsts, np.int64)
        drop = np.flatnonzero((first >= 0) & (plan.state.owner[first] < 0)).tolist()
        for k in reversed(drop):  # the victims' few releases out, the others kept in order
            del at[k], firsts[k], idx[k]

    def hold_until(self, job: Job) -> float | None:
        """When the compact-placement hold of ``job`` ends (None: it is never held)."""
        return job.submit + self.compact_wait_s if self._holds(job, job.submit) else None

    def _holds(self, job: Job, now: float) -> bool:
        """Whether ``job`` may still wait for a compact placement (see ``compact_wait_s``)."""
        r = job.request
        return not (self.compact_wait_s is None or r.nodes is None or r.nodes < 2 or r.within or r.max_domains
                    or now - job.submit >= self.compact_wait_s)

    def _trim_compact(self, pending: Sequence) -> None:
        """Drop the compact copies of jobs no longer pending once they outnumber the pending ones (twice,
        plus a slack): a driver that builds new job objects every step (the Slurm agent) never hits an
        entry of a job gone, and a long-running one would otherwise keep one per gang it ever held."""
        memo = self.caches.compact
        if len(memo) > 2 * len(pending) + 64:
            live = {p.job.id for p in pending}
            memo.keep({k: v for k, v in memo.data.items() if k in live})

    def _compact_hold(self, job: Job, now: float, fab) -> Job | None:
        """The job with a compact-placement constraint while it may still wait for one, else None."""
        if not self._holds(job, now):
            return None
        hit = self.caches.compact.get(job.id)
        if hit is not None and hit[0] is job and hit[1] is fab:  # same job object: same constrained copy
            return hit[2]
        held = compact_job(job, fab)
        self.caches.compact.put(job.id, (job, fab, held))
        return held


def _positions(ids: list[str], job_id: str) -> list[int]:
    """Where ``job_id`` is in ``ids`` (``list.index`` from each found place on: a C scan)."""
    out: list[int] = []
    try:
        while True:
            out.append(ids.index(job_id, out[-1] + 1 if out else 0))
    except ValueError:
        return out


def _check_tiers(tiers: object) -> None:
    """ConfigError unless ``tiers`` maps each tier's name to its :class:`Tier` (as DEFAULT_TIERS)."""
    if not isinstance(tiers, Mapping) or not all(
            isinstance(t, Tier) and t.name == name for name, t in tiers.items()):
        raise ConfigError(f"Scheduler(tiers=...) takes a mapping of tier names to their Tier, not "
                          f"{str(tiers)[:80]}",
                          hint="e.g. Scheduler(..., tiers={t.name: t for t in my_tiers}), as DEFAULT_TIERS")


def _factors(tiers: dict[str, Tier]) -> dict[str, float]:
    """What a priority policy reads of the tiers: each one's factor."""
    return {name: t.factor for name, t in tiers.items()}


def _rights(tiers: dict[str, Tier]) -> dict[str, tuple]:
    """What a preemption policy reads of the tiers: who may preempt whom."""
    return {name: (t.preemptible, tuple(t.preempted_by)) for name, t in tiers.items() if t is not None}


def _bind_tiers(policy, tiers: dict[str, Tier], role: str, read: Callable[[dict], dict]):
    """``policy`` reading ``tiers``: a copy holding them where its ``tiers`` were left out (None or
    :class:`UnsetTiers`; its own object is left as it was, so it may serve another scheduler), itself
    where it was given tiers that agree with them in what it reads (or has no ``tiers``); given tiers
    that disagree are a ConfigError."""
    own = policy.tiers if isinstance(policy, TieredPolicy) else tiers
    if own is None or isinstance(own, UnsetTiers):
        return replace(policy, tiers=tiers) if is_dataclass(policy) else policy
    if read(dict(own)) != read(dict(tiers)):
        raise ConfigError(f"the {role} policy's tiers ({', '.join(own)}) differ from the Scheduler's "
                          f"({', '.join(tiers)})",
                          hint=f"give the tiers once, as Scheduler(tiers=...): it hands them to a {role} "
                               f"policy built without tiers of its own")
    return policy


def _all_reasons(ids, default: str, examined: dict[str, str], started: list[str]) -> dict[str, str]:
    """Reasons of every job still pending: ``default`` for those the walk did not examine."""
    reasons = dict.fromkeys(ids, default)
    reasons.update(examined)
    for job_id in started:
        del reasons[job_id]
    return reasons


class LazyDict(MutableMapping):
    """A dict computed by ``build()`` on first use (then an ordinary mapping over it)."""

    def __init__(self, build: Callable[[], dict]) -> None:
        self._build: Callable[[], dict] | None = build
        self._data: dict = {}

    def _dict(self) -> dict:
        if self._build is not None:
            self._data, self._build = self._build(), None
        return self._data

    def __getitem__(self, key):
        return self._dict()[key]

    def __setitem__(self, key, value) -> None:
        self._dict()[key] = value

    def __delitem__(self, key) -> None:
        del self._dict()[key]

    def __iter__(self) -> Iterator:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __repr__(self) -> str:
        return repr(self._dict())
