"""``fabric slurm why`` names the GPUs of a job that asks for them in all (``-N2 --gpus=16``); before,
the headline said "2 node(s)" and nothing of its GPUs. A running job's are the GPUs Slurm gave it; a
pending job's are Slurm's ``tres_per_job`` (``TresPerJob`` in scontrol's text), on both tiers."""

from __future__ import annotations

import json

import pytest

from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.slurm.why import explain
from tests.slurm_integration.test_report_live import fabric

pytestmark = [pytest.mark.slurm]


def test_why_names_the_gpus_of_a_gpus_in_all_job(fabric_cluster, tmp_path):
    c = fabric_cluster
    held = c.sbatch("-H", "-N2", "--gpus=16", "--comment=nofabric", wrap="sleep 300")
    running = c.sbatch("-N2", "--gpus=16", "--comment=nofabric", wrap="sleep 300")
    (tmp_path / "decisions.jsonl").write_text("")  # an agent's state dir that decided nothing
    try:
        c.wait_job(running, states=("RUNNING",), timeout=30)
        out = fabric(c, "slurm", "why", str(running), "--state-dir", str(tmp_path), "--json")
        assert out.returncode == 0, out.stderr
        text = json.loads(out.stdout)["text"]
        assert text.startswith(f"Job {running} (2 node(s), 16 GPU(s) in all) is running"), text
        client = CliClient(c.env)
        jobs = {j.job_id: j for j in client.jobs()}  # squeue --json: tres_per_job
        assert (jobs[held].gpus_per_node, jobs[held].gpus_per_job) == (0, 16)

        assert client.job(held).gpus_per_job == 16  # scontrol's text: TresPerJob
        text = explain(client, held)["text"]
        assert text.startswith(f"Job {held} (2 node(s), 16 GPU(s) in all) is pending"), text
    finally:
        c.run(["scancel", str(held), str(running)], check=False)
