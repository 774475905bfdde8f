"""docs/events.md lists every event the code emits (SRE probe 12: 17 emitted events were in no document),
and lists none that nothing emits."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: a literal name given to emit / make_event
_LITERAL = re.compile(r"\b(?:emit|make_event)\(\s*\"([a-z_.]+)\"")
#: the agent's helpers that prefix ``agent.``: Agent._log / _note, Actions.note, UsageSource.log
_AGENT = re.compile(r"\b(?:self\._log|self\._note|self\.note|self\.log)\(\s*\"([a-z_]+)\"")


def emitted() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "fabric_hpc").rglob("*.py"):
        text = path.read_text()
        names |= set(_LITERAL.findall(text))
        if path.parent.name == "slurm":
            names |= {f"agent.{n}" for n in _AGENT.findall(text)}
    return names


def documented() -> set[str]:
    doc = (REPO / "docs" / "events.md").read_text()
    return set(re.findall(r"^\| `([a-z_.]+)` \|", doc, flags=re.M))


def test_every_emitted_event_is_in_the_catalogue() -> None:
    names = emitted()
    assert {"agent.stop", "agent.handoff", "agent.usage_error", "checkpoint.saved", "infer.merged",
            "placement.decided", "cli.error"} <= names  # the scan finds each kind of call
    assert not names - documented(), f"emitted but not in docs/events.md: {sorted(names - documented())}"


def test_the_catalogue_lists_only_emitted_events() -> None:
    extra = documented() - emitted()
    assert not extra, f"in docs/events.md, emitted nowhere: {sorted(extra)}"


def test_the_agent_down_alert_does_not_rest_on_series_a_dead_agent_no_longer_serves() -> None:
    """SRE probe 2: `time() - fabric_agent_last_cycle_timestamp_seconds > 60` returns nothing once the
    agent's series are stale, so the agent section must alert on `up` and `absent`, and its rate()
    windows must hold two scrapes at 30-60 s (not [1m])."""
    doc = (REPO / "docs" / "metrics.md").read_text()
    agent = doc[doc.index("## The agent"):doc.index("## The inference harness")]
    assert re.search(r'expr: up\{job="[^"]+"\} == 0', agent)
    assert re.search(r"expr: absent\(up\{job=", agent)
    assert "expr: time() - fabric_agent_last_cycle_timestamp_seconds > 60" in agent
    code = "".join(re.findall(r"```[a-z]*\n(.*?)```", agent, flags=re.S))
    windows = [int(n) * (60 if unit == "m" else 1) for n, unit in re.findall(r"\[(\d+)([sm])\]", code)]
    assert windows and min(windows) >= 240, windows  # four scrapes at 60 s
