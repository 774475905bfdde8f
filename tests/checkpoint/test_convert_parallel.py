"""The memory gate of the parallel convert: items in flight stay within the byte budget, an item
over the budget runs alone, the first error stops new items and is raised."""

from __future__ import annotations

import threading
import time

import pytest

from fabric_hpc.checkpoint.parallel import Item, run_bounded


class Tracker:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.count = 0
        self.seen: list[tuple[int, int]] = []  # (bytes, items) in flight whenever one starts

    def __call__(self, cost: int) -> int:
        with self.lock:
            self.now += cost
            self.count += 1
            self.seen.append((self.now, self.count))
        time.sleep(0.01)  # long enough for others to be admitted if the gate let them
        with self.lock:
            self.now -= cost
            self.count -= 1
        return cost


def test_in_flight_bytes_stay_within_the_budget() -> None:
    costs = [100] + [30] * 12 + [5] * 10
    t = Tracker()
    results, stats = run_bounded([Item(c, c) for c in costs], t, workers=4, budget=100)
    assert results == costs  # in the given order
    for now, count in t.seen:
        assert now <= 100 and count <= 4
    assert max(count for _, count in t.seen) >= 2  # smaller items did run together
    assert stats.peak_bytes <= 100 and 2 <= stats.peak_items <= 4


def test_an_item_over_the_budget_runs_alone() -> None:
    t = Tracker()
    run_bounded([Item(c, c) for c in [10, 10, 500, 10, 10]], t, workers=4, budget=50)
    assert all(count == 1 for now, count in t.seen if now >= 500)


def test_first_error_stops_new_items_and_is_raised() -> None:
    started: list[int] = []

    def fn(i: int) -> int:
        started.append(i)
        if i == 1:
            raise ValueError("boom")
        time.sleep(0.005)
        return i

    with pytest.raises(ValueError, match="boom"):
        run_bounded([Item(i, 10) for i in range(200)], fn, workers=2, budget=20)
    assert len(started) < 200
