"""The ``rest`` backend: slurmrestd's OpenAPI, version negotiated from what the server offers.

Two dialects: ``v0.0.38`` (Slurm 22.05 and 23.02, ``slurmrestd -s openapi/v0.0.38``) and ``v0.0.40``
or later (Slurm 23.11+, ``-s openapi/slurmctld``; tested live with v0.0.42–v0.0.44 of Slurm 25.11 and,
once each, v0.0.41 of 24.05.8 and v0.0.43 of 25.05.8, on answers built from each release's data_parser tables
for 23.11–24.11). The
client reads the server's ``/openapi/v3`` on first use and picks the newest version it speaks up to v0.0.44
where offered (Slurm 26.05 offers v0.0.45 too, whose job records say no job is ``--exclusive``), or ``api=``
forces one; a 404 for that version's path (a restarted slurmrestd offering another) reads it once
again. Authentication is JWT (``X-SLURM-USER-NAME`` / ``X-SLURM-USER-TOKEN``; the token from the
``token`` argument, ``token_file`` (read at every request) or ``SLURM_JWT``, as ``scontrol token``
prints it; the user from ``user`` or ``USER``; surrounding whitespace, such
as the newline a pasted token carries, is stripped, any other control character refused). No message,
event or exception of this module shows the token or any header value. Answers are decoded by
:mod:`fabric_hpc.slurm.decode`.

Every entry in an answer's ``errors`` or ``warnings`` (for example ``Ignoring unknown field``,
which current slurmrestd answers with HTTP 200) is a :class:`SlurmError`: an update Slurm did not
apply is never reported as done. Neither dialect has a requeue: :meth:`RestClient.requeue` runs
``scontrol requeue`` (docs/slurm.md).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fabric_hpc.errors import ConfigError, FabricError, NotFoundError
from fabric_hpc.events import emit
from fabric_hpc.slurm import decode
from fabric_hpc.slurm import segment
from fabric_hpc.slurm import reservations as resv
from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.slurm.client import UNKNOWN_JOB_HINT, shown_url
from fabric_hpc.slurm.rest_answers import JWT_HINT, _AUTH_STATUS, _NOT_FOUND, checked
from fabric_hpc.slurm.rest_submit import (_hosts, for_version, minutes,  # noqa: F401 - re-exported
                                           sbatch_args_to_job, sbatch_args_to_job_desc, sbatch_options,
                                           start_time)
from fabric_hpc.slurm.contract import Job, Node, SlurmClient, SlurmError, queued

LEGACY = "v0.0.38"
#: the oldest data_parser of the v0.0.40+ dialect: v0.0.40 (23.11) and v0.0.41 (24.05) have the same
#: job_desc_msg fields and record shapes for what fabric sends and reads; v0.0.39 is not spoken
CURRENT_MIN = (0, 0, 40)
_VERSION = re.compile(r"^/slurm/v(\d+)\.(\d+)\.(\d+)/")
#: scontrol update keys -> job properties (v0.0.38, v0.0.40+)
_UPDATE_KEYS = {"ReqNodeList": ("nodelist", "required_nodes"), "StartTime": ("begin_time", "begin_time"),
                "Comment": ("comment", "comment"), "TimeLimit": ("time_limit", "time_limit"),
                "ExcNodeList": ("exclude_nodes", "excluded_nodes"), "Name": ("name", "name")}
#: a read whose connection the server dropped is tried again after these pauses (s): slurmrestd
#: closes or resets a connection now and then (restarts, a busy 22.05 under load); writes never are
_READ_RETRY_S = (0.2, 0.6)
#: the transport failures a retry may cure (a refused or missing socket is not one: nobody listens)
_DROPPED = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)  # RemoteDisconnected is a reset
#: the largest answer read (bytes): a GET /jobs/ of 10,000 jobs is about 100 MB; more is no slurmrestd's
MAX_BODY_BYTES = 1 << 30
_CHUNK = 1 << 16


class _Late(Exception):
    """A request past its deadline (``RestClient.timeout`` for the whole exchange) or interrupted."""


def _vtuple(version: str) -> tuple[int, int, int]:
    a, b, c = version.lstrip("v").split(".")
    return int(a), int(b), int(c)


def choose_version(paths: Sequence[str]) -> str:
    """The version to speak, from the paths of the server's OpenAPI spec: the newest >= v0.0.40 up to
    :data:`~fabric_hpc.slurm.decode.JOBS_PARSER` (v0.0.44: 26.05's v0.0.45 says no job is ``--exclusive``),
    else the newest >= v0.0.40, else v0.0.38; a SlurmError naming what is offered otherwise."""
    offered = {(int(m[1]), int(m[2]), int(m[3])) for p in paths if (m := _VERSION.match(p))}
    current = [v for v in offered if v >= CURRENT_MIN]
    if current:
        return "v%d.%d.%d" % max([v for v in current if v <= decode.JOBS_PARSER] or current)
    if _vtuple(LEGACY) in offered:
        return LEGACY
    shown = ", ".join("v%d.%d.%d" % v for v in sorted(offered)) or "no /slurm/ endpoints"
    hint = ("start slurmrestd with -s openapi/slurmctld (Slurm 23.11+) or -s openapi/v0.0.38 (22.05, 23.02)"
            if not offered else  # a data parser (-d data_parser/v0.0.39) or plugin fabric does not speak
            "start slurmrestd without -d (it then offers the newest data_parser it has) or with "
            "-d data_parser/v0.0.40 or later (Slurm 23.11+); Slurm 22.05 and 23.02: -s openapi/v0.0.38")
    raise UnsupportedVersion(f"slurmrestd offers {shown}; fabric speaks {LEGACY} and "
                             "v%d.%d.%d or later" % CURRENT_MIN, hint=hint)


class UnsupportedVersion(SlurmError):
    """The server's spec was read, and it offers no version fabric speaks."""


class _Connection(http.client.HTTPConnection):
    """``http://host:port`` (or ``unix:/path``: ``unix_path``) whose socket is handed to ``register`` before
    it connects, so interrupt() abandons a connect too (a blackholed slurmrestd address), and whose
    connect waits at most until ``deadline`` (the whole exchange's, as each read)."""

    def __init__(self, host: str, deadline: float, register: Callable[[socket.socket], None],
                 unix_path: str | None = None) -> None:
        super().__init__(host, timeout=_left(deadline))
        self._deadline, self._register, self._path = deadline, register, unix_path

    def connect(self) -> None:
        if self._path is not None:
            self._connect(socket.AF_UNIX, self._path)
            return
        error: OSError | None = None
        for family, _, _, _, addr in socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM):
            try:
                self._connect(family, addr)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return
            except (_Late, TimeoutError):
                raise
            except OSError as exc:  # the next address (IPv4 after IPv6)
                error = exc
        raise error or OSError(f"{self.host}: no address")

    def _connect(self, family: int, addr: Any) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = sock = socket.socket(family, socket.SOCK_STREAM)
        self._register(sock)
        sock.settimeout(_left(self._deadline))
        sock.connect(addr)


class RestClient(SlurmClient):
    """``RestClient("unix:/run/slurmrestd/sock", token=jwt)`` or ``RestClient("http://host:6820", token=jwt)``."""

    backend = "rest"

    def __init__(self, url: str, *, token: str | None = None, user: str | None = None, timeout: float = 30.0,
                 env: Mapping[str, str] | None = None, api: str | None = None,
                 token_file: str | None = None) -> None:
        environ = env if env is not None else os.environ
        self.url, self.timeout, self.api, self._forced = url, timeout, api, api is not None
        #: a slurmrestd behind a proxy at http://host:port/prefix (docs/slurm.md: REST setup)
        self._prefix = path_prefix(url)
        self.token_file = token_file  # read at every request: a renewed token needs no restart
        self.token = self._file_token() if token_file else header_value(
            token or environ.get("SLURM_JWT"), "SLURM_JWT" if not token else "the JWT", secret=True)
        self.user = header_value(user or environ.get("USER") or "root",
                                 "the user name (USER, rest_user)") or "root"
        self._cli = CliClient(env, timeout=timeout)  # only for requeue (no endpoint in any version)
        #: the sockets of the requests in flight (interrupt()); no lock: a signal handler reads it, and
        #: set.add/discard and list(set) are single steps under the GIL
        self._open: set[socket.socket] = set()
        self._interrupted = False
        self.decoded = decode.Decoders()  # its last node and job answers' records, decoded

    def interrupt(self) -> None:
        """Abandon the requests in flight and refuse new ones (the agent's stop; safe from a signal
        handler or another thread): each fails at once with a SlurmError. :meth:`resume` undoes it."""
        self._interrupted = True
        self._cli.interrupt()  # a requeue's scontrol
        for sock in list(self._open):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # a recv blocked in another thread (or below) returns

    def resume(self) -> None:
        """Requests are sent again after :meth:`interrupt` (the agent's last calls at stop)."""
        self._interrupted = False
        self._cli.resume()

    def _file_token(self) -> str | None:
        from fabric_hpc.slurm.rest_token import read_token_file

        path = str(self.token_file)
        return header_value(read_token_file(path), f"the token in rest_token_file {path}", secret=True)

    # -- transport ---------------------------------------------------------------------------
    def _conn(self, deadline: float, register: Callable[[socket.socket], None]) -> _Connection:
        if self.url.startswith("unix:"):
            return _Connection("localhost", deadline, register, self.url[5:])
        if self.url.startswith("http://"):  # http://host:port[/prefix]: the prefix goes before each path
            return _Connection(self.url[7:].split("/", 1)[0], deadline, register)
        raise ConfigError(f"slurmrestd address {shown_url(self.url)!r}: expected unix:/path or "
                          "http://host:port")

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self._parsed(method, path, *self._send(method, path, body))

    def _send(self, method: str, path: str, body: Any = None) -> tuple[int, str]:
        """(status, body text); a read whose connection was dropped is tried again."""
        pauses = _READ_RETRY_S if method == "GET" else ()
        for attempt in range(len(pauses) + 1):
            try:
                return self._exchange(method, path, body)
            except (_Late, TimeoutError):
                raise self._late(method, path) from None
            except _DROPPED as exc:
                if self._interrupted:
                    raise self._late(method, path) from None
                if attempt == len(pauses):
                    raise self._failed(method, path, exc) from None
                time.sleep(pauses[attempt])
            except (OSError, http.client.HTTPException) as exc:
                if self._interrupted:
                    raise self._late(method, path) from None
                raise self._failed(method, path, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _late(self, method: str, path: str) -> SlurmError:
        if self._interrupted:
            return SlurmError(f"slurmrestd at {shown_url(self.url)}: {method} {path} abandoned: the agent "
                              "is stopping")
        return SlurmError(f"slurmrestd at {shown_url(self.url)}: {method} {path} did not answer within "
                          f"{self.timeout:g} s",
                          hint="is slurmrestd stopped or overloaded, or slurmctld behind it? (its log; "
                               "scontrol ping); a slow link or proxy between them?")

    def _parsed(self, method: str, path: str, status: int, raw: str) -> tuple[int, Any]:
        try:
            return status, decode.parse_json(raw)
        except json.JSONDecodeError:  # (orjson's is one)
            hint = JWT_HINT if status in _AUTH_STATUS else None
            raise SlurmError(f"slurmrestd: {method} {path} answered HTTP {status} without JSON: "
                             f"{self._redact(raw)[:160]!r}", hint=hint) from None

    def _exchange(self, method: str, path: str, body: Any) -> tuple[int, str]:
        """One HTTP exchange on a fresh connection: (status, body text)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token_file:
            self.token = self._file_token()
        if self.token:
            headers["X-SLURM-USER-NAME"] = self.user
            headers["X-SLURM-USER-TOKEN"] = self.token
        deadline = time.monotonic() + self.timeout  # the whole exchange, not each receive
        if self._interrupted:
            raise _Late()
        opened: list[socket.socket] = []

        def register(new: socket.socket) -> None:  # before it connects: interrupt() abandons the connect
            opened.append(new)
            self._open.add(new)
            if self._interrupted:  # interrupt() came before the entry
                raise _Late()

        conn = self._conn(deadline, register)
        try:
            conn.connect()
            sock = conn.sock
            if self._interrupted:  # interrupt() came between the check above and the socket's entry
                raise _Late()
            conn.request(method, self._prefix + path, body=None if body is None else json.dumps(body),
                         headers=headers)
            sock.settimeout(_left(deadline))
            resp = conn.getresponse()
            return resp.status, self._body(resp, sock, deadline, f"{method} {path}")
        except ValueError:  # http.client's text names the header value (the token): never shown
            raise ConfigError(f"slurmrestd {method} {path}: a request header holds a character HTTP does "
                              "not allow", hint="SLURM_JWT and USER: one line of printable ASCII each") from None
        finally:
            for sock in opened:
                self._open.discard(sock)
            conn.close()

    def _body(self, resp: http.client.HTTPResponse, sock: socket.socket, deadline: float, what: str) -> str:
        """The answer's body, read in chunks within ``deadline`` and up to MAX_BODY_BYTES."""
        chunks, size = [], 0
        # Python >= 3.12 closes the response (and a Connection: close socket) at its last Content-Length byte
        while not resp.isclosed():
            sock.settimeout(_left(deadline))
            chunk = resp.read1(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise SlurmError(f"slurmrestd {what}: the answer is larger than "
                                 f"{MAX_BODY_BYTES / 2**20:g} MiB (not read)",
                                 hint="is rest_url/--rest-url slurmrestd's address?")
            chunks.append(chunk)
        if self._interrupted:  # the socket was shut down: what was read is cut short
            raise _Late()
        if resp.length:  # the connection closed before Content-Length bytes came
            raise http.client.IncompleteRead(b"".join(chunks), resp.length)
        return b"".join(chunks).decode("utf-8", "replace")

    def _failed(self, method: str, path: str, exc: Exception) -> SlurmError:
        text = self._redact(str(exc) or type(exc).__name__)
        return SlurmError(f"slurmrestd at {shown_url(self.url)}: {method} {path} failed: {text}",
                          hint="is slurmrestd running? (docs/slurm.md: REST setup)")

    def _redact(self, text: str) -> str:
        """``text`` with the token (whole, or its signature) replaced: an answer may quote what was sent."""
        if self.token:
            for secret in (self.token, self.token.rpartition(".")[2]):
                if len(secret) >= 8:
                    text = text.replace(secret, "<token>")
        return text

    @property
    def version(self) -> str:
        """The API version in use (negotiated on first use, again when the server drops it)."""
        if self.api is None:
            try:
                status, spec = self._request("GET", "/openapi/v3")
            except FabricError as exc:
                raise self._shown(exc) from None
            paths = spec.get("paths") if isinstance(spec, dict) else None
            if status != 200 or not isinstance(paths, dict):
                raise self._shown(SlurmError(
                    f"slurmrestd at {shown_url(self.url)}: GET /openapi/v3 answered HTTP {status} "
                    "without paths",
                    hint=JWT_HINT if status in _AUTH_STATUS else
                    "pass the API version (api='v0.0.44') if the spec endpoint is disabled"))
            self.api = choose_version(list(paths))
            if self.api != LEGACY and _vtuple(self.api) > decode.JOBS_PARSER:  # none older offered
                emit("slurm.jobs_exclusive_unread", backend="rest", data_parser=self.api,
                     hint="slurmrestd offers no data_parser v0.0.44 or older: every job reads as shareable, "
                          "so an --exclusive gang may be placed on busy hosts; start slurmrestd without -d, "
                          "or with data_parser/v0.0.44 among its -d plugins")
        return self.api

    @property
    def legacy(self) -> bool:
        return self.version == LEGACY

    def _renegotiated(self, used: str, raw: str) -> bool:
        """After a 404 for ``/slurm/<used>/...``: True when the server's spec now offers another
        version (a restarted slurmrestd, e.g. ``-d data_parser/v0.0.42``), which is then used. Not for
        a version given as ``api=``, nor for Slurm's "no such job" (a 404 with error code 2017)."""
        if self._forced or _codes(raw) & _NOT_FOUND:
            return False
        self.api = None
        try:
            return self.version != used
        except UnsupportedVersion:  # the spec offers only versions fabric does not speak: that is the error
            self.api = used  # asked again next time (a slurmrestd restarted once more)
            raise
        except FabricError:  # no spec to read: the 404 is the error to show
            self.api = used
            return False

    def _call(self, method: str, path: str, body: Any = None) -> Mapping[str, Any]:
        used = self.version
        status, raw = self._send(method, f"/slurm/{used}{path}", body)
        if status == 404 and self._renegotiated(used, raw):  # nothing was applied: the endpoint is gone
            status, raw = self._send(method, f"/slurm/{self.version}{path}", body)
        try:
            status, data = self._parsed(method, f"/slurm/{self.api}{path}", status, raw)
            return checked(status, data, f"slurmrestd {method} {path}", read=method == "GET")
        except FabricError as exc:
            raise self._shown(exc) from None

    def _shown(self, exc: FabricError) -> FabricError:
        """``exc`` without the token; with a token file, its JWT fix names the file and its renewal."""
        message, hint = self._redact(exc.message), exc.hint
        if self.token_file and hint and hint.startswith(JWT_HINT):
            from fabric_hpc.slurm.rest_token import file_hint

            hint = file_hint(self.token_file, self.user)
        return exc if (message, hint) == (exc.message, exc.hint) else type(exc)(message, hint=hint)

    # -- reads -------------------------------------------------------------------------------
    @decode.gc_paused()
    def nodes(self) -> list[Node]:
        path = "/nodes" if self.legacy else "/nodes/"
        found = decode.nodes_answer(self._call("GET", path), f"slurmrestd GET {path}", self.decoded.nodes)
        if found is None:
            raise SlurmError(f"slurmrestd GET {path} answered without a 'nodes' list")
        return found

    @decode.gc_paused()
    def jobs(self) -> list[Job]:
        path = "/jobs" if self.legacy else "/jobs/"
        answer = self._call("GET", path)
        return queued(decode.jobs_answer(answer, f"slurmrestd GET {path}", self.decoded.jobs))

    def reservations(self) -> resv.Read:
        """``GET /reservations`` (both dialects: v0.0.38's plain numbers, v0.0.40+'s number objects)."""
        path = "/reservations" if self.legacy else "/reservations/"
        return resv.json_answer(self._call("GET", path), f"slurmrestd GET {path}")

    def job(self, job_id: int) -> Job:
        jobs = decode.jobs_answer(self._call("GET", f"/job/{int(job_id)}"), f"slurmrestd GET /job/{job_id}")
        if not jobs:
            raise NotFoundError(f"Slurm knows no job {job_id}", hint=UNKNOWN_JOB_HINT)
        return jobs[0]

    # -- actions -----------------------------------------------------------------------------
    def submit(self, script: str, args: Sequence[str] = (), *, cwd: str | None = None) -> int:
        path, cwd = os.environ.get("PATH", "/usr/bin:/bin"), cwd or os.getcwd()
        if self.legacy:
            job = {"environment": {"PATH": path}, "current_working_directory": cwd, **sbatch_args_to_job(args)}
            body: dict[str, Any] = {"script": script, "job": job}
        else:
            desc = for_version(sbatch_args_to_job_desc(args), _vtuple(self.version))
            body = {"job": {"script": script, "environment": [f"PATH={path}"], "current_working_directory": cwd,
                            **desc}}
        with segment.submission(args):  # also the node count: a held job Slurm would accept and never run
            data = self._call("POST", "/job/submit", body)
        job_id = decode.integer(data, "job_id", "slurmrestd POST /job/submit", default=-1)
        if job_id < 0:
            raise SlurmError(f"slurmrestd submit answered no job id: {sorted(map(str, data))}")
        return job_id

    def update(self, job_id: int, **fields: str) -> None:
        if not fields:  # nothing to change (a hand-over whose list and begin time are Slurm's already)
            return
        segment.refuse_update(job_id, fields)  # job_desc_msg's segment_size would be ignored without a warning
        body: dict[str, Any] = {}
        for key, value in fields.items():
            if key not in _UPDATE_KEYS:
                raise ConfigError(f"the rest backend cannot update {key!r}",
                                  hint=f"updatable: {', '.join(sorted(_UPDATE_KEYS))}")
            legacy_name, name = _UPDATE_KEYS[key]
            if self.legacy:
                body[legacy_name] = value
            elif key == "StartTime":
                body[name] = start_time(value)
            elif key == "TimeLimit":
                body[name] = minutes(value)
            elif key in ("ReqNodeList", "ExcNodeList"):  # a list of names (a string draws a warning);
                # none (unpin) is [""]: slurmctld clears only for "" (job_mgr.c), [] parses to no change
                body[name] = list(_hosts(value)) if str(value).strip() else [""]
            else:
                body[name] = value
        if not self.legacy:
            body = for_version(body, _vtuple(self.version))
        self._call("POST", f"/job/{int(job_id)}", body)

    def hold(self, job_id: int) -> None:
        self._call("POST", f"/job/{int(job_id)}", {"hold": True})

    def release(self, job_id: int) -> None:
        self._call("POST", f"/job/{int(job_id)}", {"hold": False})

    def requeue(self, job_id: int) -> None:
        self._cli.requeue(job_id)  # no requeue endpoint in v0.0.38 nor v0.0.44

    def cancel(self, job_id: int) -> None:
        self._call("DELETE", f"/job/{int(job_id)}")


def _left(deadline: float) -> float:
    """The seconds left until ``deadline`` (a socket timeout); _Late once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Late()
    return left


def path_prefix(url: str) -> str:
    """The path of ``http://host:port/prefix`` (``/prefix``; none for ``unix:`` or a bare host)."""
    if not url.startswith("http://"):
        return ""
    path = url[7:].partition("/")[2].strip("/")
    return "/" + path if path else ""


def _codes(raw: str) -> set[Any]:
    """The error codes of a slurmrestd answer's text (none when it is not JSON)."""
    try:
        data = decode.parse_json(raw)
    except json.JSONDecodeError:  # (orjson's is one)
        return set()
    errors = data.get("errors") if isinstance(data, dict) else None
    return {e.get(k) for e in errors or [] if isinstance(e, dict)
            for k in ("error_code", "error_number", "errno")}


def header_value(value: str | None, what: str, *, secret: bool = False) -> str | None:
    """``value`` as an HTTP header value: surrounding whitespace stripped (a pasted ``scontrol token``
    line ends in a newline); ConfigError for a control or non-ASCII character left inside. The message
    names the position, never the value (it may be a secret)."""
    if value is None:
        return None
    text = value.strip()
    for i, ch in enumerate(text):
        if ord(ch) < 0x20 or ord(ch) == 0x7F or not ch.isascii():
            kind = "a control character" if ch.isascii() else "a non-ASCII character"
            fix = ("set it to the token alone, on one line: export $(scontrol token lifespan=SECONDS)"
                   if secret else "set it to a plain user name")
            shown = "" if secret else f" {text!r}"
            raise ConfigError(f"{what}{shown} holds {kind} (U+{ord(ch):04X} at position {i + 1} of "
                              f"{len(text)}); it is not sent", hint=fix)
    return text or None


