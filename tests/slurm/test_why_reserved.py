"""When will a reserved gang start? The policy reserves GPUs for the first gang that cannot start (its
earliest start with running jobs ended at their time limits), but nothing said so: ``fabric slurm why`` gave
only "the resources it asks for are busy", and neither ``agent.waiting`` nor ``status.json`` had the
reservation. Now the ``agent.waiting`` record and ``status.json`` carry ``reserved`` (start, hosts, the jobs
whose end it waits for) and ``why`` says "reserved: expected to start by <time> on N hosts when job(s) X end".
The burst of tests/slurm/test_backfill_reservation_view.py: B (unmarked, 10 nodes, 2 min) runs, H (tier
high, 16 nodes) waits for it, S (1 node, 10 min) waits behind H."""

from __future__ import annotations

import json
from pathlib import Path

from fabric_hpc.events import read_json_lines
from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.contract import Node
from fabric_hpc.slurm.why import _at, explain
from tests.slurm.test_agent_actions import Fake
from tests.slurm.test_backfill_reservation_view import FAB, NOW, burst, nodes


class Busy(Fake):
    def nodes(self) -> list[Node]:
        return nodes()


def _cycle(tmp_path: Path) -> tuple[Busy, Agent]:
    client = Busy(burst("nofabric"))
    agent = Agent(client, FAB, AgentConfig(state_dir=str(tmp_path), fallback_s=20, pin_timeout_s=30))
    res = agent.cycle(NOW)
    assert res.waiting == {2: "Resources", 3: "Priority"}
    return client, agent


def test_the_waiting_record_and_the_status_carry_the_reservation(tmp_path: Path) -> None:
    _cycle(tmp_path)
    want = {"2": {"start": NOW - 3 + 120, "hosts": 16, "after": [1]}}
    waiting = [e for e in read_json_lines(tmp_path / "decisions.jsonl") if e["event"] == "agent.waiting"]
    assert waiting[-1]["reserved"] == want  # S (3) waits on priority: no reservation of its own (EASY)
    assert json.loads((tmp_path / "status.json").read_text())["reserved"] == want


def test_why_says_when_and_where_a_reserved_gang_starts(tmp_path: Path) -> None:
    client, _ = _cycle(tmp_path)
    out = explain(client, 2, state_dir=tmp_path)
    assert out["decisions"]["waiting"]["reserved"] == {"start": NOW - 3 + 120, "hosts": 16, "after": [1]}
    assert f"reserved: expected to start by {_at(NOW - 3 + 120)} on 16 hosts when job 1 ends" in out["text"]
    assert "reserved" not in explain(client, 3, state_dir=tmp_path)["text"]


def test_a_changed_reservation_is_written_again(tmp_path: Path) -> None:
    """Same reasons, a reservation that moved (B's limit raised): a new agent.waiting record."""
    client, agent = _cycle(tmp_path)
    client._jobs = burst("nofabric", limit_min=30)
    agent.cycle(NOW + 1)
    waiting = [e for e in read_json_lines(tmp_path / "decisions.jsonl") if e["event"] == "agent.waiting"]
    assert [w["reserved"]["2"]["start"] for w in waiting] == [NOW - 3 + 120, NOW - 3 + 1800]
