"""The rest backend's failure words name slurmrestd (admin probe 7): a slow slurmrestd at the agent's
first contact read "Slurm did not answer … is slurmctld up and SLURM_CONF right?"; and a slurmrestd
behind a proxy at a path (``http://127.0.0.1:6820/slurmrestd``) passed the URL check, then failed
"nonnumeric port" (exit 5). A path prefix now works; a query or fragment is refused at the start."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.slurm.agent_support import first_contact
from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.rest_backend import RestClient

PREFIX = "/slurmrestd"


class _Proxied(BaseHTTPRequestHandler):
    """slurmrestd's answers under :data:`PREFIX` only (a proxy's location), 404 elsewhere."""

    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append(self.path)
        answers = {f"{PREFIX}/openapi/v3": {"paths": {"/slurm/v0.0.44/jobs/": {}}},
                   f"{PREFIX}/slurm/v0.0.44/jobs/": {"jobs": [], "errors": [], "warnings": []}}
        body = json.dumps(answers.get(self.path, {"errors": [{"description": "no such path"}]})).encode()
        self.send_response(200 if self.path in answers else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """No request lines on stderr (http.server writes one per request)."""


@pytest.fixture
def proxy() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxied)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Proxied.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("tail", [PREFIX, PREFIX + "/"])
def test_a_slurmrestd_behind_a_proxy_path_is_reached(proxy: str, tail: str) -> None:
    assert RestClient(proxy + tail, env={}).jobs() == []
    assert _Proxied.seen == [f"{PREFIX}/openapi/v3", f"{PREFIX}/slurm/v0.0.44/jobs/"]


def test_fabric_slurm_jobs_through_a_proxy_path(proxy: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["slurm", "jobs", "--backend", "rest", "--rest-url", proxy + PREFIX, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:6820/slurmrestd?x=1", "http://127.0.0.1:6820/#top",
                                 "http://127.0.0.1:6820?"])
def test_a_query_or_fragment_is_refused_at_the_start(url: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["slurm", "nodes", "--backend", "rest", "--rest-url", url]) == 3
    err = capsys.readouterr().err
    assert "a query or fragment" in err and "fix: give http://host:port" in err and "Traceback" not in err


def test_a_slurmrestd_that_does_not_answer_at_first_contact_is_named() -> None:
    with socket.socket() as listener:  # accepts connections (the backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(SlurmError) as info:
            first_contact(RestClient(url, env={}, timeout=5), 0.3)
    assert str(info.value).startswith(f"slurmrestd at {url} did not answer within 0.3 s (the rest backend)")
    assert "slurmrestd running" in str(info.value.hint) and "SLURM_CONF" not in str(info.value.hint)
