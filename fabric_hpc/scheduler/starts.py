"""When a blocked job could start without preemption: the earliest-start search of reservations and
of the preemption benefit check (a mixin of :class:`~fabric_hpc.scheduler.core.Scheduler`).

The search walks the release times of the running gangs (their walltime ends) and the ends of the
reservations already made, from ``now`` on, and asks the placer at each for the GPUs free by then
outside overlapping reservations. Its answer is remembered across steps while the allocation and the
release times are unchanged (``StepCaches.starts``); :meth:`EarliestStarts._wait_floor_h` bounds it
from below without a search, which is all the benefit check needs where the first release is far.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from typing import ClassVar

import numpy as np

from fabric_hpc.placement import ClusterState
from fabric_hpc.placement.levels import fabric_levels
from fabric_hpc.scheduler.caches import StepCaches
from fabric_hpc.scheduler.contract import Job, Placer, Reservation, SchedulerInput
from fabric_hpc.scheduler.placer import fit_gpus, may_fit, request_key
from fabric_hpc.scheduler.plan import Plan as _Plan


class EarliestStarts:
    """The earliest-start searches of a scheduler with ``placer``, ``caches`` and ``compact_wait_s``."""

    placer: Placer
    caches: StepCaches
    compact_wait_s: float | None
    #: Bound the benefit check's wait from below before searching it (a speed switch, as
    #: ``Scheduler.fast_walk``: the tests turn it off to check that the decisions do not change).
    wait_floor: ClassVar[bool] = True

    def _wait_h(self, job: Job, now: float, plan: _Plan, held: Job | None = None) -> float:
        """Hours from ``now`` to the earliest start of ``job`` without preemption (inf: none). A job
        held for a compact placement (``job`` its compact copy, ``held`` the job) starts at the
        earlier of its earliest compact start and, once its hold has ended, its earliest start on
        any placement: the hold caps the wait, not the compact start."""
        earliest = self._earliest(job, now, plan)
        t = earliest[0] if earliest is not None else float("inf")
        if held is not None and self.compact_wait_s is not None:
            anywhere = self._earliest(held, now, plan)
            if anywhere is not None:
                t = min(t, max(anywhere[0], held.submit + self.compact_wait_s))
        return (t - now) / 3600

    def _wait_floor_h(self, now: float, plan: _Plan) -> float | None:
        """A lower bound of :meth:`_wait_h` for every job (None: none known). The earliest-start search
        tries only the release times and reservation ends from ``now`` on, so no start comes before
        the first of them; unless a gang is past its walltime or ends at ``now``: the search then tries
        ``now`` itself, and a remembered answer may be from an earlier ``now``. A held job's wait is
        capped by a start on any placement after its hold, which is no earlier either."""
        at = plan.at
        if not self.wait_floor or bisect_right(at, now):  # (a release at ``now`` is keyed as passed, too)
            return None
        ends = [e for _, e, _ in plan.resv if e > now]
        return (min(at[:1] + ends, default=math.inf) - now) / 3600

    def _reserve(self, job: Job, now: float, plan: _Plan) -> Reservation | None:
        """Earliest start with running jobs ended at walltime and earlier reservations kept."""
        found = self._earliest(job, now, plan)
        if found is None:
            return None
        t, gpus = found
        pos = plan.state.fab.gpu_pos
        mask = np.zeros(plan.state.owner.size, bool)
        mask[list(map(pos.__getitem__, gpus))] = True
        plan.resv.append((t, t + job.walltime, mask))
        return Reservation(job.id, t, t + job.walltime, tuple(gpus))

    def _will_find(self, job: Job, view: SchedulerInput, plan: _Plan) -> bool:
        """Whether the reservation search for ``job`` finds a start, known without it: the search ends
        at the last release time with every running (and started) gang's GPUs released and no other
        reservation held; where the placer fits the job on those GPUs, the search stops there if not
        earlier. (False: the search is needed to know.)"""
        if not plan.at:  # no release time at all
            return False
        freed = view.state.free | self.caches.releases.held()  # free now, or held by a running gang
        key = (request_key(job.request), np.packbits(freed).tobytes())
        fits = self.caches.fits_freed
        hit = fits.get(key)
        if hit is None:
            hit = fits.put(key, fit_gpus(self.placer, job, ClusterState.from_free_mask(view.state.fab, freed))
                           is not None)
        return hit

    def _earliest(self, job: Job, now: float, plan: _Plan) -> tuple[float, tuple[str, ...]] | None:
        """Remembered across steps while the allocation and the release times are unchanged (the
        answer depends on nothing else when no reservation is held yet: not on the walltime either,
        which only selects the reservations a start overlaps)."""
        if plan.resv:
            return self._search_earliest(job, now, plan)
        at = plan.at
        passed = bisect_right(at, now)  # release times already passed: keyed as None (independent of now)
        es = (None,) * passed + tuple(at[passed:]) if passed else tuple(at)
        key = (request_key(job.request), plan.state.owner.tobytes(), es, tuple(plan.firsts))
        starts = self.caches.starts
        if key not in starts:
            return starts.put(key, self._search_earliest(job, now, plan))
        return starts.get(key)

    def _search_earliest(self, job: Job, now: float, plan: _Plan) -> tuple[float, tuple[str, ...]] | None:
        at, released = plan.at, plan.idx  # in time order
        # the release and reservation-end times from now on, each once, in order (a job past its
        # walltime releases "now": its GPUs are the first a reservation may count on)
        lo = bisect_left(at, now)
        due = set(at[lo:]).union(e for _, e, _ in plan.resv if e > now)
        if lo:
            due.add(now)
        times = sorted(due)
        if not times:
            return None
        freed = plan.state.free.copy()
        total_free = int(freed.sum())
        need, fab = job.gpus, plan.state.fab
        lv = fabric_levels(fab)
        k = 0
        for t in times:
            j = bisect_right(at, t, k)  # the releases up to t, in one assignment
            if j > k:
                idx = np.concatenate(released[k:j]) if j - k > 1 else released[k]
                freed[idx] = True
                total_free += idx.size
                k = j
            if total_free < need:  # cheap necessary condition before any placement
                continue
            # the placer's own necessary check, on a superset of the GPUs it would get (monotone)
            if not may_fit(job.request, freed, fab.index.gpu_host, lv.host_gpus, lv):
                continue
            avail = freed & ~plan.blocked(t, t + job.walltime)
            gpus = fit_gpus(self.placer, job, ClusterState.from_free_mask(plan.state.fab, avail))
            if gpus is not None:
                return t, tuple(gpus)
        return None
