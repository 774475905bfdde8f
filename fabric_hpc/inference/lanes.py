"""Shape lanes: group admitted items by prompt length so each engine batch is pad-minimal.

Lane edges are quantiles of the *observed* prompt-length distribution (a seeded reservoir
sample), refitted as the distribution is learned (until ``warmup`` lengths are seen, a geometric
prior of ~8 %-wide buckets is used); a lane holds lengths in ``(edge[i-1],
edge[i]]``. A batch is drawn from one lane only, FIFO within it, so padding a group to its
longest prompt wastes at most ``1 - lo/hi`` of a lane's bounds -- and, with equal-mass lanes
over a smooth distribution, far less.

Lane choice, each time the executor has free slots:

1. **aging** -- if the oldest waiting item (by admission number) has waited more than
   ``max_age`` later admissions, its lane goes first, and if its head does not fit the free
   capacity nothing else is scheduled until it does (rare shapes never starve);
2. otherwise the lane of the oldest waiting item if it can fill all free slots (the engine's
   best batch size minus what it holds), else the lane with the oldest head among those that
   can, else the deepest lane. Groups are drawn this way until the free slots, the step's token
   room or the KV room run out. The oldest item is found in amortised O(1) (a FIFO of
   admissions with stale entries dropped), so a step in steady state does not scan the lanes.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable

from fabric_hpc.errors import ConfigError
from fabric_hpc.inference.intake import WorkItem

__all__ = ["ShapeLanes", "geometric_edges", "quantile_edges"]


def geometric_edges(ratio: float = 1.08, top: int = 1 << 20) -> list[int]:
    """The prior before any length is observed: buckets ~8 % wide (at most 8 % padding)."""
    edges, x = [], 1.0
    while x < top:
        edges.append(int(x))
        x = max(x * ratio, int(x) + 1)
    return sorted(set(edges)) + [1 << 62]


def quantile_edges(sample: Iterable[int], num_lanes: int) -> list[int]:
    """Upper edges of up to ``num_lanes`` equal-mass length buckets (sorted, unique)."""
    data = sorted(sample)
    if not data:
        return []
    n = len(data)
    edges = {data[min(n - 1, (k * n) // num_lanes - 1)] for k in range(1, num_lanes + 1)}
    return sorted(edges)


class ShapeLanes:
    """Lane queues. Not thread-safe: owned by one scheduler (the executor thread)."""

    def __init__(self, num_lanes: int = 128, *, max_age: int = 8192, warmup: int = 256,
                 refit_every: int = 8192, sample_size: int = 4096, seed: int = 0) -> None:
        if num_lanes < 1 or max_age < 1 or warmup < 1:
            raise ConfigError("num_lanes, max_age and warmup must be >= 1")
        self.num_lanes, self.max_age = num_lanes, max_age
        self.warmup, self.refit_every, self.sample_size = warmup, refit_every, sample_size
        self._random = random.Random(seed).random
        self._sample: list[int] = []
        self._seen = 0
        self._since_fit = 0
        self.edges: list[int] = geometric_edges()
        self.lanes: list[deque[WorkItem]] = [deque() for _ in self.edges]
        self._fifo: deque[tuple[int, int]] = deque()  # (arrival, lane) in push order
        self._count = 0
        self._arrivals = 0
        self.refits = 0

    def __len__(self) -> int:
        return self._count

    def depths(self) -> list[int]:
        return [len(q) for q in self.lanes]

    def bounds(self, lane: int) -> tuple[int, int]:
        """Inclusive ``(lo, hi)`` prompt lengths of a lane."""
        lo = self.edges[lane - 1] + 1 if lane else 1
        return lo, self.edges[lane]

    def _observe(self, length: int) -> None:
        self._seen += 1
        if len(self._sample) < self.sample_size:
            self._sample.append(length)
        else:
            j = int(self._random() * self._seen)
            if j < self.sample_size:
                self._sample[j] = length
        self._since_fit += 1
        if (self.refits == 0 and self._seen >= self.warmup) or self._since_fit >= self.refit_every:
            self.refit()

    def refit(self) -> None:
        """Recompute edges from the sample and redistribute waiting items (FIFO kept)."""
        edges = quantile_edges(self._sample, self.num_lanes)
        edges[-1] = 1 << 62  # the last lane is open-ended
        self._since_fit = 0
        self.refits += 1
        if edges == self.edges:
            return
        waiting = sorted((it for q in self.lanes for it in q), key=lambda it: it.arrival)
        self.edges = edges
        self.lanes = [deque() for _ in edges]
        self._fifo = deque()
        for it in waiting:
            lane = bisect_left(edges, it.length)
            self.lanes[lane].append(it)
            self._fifo.append((it.arrival, lane))

    def push(self, item: WorkItem) -> None:
        item.arrival = self._arrivals
        self._arrivals += 1
        lane = bisect_left(self.edges, len(item.prompt))
        self.lanes[lane].append(item)
        self._fifo.append((item.arrival, lane))
        self._count += 1
        self._observe(len(item.prompt))

    def _oldest(self) -> int:
        """Lane of the oldest waiting item (amortised O(1): stale FIFO entries are dropped)."""
        fifo, lanes = self._fifo, self.lanes
        while True:
            arrival, lane = fifo[0]
            q = lanes[lane]
            if q and q[0].arrival == arrival:
                return lane
            fifo.popleft()

    def _order(self, want: int) -> list[int]:
        """Lanes to draw from, in preference order (see the module docstring)."""
        lanes = self.lanes
        lane = self._oldest()
        head = lanes[lane][0].arrival
        if self._arrivals - head > self.max_age or len(lanes[lane]) >= want:
            return [lane]  # aged, or the oldest head fills every free slot: the common case
        full = sorted((q[0].arrival, i) for i, q in enumerate(lanes) if len(q) >= want)
        rest = sorted((-len(q), i) for i, q in enumerate(lanes) if q and len(q) < want)
        return [i for _, i in full] + [i for _, i in rest]

    def _draw(self, lane: int, max_items: int, max_prefill: int, max_reserve: int
              ) -> tuple[list[WorkItem], int, int]:
        q = self.lanes[lane]
        batch: list[WorkItem] = []
        longest = reserve = 0
        while q and len(batch) < max_items:
            it = q[0]
            ln = len(it.prompt)
            top = ln if ln > longest else longest
            cost = ln + it.max_new_tokens
            if top * (len(batch) + 1) > max_prefill or reserve + cost > max_reserve:
                break
            q.popleft()
            batch.append(it)
            longest, reserve = top, reserve + cost
        self._count -= len(batch)
        return batch, longest * len(batch), reserve

    def pop_groups(self, max_items: int, *, max_prefill_tokens: int, max_reserve_tokens: int
                   ) -> list[list[WorkItem]]:
        """Same-lane groups, together at most ``max_items`` items, whose padded prefill (sum
        over groups of count x longest prompt) and reservation (prompt + max_new_tokens) fit
        the limits. Stops at the first chosen lane whose head does not fit, so an aged lane
        waits for room rather than being overtaken forever."""
        groups: list[list[WorkItem]] = []
        order: list[int] = []
        while max_items > 0 and self._count and max_prefill_tokens > 0 and max_reserve_tokens > 0:
            if not order:
                order = self._order(max_items)
            lane = order.pop(0)
            if not self.lanes[lane]:
                continue
            batch, prefill, reserve = self._draw(lane, max_items, max_prefill_tokens,
                                                 max_reserve_tokens)
            if not batch:
                break
            groups.append(batch)
            max_items -= len(batch)
            max_prefill_tokens -= prefill
            max_reserve_tokens -= reserve
        return groups

    def pop_batch(self, max_items: int, *, max_prefill_tokens: int, max_reserve_tokens: int
                  ) -> list[WorkItem]:
        """One same-lane group (the first :meth:`pop_groups` would draw); may be empty."""
        if max_items < 1 or not self._count:
            return []
        lane = self._order(max_items)[0]
        return self._draw(lane, max_items, max_prefill_tokens, max_reserve_tokens)[0]
