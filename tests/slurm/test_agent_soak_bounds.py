"""A long-running agent's memory is bounded by the jobs Slurm lists, not by the cycles it has run: the
agent's cycle driven for many cycles on a recorded (25.11) and rewritten answer in which multi-host gangs
keep arriving (ids growing) and leaving (cancelled while pending), on a full cluster."""

from __future__ import annotations

import json
from pathlib import Path

from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.replay import ReplayClient, scale_recording
from fabric_hpc.topology import build, generators

DATA = Path(__file__).resolve().parents[1] / "slurm_integration" / "data" / "slurm-25.11"
LIVE = 8  # pending gangs listed at once
CYCLES = 200


def _number(value: float) -> dict:
    return {"set": True, "infinite": False, "number": int(value)}


def _answers(fab, now: float, first: int) -> tuple[str, str]:
    """Every host busy (nofabric, whole host); LIVE pending 2-host fabric gangs with ids first.., just
    submitted (the plugin's deferral): each is within its compact wait and nothing can start."""
    nodes = json.loads((DATA / "scontrol-nodes.json").read_text())
    jobs = json.loads((DATA / "squeue.json").read_text())
    s, q = scale_recording(nodes, jobs, fab.hosts, pending=0, busy_fraction=1.0, running_comment="nofabric")
    answer = json.loads(q)
    template = next(j for j in jobs["jobs"] if j["job_id"] == 3)  # a pending 2-host gang, deferred
    for k in range(first, first + LIVE):
        submit = now - 30 - (first + LIVE - k)
        answer["jobs"].append({**template, "job_id": 100_000 + k, "comment": "fabric", "node_count": _number(2),
                               "submit_time": _number(submit), "eligible_time": _number(submit + 60),
                               "start_time": _number(submit + 60)})
    return s, json.dumps(answer)


def _sizes(agent: Agent) -> dict[str, int]:
    a = agent.actions
    out = {name: len(getattr(a, name)) for name in ("failures", "handed_off", "to_hand", "avoid", "stale_count",
                                                     "handoff_failures", "deferrals", "waits", "requeued",
                                                     "requeue_failures", "unrequeueable", "asked", "defer_retry")}
    out["qos"] = len(agent.qos_memory.jobs)
    out["compact"] = len(agent.policy.caches.compact)
    return out


def test_memory_bounded_by_listed_jobs_over_many_cycles(tmp_path):
    fab = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
    now = 1_796_400_000.0
    client = ReplayClient(*_answers(fab, now, 0))
    agent = Agent(client, fab, AgentConfig(state_dir=str(tmp_path / "state")))
    listed = len(fab.hosts) + LIVE
    worst: dict[str, int] = {}
    for cycle in range(CYCLES):
        now += 2.0
        client.nodes_json, client.jobs_json = _answers(fab, now, cycle)  # one gang leaves, one arrives
        agent.cycle(now=now)
        client.actions.clear()
        for name, n in _sizes(agent).items():
            worst[name] = max(worst.get(name, 0), n)
    assert agent.cycle(now=now + 2).pending == LIVE
    # each structure holds at most a few entries per job Slurm lists (and a small fixed slack), whatever
    # the number of cycles: CYCLES + LIVE distinct gangs came and went
    bound = {name: listed for name in worst} | {"compact": 3 * LIVE + 64}  # the scheduler's, per pending job
    too_big = {name: n for name, n in worst.items() if n > bound[name]}
    assert not too_big, f"grew with the cycles ({CYCLES} cycles, {listed} jobs listed): {too_big}"
