"""Token-budget admission with high/low-water hysteresis.

The in-flight budget is counted in padded tokens (prompt + generation reserve) of every item
admitted and not yet completed: items waiting in shape lanes plus sequences in the engine. An
item enters only when its cost fits under the high-water mark. Once an item does not fit, the
gate *closes* and stays closed until completions bring the in-flight total down to the low-water
mark; then it reopens. Without the gap every completion would admit one item and stall again
(admit/stall oscillation, one wake-up per completion); with it, admission happens in bursts that
refill the lanes with enough items to choose same-shape batches from.

The budget comes from the engine's limits: ``high = overcommit * kv_capacity_tokens`` -- the
engine can hold ``kv_capacity_tokens``; the rest is the lanes' reservoir.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from fabric_hpc.errors import ConfigError
from fabric_hpc.inference.engine import EngineLimits

__all__ = ["AdmissionStats", "TokenBudget", "budget_for"]


@dataclass(slots=True)
class AdmissionStats:
    admitted: int = 0
    admitted_tokens: int = 0
    released_tokens: int = 0
    closes: int = 0  # open -> closed transitions (stalls)
    reopens: int = 0


class TokenBudget:
    """Thread-safe padded-token budget with hysteresis. ``high`` and ``low`` in tokens."""

    def __init__(self, high: int, low: int) -> None:
        if not 0 <= low < high:
            raise ConfigError(f"token budget needs 0 <= low ({low}) < high ({high})")
        self.high, self.low = high, low
        self.in_flight = 0
        self.open = True
        self.stats = AdmissionStats()
        self._cond = threading.Condition()

    def _fits(self, cost: int) -> bool:
        # an item larger than the whole budget is admitted alone, never starved forever
        return self.in_flight + cost <= self.high or self.in_flight == 0

    def try_admit(self, cost: int) -> bool:
        """Admit ``cost`` tokens now if the gate is open and they fit; never blocks."""
        with self._cond:
            return self._try(cost)

    def _try(self, cost: int) -> bool:
        if self.open and self._fits(cost):
            self.in_flight += cost
            self.stats.admitted += 1
            self.stats.admitted_tokens += cost
            return True
        if self.open:
            self.open = False
            self.stats.closes += 1
        return False

    def admit(self, cost: int, timeout: float | None = None,
              stop: threading.Event | None = None) -> bool:
        """Block until ``cost`` is admitted (True), ``timeout`` passes or ``stop`` is set (False)."""
        with self._cond:
            waited = 0.0
            while not self._try(cost):
                if stop is not None and stop.is_set():
                    return False
                if timeout is not None and waited >= timeout:
                    return False
                step = 0.05 if timeout is None else min(0.05, timeout - waited)
                self._cond.wait(step)
                waited += step
            return True

    def release(self, cost: int) -> None:
        """Return ``cost`` tokens (an item completed); reopen at the low-water mark."""
        with self._cond:
            self.in_flight -= cost
            self.stats.released_tokens += cost
            if self.in_flight < 0:
                raise AssertionError("token budget released more than it admitted")
            if not self.open and self.in_flight <= self.low:
                self.open = True
                self.stats.reopens += 1
                self._cond.notify_all()


def budget_for(limits: EngineLimits, *, overcommit: float = 2.0, low_fraction: float = 0.8
               ) -> TokenBudget:
    """The admission budget an engine's limits imply (see module docstring)."""
    if overcommit < 1.0 or not 0.0 < low_fraction < 1.0:
        raise ConfigError("overcommit must be >= 1 and low_fraction in (0, 1)")
    high = max(int(limits.kv_capacity_tokens * overcommit), limits.max_seq_len)
    return TokenBudget(high, int(high * low_fraction))
