"""A damaged ``usage.json`` (a disk error, a restored backup, a hand edit) no longer stops the agent: it is
moved aside as ``usage.json.damaged-<UTC time>`` (never over an earlier one), the agent logs
``agent.usage_ignored`` and starts its usage from zero, as it does for a damaged qos.json or
deferrals.json. Numbers out of range (``held`` of 10**400: every charge raised OverflowError) are damage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fabric_hpc.slurm.manifest import is_state_entry
from fabric_hpc.slurm.usage import AgentUsage
from tests.slurm.test_agent_actions import Fake, agent, events

ASIDE = re.compile(r"usage\.json\.damaged-\d{8}T\d{6}Z(\.\d+)?")


def _good(tmp_path: Path) -> dict:
    u = AgentUsage(tmp_path)
    u.charge(1000.0, {"acct": 8})
    u.charge(2000.0, {"acct": 8})
    return json.loads((tmp_path / "usage.json").read_text())


def _bad_files(good: dict) -> list[str]:
    text = json.dumps(good)
    huge = [dict(good, held={"acct": 10**400}), dict(good, held={"acct": -1}), dict(good, held={"acct": 1.5}),
            dict(good, ledger=dict(good["ledger"], usage={"acct": 10**400})),
            dict(good, ledger=dict(good["ledger"], usage={"acct": 1e300})),
            dict(good, ledger=dict(good["ledger"], t=1e300)), dict(good, ledger=[])]
    return [text[: len(text) // 2], "[1]", "{}"] + [json.dumps(d) for d in huge]


def test_a_damaged_usage_file_is_moved_aside_and_usage_starts_from_zero(tmp_path: Path) -> None:
    good = _good(tmp_path)
    for n, bad in enumerate(_bad_files(good)):
        (tmp_path / "usage.json").write_text(bad)
        u = AgentUsage(tmp_path)  # no ConfigError
        assert u.damaged and u.ledger.usage() == {} and u.held == {}, bad
        assert u.charge(3000.0 + n, {"acct": 8}) == {}  # no OverflowError; the file is kept, not replaced
        aside = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("usage.json."))
        assert len(aside) == n + 1 and all(ASIDE.fullmatch(a) for a in aside)  # no earlier one replaced
        assert bad in {(tmp_path / a).read_text() for a in aside}
        assert AgentUsage(tmp_path).damaged is None  # the new file is the agent's
    assert all(is_state_entry(a) for a in aside)  # install still takes the state dir as the agent's


def test_the_agent_starts_with_a_damaged_usage_file_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "usage.json").write_text('{"ledger": {"half_life_s": 604800.0, "t": 1')  # cut short
    a = agent(tmp_path, Fake([]), interval_s=0.1)  # no ConfigError from Agent.__init__
    a.run(max_cycles=1)
    ignored = [e for e in events(tmp_path) if e["event"] == "agent.usage_ignored"]
    assert len(ignored) == 1 and ignored[0]["file"] == str(tmp_path / "usage.json")
    assert ASIDE.fullmatch(Path(ignored[0]["moved_to"]).name)
    assert "not the agent's usage" in ignored[0]["reason"]
    assert Path(ignored[0]["moved_to"]).read_text().endswith('"t": 1')
    assert json.loads((tmp_path / "usage.json").read_text())["held"] == {}  # started from zero
    assert a.errors == 0


def test_a_half_life_change_still_stops_the_agent(tmp_path: Path) -> None:
    from fabric_hpc.errors import ConfigError

    _good(tmp_path)
    with pytest.raises(ConfigError, match="half-life"):
        AgentUsage(tmp_path, half_life_s=60.0)
