"""A job over its partition's time limit, live on both tiers (the unit tests:
tests/slurm/test_slurm_limits.py).
Before, the agent pinned it, re-pinned it when the pin went stale and kept deferring it: squeue showed
``BeginTime`` for ever, never Slurm's ``PartitionTimeLimit``. Now it is handed to Slurm once, which shows its
reason (and would start the job once the limit allowed)."""

from __future__ import annotations

import contextlib
import time

import pytest

from tests.slurm_integration.test_agent_held_live import _decisions, _until

pytestmark = [pytest.mark.slurm]


@contextlib.contextmanager
def _partition(c, name: str):
    c.run(["scontrol", "create", f"PartitionName={name}", "Nodes=n[13-16]", "MaxTime=00:10:00", "State=UP"])
    try:
        yield
    finally:
        c.run(["scancel", "-p", name], check=False)
        deadline = time.monotonic() + 20
        while c.run(["squeue", "-h", "-p", name], check=False).stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.2)
        c.run(["scontrol", "delete", f"PartitionName={name}"], check=False)


def test_a_job_over_its_partition_time_limit_shows_slurms_reason(fabric_cluster, agent):
    c = fabric_cluster
    with _partition(c, "short10"):
        agent.start()
        jid = c.sbatch("-p", "short10", "-t", "30", "-N2", "--gres=gpu:8", "--comment=fabric",
                       wrap="sleep 60")
        _until(lambda: _decisions(agent, "agent.handoff", jid), "the agent did not hand the job over", agent,
               timeout=40)
        [hand] = _decisions(agent, "agent.handoff", jid)
        # 25.11 says PartitionTimeLimit; 22.05 PartitionConfig for the pinned job, then PartitionTimeLimit
        assert "Slurm holds it back under a limit (Partition" in hand["reason"], hand
        _until(lambda: c.job(jid)["Reason"] == "PartitionTimeLimit", "Slurm's reason is not shown", agent)
        agent.wait_cycles(agent.cycles() + 4)
        info = c.job(jid)
        assert info["JobState"] == "PENDING" and info["Reason"] == "PartitionTimeLimit", info
        assert info["ReqNodeList"] in ("(null)", ""), info
        assert len(_decisions(agent, "agent.handoff", jid)) == 1
