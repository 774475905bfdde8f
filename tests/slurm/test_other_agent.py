"""A second agent on the same cluster (another --state-dir, so the lock cannot see it) is detected: the
agent sees the begin times of its waiting fabric jobs renewed to times it never asked for, again and again,
and says so (``agent.other_agent``). The lock's own fix no longer suggests another --state-dir for one
cluster."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.agent_support import agent_lock
from fabric_hpc.slurm.contract import Job
from fabric_hpc.slurm.other_agent import FOREIGN_CYCLES
from tests.slurm.test_agent_actions import FAB, Fake, gang

FALLBACK = 60


class Deferring(Fake):
    """The scripted Slurm, applying ``StartTime=now+S`` to the job's begin time as Slurm does."""

    def update(self, job_id: int, **fields: str) -> None:
        super().update(job_id, **fields)
        start = fields.get("StartTime", "")
        if start.startswith("now+"):
            until = time.time() + int(start[4:])
            self._jobs = [replace(j, begin_time=until) if j.job_id == job_id else j for j in self._jobs]

    def renew_as_another_agent(self, job_id: int, seconds: float) -> None:
        self._jobs = [replace(j, begin_time=time.time() + seconds) if j.job_id == job_id else j
                      for j in self._jobs]


def _full() -> Job:
    """An unmarked job running on every GPU: the fabric gangs wait (and are deferred)."""
    hosts = tuple(f"n{i}" for i in range(1, 17))
    return Job(job_id=100, name="big", state="RUNNING", nodes=16, gpus_per_node=8, node_list=hosts,
               gpus={h: tuple(range(8)) for h in hosts}, start_time=time.time(), time_limit_min=600)


def _cluster() -> Deferring:
    """Two waiting gangs whose plugin deferral (submit time + fallback) is about to run out: the agent
    renews it at its first cycle."""
    sub = time.time() - FALLBACK + 2
    return Deferring([_full(), *(replace(gang(j), submit_time=sub, begin_time=sub + FALLBACK)
                                 for j in (1, 2))])


def _agent(tmp_path: Path, client: Fake) -> Agent:
    return Agent(client, FAB, AgentConfig(state_dir=str(tmp_path), fallback_s=FALLBACK))


def _warnings(tmp_path: Path) -> list[dict]:
    path = tmp_path / "decisions.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["event"] == "agent.other_agent"]


def test_begin_times_renewed_by_another_agent_are_reported(tmp_path: Path) -> None:
    client = _cluster()
    a = _agent(tmp_path, client)
    a.cycle()
    for k in range(FOREIGN_CYCLES + 2):
        client.renew_as_another_agent(1, FALLBACK + 7 + 10 * k)  # each renewal later
        client.renew_as_another_agent(2, FALLBACK + 9 + 10 * k)
        a.cycle()
    [warning] = _warnings(tmp_path)  # said once, not every cycle
    assert warning["jobs"] == [1, 2]
    assert "another fabric agent" in warning["detail"] and "--state-dir" in warning["hint"]
    assert json.loads((tmp_path / "status.json").read_text())["other_agent"]["jobs"] == [1, 2]


def test_own_renewals_and_one_user_change_are_not_another_agent(tmp_path: Path) -> None:
    client = _cluster()
    a = _agent(tmp_path, client)
    a.cycle()  # renews both deferrals (its own begin times)
    assert all(j.begin_time > time.time() + FALLBACK / 2 for j in client.jobs() if j.pending)
    client.renew_as_another_agent(1, 3 * FALLBACK)  # the user's own `scontrol update StartTime=`, once
    a.cycle()
    for k in range(2 * FOREIGN_CYCLES):  # Slurm requeues job 2 (a node failed) again and again: its delay
        client._jobs = [replace(j, flags=("COMPLETING", "REQUEUED")) if j.job_id == 2 else j
                        for j in client._jobs]
        a.cycle()
        client._jobs = [replace(j, flags=()) if j.job_id == 2 else j for j in client._jobs]
        client.renew_as_another_agent(2, 121 + 10 * k)
        a.cycle()
    assert _warnings(tmp_path) == []
    assert "other_agent" not in json.loads((tmp_path / "status.json").read_text())


def test_the_lock_hint_keeps_one_agent_per_cluster(tmp_path: Path) -> None:
    lock = agent_lock(tmp_path)
    lock.acquire()
    try:
        with pytest.raises(ConfigError) as exc:
            agent_lock(tmp_path).acquire()
    finally:
        lock.release()
    hint = exc.value.hint or ""
    assert "another cluster" in hint and "stop the other one" in hint, hint
