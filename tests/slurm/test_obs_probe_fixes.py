"""What an SRE probe found about the agent's observability: a torn audit log glued to the next record,
a start-up failure that left no reason, a metrics port checked only after Slurm answered (and not by
``fabric agent check``), a password in --rest-url echoed in errors, and events no document lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.events import read_json_lines
from fabric_hpc.slurm import audit
from fabric_hpc.slurm.contract import SlurmError
from tests.slurm.test_agent_actions import Fake, agent, gang


def test_a_torn_audit_log_is_cut_before_the_agent_appends(tmp_path: Path) -> None:
    (tmp_path / audit.AUDIT_LOG).write_text('{"ts":1,"event":"agent.stop"}\n{"ts":1,"event":"agent.pl')
    (tmp_path / audit.CYCLES_LOG).write_text('{"input":{}}\n{"inp')
    a = agent(tmp_path, Fake([gang(1)]), interval_s=0.01, record_cycles=True)
    a.run(max_cycles=1)
    records = read_json_lines(tmp_path / audit.AUDIT_LOG)  # raises on a line damaged in the middle
    tail = audit.read_tail(tmp_path)
    assert tail.damaged == 0 and [e["event"] for e in records][:2] == ["agent.stop", "agent.torn_tail_cut"]
    cuts = {Path(e["file"]).name: e["bytes"] for e in records if e["event"] == "agent.torn_tail_cut"}
    assert cuts == {audit.AUDIT_LOG: len('{"ts":1,"event":"agent.pl'), audit.CYCLES_LOG: len('{"inp')}
    assert len(read_json_lines(tmp_path / audit.CYCLES_LOG)) == 2  # the old record and this cycle's


class Unreachable(Fake):
    def nodes(self):
        raise SlurmError("slurmctld is down", hint="scontrol ping")


def test_a_fatal_start_up_error_is_the_stop_reason(tmp_path: Path) -> None:
    a = agent(tmp_path, Unreachable([]), contact_timeout_s=5)
    with pytest.raises(SlurmError):
        a.run(max_cycles=1)
    stop = read_json_lines(tmp_path / audit.AUDIT_LOG)[-1]
    assert stop["event"] == "agent.stop" and stop["reason"] == "error" and stop["exit_code"] == 5
    assert "slurmctld is down" in stop["error"] and stop["kind"] == "SlurmError"


def test_a_clean_stop_says_why(tmp_path: Path) -> None:
    a = agent(tmp_path, Fake([]), interval_s=0.01)
    a.run(max_cycles=2)
    assert read_json_lines(tmp_path / audit.AUDIT_LOG)[-1]["reason"] == "cycles"
    b = agent(tmp_path, Fake([]), interval_s=0.01)
    b.stop()
    b.run()
    assert read_json_lines(tmp_path / audit.AUDIT_LOG)[-1]["reason"] == "signal"
