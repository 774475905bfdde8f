"""The working data of one scheduling step (:class:`Plan`), kept apart from the step's logic in
:mod:`fabric_hpc.scheduler.core`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler.contract import Job
from fabric_hpc.scheduler.placer import request_key


@dataclass
class Plan:
    """Working data of one step: the state being filled and the timeline of GPU releases."""

    #: the input's state until the step first changes it (:meth:`own`), then the step's copy
    state: ClusterState
    #: computes (walltime end, GPU indices) and the first GPU index (-1: none) of each running job;
    #: called on first use of :attr:`ends` / :attr:`firsts` (steps that place everything, or stop at
    #: a job without searching a reservation, never need the timeline)
    timeline: Callable[[], tuple[list[tuple[float, np.ndarray]], list[int]]] | None = None
    #: (what, request key, tier, reservations overlapping) that found nothing on the current free
    #: GPUs; emptied whenever GPUs are taken or freed (see :class:`Placer`: answers depend only on
    #: the request and the state).
    fails: set[tuple[str, str, str, tuple[int, ...]]] = field(default_factory=set)
    free_n: int = 0  # free GPUs in ``state``
    owned: bool = False  # whether ``state`` is the step's own copy
    #: the first reservation, known to exist but not searched yet: called with ``memo`` (whether the
    #: search may use and fill the scheduler's memo) on the first read of :attr:`resv`
    later: Callable[[bool], None] | None = None
    _resv: list[tuple[float, float, np.ndarray]] = field(default_factory=list)  # (start, end, bool mask)
    _ends: list[tuple[float, np.ndarray]] = field(default_factory=list)
    _firsts: list[int] = field(default_factory=list)

    @property
    def resv(self) -> list[tuple[float, float, np.ndarray]]:
        """(start, end, bool mask) of the reservations given so far (a deferred one searched now)."""
        if self.later is not None:
            later, self.later = self.later, None
            later(True)
        return self._resv

    @property
    def ends(self) -> list[tuple[float, np.ndarray]]:
        """(walltime end, GPU indices): the running jobs, then the jobs started in this step."""
        self._load()
        return self._ends

    @property
    def firsts(self) -> list[int]:
        """First GPU index of each :attr:`ends` entry (-1: none), in step with it: with the owner
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
        self._ends.append((end, idx))
        self._firsts.append(int(idx[0]) if idx.size else -1)

    def _load(self) -> None:
        if self.timeline is not None:
            ends, firsts = self.timeline()
            self.timeline = None
            self._ends[:0], self._firsts[:0] = ends, firsts  # running jobs before this step's starts

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
