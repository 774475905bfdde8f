"""`fabric slurm why` on a live slurmctld (unit tests: tests/slurm/test_why_probe_fixes.py): a running
fabric gang requeued by `scontrol requeue` keeps the ReqNodeList of its run and gets Slurm's requeue
delay as its begin time; why said "The fabric agent pinned it to …; Slurm starts it as soon as those GPUs
are free". Now it says when it may start and that the agent places it then, not necessarily there."""

from __future__ import annotations

import time

import pytest

from fabric_hpc.slurm import open_client
from fabric_hpc.slurm.why import explain

pytestmark = [pytest.mark.slurm]


def test_why_a_requeued_gang_waits_for_its_begin_time(fabric_cluster, agent):
    c = fabric_cluster
    agent.start()
    jid = c.sbatch("-N2", "--gres=gpu:8", "--requeue", wrap="sleep 300")
    try:
        ran = c.wait_job(jid, states=("RUNNING",), timeout=30)["NodeList"]
        c.run(["scontrol", "requeue", str(jid)])
        cli = open_client("cli", env=c.env)
        deadline = time.monotonic() + 30
        while True:  # Slurm sets the begin time once the job is pending again; the agent notes BeginTime
            job = cli.job(jid)
            begin_ahead = job.pending and job.begin_time is not None and job.begin_time > time.time() + 20
            if begin_ahead and job.req_nodes:
                break
            assert time.monotonic() < deadline, (job, agent.log())
            time.sleep(0.3)
        agent.wait_cycles(agent.cycles() + 2)
        text = explain(cli, jid, state_dir=agent.state_dir)["text"]
        assert "It may not start before" in text and "Slurm's delay after a requeue" in text, text
        assert f"the pin to {ran} it still carries is from before" in text, text
        assert "not necessarily there" in text and "as soon as those GPUs are free" not in text, text
    finally:
        c.run(["scancel", str(jid)], check=False)
