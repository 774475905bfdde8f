"""The ``rest`` backend: slurmrestd's OpenAPI (``openapi/v0.0.38`` on Slurm 22.05).

Over a unix socket (``slurmrestd -a rest_auth/local unix:/path``; as root slurmrestd needs
``SLURMRESTD_SECURITY=disable_user_check``) or over TCP with a JWT (``X-SLURM-USER-TOKEN``).
What v0.0.38 cannot do is said plainly: its job update disables ``required_nodes`` (the writable
name is ``nodelist``) and has no requeue, so :meth:`RestClient.requeue` runs ``scontrol requeue``
(documented in docs/slurm.md).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.slurm.cli_backend import CliClient, _list, job_from_json, node_from_json
from fabric_hpc.slurm.contract import Job, Node, SlurmClient, SlurmError

API = "/slurm/v0.0.38"
#: scontrol update keys -> v0.0.38 job properties
_UPDATE_KEYS = {"ReqNodeList": "nodelist", "StartTime": "begin_time", "Comment": "comment",
                "TimeLimit": "time_limit", "ExcNodeList": "exclude", "Name": "name"}
#: warnings v0.0.38 puts in "errors" on success
_BENIGN = {2042}  # "Job is in held state, pending scheduler release"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class RestClient(SlurmClient):
    """``RestClient("unix:/run/slurmrestd.sock")`` or ``RestClient("http://127.0.0.1:6820", token=...)``."""

    backend = "rest"

    def __init__(self, url: str, *, token: str | None = None, user: str | None = None, timeout: float = 30.0,
                 env: Mapping[str, str] | None = None) -> None:
        self.url, self.token, self.user, self.timeout = url, token, user, timeout
        self._cli = CliClient(env, timeout=timeout)  # only for requeue (absent from v0.0.38)

    def _conn(self) -> http.client.HTTPConnection:
        if self.url.startswith("unix:"):
            return _UnixConnection(self.url[5:], self.timeout)
        if self.url.startswith("http://"):
            host = self.url[7:].rstrip("/")
            return http.client.HTTPConnection(host, timeout=self.timeout)
        raise ConfigError(f"slurmrestd address {self.url!r}: expected unix:/path or http://host:port")

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["X-SLURM-USER-TOKEN"] = self.token
            headers["X-SLURM-USER-NAME"] = self.user or os.environ.get("USER", "root")
        conn = self._conn()
        try:
            conn.request(method, API + path, body=None if body is None else json.dumps(body), headers=headers)
            resp = conn.getresponse()
            raw = resp.read().decode("utf-8", "replace")
        except OSError as exc:
            raise SlurmError(f"slurmrestd at {self.url}: {method} {path} failed: {exc}",
                             hint="is slurmrestd running with openapi/v0.0.38?") from None
        finally:
            conn.close()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            raise SlurmError(f"slurmrestd: {method} {path} answered HTTP {resp.status} without JSON: {raw[:160]!r}") \
                from None
        errors = [e for e in data.get("errors") or [] if e.get("error_code") not in _BENIGN]
        invalid_job = any(2017 in (e.get("error_code"), e.get("error_number")) for e in errors)
        if resp.status == 404 or invalid_job:
            raise NotFoundError(f"slurmrestd: {method} {path}: not found ({errors or resp.status})")
        if resp.status >= 400 or errors:
            raise SlurmError(f"slurmrestd: {method} {path} answered HTTP {resp.status}: {errors}")
        return data

    def nodes(self) -> list[Node]:
        return [node_from_json(n) for n in _list(self._call("GET", "/nodes"), "nodes", "slurmrestd GET /nodes")]

    def jobs(self) -> list[Job]:
        return [job_from_json(j) for j in _list(self._call("GET", "/jobs"), "jobs", "slurmrestd GET /jobs")]

    def job(self, job_id: int) -> Job:
        jobs = _list(self._call("GET", f"/job/{int(job_id)}"), "jobs", f"slurmrestd GET /job/{job_id}")
        if not jobs:
            raise NotFoundError(f"Slurm knows no job {job_id}")
        return job_from_json(jobs[0])

    def submit(self, script: str, args: Sequence[str] = (), *, cwd: str | None = None) -> int:
        job = {"environment": {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
               "current_working_directory": cwd or os.getcwd(), **sbatch_args_to_job(args)}
        data = self._call("POST", "/job/submit", {"script": script, "job": job})
        if not isinstance(data.get("job_id"), int):
            raise SlurmError(f"slurmrestd submit answered no job id: {sorted(data)}")
        return int(data["job_id"])

    def update(self, job_id: int, **fields: str) -> None:
        body: dict[str, Any] = {}
        for key, value in fields.items():
            if key not in _UPDATE_KEYS:
                raise ConfigError(f"the rest backend cannot update {key!r}",
                                  hint=f"updatable: {', '.join(sorted(_UPDATE_KEYS))}")
            body[_UPDATE_KEYS[key]] = value
        self._call("POST", f"/job/{int(job_id)}", body)

    def hold(self, job_id: int) -> None:
        self._call("POST", f"/job/{int(job_id)}", {"hold": True})

    def release(self, job_id: int) -> None:
        self._call("POST", f"/job/{int(job_id)}", {"hold": False})

    def requeue(self, job_id: int) -> None:
        self._cli.requeue(job_id)  # v0.0.38 has no requeue endpoint

    def cancel(self, job_id: int) -> None:
        self._call("DELETE", f"/job/{int(job_id)}")


_ARG_KEYS = {"-N": "nodes", "--nodes": "nodes", "-J": "name", "--job-name": "name", "--comment": "comment",
             "--gres": "gres", "--gpus-per-node": "gpus_per_node", "-t": "time_limit", "--time": "time_limit",
             "--begin": "begin_time", "-w": "nodelist", "--nodelist": "nodelist", "-p": "partition",
             "--partition": "partition", "-o": "standard_output", "--output": "standard_output",
             "--signal": "signal"}


def sbatch_args_to_job(args: Sequence[str]) -> dict[str, Any]:
    """The sbatch options the rest backend understands, as v0.0.38 job properties."""
    job: dict[str, Any] = {}
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg in ("-H", "--hold"):
            job["hold"] = True
            i += 1
            continue
        key, eq, value = arg.partition("=")
        if not eq and key in _ARG_KEYS and i + 1 < len(items):
            value, i = items[i + 1], i + 1
        if key not in _ARG_KEYS:
            raise ConfigError(f"the rest backend does not translate sbatch option {arg!r}",
                              hint=f"supported: {' '.join(sorted(_ARG_KEYS))} -H; or use the cli backend")
        prop = _ARG_KEYS[key]
        if prop == "gres":
            job["gres"] = value.removeprefix("gres:")
        elif prop == "gpus_per_node":
            job["gpus_per_node"] = value
        elif prop == "nodes":
            job["nodes"] = value  # v0.0.38 takes sbatch's "N" or "min-max" text
        else:
            job[prop] = value
        i += 1
    return job
