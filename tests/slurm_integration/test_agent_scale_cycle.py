"""The agent's cycle with preemption on recorded answers (no Slurm needed): the write-ahead audit log
is one write and one fsync per cycle, complete before the first action is sent; the decisions are
those of the gang preemption before it was vectorised (tests/scheduler/preempt_reference.py)."""

from __future__ import annotations

import json
import os

import pytest

from fabric_hpc import events
from fabric_hpc.events import read_json_lines
from fabric_hpc.scheduler import fabric_policy
from fabric_hpc.slurm import decode
from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.replay import ReplayClient, scale_recording
from fabric_hpc.topology import build, generators
from tests.scheduler.preempt_reference import ReferenceGangPreemption
from tests.slurm.test_agent_actions import pinned_by

from .test_agent_replay import VERSIONS, recorded

FAB = build(generators.superpod(sus=4))  # 1,024 GPUs


#: these spot gangs carry no checkpoint (all 10 min of their work would be lost): at the default
#: benefit ratio (20) no high gang's wait outweighs that and nothing is requeued, so the tests of the
#: preemption path ask for ratio 1
RATIO = 1.0


def _answers(version: str, pending: int = 120) -> tuple[str, str, float]:
    """Every host runs a whole-host spot gang (10 min old); ``pending`` gangs of mixed tiers wait."""
    nodes, jobs = recorded(version)
    start = min(decode.epoch(j, "start_time", "job") or float("inf") for j in jobs["jobs"])
    s, q = scale_recording(nodes, jobs, FAB.hosts, pending=pending, busy_fraction=1.0,
                           running_comment="fabric:tier=spot",
                           pending_comments=("fabric:tier=high", "fabric", "fabric", "fabric:tier=spot"))
    return s, q, start + 600.0


class _CheckingClient(ReplayClient):
    """Each action checks that its decision is already in the audit log."""

    def __init__(self, nodes: str, jobs: str, log) -> None:
        super().__init__(nodes, jobs)
        self.log = log

    def _logged(self, kind: str, job_id: int) -> None:
        assert any(e["event"] == kind and e["job"] == job_id for e in read_json_lines(self.log)), (kind, job_id)

    def requeue(self, job_id: int) -> None:
        self._logged("agent.requeue", job_id)
        super().requeue(job_id)

    def place(self, job_id: int, hosts) -> None:
        self._logged("agent.place", job_id)
        super().place(job_id, hosts)


@pytest.mark.parametrize("version", VERSIONS)
def test_decisions_are_on_disk_before_any_action_with_one_fsync(tmp_path, monkeypatch, version):
    s, q, now = _answers(version)
    client = _CheckingClient(s, q, tmp_path / "decisions.jsonl")
    agent = Agent(client, FAB, AgentConfig(state_dir=str(tmp_path), usage_source="ledger",
                                                preempt_benefit_ratio=RATIO))
    # the recorded cluster's pins were its agent's (its deferrals.json): a victim loses only the agent's own
    pinned_by(agent, [j for j in client.jobs() if j.state == "RUNNING"])
    synced = []
    real = events.os.fsync
    monkeypatch.setattr(events.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd))[1])
    res = agent.cycle(now=now)
    assert res.requeued and res.started and res.waiting
    log_syncs = [p for p in synced if p.endswith("decisions.jsonl")]
    assert len(log_syncs) == 1  # the cycle's records: one write, one fsync (usage.json has its own)
    log = read_json_lines(tmp_path / "decisions.jsonl")
    # the recorded answers have no scontrol behind them: the block-topology read fails, said once
    kinds = [e["event"] for e in log if not e["event"].startswith("agent.block_topology")]
    assert kinds == (["agent.usage_source"] + ["agent.requeue"] * len(res.requeued) + ["agent.place"] * len(res.started)
                     + ["agent.waiting"])
    assert [e["job"] for e in log if e["event"] == "agent.requeue"] == res.requeued
    sent = [a for a in client.actions if a[0] in ("requeue", "update")]
    victims = [a for j in res.requeued for a in (("requeue", j, {}), ("update", j, {"ReqNodeList": ""}))]
    assert sent[: len(victims)] == victims  # victims go first, each losing its old pin


@pytest.mark.parametrize("version", VERSIONS)
def test_scaled_cycle_decides_as_the_plain_preemption(tmp_path, version):
    s, q, now = _answers(version)

    def run(policy, name):
        agent = Agent(ReplayClient(s, q), FAB, AgentConfig(state_dir=str(tmp_path / name)), policy=policy)
        res = agent.cycle(now=now)
        return json.dumps([res.started, res.requeued, res.waiting, res.deferred], sort_keys=True, default=str)

    plain = fabric_policy(preempt_benefit_ratio=RATIO)
    plain.preemption = ReferenceGangPreemption(tiers=plain.preemption.tiers, restore_s=plain.preemption.restore_s,
                                               max_domains=plain.preemption.max_domains)
    want = run(plain, "plain")
    assert json.loads(want)[1]  # victims were chosen
    assert run(fabric_policy(preempt_benefit_ratio=RATIO), "fast") == want


def test_requests_of_one_shape_are_one_object_and_errors_name_each_job():
    """Jobs of one shape share one (frozen) request; a bad comment is an error naming its own job."""
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.slurm.contract import Job
    from fabric_hpc.slurm.view import request_of

    a, b = (Job(job_id=i, name="x", state="PENDING", comment="fabric:within=leaf", nodes=2, gpus_per_node=8)
            for i in (1, 2))
    assert request_of(a) is request_of(b)
    assert (request_of(a).nodes, request_of(a).gpus_per_node, request_of(a).within) == (2, 8, "leaf")
    for i in (3, 4):
        with pytest.raises(ConfigError, match=f"job {i} --comment: unknown key 'colour'"):
            request_of(Job(job_id=i, name="x", state="PENDING", comment="fabric:colour=red", nodes=2, gpus_per_node=8))
