"""`fabric slurm why` of a GPU gang array task and of a het job's component, submitted without a comment,
on a live Slurm: it says fabric places single jobs only, not "It is not marked for fabric placement" (unit
tests: tests/slurm/test_why_grouped_gangs.py)."""

from __future__ import annotations

import time

import pytest

from fabric_hpc.slurm import open_client
from fabric_hpc.slurm.why import explain

pytestmark = [pytest.mark.slurm]


def test_why_says_why_fabric_leaves_grouped_gangs_to_slurm(fabric_cluster, agent):
    c = fabric_cluster
    agent.start()
    arr = c.sbatch("--array=0-1", "-N2", "--gres=gpu:8", wrap="sleep 60")
    het = c.sbatch("-N2", "--gres=gpu:4", ":", "-N1", "--gres=gpu:1", wrap="sleep 60")
    cli = open_client("cli", env=c.env)
    deadline = time.monotonic() + 20
    while not (tasks := [j for j in cli.jobs() if j.array_job_id == arr and j.job_id != arr]):
        assert time.monotonic() < deadline, c.run(["squeue"]).stdout
        time.sleep(0.2)
    text = explain(cli, tasks[0].job_id, state_dir=agent.state_dir)["text"]
    assert f"It is a task of job array {arr}: the fabric agent places no job arrays" in text, text
    text = explain(cli, het, state_dir=agent.state_dir)["text"]
    assert f"It is a component of heterogeneous job {het}" in text, text
