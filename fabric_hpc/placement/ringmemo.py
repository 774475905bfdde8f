"""Ring flows and a bounded memo of a fabric's ring structures (:func:`fabric_hpc.placement.collective.ring_flows`).

A ring's flows (which resources each flow crosses, its path latency, how the per-rank bytes split
over its flows) are a pure function of the fabric, the GPU set, the channel ceiling and the ECMP
salt. The scheduler's placement cost and the simulator's contention model ask for the same GPU
sets again and again (the placement a step chose is costed, then started; gangs start again on
the GPUs a finished gang left), so each fabric owns one :class:`RingMemo`: least recently used
entries go first, at most ``size`` of them. The stored arrays are read-only, so no caller can
change what another one gets.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    from fabric_hpc.topology import Fabric

T = TypeVar("T")


@dataclass
class Flows:
    """Flows of one collective: ``res[k]`` is used by flow ``flow[k]``; each flow carries ``size[f]``
    bytes; ``lat_us[f]`` is its path latency."""

    flow: np.ndarray
    res: np.ndarray
    size: np.ndarray
    lat_us: np.ndarray

    @property
    def count(self) -> int:
        return len(self.size)


@dataclass(frozen=True)
class RingShape:
    """A ring's flows without their bytes: ``share`` of the per-rank bytes on each NVLink flow (the
    first ones), then ``edges`` network flows of ``1 / chans`` each (``edges == -1``: one domain)."""

    flow: np.ndarray
    res: np.ndarray
    lat_us: np.ndarray
    share: np.ndarray
    edges: int
    chans: int

    def flows(self, per_rank_bytes: float) -> Flows:
        size = [per_rank_bytes * self.share]
        if self.edges >= 0:
            size.append(np.full(self.edges, per_rank_bytes / self.chans))
        return Flows(self.flow, self.res, np.concatenate(size), self.lat_us)


#: Entries per fabric: a replay's repeats are close together (the cost of a placement, then its
#: start), so a few hundred catch nearly all of them (docs/benchmarks.md, sim-contention section).
DEFAULT_SIZE = 512


class RingMemo:
    """``get(key, make)``: the value remembered under ``key``, else ``make()`` (remembered unless
    ``size`` is 0; an exception from ``make`` is raised and nothing is remembered)."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._table: OrderedDict[Hashable, object] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        hit = self._table.get(key)
        if hit is not None:
            self._table.move_to_end(key)
            self.hits += 1
            return hit  # type: ignore[return-value]
        self.misses += 1
        value = make()
        if self.size > 0:
            self._table[key] = value
            if len(self._table) > self.size:
                self._table.popitem(last=False)
        return value

    def clear(self) -> None:
        self._table.clear()


_MEMOS: weakref.WeakKeyDictionary[Fabric, RingMemo] = weakref.WeakKeyDictionary()


def ring_memo(fab: Fabric) -> RingMemo:
    """The memo of ``fab`` (made on first use, dropped with the fabric)."""
    memo = _MEMOS.get(fab)
    if memo is None:
        memo = _MEMOS[fab] = RingMemo()
    return memo
