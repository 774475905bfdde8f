"""The agent's cycle runs with Python's cyclic collector paused (issue 21: its collections cost ~12 %
of a cycle at 16,384 GPUs) and leaves it as it found it; a cycle leaves no cyclic garbage behind,
which is what makes the pause safe."""

from __future__ import annotations

import gc

import pytest

from fabric_hpc.slurm import decode
from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.replay import ReplayClient, scale_recording
from fabric_hpc.topology import build, generators
from tests.slurm_integration.test_agent_replay import VERSIONS, recorded

FAB = build(generators.superpod(sus=2))


def _collections() -> int:
    return sum(s["collections"] for s in gc.get_stats())


class _Watching(ReplayClient):
    """Notes whether the collector is on, and how many collections ran, when the cycle starts (its
    first read) and when it sends its actions (its last steps)."""

    def __init__(self, nodes: str, jobs: str) -> None:
        super().__init__(nodes, jobs)
        self.enabled: list[bool] = []
        self.ran: list[int] = []

    def nodes(self):
        self.enabled.append(gc.isenabled())
        self.ran.append(_collections())
        return super().nodes()

    def update(self, job_id: int, **fields: str) -> None:
        self.enabled.append(gc.isenabled())
        self.ran.append(_collections())
        super().update(job_id, **fields)


def _agent(tmp_path, version: str) -> tuple[Agent, _Watching, float]:
    nodes, jobs = recorded(version)
    start = min(decode.epoch(j, "start_time", "job") or float("inf") for j in jobs["jobs"])
    s, q = scale_recording(nodes, jobs, FAB.hosts, pending=60, busy_fraction=1.0,
                           running_comment="fabric:tier=spot",
                           pending_comments=("fabric:tier=high", "fabric", "fabric", "fabric:tier=spot"))
    client = _Watching(s, q)
    agent = Agent(client, FAB, AgentConfig(state_dir=str(tmp_path), preempt_benefit_ratio=1.0))
    return agent, client, start + 600.0


@pytest.mark.parametrize("version", VERSIONS)
def test_a_cycle_pauses_the_collector_and_restores_it(tmp_path, version):
    agent, client, now = _agent(tmp_path, version)
    assert gc.isenabled()
    res = agent.cycle(now=now)
    assert res.requeued and res.started  # a cycle that decided something
    assert len(client.enabled) > 1 and not any(client.enabled)  # paused from its first read to its actions
    assert len(set(client.ran)) == 1  # no collection ran in between
    assert gc.isenabled()
    gc.collect()
    assert gc.collect() == 0
    agent.cycle(now=now + 1)
    assert gc.collect() == 0  # the cycle made no cyclic garbage for the pause to keep


def test_a_callers_pause_is_kept(tmp_path):
    agent, _, now = _agent(tmp_path, VERSIONS[0])
    gc.disable()
    try:
        agent.cycle(now=now)
        assert not gc.isenabled()
    finally:
        gc.enable()
