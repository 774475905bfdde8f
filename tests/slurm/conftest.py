"""Fixtures shared by the agent's metrics tests."""

from __future__ import annotations

import socket
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
