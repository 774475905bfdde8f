"""Work items run in parallel under a memory budget.

A convert or import holds tensors (or blocks of them) while they are written, so running them in parallel
multiplies memory unless it is bounded. :func:`run_bounded` admits an item only while the bytes
of the items in flight (their declared cost) stay within the budget; an item costing more than
the budget on its own is admitted when nothing else is in flight, so the largest tensor always
runs (alone). The heavy work in the items (file reads and writes, CRC-32C, torch casts) releases
the GIL, so threads overlap reading, casting and writing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class GateStats:
    """What the gate saw: the most bytes and items in flight at once."""

    peak_bytes: int = 0
    peak_items: int = 0


class MemoryGate:
    """Counts the bytes of admitted items; ``acquire`` waits until an item fits in the budget and a
    slot is free (or nothing runs)."""

    def __init__(self, budget: int, slots: int) -> None:
        self.budget, self.slots = max(0, int(budget)), max(1, slots)
        self.used = 0
        self.items = 0
        self.stats = GateStats()
        self._cond = threading.Condition()

    def acquire(self, nbytes: int, stop: threading.Event) -> bool:
        """Admit an item of ``nbytes``; False (nothing admitted) once ``stop`` is set."""
        with self._cond:
            self._cond.wait_for(lambda: stop.is_set() or self.items == 0 or
                                (self.items < self.slots and self.used + nbytes <= self.budget))
            if stop.is_set():
                return False
            self.used += nbytes
            self.items += 1
            self.stats.peak_bytes = max(self.stats.peak_bytes, self.used)
            self.stats.peak_items = max(self.stats.peak_items, self.items)
            return True

    def release(self, nbytes: int) -> None:
        with self._cond:
            self.used -= nbytes
            self.items -= 1
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


@dataclass
class Item(Generic[T]):
    value: T
    cost: int  # bytes held while it runs


def run_bounded(items: Sequence[Item[T]], fn: Callable[[T], R], *, workers: int, budget: int,
                initializer: Callable[[], None] | None = None) -> tuple[list[R], GateStats]:
    """``fn(item.value)`` for every item on ``workers`` threads, the items in flight costing at
    most ``budget`` bytes together (one item over the budget runs alone). Items are admitted in
    the given order; results come back in that order. After the first error no new item starts;
    the ones in flight finish, then that error is raised."""
    gate, stop = MemoryGate(budget, workers), threading.Event()
    futures: list[Future[R]] = []

    def one(item: Item[T]) -> R:
        try:
            return fn(item.value)
        except BaseException:
            stop.set()
            gate.wake()
            raise
        finally:
            gate.release(item.cost)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="fabric-bounded",
                            initializer=initializer) as pool:
        for item in items:
            if not gate.acquire(item.cost, stop):
                break
            futures.append(pool.submit(one, item))
    for f in futures:
        if f.exception() is not None:
            raise f.exception()  # type: ignore[misc]
    return [f.result() for f in futures], gate.stats


__all__ = ["GateStats", "Item", "MemoryGate", "run_bounded"]
