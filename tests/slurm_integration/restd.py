"""slurmrestd started the way a site runs it: as an unprivileged user, JWT authentication.

Shared by the contract tests (``test_client_contract.py``) and the recorder of golden answers
(``record_answers.py``). The cluster needs ``AuthAltTypes=auth/jwt`` and a 0600 ``jwt_key`` file
(:func:`jwt_settings`), and its files must be readable by that user: give the cluster a
``base_dir`` from :func:`public_dir` (pytest's own temporary directories are 0700).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: the user slurmrestd runs as (never root, never SlurmUser)
RESTD_USER = "daemon"
#: the openapi plugins tried in turn: current Slurm (23.11+) first, then 22.05's
PLUGINS = ("openapi/slurmctld", "openapi/v0.0.38")


def public_dir(prefix: str = "fabric-restd-") -> Path:
    """A fresh directory under /tmp that other users may enter (0755)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def jwt_settings(base: Path) -> dict[str, str]:
    """slurm.conf settings for JWT next to munge; writes a random HS256 key (0600, root's) into ``base``."""
    key = base / "jwt_hs256.key"
    key.write_bytes(secrets.token_bytes(32))
    key.chmod(0o600)
    return {"AuthAltTypes": "auth/jwt", "AuthAltParameters": f"jwt_key={key}"}


def token(cluster: Any, user: str = "root", lifespan: int = 7200) -> str:
    """A JWT from ``scontrol token`` (what a site's user or service runs)."""
    out = cluster.run(["scontrol", "token", f"username={user}", f"lifespan={lifespan}"]).stdout.strip()
    key, _, value = out.partition("=")
    if key != "SLURM_JWT" or not value:
        raise RuntimeError(f"scontrol token answered {out!r}")
    return value


class Restd:
    """``slurmrestd -a rest_auth/jwt -s <plugin> unix:<sock>`` as :data:`RESTD_USER` (via setpriv)."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.proc: subprocess.Popen[bytes] | None = None
        self.plugin = ""
        self.binary = shutil.which("slurmrestd", path=cluster.env["PATH"]) or ""
        sock_dir = Path(cluster.base_dir) / "restd"
        sock_dir.mkdir(exist_ok=True)
        pw = pwd.getpwnam(RESTD_USER)
        os.chown(sock_dir, pw.pw_uid, pw.pw_gid)
        self.sock = sock_dir / "slurmrestd.sock"
        self.log_path = Path(cluster.log_dir) / "slurmrestd.log"

    @property
    def url(self) -> str:
        return f"unix:{self.sock}"

    def start(self, timeout: float = 15.0, args: tuple[str, ...] = ()) -> Restd:
        """Start with the first plugin of :data:`PLUGINS` this slurmrestd has; ``args``: more options
        (``("-d", "data_parser/v0.0.42")``: offer that version only)."""
        if not self.binary:
            raise RuntimeError("slurmrestd is not installed next to this Slurm")
        for plugin in PLUGINS:
            if self._try(plugin, timeout, args):
                self.plugin = plugin
                return self
        raise RuntimeError(f"slurmrestd started with none of {PLUGINS}:\n{self.log()}")

    def _try(self, plugin: str, timeout: float, args: tuple[str, ...] = ()) -> bool:
        argv = ["setpriv", f"--reuid={RESTD_USER}", f"--regid={RESTD_USER}", "--clear-groups",
                self.binary, "-a", "rest_auth/jwt", "-s", plugin, *args, self.url]
        env = {**self.cluster.env, "SLURM_JWT": "daemon"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while not self.sock.exists():
            if self.proc.poll() is not None:
                self.proc = None
                return False
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"slurmrestd did not open {self.sock} in {timeout} s:\n{self.log()}")
            time.sleep(0.05)
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        self.sock.unlink(missing_ok=True)


@contextmanager
def running_restd(cluster: Any) -> Iterator[Restd]:
    """slurmrestd beside ``cluster`` for a fixture's lifetime (a real component: missing fails the
    run under ``FABRIC_REQUIRE_REAL``, else skips)."""
    from tests.real import require_real

    require_real("slurm", shutil.which("slurmrestd", path=cluster.env["PATH"]) is not None,
                 "slurmrestd is not installed next to this Slurm (Debian: slurmrestd)")
    server = Restd(cluster).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def jwt_cluster(factory: Any, fabric: Any, prefix: str = "fabric-restd-", **options: Any) -> Iterator[Any]:
    """A live cluster from ``factory`` with JWT next to munge, its files readable by slurmrestd's
    user (:func:`public_dir`), stopped and removed afterwards."""
    base = public_dir(prefix)
    cluster = factory(fabric, base_dir=base / "cluster", settings=jwt_settings(base), **options)
    try:
        yield cluster
    finally:
        drain(cluster)
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def drain(cluster: Any, timeout: float = 30.0) -> None:
    """Cancel every job of ``cluster`` and wait (at most ``timeout``) until the queue is empty: stopped
    while it still ends a job, a slurmd holds its SIGTERM and stop() waits 5 s before SIGKILL."""
    jobs = cluster.run(["squeue", "-h", "-o", "%i"], check=False).stdout.split()
    if jobs:
        cluster.run(["scancel", *jobs], check=False)
    deadline = time.monotonic() + timeout
    while cluster.run(["squeue", "-h", "-o", "%i"], check=False).stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.1)
