"""The rest backend asks slurmrestd's spec again when the version it speaks is gone (a restarted
slurmrestd offering another one, e.g. ``-d data_parser/v0.0.42``): on a real unix socket server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_hpc.errors import NotFoundError
from fabric_hpc.slurm.rest_backend import RestClient
from tests.slurm.unix_http import UnixHttpServer

#: what slurmrestd answers a path it has no endpoint for
NO_ENDPOINT = {"errors": [{"description": "Unable to find requested URL endpoint", "error_number": 9001}]}


class VersionedServer(UnixHttpServer):
    """Answers ``/openapi/v3`` with the paths of ``self.version`` and ``/slurm/<it>/jobs/`` with no
    jobs; any other version's path: 404 ``Unable to find requested URL endpoint``."""

    def __init__(self, path: Path, version: str) -> None:
        self.version = version
        super().__init__(path)

    def _answer(self, target: str) -> tuple[int, object]:
        if target == "/openapi/v3":
            v = self.version
            return 200, {"paths": {f"/slurm/{v}/jobs/": {}, f"/slurm/{v}/job/{{id}}": {}}}
        if target == f"/slurm/{self.version}/jobs/":
            return 200, {"jobs": [], "errors": [], "warnings": []}
        if target == f"/slurm/{self.version}/job/99":
            return 404, {"errors": [{"description": "Invalid job id specified", "error_number": 2017}]}
        return 404, NO_ENDPOINT

    def handle(self, conn: socket.socket, request: bytes) -> None:
        target = request.decode().split(" ", 2)[1]
        self.seen.append(target)
        self.reply(conn, *self._answer(target))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[VersionedServer]:
    srv = VersionedServer(tmp_path / "restd.sock", "v0.0.44")
    yield srv
    srv.close()


def test_a_restarted_slurmrestd_with_another_version_is_spoken_to_again(server: VersionedServer) -> None:
    client = RestClient(f"unix:{server.path}", token="t")
    assert client.jobs() == [] and client.version == "v0.0.44"
    server.version = "v0.0.42"  # slurmrestd restarted with -d data_parser/v0.0.42
    server.seen.clear()
    assert client.jobs() == []
    assert client.version == "v0.0.42"
    assert server.seen == ["/slurm/v0.0.44/jobs/", "/openapi/v3", "/slurm/v0.0.42/jobs/"]
    server.seen.clear()
    assert client.jobs() == [] and server.seen == ["/slurm/v0.0.42/jobs/"]  # once: not every cycle


def test_a_404_with_the_same_version_offered_is_the_error_after_one_spec_read(
        server: VersionedServer) -> None:
    client = RestClient(f"unix:{server.path}", token="t")
    assert client.version == "v0.0.44"
    server.seen.clear()
    with pytest.raises(NotFoundError, match="Unable to find requested URL endpoint"):
        client._call("GET", "/no-such-endpoint/")
    assert server.seen == ["/slurm/v0.0.44/no-such-endpoint/", "/openapi/v3"]


def test_an_unknown_job_or_a_forced_version_asks_no_spec(server: VersionedServer) -> None:
    client = RestClient(f"unix:{server.path}", token="t")
    assert client.version == "v0.0.44"
    server.seen.clear()
    with pytest.raises(NotFoundError):
        client.job(99)
    assert server.seen == ["/slurm/v0.0.44/job/99"]
    forced = RestClient(f"unix:{server.path}", token="t", api="v0.0.43")
    server.seen.clear()
    with pytest.raises(NotFoundError):
        forced.jobs()
    assert server.seen == ["/slurm/v0.0.43/jobs/"]


def test_an_empty_queue_notice_is_no_failure() -> None:
    """25.11's slurmrestd answers GET /jobs/ on an empty queue with the warning "Zero jobs to dump"
    (seen live by tests/slurm_integration/test_rest_renewal_live.py): an empty list, not an error."""
    from fabric_hpc.slurm.contract import SlurmError
    from fabric_hpc.slurm.rest_answers import checked

    empty = {"jobs": [], "errors": [],
             "warnings": [{"description": "Zero jobs to dump", "source": "_dump_jobs"}]}
    assert checked(200, empty, "slurmrestd GET /jobs/")["jobs"] == []
    with pytest.raises(SlurmError, match="Ignoring unknown field"):
        checked(200, {"warnings": [{"description": "Ignoring unknown field"}]}, "slurmrestd POST /job/1")
