"""``fabric slurm why`` names the GPUs of a job that asks for them in all (``-N2 --gpus=16``); before,
the headline said "2 node(s)" and nothing of its GPUs. A running job's are the GPUs Slurm gave it; a
pending job's are Slurm's ``tres_per_job`` (``TresPerJob`` in scontrol's text), on both tiers; on 25.11 also
through the pyslurm backend (squeue's TresPerJob: pyslurm 25.11.2 has no reading of it, and ``why`` said
"2 node(s)" there)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.slurm.why import explain
from tests.real import require_real
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
        if c.version[:2] == (25, 11):  # pyslurm 25.11 speaks Slurm 25.11 only
            require_real("pyslurm", importlib.util.find_spec("pyslurm") is not None,
                         "pyslurm is not installed")
            out = fabric(c, "slurm", "why", str(held), "--state-dir", str(tmp_path), "--backend", "pyslurm",
                         "--json")
            assert out.returncode == 0, out.stderr
            text = json.loads(out.stdout)["text"]
            assert text.startswith(f"Job {held} (2 node(s), 16 GPU(s) in all) is pending"), text
    finally:
        c.run(["scancel", str(held), str(running)], check=False)
