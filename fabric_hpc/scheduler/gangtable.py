"""The running gangs of a preemption search as arrays, kept from call to call (:mod:`.preempt`).

:class:`_GangIndex` keeps every running gang of the last call as a :class:`_Running` table and
follows the running list from call to call: within a step it only loses the victims; from step to
step it loses the gangs that ended and gains those that started (at its end), and the time moves.
The table is then cut down, the new gangs appended and every cost computed again as arrays
(:meth:`_Running.costs`: :func:`~fabric_hpc.scheduler.preempt.gpu_hours_lost`'s float operations,
element by element), not built again gang by gang.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import compress
from operator import itemgetter

import numpy as np

from fabric_hpc.scheduler.contract import RunningJob


@dataclass
class _Candidates:
    """The candidates of one :meth:`GangPreemption.victims` call as arrays (built once per call)."""

    runs: list[RunningJob]
    idx: list[np.ndarray]  # each candidate's GPU positions
    gpu: np.ndarray  # all candidates' GPU positions, concatenated
    of: np.ndarray  # the candidate of each entry of ``gpu``
    size: np.ndarray  # GPUs per candidate
    cost: np.ndarray  # GPU-hours each would lose (:func:`gpu_hours_lost` at the call's ``now``)
    #: (hosts of the fabric, then per (candidate, host) pair holding GPUs, in that order: the candidate,
    #: the host, its GPUs there), made when first asked (:func:`_host_pairs`)
    pairs: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None


_SECOND = itemgetter(1)


def _rows(c: _Candidates, rows: np.ndarray) -> _Candidates:
    """The candidates at ``rows`` (increasing positions in ``c``), as :class:`_Candidates` built for
    those gangs alone would hold them."""
    n = len(c.runs)
    if rows.size == n:
        return c
    keep = np.zeros(n, bool)
    keep[rows] = True
    at = keep[c.of]  # the entries of ``gpu`` kept
    renum = np.cumsum(keep) - 1
    pick = rows.tolist()
    pairs = None
    if c.pairs is not None:  # the pairs of the gangs kept, still in order
        nh, who, where, count = c.pairs
        kept = keep[who]
        pairs = (nh, renum[who[kept]], where[kept], count[kept])
    return _Candidates(list(map(c.runs.__getitem__, pick)), list(map(c.idx.__getitem__, pick)), c.gpu[at],
                       renum[c.of[at]], c.size[rows], c.cost[rows], pairs)


def _host_pairs(c: _Candidates, nh: int, gpu_host: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(candidate, host, GPUs it holds there) of each pair, ordered by candidate then host."""
    if c.pairs is None or c.pairs[0] != nh:
        keys = c.of * nh + gpu_host[c.gpu]
        if keys.size > 1 and not (keys[1:] >= keys[:-1]).all():
            keys = np.sort(keys)
        step = np.empty(keys.size, bool)
        step[:1] = True
        np.not_equal(keys[1:], keys[:-1], out=step[1:])
        first = np.flatnonzero(step)  # (``np.unique(keys, return_counts=True)``, without its sort)
        keys, count = keys[first], np.diff(np.append(first, keys.size))
        c.pairs = (nh, keys // nh, keys % nh, count)
    return c.pairs[1:]


@dataclass
class _Running:
    """Every running gang of a call as :class:`_Candidates`, with what picks the candidates of a job:
    each one's tier (a code into ``tier_names``), preemptible flag and job id, and what its cost
    is computed from (:func:`gpu_hours_lost`: start, start or last checkpoint, checkpoint interval)."""

    c: _Candidates
    tier: np.ndarray
    tier_names: list[str]
    preemptible: np.ndarray
    job_ids: list[str]
    start: np.ndarray
    since: np.ndarray
    every: np.ndarray  # 0: no checkpoint interval

    @classmethod
    def of(cls, runs: list[RunningJob], idx: list[np.ndarray], when: tuple[float, float]) -> _Running:
        size = np.fromiter(map(len, idx), np.int64, len(idx))
        c = _Candidates(runs, idx, np.concatenate(idx), np.repeat(np.arange(len(idx)), size), size,
                        np.zeros(len(runs)))
        code: dict[str, int] = {}
        tier = np.fromiter((code.setdefault(r.job.tier, len(code)) for r in runs), np.int64, len(runs))
        n = len(runs)
        out = cls(c, tier, list(code), np.fromiter((bool(r.preemptible) for r in runs), bool, n),
                  [r.job.id for r in runs], np.fromiter((r.start for r in runs), float, n),
                  np.fromiter((r.start if r.last_checkpoint is None else r.last_checkpoint for r in runs),
                              float, n),
                  np.fromiter((r.job.checkpoint_interval or 0.0 for r in runs), float, n))
        c.cost = out.costs(when)
        return out

    def costs(self, when: tuple[float, float]) -> np.ndarray:
        """:func:`gpu_hours_lost` of each gang at ``when`` (``(now, restore_s)``), the same float
        operations in the same order, element by element."""
        now, restore_s = when
        since = self.since
        has = self.every != 0
        if has.any():
            start, every = self.start[has], self.every[has]
            since = since.copy()
            since[has] = np.maximum(since[has], start + ((now - start) // every) * every)
        return self.c.size * (np.maximum(now - since, 0.0) + restore_s) / 3600.0

    def rows(self, rows: np.ndarray) -> _Running:
        """The gangs at ``rows`` (increasing positions)."""
        return _Running(_rows(self.c, rows), self.tier[rows], self.tier_names, self.preemptible[rows],
                        list(map(self.job_ids.__getitem__, rows.tolist())), self.start[rows],
                        self.since[rows], self.every[rows])

    def at(self, when: tuple[float, float]) -> _Running:
        """The same gangs with their costs at ``when``."""
        out = replace(self, c=replace(self.c))
        out.c.cost = out.costs(when)
        return out

    def plus(self, more: _Running) -> _Running:
        """These gangs, then ``more``'s (at the same time)."""
        a, b = self.c, more.c
        n = len(a.runs)
        pairs = None
        if a.pairs is not None and b.pairs is not None and a.pairs[0] == b.pairs[0]:
            pairs = (a.pairs[0], np.concatenate((a.pairs[1], b.pairs[1] + n)),
                     np.concatenate((a.pairs[2], b.pairs[2])), np.concatenate((a.pairs[3], b.pairs[3])))
        c = _Candidates(a.runs + b.runs, a.idx + b.idx, np.concatenate((a.gpu, b.gpu)),
                        np.concatenate((a.of, b.of + n)), np.concatenate((a.size, b.size)),
                        np.concatenate((a.cost, b.cost)), pairs)
        code = {name: k for k, name in enumerate(self.tier_names)}
        recode = np.fromiter((code.setdefault(name, len(code)) for name in more.tier_names), np.int64,
                             len(more.tier_names))
        return _Running(c, np.concatenate((self.tier, recode[more.tier])), list(code),
                        np.concatenate((self.preemptible, more.preemptible)), self.job_ids + more.job_ids,
                        np.concatenate((self.start, more.start)), np.concatenate((self.since, more.since)),
                        np.concatenate((self.every, more.every)))


class _GangIndex:
    """What a step asks about the same running gangs once per blocked job: each gang's GPU positions
    (per fabric) by ``id()`` of the RunningJob, and the table of the last call's gangs (arrays, with
    their GPU-hours lost at the call's ``(now, restore_s)``), followed from call to call.

    A position entry holds its object, so the id is not reused while cached. Bounded by the running
    set (trimmed when more than twice as large). Pure functions of the key: may be emptied at any time.
    """

    def __init__(self) -> None:
        self.pos: dict[str, int] | None = None
        self.when: tuple[float, float] | None = None
        self.where: dict[int, tuple[RunningJob, np.ndarray]] = {}
        self.last: _Running | None = None  # every running gang of the last call, as arrays
        self.last_ids: tuple[int, ...] = ()  # their id()s (held by ``last``: not reused while kept)
        self.row_of: dict[int, int] = {}  # id() -> row, as ``last`` was built (a gang gone never returns:
        self.base = np.zeros(0, np.int64)  # its row is not in ``base``, the rows of ``last`` as built)
        self.rows = 0  # rows given so far since the last build (a new gang's row: the next one)
        #: (``last_ids`` of the table, its rows whose gangs the last answer chose as victims): set by the
        #: search; trusted only for that table, and checked against the next call's gangs
        self.dropped: tuple[tuple[int, ...], np.ndarray] | None = None

    def table(self, running: Sequence[RunningJob], pos: dict[str, int],
              when: tuple[float, float]) -> _Running | None:
        """Every gang of ``running``, in order, as arrays (None: none). Within a step ``running``
        only loses gangs (the victims) from one call to the next, and from step to step it mostly
        loses the gangs that ended and gains those that started, at the end: the arrays of the last
        call are then cut down to the gangs left, the new ones appended, not built again."""
        ids = tuple(map(id, running))
        if not ids:
            return None
        if self.last is not None and pos is self.pos:
            if ids == self.last_ids and when == self.when:
                return self.last
            made_for, drop = self.dropped or (None, None)
            self.dropped = None
            if made_for is self.last_ids and when == self.when and len(ids) == len(made_for) - drop.size:
                keep = np.ones(len(ids) + drop.size, bool)  # the victims left
                keep[drop] = False
                if ids == tuple(compress(self.last_ids, keep)):
                    rows = np.flatnonzero(keep)
                    self.last, self.last_ids, self.base = self.last.rows(rows), ids, self.base[rows]
                    return self.last
            got = self._follow(running, ids, pos, when)  # (another time, or gangs gone and gangs new)
            if got is not None:
                return got
        runs = list(running)  # another order, or fabric
        self.when = when
        self.last, self.last_ids = _Running.of(runs, self.lookup(runs, running, pos), when), ids
        self.row_of, self.base, self.rows = dict(zip(ids, range(len(ids)))), np.arange(len(ids)), len(ids)
        return self.last

    def _follow(self, running: Sequence[RunningJob], ids: tuple[int, ...], pos: dict[str, int],
                when: tuple[float, float]) -> _Running | None:
        """The last table cut to the gangs of ``running`` it holds, in its order, then the gangs it
        did not hold, with every cost at ``when`` (None: ``running`` is not of that shape)."""
        if len(self.row_of) > 2 * len(ids) + 256:
            return None
        orig = list(map(self.row_of.get, ids))  # rows in the table as built
        k = orig.index(None) if None in orig else len(orig)
        if k == 0 or orig.count(None) != len(orig) - k:
            return None
        at = np.fromiter(orig[:k], np.int64, k)
        rows = np.searchsorted(self.base, at)  # (``base`` increases: the rows still there)
        if not ((at[1:] > at[:-1]).all() and rows[-1] < self.base.size and (self.base[rows] == at).all()):
            return None
        table = self.last.rows(rows)  # type: ignore[union-attr]
        if when != self.when:
            table = table.at(when)
        if k < len(ids):
            new = list(running)[k:]
            table = table.plus(_Running.of(new, self.lookup(new, running, pos), when))
            fresh = np.arange(self.rows, self.rows + len(new))  # rows never given before
            self.row_of.update(zip(ids[k:], fresh.tolist()))
            self.rows += len(new)
            at = np.concatenate((at, fresh))
        self.when, self.last, self.last_ids, self.base = when, table, ids, at
        return table

    def lookup(self, runs: list[RunningJob], running: Sequence[RunningJob],
               pos: dict[str, int]) -> list[np.ndarray]:
        """The GPU positions of each of ``runs`` (a subset of ``running``)."""
        if pos is not self.pos or len(self.where) > 2 * len(running) + 256:
            where = self.where if pos is self.pos else {}
            self.where = {id(r): where[id(r)] for r in running if id(r) in where}
            self.pos = pos
        ids = list(map(id, runs))
        found = list(map(self.where.get, ids))
        if None in found:
            for k, e in enumerate(found):
                if e is None:
                    r = runs[k]
                    found[k] = self.where[ids[k]] = (r, np.fromiter(map(pos.__getitem__, r.gpus), np.int64,
                                                                    len(r.gpus)))
        return list(map(_SECOND, found))
