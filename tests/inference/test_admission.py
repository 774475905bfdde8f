"""Token-budget admission and its high/low-water hysteresis."""

from __future__ import annotations

import threading

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.inference import EngineLimits, TokenBudget, budget_for


def test_admits_until_high_water_then_closes() -> None:
    b = TokenBudget(high=100, low=60)
    assert b.try_admit(40) and b.try_admit(40)
    assert not b.try_admit(30)          # 110 > 100: closes
    assert not b.open and b.stats.closes == 1
    assert not b.try_admit(5)           # closed: even a fitting item waits
    assert b.in_flight == 80


def test_reopens_only_at_low_water() -> None:
    b = TokenBudget(high=100, low=60)
    for _ in range(10):
        assert b.try_admit(10)
    assert not b.try_admit(10)
    b.release(10)                       # 90: above low water, stays closed
    assert not b.open and not b.try_admit(10)
    b.release(30)                       # 60: reopens
    assert b.open and b.stats.reopens == 1
    assert b.try_admit(10)


def test_hysteresis_prevents_oscillation() -> None:
    """One completion at a time under a full budget: without the gap every release would
    admit one item and close again; with it, the gate flips once per burst."""
    b = TokenBudget(high=1000, low=800)
    queue = []
    while b.try_admit(10):
        queue.append(10)
    for _ in range(500):                # steady completions, producer always ready
        b.release(queue.pop(0))
        while b.try_admit(10):
            queue.append(10)
    # 500 completions of 10 tokens = 25 bursts of 200 tokens -> ~25 closes, not ~500
    assert b.stats.closes <= 30
    assert b.in_flight <= b.high


def test_oversized_item_admitted_alone() -> None:
    b = TokenBudget(high=50, low=10)
    assert b.try_admit(500)             # empty: admitted alone rather than starved
    assert not b.try_admit(1)
    b.release(500)
    assert b.try_admit(1)


def test_blocking_admit_waits_for_release() -> None:
    b = TokenBudget(high=10, low=5)
    assert b.try_admit(10)
    got = []
    t = threading.Thread(target=lambda: got.append(b.admit(4, timeout=5.0)))
    t.start()
    t.join(0.1)
    assert t.is_alive() and not got      # blocked: backpressure
    b.release(10)
    t.join(5.0)
    assert got == [True] and b.in_flight == 4


def test_admit_honours_stop_and_timeout() -> None:
    b = TokenBudget(high=10, low=5)
    b.try_admit(10)
    stop = threading.Event()
    stop.set()
    assert b.admit(1, stop=stop) is False
    assert b.admit(1, timeout=0.05) is False


def test_budget_from_engine_limits() -> None:
    lim = EngineLimits(8, 512, 64, 128, 1000)
    b = budget_for(lim, overcommit=2.0, low_fraction=0.75)
    assert (b.high, b.low) == (2000, 1500)
    with pytest.raises(ConfigError):
        budget_for(lim, overcommit=0.5)
    with pytest.raises(ConfigError):
        TokenBudget(high=10, low=10)


def test_release_more_than_admitted_is_a_bug() -> None:
    b = TokenBudget(high=10, low=5)
    with pytest.raises(AssertionError):
        b.release(1)
