"""A user who is not the agent's (the state dir is 0750 service_user:slurm): `fabric slurm why` still
explains from Slurm's side and says why the agent's side is missing; `fabric agent status` says
who may read it. Checked with the kernel's real permission check (a child with another euid)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.real import require_real


def _as_nobody(fn) -> str:
    """Run ``fn()`` in a forked child whose effective uid/gid are nobody's; its result or error text."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        try:
            os.setegid(65534)
            os.seteuid(65534)
            out = repr(fn())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as text
            out = f"{type(exc).__name__}: {getattr(exc, 'message', exc)} | {getattr(exc, 'hint', '')}"
        os.write(write, out.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    os.waitpid(pid, 0)
    return text


@pytest.fixture()
def state_dir():
    import shutil
    import tempfile

    require_real("slurm", os.geteuid() == 0, "switching to another user needs root")
    base = Path(tempfile.mkdtemp(prefix="fabric-state-", dir="/tmp"))  # pytest's tmp is 0700: not for others
    base.chmod(0o755)
    d = base / "state"
    d.mkdir(mode=0o750)
    (d / "decisions.jsonl").write_text(json.dumps({"event": "agent.place", "job": 5, "ts": 1.0}) + "\n")
    (d / "status.json").write_text("{}")
    yield d
    shutil.rmtree(base)


def test_why_without_the_audit_log(state_dir: Path) -> None:
    from fabric_hpc.slurm.why import last_decisions

    assert "place" in last_decisions(state_dir, 5)  # root reads it
    assert _as_nobody(lambda: last_decisions(state_dir, 5)) == repr({"unreadable": {"path": str(state_dir / "decisions.jsonl")}})


def test_agent_status_names_who_may_read(state_dir: Path) -> None:
    from fabric_hpc.cli.agent import _check_state_files

    text = _as_nobody(lambda: _check_state_files(str(state_dir)))
    assert text.startswith("ConfigError: agent state directory") and "service user" in text, text
