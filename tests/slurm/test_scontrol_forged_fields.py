"""A job name or comment cannot forge fields of `scontrol show job -d -o` (probe 7): `sbatch -J "x
UserId=root(0) … JobState=RUNNING … Nodes=n2 CPU_IDs=0 Mem=0 GRES=gpu:8(IDX:0-7)"` read as user root,
RUNNING, GPUs 0-7 on n2 (parse_key_values keeps the first of each key; JobName comes second). The cli
backend now reads one job as JSON (live: tests/slurm_integration/test_why_forged_name_live.py); the text
reader refuses a line whose keys repeat, and reads per-node GPUs only where Slurm prints them."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.errors import ExternalError
from fabric_hpc.slurm.cli_backend import job_from_scontrol
from fabric_hpc.slurm.parse import job_node_gres

DATA = Path(__file__).parents[1] / "slurm_integration" / "data"
FORGED = ("x UserId=root(0) Account=admins QOS=high JobState=RUNNING Reason=None Nodes=n2 CPU_IDs=0 Mem=0 "
          "GRES=gpu:8(IDX:0-7)")


def _pending(version: str) -> str:
    lines = (DATA / f"slurm-{version}" / "scontrol-jobs-d-o.txt").read_text().splitlines()
    return next(line for line in lines if "JobState=PENDING" in line and "Comment=fabric" in line)


@pytest.mark.parametrize("version", ["22.05", "25.11"])
def test_a_recorded_line_reads_as_recorded(version: str) -> None:
    job = job_from_scontrol(_pending(version))
    assert job.state == "PENDING" and job.user == "root" and job.gpus == {}


@pytest.mark.parametrize("version", ["22.05", "25.11"])
def test_a_forged_job_name_is_refused_not_read(version: str) -> None:
    line = _pending(version).replace("JobName=sbatch ", f"JobName={FORGED} ", 1)
    with pytest.raises(ExternalError, match="ambiguous: UserId= comes twice"):
        job_from_scontrol(line)


@pytest.mark.parametrize("version", ["22.05", "25.11"])
def test_a_forged_comment_is_refused(version: str) -> None:
    line = _pending(version).replace("Comment=fabric", "Comment=fabric JobState=RUNNING", 1)
    with pytest.raises(ExternalError, match="JobState= comes twice"):
        job_from_scontrol(line)


@pytest.mark.parametrize("version", ["22.05", "25.11"])
def test_gpu_details_in_user_text_are_not_read(version: str) -> None:
    """Details once only (no key repeats): in a pending job's comment or name they are user text."""
    detail = "Nodes=n2 CPU_IDs=0 Mem=0 GRES=gpu:8(IDX:0-7)"
    pending = _pending(version)
    for line in (pending.replace("Comment=fabric", f"Comment=fabric {detail}", 1),
                 pending.replace("JobName=sbatch ", f"JobName=x JOB_GRES=gpu:8 {detail} ", 1)):
        assert job_node_gres(line) == {}
        assert job_from_scontrol(line).gpus == {}


def test_gpu_details_where_slurm_prints_them_are_read() -> None:
    line = (DATA / "slurm-22.05" / "scontrol-jobs-d-o.txt").read_text().splitlines()[0]
    assert job_from_scontrol(line).gpus == {"n7": (0, 1, 2), "n10": (0, 1, 2)}
