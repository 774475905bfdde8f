"""A job without a time limit is never backfilled in front of a reserved high gang, live (4 hosts): B holds
3 hosts with ``-t 120`` (it ends early: sleep 30), H (-N4, tier high) needs all of them, S (-N1, no
``--time``: the partition's ``MaxTime=INFINITE``, Slurm's ``UNLIMITED``) arrives. H's reservation starts at
B's limit, two hours ahead; the agent counted S as 1 h and pinned it at once on the free host (Slurm's
backfill does not start an INFINITE job there). Now S waits, H starts when B ends, then S.
The rules on the agent's own path: tests/slurm/test_unlimited_walltime_view.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fabric_hpc.events import read_json_lines
from tests.slurm_integration.conftest import AgentProcess, agent_on
from tests.slurm_integration.test_backfill_reservation_live import _start, small  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slurm]


@pytest.fixture()
def agent(small: Any) -> Iterator[AgentProcess]:  # noqa: F811
    with agent_on(small, small.topology_file) as a:
        yield a


@pytest.mark.parametrize("limit", [(), ("-t", "0")], ids=["no-time", "time-0"])
def test_an_unlimited_job_waits_behind_the_reserved_high_gang(small, agent, limit) -> None:  # noqa: F811
    c, a = small, agent
    a.start()
    b = c.sbatch("-N3", "--gres=gpu:8", "-t", "120", "--comment=nofabric", "-o", "/dev/null", wrap="sleep 30")
    c.wait_job(b, states=("RUNNING",), timeout=60)
    h = c.sbatch("-N4", "--gres=gpu:8", "-t", "5", "--comment=fabric:tier=high", "-o", "/dev/null",
                 wrap="sleep 5")
    s = c.sbatch("-N1", "--gres=gpu:8", *limit, "--comment=fabric:tier=normal", "-o", "/dev/null",
                 wrap="sleep 5")
    assert c.job(s)["TimeLimit"] == "UNLIMITED"
    a.wait_cycles(a.cycles() + 4)
    assert c.job(s)["JobState"] == "PENDING", a.log()  # before: pinned to the free host and started at once
    hi = c.wait_job(h, states=("RUNNING", "COMPLETED"), timeout=90)  # once B is gone
    lo = c.wait_job(s, states=("RUNNING", "COMPLETED"), timeout=60)
    assert _start(lo) >= _start(hi), (hi["StartTime"], lo["StartTime"])
    log = read_json_lines(a.state_dir / "decisions.jsonl")
    waiting = [e["jobs"] for e in log if e["event"] == "agent.waiting"]
    assert any(w.get(str(h)) == "Resources" and w.get(str(s)) == "Priority" for w in waiting), waiting
