"""`fabric agent status --json` answered different key sets depending on why the agent does not run: the
default state dir absent gave running, healthy, heartbeat_age_s, lock_holder, state_dir, reason; an
existing state dir without status.json only heartbeat_age_s, lock_holder, running, healthy. Every answer
now has at least the same keys, ``state_dir`` and ``reason`` among them (``reason`` null when healthy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main

KEYS = {"running", "healthy", "heartbeat_age_s", "lock_holder", "state_dir", "reason"}
STATUS = {"ts": 1.0, "cycles": 3, "cycle_s": 0.5, "fallback_s": 60, "errors": 0, "failed_actions": 0,
          "last_error": None, "last_action_error": None, "waiting": {}, "tier_map": []}


def _status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = main(["agent", "status", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_an_empty_state_dir_answers_every_key_with_a_reason(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _status(capsys, "--state-dir", str(tmp_path))
    assert code == 5 and KEYS <= out.keys(), out
    assert out["state_dir"] == str(tmp_path) and not out["running"] and not out["healthy"]
    assert isinstance(out["reason"], str) and "not running" in out["reason"], out


def test_a_stale_status_answers_every_key_with_a_reason(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "status.json").write_text(json.dumps({**STATUS, "pid": 1}))
    code, out = _status(capsys, "--state-dir", str(tmp_path))
    assert code == 5 and KEYS <= out.keys() and out["reason"], out


def test_a_healthy_agent_answers_the_same_keys_reason_null(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A real lock holder (fabric's own lock, held by a child process) with a fresh heartbeat."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom pathlib import Path\n"
         "from fabric_hpc.slurm.agent_support import agent_lock\n"
         f"agent_lock(Path({str(tmp_path)!r})).acquire()\nprint('held', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        (tmp_path / "status.json").write_text(json.dumps({**STATUS, "pid": holder.pid, "ts": time.time()}))
        (tmp_path / "heartbeat").write_text(f"{int(time.time())}\n")
        code, out = _status(capsys, "--state-dir", str(tmp_path))
        assert code == 0 and KEYS <= out.keys(), out
        assert out["healthy"] and out["reason"] is None and out["state_dir"] == str(tmp_path), out
    finally:
        holder.kill()
        holder.wait()


def test_the_default_state_dir_absent_answers_the_same_keys(capsys: pytest.CaptureFixture[str]) -> None:
    if os.path.lexists("/var/lib/fabric-agent"):
        pytest.skip("this host has /var/lib/fabric-agent")
    code, out = _status(capsys)
    assert code == 5 and KEYS <= out.keys() and out["reason"], out
