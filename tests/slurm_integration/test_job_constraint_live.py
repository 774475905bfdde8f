"""A job's ``--constraint`` on a live Slurm: the agent places ``sbatch -N2 --gres=gpu:2 --constraint=fast``
on the two hosts with the feature ``fast``, and Slurm starts it there. Before: the agent pinned it to hosts
without the feature, Slurm rejected the pin (``BadConstraints``), the agent handed it over and Slurm placed
it without fabric (unit tests: tests/slurm/test_job_constraint.py)."""

from __future__ import annotations

import pytest

from fabric_hpc.hostlist import expand
from tests.slurm_integration.test_agent_held_live import _decisions, _until

pytestmark = [pytest.mark.slurm]


def _features(c, hosts: str, feats: str) -> None:
    c.run(["scontrol", "update", f"NodeName={hosts}", f"AvailableFeatures={feats}",
           f"ActiveFeatures={feats}"])


def test_the_agent_places_a_constrained_gang_on_hosts_with_the_feature(fabric_cluster, agent):
    c = fabric_cluster
    before = c.run(["sinfo", "-h", "-N", "-n", "n15", "-o", "%b"]).stdout.strip()
    _features(c, "n15,n16", f"{before},fast" if before and before != "(null)" else "fast")
    try:
        agent.start()
        jid = c.sbatch("-N2", "--gres=gpu:2", "--constraint=fast", wrap="sleep 300")
        _until(lambda: _decisions(agent, "agent.place", jid) or _decisions(agent, "agent.handoff", jid),
               "the agent neither placed nor handed over the job", agent)
        info = c.wait_job(jid, states=("RUNNING",), timeout=30)
        placed = _decisions(agent, "agent.place", jid)
        assert placed and set(placed[-1]["hosts"]) == {"n15", "n16"}, agent.log()
        assert set(expand(info["NodeList"])) == {"n15", "n16"}, info
        assert not _decisions(agent, "agent.handoff", jid), agent.log()
    finally:
        _features(c, "n15,n16", before if before and before != "(null)" else "")
