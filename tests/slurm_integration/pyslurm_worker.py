"""The pyslurm client of one test cluster, in a worker process of its own.

libslurm reads one slurm.conf per process and ends the process when it finds none, so the pytest
process never imports pyslurm: :class:`PyslurmWorker` starts ``python -m
tests.slurm_integration.pyslurm_worker`` with the cluster's environment (its ``SLURM_CONF``), where
a real :class:`~fabric_hpc.slurm.pyslurm_backend.PyslurmClient` runs. Each method call (``place``
and ``defer`` included: the worker runs the backend's own) goes over a pipe as a pickled
``(method, args, kwargs)``; the answer or the exception comes back the same way. Nothing is
translated on the way, so the contract tests test the backend itself.
"""

from __future__ import annotations

import os
import pickle
import select
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fabric_hpc.slurm.contract import Job, Node, SlurmClient

REPO = Path(__file__).resolve().parents[2]


class PyslurmWorker(SlurmClient):
    """A :class:`SlurmClient` whose calls run in a pyslurm worker bound to ``env['SLURM_CONF']``."""

    backend = "pyslurm"

    def __init__(self, env: Mapping[str, str], *, log: Path, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._log = open(log, "ab")  # noqa: SIM115 (the worker's stderr, closed in close())
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.slurm_integration.pyslurm_worker"],
                                     env={**env, "PYTHONPATH": str(REPO)}, cwd=REPO, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log)
        try:
            self._receive()  # the worker's greeting: pyslurm loaded, or the error that stopped it
        except BaseException:
            self.close()
            raise

    def _receive(self) -> Any:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            raise AssertionError(f"the pyslurm worker did not answer within {self.timeout} s")
        try:
            status, value = pickle.load(self.proc.stdout)
        except EOFError:
            raise AssertionError(f"the pyslurm worker exited ({self.proc.wait()}); see {self._log.name}") from None
        if status == "error":
            raise value
        return value

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        assert self.proc.stdin is not None
        pickle.dump((method, args, kwargs), self.proc.stdin)
        self.proc.stdin.flush()
        return self._receive()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # end of input: the worker returns
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def nodes(self) -> list[Node]:
        return self._call("nodes")

    def jobs(self) -> list[Job]:
        return self._call("jobs")

    def job(self, job_id: int) -> Job:
        return self._call("job", job_id)

    def reservations(self) -> Any:
        return self._call("reservations")

    def submit(self, script: str, args: Sequence[str] = (), *, cwd: str | None = None) -> int:
        return self._call("submit", script, list(args), cwd=cwd)

    def update(self, job_id: int, **fields: str) -> None:
        self._call("update", job_id, **fields)

    def hold(self, job_id: int) -> None:
        self._call("hold", job_id)

    def release(self, job_id: int) -> None:
        self._call("release", job_id)

    def requeue(self, job_id: int) -> None:
        self._call("requeue", job_id)

    def cancel(self, job_id: int) -> None:
        self._call("cancel", job_id)

    def place(self, job_id: int, hosts: Sequence[str]) -> None:
        self._call("place", job_id, list(hosts))

    def defer(self, job_id: int, seconds: int) -> None:
        self._call("defer", job_id, seconds)

    def defer_many(self, job_ids: Sequence[int], seconds: int) -> None:
        self._call("defer_many", list(job_ids), seconds)


def main() -> None:
    """Serve one PyslurmClient on stdin/stdout (stdout itself goes to stderr: libslurm may print)."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

    def send(status: str, value: Any) -> None:
        pickle.dump((status, value), out)
        out.flush()

    from fabric_hpc.slurm.pyslurm_backend import PyslurmClient

    try:
        client = PyslurmClient()
    except Exception as exc:
        send("error", exc)
        return
    send("ok", "ready")
    while True:
        try:
            method, args, kwargs = pickle.load(sys.stdin.buffer)
        except EOFError:
            return
        try:
            send("ok", getattr(client, method)(*args, **kwargs))
        except Exception as exc:
            send("error", exc)


if __name__ == "__main__":
    main()
