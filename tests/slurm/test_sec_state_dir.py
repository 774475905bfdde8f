"""The agent's state directory as untrusted input: a usage.json nested too deep ended `fabric agent run` in a
RecursionError traceback (now it is moved aside like any damaged one); a world-writable state dir (where any
user may swap usage.json, qos.json, deferrals.json, status.json or the audit log for their own) was used by
`fabric agent run`, though `fabric agent check` refuses it: refused before Slurm is asked (exit 3, one line
and the fix)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]


def _run_agent(state_dir: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "fabric_hpc.cli", "agent", "run", "--topology",
            str(REPO / "topology" / "leaf-spine-16.yaml"), "--state-dir", str(state_dir), "--cycles", "1",
            "--slurm-conf", str(state_dir.parent / "no-such-slurm.conf")]
    return subprocess.run(argv, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=120)


def test_a_usage_file_nested_too_deep_is_set_aside(tmp_path: Path) -> None:
    """No RecursionError: like any damaged usage.json it is moved aside at start (test_usage_damaged.py)."""
    from fabric_hpc.slurm.usage import AgentUsage

    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    (state / "usage.json").write_text('{"ledger": ' + "[" * 100_000)
    assert "is not the agent's usage file" in (AgentUsage(state).damaged or "")
    proc = _run_agent(state)
    assert proc.returncode == 5 and "Traceback" not in proc.stderr, proc.stderr[-2000:]  # no Slurm here
    assert "first contact with Slurm failed" in proc.stderr, proc.stderr
    assert not (state / "usage.json").exists() and list(state.glob("usage.json.damaged-*"))


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o757])
def test_a_world_writable_state_dir_is_refused(tmp_path: Path, mode: int) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    proc = _run_agent(state)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"state dir {state} is writable by every user (mode {mode:o})" in proc.stderr, proc.stderr
    assert f"fix: chmod o-w {state}" in proc.stderr, proc.stderr
    assert sorted(os.listdir(state)) == [], "nothing is written into it"
