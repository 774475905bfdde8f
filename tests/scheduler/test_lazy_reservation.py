"""The first reservation of a step is searched only when read, with the decisions of the eager search.

A twin policy steps a replay with the deferred search and, on the same input, a copy that searches
eagerly (``lazy_reservation`` off), and compares everything each step decides: starts with their
GPUs, evictions, reservations, reasons, backfilled jobs. The deferred step's reservations are read
one step later, after the simulator changed its state by applying the decisions, so the search on
the step's own copy of the state is checked too.
"""

from __future__ import annotations

import pytest

from fabric_hpc.scheduler import fabric_policy
from fabric_hpc.scheduler.core import LazyDict
from fabric_hpc.sim import Simulator, gang_workload
from fabric_hpc.topology import open_fabric


class _Twin:
    def __init__(self, backfill: str) -> None:
        self.lazy, self.plain = fabric_policy(backfill=backfill), fabric_policy(backfill=backfill)
        self.plain.lazy_reservation = False
        self.name, self.placer = "twin", self.lazy.placer
        self.last: tuple | None = None
        self.steps = self.deferred = self.reserved = 0

    def hold_until(self, job):
        return self.lazy.hold_until(job)

    def schedule(self, view):
        self.check()
        lazy, plain = self.lazy.schedule(view), self.plain.schedule(view)
        assert [(j.id, p.gpus) for j, p in lazy.start] == [(j.id, p.gpus) for j, p in plain.start]
        assert lazy.preempt == plain.preempt and lazy.backfilled == plain.backfilled
        assert dict(lazy.reasons) == dict(plain.reasons)
        self.steps += 1
        self.deferred += isinstance(lazy.reservations, LazyDict)
        self.last = (lazy, plain)
        return lazy

    def check(self) -> None:
        if self.last is not None:
            lazy, plain = self.last
            assert dict(lazy.reservations) == plain.reservations
            self.reserved += bool(plain.reservations)
            self.last = None


@pytest.mark.parametrize("backfill", ["easy", "conservative"])
def test_deferred_reservations_decide_as_the_eager_search(backfill):
    fab = open_fabric("superpod:sus=2")
    twin = _Twin(backfill)
    Simulator(fab, twin, gang_workload(jobs=600, cluster_gpus=len(fab.gpus), load=1.5, seed=3)).run()
    twin.check()
    assert twin.steps > 500 and twin.reserved > 100
    assert twin.deferred > 20  # the deferral happened, and was read late
