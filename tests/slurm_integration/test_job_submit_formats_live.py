"""job_submit.lua against the job_desc a real slurmctld hands it: 25.11's "gres/gpu=2" for
--gpus-per-task was not read (the generic "add --gres=gpu:N" came back) and its float node counts were
printed as "-N 2.0"; refusals now also name --comment=nofabric."""

from __future__ import annotations

import subprocess

import pytest

pytestmark = [pytest.mark.slurm]


def _refusal(c, *args: str) -> str:
    proc = subprocess.run(["sbatch", "--parsable", *args, "--wrap", "true"], env=c.env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


def test_the_plugin_reads_what_slurmctld_hands_it(fabric_cluster) -> None:
    c = fabric_cluster
    said = _refusal(c, "-N2", "--gpus-per-task=2", "--ntasks-per-node=1", "--comment=fabric")
    assert "--gpus-per-task (GPUs per task or in all) is not read" in said, said
    said = _refusal(c, "-N2-3", "--gres=gpu:8", "--comment=fabric")
    assert "give an exact node count (-N 2, not a range)" in said and "--comment=nofabric" in said, said
    said = _refusal(c, "-N2", "--gres=gpu:8", "-w", "n1,n2", "--comment=fabric")
    assert "--comment=fabric:include=HOSTS" in said and "--comment=nofabric" in said, said
