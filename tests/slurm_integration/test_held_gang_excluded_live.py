"""A gang whose free GPUs are all on hosts it excludes is blocked (``Resources``, with a reservation), not
held for a compact placement (``Topology``: "its GPUs are free, but not in at most 1 leaf", no reservation,
for up to ``compact_wait_s``). Seen on 22.05: ``sbatch -N2 --gres=gpu:2 -x n[1-5]`` on 8 hosts with the
others busy (unit tests: tests/scheduler/test_held_gang_excluded_hosts.py)."""

from __future__ import annotations

import pytest

from fabric_hpc.events import read_json_lines
from tests.slurm_integration.test_agent_held_live import _until

pytestmark = [pytest.mark.slurm]


def _reasons(agent, jid: int) -> list[str]:
    return [e["jobs"][str(jid)] for e in read_json_lines(agent.state_dir / "decisions.jsonl")
            if e.get("event") == "agent.waiting" and str(jid) in e.get("jobs", {})]


def test_a_gang_whose_free_gpus_are_all_excluded_is_blocked_not_held(fabric_cluster, agent):
    c = fabric_cluster
    agent.start()
    busy = c.sbatch("-N3", "-w", "n[14-16]", "--exclusive", "--comment=nofabric", "-t", "5", wrap="sleep 300")
    c.wait_job(busy, states=("RUNNING",), timeout=30)
    jid = c.sbatch("-N2", "--gres=gpu:2", "-x", "n[1-13]", wrap="sleep 300")
    _until(lambda: _reasons(agent, jid), "no waiting record for the gang", agent)
    assert _reasons(agent, jid)[-1] == "Resources", (_reasons(agent, jid), agent.log())
    assert c.job(jid)["JobState"] == "PENDING"
