"""An admin's probe of the agent on a live cluster: a spot gang Slurm will not requeue, and a job whose
partition goes INACTIVE while its ``--begin`` is ahead (agent as conftest starts it, plus the admin's
flags)."""

from __future__ import annotations

import time

import pytest

from fabric_hpc.events import read_json_lines
from tests.slurm_integration.conftest import FALLBACK_S

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
FLAGS = ("--pin-timeout", "15", "--compact-wait", "0")


def _events(agent, name: str) -> list[dict]:
    path = agent.state_dir / "decisions.jsonl"
    return [e for e in read_json_lines(path) if e["event"] == name] if path.exists() else []


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_spot_gang_slurm_will_not_requeue_is_never_a_victim(fabric_cluster, agent):
    agent.extra = (*agent.extra, *FLAGS, "--preempt-benefit-ratio", "1")
    agent.start()
    spots = [fabric_cluster.sbatch("-N4", "--gres=gpu:8", "--comment=fabric:tier=spot", "--no-requeue",
                                   wrap="sleep 400") for _ in range(4)]
    _wait(lambda: all(fabric_cluster.job(j)["JobState"] == "RUNNING" for j in spots), 60, "spot gangs start")
    assert {fabric_cluster.job(j)["Requeue"] for j in spots} == {"0"}
    high = fabric_cluster.sbatch("-N2", "--gres=gpu:8", "--comment=fabric:tier=high", wrap="sleep 20")
    start = agent.cycles()
    agent.wait_cycles(start + 12, timeout=60)
    assert _events(agent, "agent.requeue") == []
    assert [e for e in _events(agent, "agent.failed") if e["action"] == "requeue"] == []
    assert [e for e in _events(agent, "agent.place") if e["job"] == high] == []
    assert fabric_cluster.job(high)["JobState"] == "PENDING"
    assert all(fabric_cluster.job(j)["JobState"] == "RUNNING" for j in spots)


def test_an_inactive_partition_does_not_push_a_users_begin_time_later_and_later(fabric_cluster, agent):
    """Slurm answers ``scontrol update JobId=N StartTime=...`` of a job whose partition is INACTIVE with
    rc 1 ("Requested partition configuration not available now") yet sets the StartTime (25.11 and
    22.05 alike; docs/slurm.md, "Deferrals Slurm refuses"). The agent takes the user's begin time B over
    once (B + fallback), never later, sends no refused update every cycle, and the job starts once the
    partition is up again. The agent starts after the partition went INACTIVE, so its first deferral
    is refused (as where an admin deactivates a partition between two cycles)."""
    agent.extra = (*agent.extra, *FLAGS)
    # B 12 s ahead: time for the agent to start and be refused before B (was 20 s; the watch after B is as long)
    job = fabric_cluster.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", "--begin=now+12", wrap="sleep 1")
    begin = time.time() + 12
    fabric_cluster.run(["scontrol", "update", "PartitionName=debug", "State=INACTIVE"])
    ahead = []  # (seconds from B, seconds the begin time lies in the future) while it lies ahead
    try:
        agent.start()
        while time.time() < begin + 22:  # past B + fallback (the only push allowed) by 14 s
            eligible = fabric_cluster.job(job).get("EligibleTime", "")
            when = time.mktime(time.strptime(eligible, "%Y-%m-%dT%H:%M:%S")) if eligible[:1].isdigit() else 0
            if when > time.time() + 1:
                ahead.append((round(when - begin, 1), round(when - time.time(), 1)))
            time.sleep(0.5)
    finally:
        fabric_cluster.run(["scontrol", "update", "PartitionName=debug", "State=UP"])
    refused = [(round(e["ts"] - begin, 1), e["action"]) for e in _events(agent, "agent.failed")
               if e.get("job") == job]
    assert ahead and max(b for b, _ in ahead) <= FALLBACK_S + 3, (ahead, refused)
    assert len(refused) <= 10, refused
    fabric_cluster.wait_job(job, timeout=60)
