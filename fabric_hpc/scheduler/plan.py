"""Working data of one scheduling step (:class:`Plan`): the state being filled, the timeline of GPU
releases, the reservations made, and the placements known to fail on the current free GPUs."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler.contract import Job, Reservation
from fabric_hpc.scheduler.placer import request_key


@dataclass
class Plan:
    """Working data of one step: the state being filled and the timeline of GPU releases."""

    #: the input's state until the step first changes it (:meth:`own`), then the step's copy
    state: ClusterState
    #: gives the running jobs' (walltime ends ascending, first GPU indices, GPU indices)
    #: (:class:`~fabric_hpc.scheduler.caches.Releases`); called on first use of :attr:`at` /
    #: :attr:`idx` / :attr:`firsts` (steps that place everything, or stop at a job without
    #: searching a reservation, never need the timeline)
    timeline: Callable[[], tuple[list[float], list[int], list[np.ndarray]]] | None = None
    _resv: list[tuple[float, float, np.ndarray]] = field(default_factory=list)  # (start, end, bool mask)
    #: a reservation whose search waits until something reads :attr:`resv`: (job, now, the search
    #: giving a Reservation or None, the dict it goes into); see ``Scheduler.defer_reservations``
    deferred: tuple[Job, float, Callable, dict] | None = None
    #: (what, request key, tier, reservations overlapping) that found nothing on the current free
    #: GPUs; emptied whenever GPUs are taken or freed (see :class:`Placer`: answers depend only on
    #: the request and the state).
    fails: set[tuple[str, str, str, tuple[int, ...]]] = field(default_factory=set)
    free_n: int = 0  # free GPUs in ``state``
    owned: bool = False  # whether ``state`` is the step's own copy
    #: this step's starts as (walltime end, first GPU, GPU indices) until the timeline is loaded
    _added: list[tuple[float, int, np.ndarray]] = field(default_factory=list)
    _at: list[float] = field(default_factory=list)
    _firsts: list[int] = field(default_factory=list)
    _idx: list[np.ndarray] = field(default_factory=list)

    @property
    def resv(self) -> list[tuple[float, float, np.ndarray]]:
        """The reservations made so far as (start, end, bool mask of their GPUs); a deferred one is
        searched for first (its search reads this plan as it is now: nothing changed it since)."""
        if self.deferred is not None:
            job, now, search, into = self.deferred
            self.deferred = None
            found = search(job, now, self)
            if found is not None:
                into[job.id] = found
        return self._resv

    def detached(self) -> Plan:
        """This plan's reservation inputs, kept after the step (the driver may change the input's
        state): a copy of the owners and the loaded timeline; for a deferred search read later."""
        state = ClusterState.from_free_mask(self.state.fab, self.state.free)
        state.owner = self.state.owner.copy()
        self._load()
        return Plan(state, None, list(self._resv), deferred=self.deferred, _at=self._at,
                    _firsts=self._firsts, _idx=self._idx)

    @property
    def at(self) -> list[float]:
        """When each gang still holding GPUs releases them (its walltime end), ascending: the running
        jobs and the jobs started in this step."""
        self._load()
        return self._at

    @property
    def idx(self) -> list[np.ndarray]:
        """The GPU indices each :attr:`at` entry releases."""
        self._load()
        return self._idx

    @property
    def firsts(self) -> list[int]:
        """First GPU index of each :attr:`at` entry (-1: none), in step with it: with the owner
        array it identifies which GPUs each release time frees (the memo key of ``_earliest``)."""
        self._load()
        return self._firsts

    def own(self) -> ClusterState:
        """The state to change: copied on first use (a step that starts and evicts nothing, most
        steps of a long queue, copies nothing)."""
        if not self.owned:
            self.state, self.owned = self.state.copy(), True
        return self.state

    def add_end(self, end: float, idx: np.ndarray) -> None:
        """A job started in this step: it releases ``idx`` at ``end`` (the timeline stays unread)."""
        self._added.append((end, int(idx[0]) if idx.size else -1, idx))
        if self.timeline is None:
            self._insert()

    def _load(self) -> None:
        if self.timeline is not None:
            self._at, self._firsts, self._idx = self.timeline()
            self.timeline = None
            self._insert()

    def _insert(self) -> None:
        """Put this step's starts into the loaded timeline, in time order (after equal times)."""
        for end, first, idx in self._added:
            k = bisect_right(self._at, end)
            self._at.insert(k, end)
            self._firsts.insert(k, first)
            self._idx.insert(k, idx)
        self._added.clear()

    def fail_key(self, what: str, job: Job, t0: float, t1: float) -> tuple[str, str, str, tuple[int, ...]]:
        resv = self.resv
        if len(resv) > 1:
            overlap = tuple(n for n, (s, e, _) in enumerate(resv) if s < t1 and t0 < e)
        else:  # none or one (EASY): the same tuple without a generator
            overlap = (0,) if resv and resv[0][0] < t1 and t0 < resv[0][1] else ()
        return what, request_key(job.request), job.tier if what == "preempt" else "", overlap

    def blocked(self, t0: float, t1: float) -> np.ndarray:
        mask = np.zeros(self.state.owner.size, bool)
        for s, e, m in self.resv:
            if s < t1 and t0 < e:
                mask |= m
        return mask


def late_reservations(plan: Plan) -> dict[str, Reservation]:
    """The step's reservations with the deferred one searched (on the plan kept after the step)."""
    assert plan.deferred is not None
    into = plan.deferred[3]
    plan.resv  # noqa: B018 (searches)
    return into
