"""The agent's systemd readiness (Type=notify) over a real Unix datagram socket."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.replay import ReplayClient, scale_recording
from fabric_hpc.slurm.sdnotify import notify
from fabric_hpc.topology import build, generators
from tests.slurm_integration.test_agent_replay import recorded


def _listen(path: str, *, abstract: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + path if abstract else path)
    sock.settimeout(5)
    return sock


def _messages(sock: socket.socket) -> list[str]:
    out = []
    sock.setblocking(False)
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_notify_sends_to_a_path_and_an_abstract_socket(tmp_path: Path) -> None:
    with _listen(str(tmp_path / "n.sock")) as sock:
        assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "n.sock")})
        assert sock.recv(4096) == b"READY=1"
    name = f"fabric-test-{tmp_path.name}"
    with _listen(name, abstract=True) as sock:
        assert notify("STATUS=x", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"STATUS=x"


@pytest.mark.parametrize("value", ["", "relative/sock", "vsock:2:1234", "/" + "a" * 200, "/no/such/dir/sock",
                                   "/tmp/\0x"])
def test_notify_ignores_absent_or_unusable_addresses(value: str) -> None:
    assert notify("READY=1", {"NOTIFY_SOCKET": value} if value else {}) is False


def test_agent_is_ready_after_first_contact_reports_cycles_and_stopping(tmp_path: Path, monkeypatch) -> None:
    fab = build(generators.superpod(sus=1))
    nodes, jobs = scale_recording(*recorded("25.11"), fab.hosts, pending=4, busy_fraction=0.5)
    with _listen(str(tmp_path / "notify.sock")) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
        agent = Agent(ReplayClient(nodes, jobs), fab, AgentConfig(state_dir=str(tmp_path / "state"),
                                                                  usage_source="ledger", interval_s=0.1))
        agent.run(max_cycles=2)
        got = _messages(sock)
    assert got[0].startswith("READY=1\nMAINPID=")
    assert [m.split(":")[0] for m in got[1:3]] == ["STATUS=cycle 1", "STATUS=cycle 2"]
    assert got[-1] == "STOPPING=1"
