"""`fabric slurm why` of a gang whose afterok dependency failed, on a live Slurm with the agent renewing its
deferral: the first sentence names the dependency, whichever reason Slurm shows at that moment (on 22.05.8
``squeue --json`` read ``None`` after the agent's renewal while scontrol said ``DependencyNeverSatisfied``,
and why began "is pending: no reason recorded"; unit tests: tests/slurm/test_why_dependency_headline.py)."""

from __future__ import annotations

import time

import pytest

from fabric_hpc.slurm import open_client
from fabric_hpc.slurm.why import explain

pytestmark = [pytest.mark.slurm]


def test_why_names_a_failed_dependency_first(fabric_cluster, agent):
    c = fabric_cluster
    agent.start()
    first = c.sbatch("-N1", wrap="exit 3")
    jid = c.sbatch("-N2", "--gres=gpu:8", f"--dependency=afterok:{first}", wrap="true")
    c.wait_job(first, states=("FAILED",), timeout=30)
    cli = open_client("cli", env=c.env)
    deadline = time.monotonic() + 30
    while "(failed)" not in cli.job(jid).dependency:  # Slurm's next pass marks it
        assert time.monotonic() < deadline, c.job(jid)
        time.sleep(0.2)
    deadline = time.monotonic() + 20
    seen = set()
    while time.monotonic() < deadline and len(seen) < 2:  # across the agent's renewals
        job = cli.job(jid)
        seen.add(job.reason)
        text = explain(cli, jid, state_dir=agent.state_dir)["text"]
        assert "is pending: its dependency can never be satisfied" in text, (job.reason, text)
        time.sleep(0.5)
    assert c.job(jid)["JobState"] == "PENDING"
