"""Fixtures shared by the agent's metrics tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from fabric_hpc.slurm.metrics import AgentMetrics


@pytest.fixture
def metrics() -> Iterator[AgentMetrics]:
    """An agent's metrics registry served on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = AgentMetrics(port, backend="fake")
    yield m
    m.close()


def jobs_in_thread(client: object) -> tuple[threading.Thread, dict]:
    """``client.jobs()`` started in a daemon thread; the SlurmError it ends with lands in ``out["error"]``
    (for tests that interrupt or time out a blocked read)."""
    from fabric_hpc.slurm.contract import SlurmError

    out: dict = {}

    def read() -> None:
        try:
            client.jobs()  # type: ignore[attr-defined]
        except SlurmError as exc:
            out["error"] = exc

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, out
