"""A FIFO in place of the agent's deferrals.json (probe 7): `fabric slurm why --state-dir` hung forever in
own_begins' blocking open(), as would the agent's start (DeferralStore.load). Both open it without
blocking now: why tells nothing of it (as for a missing file), the agent says why it ignored it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fabric_hpc.slurm.actions import Actions
from fabric_hpc.slurm.deferral_store import DEFERRALS_FILE, FORMAT, DeferralStore, own_begins
from tests.child import run_unblocked


def _in_child(code: str, state_dir: Path) -> str:
    """``code`` (with ``sd``, the state dir) in a child, which must not block."""
    return run_unblocked(code, sd=state_dir)


def test_own_begins_does_not_block_on_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / DEFERRALS_FILE)
    out = _in_child("from fabric_hpc.slurm.deferral_store import own_begins\nprint(own_begins(sd))", tmp_path)
    assert out == "{}"


def test_the_agent_ignores_a_fifo_and_says_why(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / DEFERRALS_FILE)
    code = ("from fabric_hpc.slurm.actions import Actions\nfrom fabric_hpc.slurm.deferral_store import "
            "DeferralStore\nprint(DeferralStore(sd).load(Actions(None, print)))")
    assert "not a regular file" in _in_child(code, tmp_path)


def test_a_linked_deferrals_file_is_not_followed(tmp_path: Path) -> None:
    """The agent writes it by rename: a symbolic link in its place is someone else's, not read."""
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": FORMAT, "jobs": {"7": {"asked": [], "begin": 100.0}}}))
    (tmp_path / DEFERRALS_FILE).symlink_to(other)
    assert own_begins(tmp_path) == {}
    ignored = DeferralStore(tmp_path).load(Actions(None, print))  # type: ignore[arg-type]
    assert "symbolic link" in (ignored or "")
    os.unlink(tmp_path / DEFERRALS_FILE)
    other.rename(tmp_path / DEFERRALS_FILE)
    assert own_begins(tmp_path) == {7: 100.0}
    actions = Actions(None, print)  # type: ignore[arg-type]
    assert DeferralStore(tmp_path).load(actions) is None and actions.waits == {7: 100.0}


_TRY = ("from fabric_hpc.errors import ConfigError\n{}\n"
        "try:\n    {}\nexcept ConfigError as exc:\n    print(exc)")
_STATUS = _TRY.format("from fabric_hpc.slurm.agent import read_status", "read_status(sd)")


@pytest.mark.parametrize("name, code, expect", [
    ("qos.json", "from fabric_hpc.slurm.qos_store import QosMemory\nprint(QosMemory(sd).load())",
     "not a regular file"),
    ("usage.json", _TRY.format("from fabric_hpc.slurm.usage import AgentUsage", "AgentUsage(sd)"),
     "not a regular file"),
    ("status.json", _STATUS, "is a FIFO"),
    ("heartbeat", _STATUS, "is a FIFO"),
], ids=["qos", "usage", "status", "heartbeat"])
def test_other_state_files_do_not_block_on_a_fifo(tmp_path: Path, name: str, code: str, expect: str) -> None:
    """The agent's other state files (qos.json, usage.json) and what `fabric agent status` reads."""
    os.mkfifo(tmp_path / name)
    assert expect in _in_child(code, tmp_path)
