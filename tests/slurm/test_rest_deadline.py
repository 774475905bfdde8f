"""The rest backend's deadline is for the whole request, not each receive: a slurmrestd (or a proxy)
that trickles its answer, or stops answering, fails the request within ``timeout``; the agent's stop
abandons a request in flight and its last calls (release_pins) keep to a short budget. On real unix
socket servers that stand in for a slow and a frozen slurmrestd."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_hpc.slurm import rest_backend
from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.rest_backend import RestClient
from tests.slurm.unix_http import UnixHttpServer


class SlowServer(UnixHttpServer):
    """``trickle``: headers, then 10 bytes of a 5000-byte body every 0.1 s; ``frozen``: no answer at
    all (until the client closes); ``big``: a 5000-byte JSON body at once. Until ``done`` is set."""

    def __init__(self, path: Path, mode: str) -> None:
        self.mode, self.done, self.asked = mode, threading.Event(), threading.Event()
        super().__init__(path)

    def handle(self, conn: socket.socket, request: bytes) -> None:
        self.seen.append(request.decode().split(" ", 2)[1])
        self.asked.set()
        body = b'{"jobs": [], "pad": "' + b"x" * 4970 + b'"}'
        if self.mode == "big":
            self.reply(conn, "200 OK", body)
            return
        if self.mode == "frozen":  # until the client gives up (closes: recv answers b"")
            conn.recv(1)
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % len(body))
        for i in range(0, len(body), 10):
            if self.done.wait(0.1):
                return
            try:
                conn.sendall(body[i:i + 10])
            except OSError:
                return  # the client gave up


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SlowServer]:
    srv = SlowServer(tmp_path / "restd.sock", request.param)
    yield srv
    srv.done.set()
    srv.close()


def _in_thread(work) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = work()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


@pytest.mark.parametrize("server", ["trickle"], indirect=True)
def test_a_trickled_answer_fails_within_the_timeout_of_the_whole_request(server: SlowServer) -> None:
    client = RestClient(f"unix:{server.path}", token="t", api="v0.0.44", timeout=1.0)
    with pytest.raises(SlurmError, match=r"GET /slurm/v0.0.44/jobs/ did not answer within 1 s") as info:
        client.jobs()
    assert "slurmrestd stopped or overloaded" in (info.value.hint or "")
    assert server.seen == ["/slurm/v0.0.44/jobs/"]  # a late answer is not a dropped one: not tried again


@pytest.mark.parametrize("server", ["big"], indirect=True)
def test_an_answer_larger_than_the_cap_is_not_read(server: SlowServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rest_backend, "MAX_BODY_BYTES", 1000)
    client = RestClient(f"unix:{server.path}", token="t", api="v0.0.44")
    with pytest.raises(SlurmError, match="the answer is larger than"):
        client.jobs()
    monkeypatch.setattr(rest_backend, "MAX_BODY_BYTES", 1 << 20)
    assert client.jobs() == []


@pytest.mark.parametrize("server", ["frozen"], indirect=True)
def test_interrupt_abandons_a_request_in_flight_and_resume_sends_again(server: SlowServer) -> None:
    client = RestClient(f"unix:{server.path}", token="t", api="v0.0.44", timeout=100.0)
    thread, out = _in_thread(client.jobs)
    assert server.asked.wait(10)
    client.interrupt()
    thread.join(20)
    assert not thread.is_alive()
    assert isinstance(out.get("error"), SlurmError)
    assert "abandoned: the agent is stopping" in str(out["error"])
    server.seen.clear()
    with pytest.raises(SlurmError, match="abandoned"):
        client.nodes()  # refused before anything is sent
    assert server.seen == []
    client.resume()
    client.timeout = 0.5
    with pytest.raises(SlurmError, match="did not answer within 0.5 s"):
        client.jobs()
    assert server.seen == ["/slurm/v0.0.44/jobs/"]


def _agent(client: RestClient, tmp_path: Path):
    from fabric_hpc.slurm.agent import Agent, AgentConfig
    from fabric_hpc.topology import build, generators

    state = tmp_path / "state"
    state.mkdir()
    return Agent(client, build(generators.leaf_spine(2, hosts_per_leaf=2, gpus=8, cpus=8)),
                 AgentConfig(state_dir=str(state)))


@pytest.mark.parametrize("server", ["frozen"], indirect=True)
def test_the_agents_stop_abandons_a_frozen_read_and_release_pins_keeps_to_its_budget(
        server: SlowServer, tmp_path: Path) -> None:
    client = RestClient(f"unix:{server.path}", token="t", api="v0.0.44", timeout=100.0)
    agent = _agent(client, tmp_path)
    thread, out = _in_thread(agent.cycle)
    assert server.asked.wait(10)
    agent.stop()  # what SIGTERM calls
    thread.join(20)
    assert not thread.is_alive() and "abandoned" in str(out.get("error"))
    server.seen.clear()
    thread, out = _in_thread(lambda: agent.release_pins(budget_s=1.0))
    thread.join(20)
    assert not thread.is_alive() and out.get("value") == []
    assert server.seen == ["/slurm/v0.0.44/jobs/"]  # it tried, within its budget, not the client's 100 s
    assert client.timeout == 100.0
