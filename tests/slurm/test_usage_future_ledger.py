"""A usage.json whose ``t`` lies in the future (a clock that was ahead, then set right; a copied state dir)
froze fairshare charging until the clock caught up — years, for t = now + 3 years. The ledger is
re-anchored at now, with an event saying the clock went back, and charging resumes at once."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fabric_hpc.slurm.usage import AgentUsage
from fabric_hpc.slurm.usage_source import UsageSource

YEAR = 365 * 86400.0


def _ledger_file(state: Path, t: float) -> None:
    data = {"ledger": {"half_life_s": 7 * 86400.0, "t": t, "usage": {"a": 100.0}}, "held": {"a": 8}}
    (state / "usage.json").write_text(json.dumps(data))


def test_a_ledger_time_in_the_future_is_reanchored_and_charging_resumes(tmp_path: Path) -> None:
    now = time.time()
    _ledger_file(tmp_path, now + 3 * YEAR)
    usage = AgentUsage(tmp_path)
    first = usage.charge(now, {"a": 8})
    assert first["a"] == 100.0  # nothing charged for the clock going back, nothing lost
    assert usage.went_back_s is not None and abs(usage.went_back_s - 3 * YEAR) < 5
    assert json.loads((tmp_path / "usage.json").read_text())["ledger"]["t"] == now
    after = AgentUsage(tmp_path).charge(now + 60, {"a": 8})  # a restarted agent too
    assert 100.0 + 8 * 60 * 0.99 < after["a"] < 100.0 + 8 * 60


def test_the_agent_says_the_clock_went_back(tmp_path: Path) -> None:
    now = time.time()
    _ledger_file(tmp_path, now + 3 * YEAR)
    events: list[tuple[str, dict]] = []
    source = UsageSource("ledger", AgentUsage(tmp_path), lambda argv: "",
                         lambda w, **f: events.append((w, f)))
    source.usage(now, {"a": 8})
    [(name, fields)] = [e for e in events if e[0] == "usage_clock_back"]
    assert fields["ledger_t"] == now + 3 * YEAR and fields["now"] == now
    assert "charging resumes" in fields["note"]
    events.clear()
    assert source.usage(now + 60, {"a": 8})["a"] > 100.0
    assert not [e for e in events if e[0] == "usage_clock_back"]
