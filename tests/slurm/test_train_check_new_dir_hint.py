"""train_check's fix for colliding steps (and a busy directory) says how to train into a new
directory in the way that works: with FABRIC_CKPT_DIR set, train_gang.sbatch ignores the job name,
so "another --job-name" would change nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from fabric_hpc.checkpoint import save

REPO = Path(__file__).resolve().parents[2]


def _check(ckpt: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("FABRIC_CKPT_DIR", "SLURM_JOB_ID")}
    return subprocess.run([sys.executable, "-m", "fabric_hpc.slurm.train_check", "--ckpt-dir", str(ckpt),
                           "--steps", "100", "--restore-step", "10"],
                          env={**base, "PYTHONPATH": str(REPO), **env}, capture_output=True, text=True,
                          timeout=120)


def test_the_new_directory_fix_follows_fabric_ckpt_dir(tmp_path: Path) -> None:
    ckpt = tmp_path / "ck"
    for step in (10, 50):
        save(ckpt, {"w": np.ones(2)}, step=step)
    run = _check(ckpt, FABRIC_CKPT_DIR=str(ckpt))
    assert run.returncode == 3, run.stderr
    assert "FABRIC_CKPT_DIR is set, so set it to a new directory" in run.stderr
    assert "another sbatch --job-name" not in run.stderr
    run = _check(ckpt)
    assert run.returncode == 3, run.stderr
    assert "another sbatch --job-name" in run.stderr and "FABRIC_CKPT_DIR=NEW_DIR" in run.stderr


def test_the_task_prologs_directory_says_another_job_name(tmp_path: Path) -> None:
    """Probed live: two jobs `-J twin` under the fabric TaskProlog, which exported FABRIC_CKPT_DIR=
    <ckpt_root>/<user>/twin; the second was told "FABRIC_CKPT_DIR is set … another --job-name would not
    change it", while the user had set nothing and another --job-name is exactly what gives a new one."""
    from fabric_hpc.slurm.task_fast import checkpoint_dir

    env = {"SLURM_JOB_NAME": "twin"}
    ckpt = checkpoint_dir(tmp_path / "root", env)  # what the TaskProlog exports for this job
    for step in (10, 50):
        save(ckpt, {"w": np.ones(2)}, step=step)
    run = _check(ckpt, FABRIC_CKPT_DIR=str(ckpt), **env)
    assert run.returncode == 3, run.stderr
    assert "another sbatch --job-name" in run.stderr and "FABRIC_CKPT_DIR=NEW_DIR" in run.stderr, run.stderr
    assert "would not change it" not in run.stderr, run.stderr
