"""An SRE's probe: agent A runs with ``--state-dir X --metrics-port 9345``; a config with another state dir
and the same port passed `fabric agent check` (``metrics port | ok | served by a running fabric agent``:
any ``/metrics`` naming ``fabric_agent_info`` was taken as the agent's own), then `fabric agent run` failed
with exit 3 (Address already in use). The row passes only when the listener is the agent of this config's
state dir: ``fabric_agent_info`` names the (resolved) state dir it serves for, one value per agent."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from tests.deploy.test_install import write_config
from tests.slurm.test_agent_actions import Fake, agent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def running_agent(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A real agent (fake Slurm) on state dir ``tmp_path/a`` serving metrics on a free port, in a thread."""
    state, port = tmp_path / "a", _free_port()
    state.mkdir()
    a = agent(state, Fake([]), metrics_port=port, interval_s=0.2)
    t = threading.Thread(target=a.run, daemon=True)
    t.start()
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield state, port
    a.stop()
    t.join(30)


def _port_row(cfg: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    main(["agent", "check", "--config", str(cfg), "--json"])
    return {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}["metrics port"]


def _config(tmp_path: Path, name: str, state: Path, port: int) -> Path:
    cfg = write_config(tmp_path / name, tmp_path, metrics_port=port, backend="rest",
                       rest_url="http://127.0.0.1:1", contact_timeout_s=2)
    text = cfg.read_text().replace(f'state_dir = "{tmp_path}/var/lib/fabric-agent"', f'state_dir = "{state}"')
    cfg.write_text(text)
    return cfg


def test_a_port_served_by_another_state_dirs_agent_fails_the_check(
        tmp_path: Path, running_agent: tuple[Path, int], capsys: pytest.CaptureFixture[str]) -> None:
    theirs, port = running_agent
    (tmp_path / "b").mkdir()
    row = _port_row(_config(tmp_path, "b.toml", tmp_path / "b", port), capsys)
    assert not row["ok"] and row["exit_code"] == 3, row
    assert f"127.0.0.1:{port}" in row["detail"] and str(theirs) in row["detail"], row


def test_a_port_served_by_this_state_dirs_agent_passes(
        tmp_path: Path, running_agent: tuple[Path, int], capsys: pytest.CaptureFixture[str]) -> None:
    ours, port = running_agent
    (tmp_path / "link").symlink_to(ours)  # the same directory by another name is the same state dir
    for state in (ours, tmp_path / "link"):
        row = _port_row(_config(tmp_path, "a.toml", state, port), capsys)
        assert row["ok"] and "served by the running fabric agent of this state dir" in row["detail"], row
