"""``include=`` kept by Slurm after the agent hands a job over (the unit tests:
tests/slurm/test_include_handoff.py). ``numa_local`` with 8 GPUs per node never fits the fabric's
4-GPU NUMA nodes, so the agent hands the job over at once; Slurm then starts it only on its
``include=`` hosts. Before: the hand-over cleared the pin only, and Slurm started it on n1, n2."""

from __future__ import annotations

import pytest

from fabric_hpc.hostlist import expand
from tests.slurm_integration.test_agent_held_live import _decisions, _until

pytestmark = [pytest.mark.slurm]
ALLOWED = {"n5", "n6", "n7", "n8"}


def test_a_job_handed_over_runs_only_on_its_include_hosts(fabric_cluster, agent):
    c = fabric_cluster
    agent.start()
    jid = c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric:include=n[5-8],numa_local", wrap="sleep 300")
    _until(lambda: _decisions(agent, "agent.handoff", jid), "the agent did not hand the job over", agent)
    info = c.wait_job(jid, states=("RUNNING",), timeout=30)
    assert set(expand(info["NodeList"])) <= ALLOWED, info
    assert set(expand(info["ExcNodeList"])) == {f"n{i}" for i in range(1, 17)} - ALLOWED, info
    [hand] = _decisions(agent, "agent.handoff", jid)
    assert "numa_local" in hand["reason"], hand
