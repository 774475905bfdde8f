"""Audit fixes on a live Slurm (each tier): a deferral renewal goes on past a job that ended or that Slurm
refuses, and the plugin's wake file stays one line while it still wakes the agent."""

from __future__ import annotations

import time

import pytest

from fabric_hpc.slurm import open_client
from fabric_hpc.slurm.actions import Actions
from fabric_hpc.slurm.limits import FALLBACK_PER_INTERVAL
from tests.slurm_integration.conftest import FALLBACK_S

pytestmark = [pytest.mark.slurm]


def test_renewal_goes_on_past_an_ended_job(slurm_cluster) -> None:
    """``scontrol update JobId=a,b,c`` with one job no longer pending: the other deferrals are renewed
    (before, the one failed batch renewed none of them that cycle)."""
    c = slurm_cluster
    cli = open_client("cli", env=c.env)
    ended = c.sbatch("-N1", "--gres=gpu:1", wrap="true")
    c.wait_job(ended, states=("COMPLETED",), timeout=60)
    waiting = [c.sbatch("-N1", "--gres=gpu:1", "--begin=now+3600", wrap="true") for _ in range(2)]
    notes: list[tuple[str, dict]] = []
    try:
        Actions(cli, lambda what, **kw: notes.append((what, kw))).renew([waiting[0], ended, waiting[1]], 60)
        now = time.time()
        for job_id in waiting:
            begin = cli.job(job_id).begin_time
            assert begin is not None and begin < now + 600, (job_id, begin - now, notes)
        assert all(kw["job"] == ended for what, kw in notes if what == "failed"), notes
    finally:
        c.run(["scancel", *map(str, waiting)], check=False)


def test_the_wake_file_stays_one_line_and_wakes_the_agent(fabric_cluster, agent) -> None:
    """With the longest interval the fallback allows (a third of it: limits.FALLBACK_PER_INTERVAL; it was
    600 s, which now is refused) the wake file stays one line, and each gang is placed by the agent (an
    agent.place record), not by Slurm once its deferral runs out."""
    from fabric_hpc.events import read_json_lines

    c = fabric_cluster
    agent.extra = ("--compact-wait", "0", "--interval", str(FALLBACK_S // FALLBACK_PER_INTERVAL))
    agent.start()
    jobs = [c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 1") for _ in range(3)]
    from fabric_hpc.slurm.plugins import plugin_dir

    wake = plugin_dir(agent.state_dir) / "wake"  # the plugin's directory, never the state dir
    lines = wake.read_text().splitlines()
    assert len(lines) == 1 and lines[0].isdigit(), lines
    deadline = time.monotonic() + 120
    while True:
        placed = {e["job"] for e in read_json_lines(agent.state_dir / "decisions.jsonl")
                  if e["event"] == "agent.place"}
        if set(jobs) <= placed:
            break
        assert time.monotonic() < deadline, f"placed {placed}, submitted {jobs}\n{agent.log()}"
        time.sleep(0.2)
    for job_id in jobs:
        c.wait_job(job_id, states=("COMPLETED",), timeout=120)
    assert len(wake.read_text().splitlines()) == 1
