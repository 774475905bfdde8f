"""A job's own ``-x`` on a live Slurm: the agent places ``sbatch -N2 -x n2`` outside n2, Slurm starts it on
the agent's hosts. Before: the agent pinned it to n1, n2, Slurm rejected the pin (``BadConstraints``), the
agent handed it over and Slurm ran it on hosts the agent had not chosen (unit tests:
tests/slurm/test_own_exclusions.py)."""

from __future__ import annotations

import pytest

from fabric_hpc.hostlist import expand
from tests.slurm_integration.test_agent_held_live import _decisions, _until

pytestmark = [pytest.mark.slurm]


def test_the_agent_keeps_a_job_off_its_own_excluded_host(fabric_cluster, agent):
    c = fabric_cluster
    agent.start()
    jid = c.sbatch("-N2", "--gres=gpu:8", "-x", "n2", wrap="sleep 300")
    _until(lambda: _decisions(agent, "agent.place", jid) or _decisions(agent, "agent.handoff", jid),
           "the agent neither placed nor handed over the job", agent)
    info = c.wait_job(jid, states=("RUNNING",), timeout=30)
    placed = _decisions(agent, "agent.place", jid)
    assert placed and all("n2" not in p["hosts"] for p in placed), agent.log()
    assert set(placed[-1]["hosts"]) == set(expand(info["NodeList"])), (placed, info)
    assert not _decisions(agent, "agent.handoff", jid), agent.log()
    assert info["ExcNodeList"] == "n2", info
