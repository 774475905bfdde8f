"""``fabric slurm why`` says when a reserved gang will start, live (4 hosts): B (unmarked, 3 hosts, -t 10)
runs, H (-N4, tier high) waits for it; the agent's policy reserves B's hosts for H at B's end. Before,
``why`` said only that the resources it asks for are busy. Rules: tests/slurm/test_why_reserved.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.slurm.why import explain
from tests.clock_text import shown
from tests.slurm_integration.conftest import AgentProcess, agent_on
from tests.slurm_integration.test_backfill_reservation_live import _start, small  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slurm]


@pytest.fixture()
def agent(small: Any) -> Iterator[AgentProcess]:  # noqa: F811
    with agent_on(small, small.topology_file) as a:
        yield a


def test_why_says_when_and_where_the_reserved_gang_starts(small, agent) -> None:  # noqa: F811
    c, a = small, agent
    a.start()
    b = c.sbatch("-N3", "--gres=gpu:8", "-t", "10", "--comment=nofabric", "-o", "/dev/null", wrap="sleep 60")
    info = c.wait_job(b, states=("RUNNING",), timeout=60)
    h = c.sbatch("-N4", "--gres=gpu:8", "-t", "5", "--comment=fabric:tier=high", "-o", "/dev/null",
                 wrap="sleep 5")
    try:
        a.wait_cycles(a.cycles() + 3)
        end = _start(info) + 600
        out = explain(CliClient(c.env), h, state_dir=a.state_dir)
        assert out["decisions"]["waiting"]["reserved"] == {"start": end, "hosts": 4, "after": [b]}, out
        when = shown(end)
        expected = f"reserved: expected to start by {when} on 4 hosts when job {b} ends"
        assert expected in out["text"], out["text"]
        status = json.loads((a.state_dir / "status.json").read_text())
        assert status["reserved"][str(h)]["start"] == end
    finally:
        c.run(["scancel", str(b), str(h)], check=False)
