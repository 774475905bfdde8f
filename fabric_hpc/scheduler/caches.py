"""What a :class:`~fabric_hpc.scheduler.Scheduler` remembers between steps: one owned, bounded object.

Every entry is a pure function of its key (the decisions do not depend on what is cached: the
fast-path oracle tests run with and without it), so a cache may be emptied at any time. Each memo
has a size limit; a memo at its limit is emptied before a new key goes in (the simplest bound that
keeps lookups O(1); the keys of a long replay move on, so old entries are rarely useful).

A driver's lists change little from step to step (a queue loses the jobs that started and gains
new ones at its end; so does the running list): :func:`_diff` describes a list by its difference
from the last step's, which the priority table and :class:`Tally` (counts of a key over the
running jobs, as big as that list) use instead of a pass over every entry.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np


_OFFERS: dict[tuple[type, type], bool] = {}


def offers(obj: object, capability: type) -> bool:
    """``isinstance(obj, capability)`` for a runtime-checkable Protocol of the contract, remembered
    per class (a Protocol check inspects every member, too slow for every step; the strategies
    declare their methods on the class)."""
    key = (type(obj), capability)
    hit = _OFFERS.get(key)
    if hit is None:
        hit = _OFFERS[key] = isinstance(obj, capability)
    return hit


class Memo:
    """A dict with a size limit (emptied when full)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data: dict[Hashable, Any] = {}

    def get(self, key: Hashable, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __contains__(self, key: Hashable) -> bool:
        return key in self.data

    def __len__(self) -> int:
        return len(self.data)

    def put(self, key: Hashable, value: Any) -> Any:
        if key not in self.data and len(self.data) >= self.limit:
            self.data.clear()
        self.data[key] = value
        return value

    def keep(self, items: dict[Hashable, Any]) -> None:
        """Replace the content with ``items`` (a driver's current working set)."""
        self.data = dict(items)


@dataclass
class StepCaches:
    """The scheduler's memory between steps (see module doc)."""

    #: the running jobs' releases in time order (as big as the running list)
    releases: Releases = field(default_factory=lambda: Releases())
    #: job id -> (job object, fabric, the job with its compact-placement constraint)
    compact: Memo = field(default_factory=lambda: Memo(100_001))
    #: (request, owners, release times, first GPUs) -> earliest (time, GPUs) or None
    starts: Memo = field(default_factory=lambda: Memo(1025))
    #: (request, tier, owners, running ids) for which no victim set frees a placement
    no_victims: Memo = field(default_factory=lambda: Memo(4097))
    #: (request, GPUs free or held by running gangs) -> whether the placer fits the request there
    fits_freed: Memo = field(default_factory=lambda: Memo(1025))
    #: (communication profile, tp, pp; GPUs or their count) -> stretch alone (``slowdown.stretch_loss``)
    stretch: Memo = field(default_factory=lambda: Memo(1025))
    #: the running jobs' tiers (a list of the last step's running jobs and a count per tier)
    running_tiers: Tally = field(default_factory=lambda: Tally(attrgetter("job.tier")))

    def sizes(self) -> dict[str, int]:
        return {"releases": len(self.releases), "compact": len(self.compact), "starts": len(self.starts),
                "no_victims": len(self.no_victims), "fits_freed": len(self.fits_freed),
                "stretch": len(self.stretch)}

    def clear(self) -> None:
        for memo in (self.compact, self.starts, self.no_victims, self.fits_freed, self.stretch):
            memo.data.clear()
        self.releases = Releases()
        self.running_tiers = Tally(self.running_tiers.key)


#: More departures than this between two calls: look every row up instead (see :func:`_diff`).
_DIFF_LIMIT = 64


def _diff(prev: list, new: list) -> tuple[list[int], int] | None:
    """``new`` as ``prev`` minus some entries plus a tail: (positions in ``prev`` that are gone,
    where the tail starts in ``new``), or None when that takes more than ``_DIFF_LIMIT`` removals.

    Entries are compared with ``==`` on list slices (identity first, in C): equal entries have
    equal rows, so the result is exact whatever the lists hold; only its speed assumes the
    driver's usual change (a queue that loses started jobs and gains new ones at its end)."""
    i = j = 0
    gone: list[int] = []
    while i < len(prev):
        m = _common_prefix(prev, i, new, j, min(len(prev) - i, len(new) - j))
        i, j = i + m, j + m
        if i == len(prev):
            break
        if len(gone) == _DIFF_LIMIT:
            return None
        gone.append(i)  # prev[i] is not at new[j]: it left (or moved; then it is looked up again)
        i += 1
    return gone, j


def _diff_into(prev: list, new: list) -> tuple[list[int], int] | None:
    """:func:`_diff`, and ``prev`` made equal to ``new`` in place when it is not None. Tries the
    commonest change first, a queue that only grew at its end: one comparison of the two lists
    (identity first, in C), without the slices that touch every entry."""
    n = len(prev)
    if len(new) >= n:
        prev.extend(new[n:])
        if prev == new:
            return [], n
        del prev[n:]
    diff = _diff(prev, new)
    if diff is not None:
        for g in reversed(diff[0]):
            del prev[g]
        prev.extend(new[diff[1]:])
    return diff


def _common_prefix(a: list, i: int, b: list, j: int, n: int) -> int:
    """Length of the common prefix of ``a[i:i + n]`` and ``b[j:j + n]`` (halving: O(n) compares)."""
    if a[i:i + n] == b[j:j + n]:
        return n
    lo, hi = 0, n  # a[i:i + lo] == b[j:j + lo]; the first difference is in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[i + lo:i + mid] == b[j + lo:j + mid]:
            lo = mid
        else:
            hi = mid
    return lo


class Tally:
    """How many items of a list have each ``key(item)`` (e.g. the running jobs' tiers), kept from
    call to call by the list's difference from the last call's (:func:`_diff`): a list that lost
    and gained a few items costs a comparison in C and a few ``key`` calls, not one per item."""

    def __init__(self, key: Callable[[Any], Hashable]) -> None:
        self.key = key
        self._prev: list = []
        self.counts: dict[Hashable, int] = {}

    def update(self, items: list) -> dict[Hashable, int]:
        """The counts over ``items`` (only keys with a count > 0)."""
        prev, key, counts = self._prev, self.key, self.counts
        diff = _diff(prev, items) if prev else None
        if diff is None:
            self._prev = list(items)
            self.counts = counts = {}
            for k in map(key, items):
                counts[k] = counts.get(k, 0) + 1
            return counts
        gone, tail = diff
        for g in gone:
            k = key(prev[g])
            if counts[k] == 1:
                del counts[k]
            else:
                counts[k] -= 1
        for g in reversed(gone):
            del prev[g]
        for item in items[tail:]:
            k = key(item)
            counts[k] = counts.get(k, 0) + 1
            prev.append(item)
        return counts


_END = itemgetter(0)


class Releases:
    """The running jobs' GPU releases at their walltime ends, in time order (the timeline a
    reservation search walks), kept from call to call by the running list's difference from the
    last call's (:func:`_diff`): an unchanged list (most steps of a long queue) costs one list
    comparison in C, and one that lost and gained a few gangs computes only the new gangs' entries
    and one sort. Each entry: (walltime end, first GPU index or -1, GPU indices); a pure function
    of the RunningJob and the fabric, so the timeline equals a fresh computation."""

    def __init__(self) -> None:
        self._prev: list = []  # the last running list (a private copy)
        self._rows: list[tuple[float, int, np.ndarray]] = []  # its entries, in its order
        self._pos: dict[str, int] | None = None  # the fabric's GPU positions the entries use
        self._sorted: tuple[list[float], list[int], list[np.ndarray]] = ([], [], [])
        self._count = np.zeros(0, np.int32)  # per GPU: running gangs holding it
        self._held: np.ndarray | None = None  # ``_count > 0`` (None: compute again)

    def __len__(self) -> int:
        return len(self._rows)

    def update(self, running: list, pos: dict[str, int]) -> tuple[list[float], list[int], list[np.ndarray]]:
        """(walltime ends ascending, first GPU indices, GPU indices) of ``running`` on the fabric
        whose ``gpu_pos`` is ``pos``: new lists, which the caller may change."""
        if pos is not self._pos:
            self._prev, self._rows, self._pos = [], [], pos
        diff = _diff(self._prev, running) if self._prev else None
        if diff is None:
            self._prev, self._rows = list(running), [_release(r, pos) for r in running]
            self._count = np.zeros(len(pos), np.int32)
            self._hold(self._rows, 1)
            self._sort()
        elif diff[0] or diff[1] < len(running):
            gone, tail = diff
            self._hold([self._rows[g] for g in gone], -1)
            for g in reversed(gone):
                del self._prev[g], self._rows[g]
            self._prev.extend(running[tail:])
            new = [_release(r, pos) for r in running[tail:]]
            self._rows.extend(new)
            self._hold(new, 1)
            self._sort()
        at, firsts, idx = self._sorted
        return list(at), list(firsts), list(idx)

    def held(self) -> np.ndarray:
        """Bool mask over the fabric's GPUs: held by a gang of the last :meth:`update`'s running list."""
        if self._held is None:
            self._held = self._count > 0
        return self._held

    def _hold(self, rows: list[tuple[float, int, np.ndarray]], by: int) -> None:
        if rows:
            np.add.at(self._count, np.concatenate([r[2] for r in rows]), by)
            self._held = None

    def _sort(self) -> None:
        rows = sorted(self._rows, key=_END)  # stable: equal ends keep the running list's order
        self._sorted = ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


def _release(run: Any, pos: dict[str, int]) -> tuple[float, int, np.ndarray]:
    """(walltime end, first GPU index or -1, GPU indices) of a RunningJob."""
    idx = np.fromiter(map(pos.__getitem__, run.gpus), np.int64, len(run.gpus))
    return run.walltime_end, int(idx[0]) if idx.size else -1, idx
