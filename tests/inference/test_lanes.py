"""Shape lanes: every item scheduled exactly once, padding bounded by lane bounds, no starvation."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_hpc.inference import EngineLimits, Scheduler, ShapeLanes, SimulatedEngine, VirtualClock
from fabric_hpc.inference.lanes import quantile_edges

from .builders import work_items

lengths = st.lists(st.integers(1, 400), min_size=1, max_size=600)


@settings(max_examples=60, deadline=None)
@given(lengths, st.integers(1, 64), st.integers(1, 40), st.integers(1, 3000))
def test_every_item_exactly_once_and_padding_bound(lens: list[int], num_lanes: int,
                                                   max_items: int, max_prefill: int) -> None:
    lanes = ShapeLanes(num_lanes, warmup=16, refit_every=64)
    items = work_items([(n, 1) for n in lens])
    for it in items:
        lanes.push(it)
    edges = list(lanes.edges)  # no pushes below: no refit while draining
    seen: Counter[str] = Counter()
    for _ in range(len(items) + 5):
        groups = lanes.pop_groups(max_items, max_prefill_tokens=max(max_prefill, 400),
                                  max_reserve_tokens=10**9)
        assert sum(len(g) for g in groups) <= max_items
        assert sum(len(g) * max(it.length for it in g) for g in groups) <= max(max_prefill, 400)
        for g in groups:
            # padding bound: a group lies inside one lane, so it pads at most to the lane's top
            lane = bisect_left(edges, min(it.length for it in g))
            assert bisect_left(edges, max(it.length for it in g)) == lane
            lo, hi = lanes.bounds(lane)
            assert all(lo <= it.length <= hi for it in g)
            seen.update(it.id for it in g)
        if not len(lanes):
            break
    assert len(lanes) == 0
    assert seen == Counter(it.id for it in items)


@settings(max_examples=40, deadline=None)
@given(lengths, st.integers(1, 128))
def test_quantile_edges_cover_sample(lens: list[int], k: int) -> None:
    edges = quantile_edges(lens, k)
    assert edges == sorted(set(edges)) and len(edges) <= k
    assert edges[-1] == max(lens)
    # every lane holds roughly an equal share: none gets more than its share + the ties
    counts = Counter(bisect_left(edges, n) for n in lens)
    assert max(counts.values()) <= len(lens) // k + max(Counter(lens).values()) + 1


def test_rare_long_item_is_not_starved() -> None:
    lanes = ShapeLanes(16, max_age=200, warmup=32)
    for it in work_items([(10 + i % 5, 1) for i in range(100)], prefix="s"):
        lanes.push(it)
    lanes.push(work_items([(300, 1)], prefix="rare")[0])
    served_at = None
    for rnd in range(2000):
        for it in work_items([(10 + i % 5, 1) for i in range(4)], prefix=f"t{rnd}-"):
            lanes.push(it)  # short items keep arriving faster than they are drawn
        groups = lanes.pop_groups(4, max_prefill_tokens=4000, max_reserve_tokens=10**9)
        if any(it.id == "rare0" for g in groups for it in g):
            served_at = rnd
            break
    assert served_at is not None and served_at <= 200


def test_lanes_follow_the_observed_distribution() -> None:
    lanes = ShapeLanes(8, warmup=64, refit_every=10**9)
    for it in work_items([(100 + i % 50, 1) for i in range(64)]):
        lanes.push(it)
    assert lanes.refits == 1
    assert lanes.edges[0] >= 100 and lanes.edges[-2] < 150  # edges inside the observed range


def test_scheduler_keeps_engine_at_best_batch_with_low_padding() -> None:
    lim = EngineLimits(max_batch_size=32, max_num_tokens=4096, max_input_len=512,
                       max_seq_len=600, kv_capacity_tokens=32 * 600)
    eng = SimulatedEngine(lim, clock=VirtualClock())
    sched = Scheduler(eng, ShapeLanes(32))
    import random

    rng = random.Random(3)
    items = work_items([(max(1, min(512, int(rng.lognormvariate(4.5, 0.9)))), rng.randint(5, 60))
                        for _ in range(3000)])
    for it in items:
        sched.push(it)
    occupancy, done = [], 0
    while done < len(items):
        sched.fill()
        occupancy.append(eng.active())
        done += len(sched.step())
    steady = occupancy[: len(occupancy) * 3 // 4]
    assert sum(steady) / len(steady) >= 0.95 * lim.best_batch_size
    assert sched.tokens.prefill_padding_waste < 0.03
    assert sched.tokens.completed == len(items)
