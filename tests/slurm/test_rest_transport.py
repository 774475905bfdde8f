"""The REST transport on a real unix socket: a dropped read is tried again, a dropped write never is."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.rest_backend import RestClient
from tests.slurm.unix_http import UnixHttpServer


class DroppingServer(UnixHttpServer):
    """Answers HTTP on a unix socket, resetting (RST, SO_LINGER 0) the first ``drops`` connections."""

    def __init__(self, path: Path, drops: int) -> None:
        self.drops = drops
        super().__init__(path)

    def handle(self, conn: socket.socket, request: bytes) -> None:
        self.seen.append(request.decode().split(" ", 2)[:2])
        if len(self.seen) <= self.drops:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        self.reply(conn, "200 OK", {"jobs": [], "errors": [], "warnings": []})


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DroppingServer]:
    srv = DroppingServer(tmp_path / "restd.sock", request.param)
    yield srv
    srv.close()


@pytest.mark.parametrize("server", [1, 2], indirect=True)
def test_a_read_whose_connection_is_reset_is_tried_again(server: DroppingServer) -> None:
    client = RestClient(f"unix:{server.path}", token="t", api="v0.0.44")
    assert client.jobs() == []
    assert [m for m, _ in server.seen] == ["GET"] * (server.drops + 1)


@pytest.mark.parametrize("server", [3], indirect=True)
def test_a_read_reset_every_time_is_a_clear_error(server: DroppingServer) -> None:
    client = RestClient(f"unix:{server.path}", token="t", api="v0.0.44")
    with pytest.raises(SlurmError, match=r"GET /slurm/v0.0.44/jobs/? failed") as info:
        client.jobs()
    assert "slurmrestd running" in str(info.value.hint)
    assert len(server.seen) == 3


@pytest.mark.parametrize("server", [1], indirect=True)
def test_a_write_is_never_sent_twice(server: DroppingServer) -> None:
    client = RestClient(f"unix:{server.path}", token="t", api="v0.0.44")
    with pytest.raises(SlurmError, match="POST"):
        client.update(7, Comment="fabric")
    assert [m for m, _ in server.seen] == ["POST"]


@pytest.mark.parametrize("server", [0], indirect=True)
def test_a_whole_answer_with_connection_close_is_read(server: DroppingServer) -> None:
    """Python >= 3.12 (Debian 13's 3.13) closes the response's socket as its last Content-Length byte is read:
    the reader must stop there, not set a timeout on the closed socket (EBADF, "is slurmrestd running?")."""
    client = RestClient(f"unix:{server.path}", token="t", api="v0.0.44")
    assert client.jobs() == []
    assert client.jobs() == []
    assert [m for m, _ in server.seen] == ["GET", "GET"]
