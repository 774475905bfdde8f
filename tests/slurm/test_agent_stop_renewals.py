"""A stop (SIGTERM) while the agent renews the deferrals: the renewals Slurm's client abandons are no failed
actions. Before, each pending job got its own ``agent.failed`` record ("abandoned: the agent is stopping":
hundreds at every stop of a busy agent, seen live on 25.11), counted in ``failed_actions``, and its deferral
was saved as refused in ``deferrals.json`` (a restarted agent backed off renewing it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.replay import ReplayClient, scale_recording
from fabric_hpc.topology import build, generators

DATA = Path(__file__).resolve().parents[1] / "slurm_integration" / "data" / "slurm-25.11"


class StoppedMidway(ReplayClient):
    """The cli backend after ``interrupt()``: every command fails at once; the stop comes with the batch."""

    agent: Agent

    def defer_many(self, job_ids, seconds):
        self.agent.stop()
        raise SlurmError("`scontrol update JobId=... StartTime=now+60` abandoned: the agent is stopping")

    def update(self, job_id, **fields):
        if self.agent._stop.is_set():
            raise SlurmError(f"`scontrol update JobId={job_id}` abandoned: the agent is stopping")
        super().update(job_id, **fields)


def test_renewals_abandoned_by_a_stop_are_not_failures(tmp_path):
    fab = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
    nodes = json.loads((DATA / "scontrol-nodes.json").read_text())
    jobs = json.loads((DATA / "squeue.json").read_text())
    s, q = scale_recording(nodes, jobs, fab.hosts, pending=20, busy_fraction=1.0)  # full: all 20 wait
    client = StoppedMidway(s, q)
    agent = client.agent = Agent(client, fab, AgentConfig(state_dir=str(tmp_path)))
    with pytest.raises(SlurmError):  # the loop ends the cycle quietly when stopping (Agent._loop)
        agent.cycle()
    log = (tmp_path / "decisions.jsonl").read_text().splitlines()
    failed = [r for r in map(json.loads, log) if r["event"] == "agent.failed"]
    assert failed == [] and agent.actions.failed_total == 0
    assert agent.actions.defer_retry == {}  # none taken for a refusal (deferrals.json)


class StopOnSecondBatch(StoppedMidway):
    """Slurm takes the first batch of renewals; the stop comes with the second."""

    calls = 0
    done: list[int] = []

    def defer_many(self, job_ids, seconds):
        self.calls += 1
        if self.calls == 1:
            self.done = list(job_ids)
            return ReplayClient.defer_many(self, job_ids, seconds)
        return super().defer_many(job_ids, seconds)


def test_renewals_slurm_took_before_the_stop_are_saved(tmp_path, monkeypatch):
    """Those begin times are on disk (``deferrals.json``): a restarted agent tells them from a user's
    ``--begin`` (else such a gang waited up to ``fallback_s`` on idle GPUs)."""
    from fabric_hpc.slurm import actions

    monkeypatch.setattr(actions, "RENEW_BATCH", 5)
    fab = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
    s, q = scale_recording(json.loads((DATA / "scontrol-nodes.json").read_text()),
                           json.loads((DATA / "squeue.json").read_text()), fab.hosts, pending=20,
                           busy_fraction=1.0)
    client = StopOnSecondBatch(s, q)
    agent = client.agent = Agent(client, fab, AgentConfig(state_dir=str(tmp_path)))
    agent.run(max_cycles=1)
    assert len(client.done) == 5
    saved = (tmp_path / "deferrals.json").read_text()
    assert all(str(j) in saved for j in client.done)
