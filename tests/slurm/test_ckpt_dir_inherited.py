"""A review of what Slurm runs for every job: the TaskProlog keeps a ``FABRIC_CKPT_DIR`` the job set itself,
but a job submitted from inside another (``sbatch`` passes the environment on) inherited the other job's
and kept it: the fine-tuning job restored and overwrote the pre-training job's checkpoints. The directory is
now exported with a mark naming the job it was given to; an inherited one is replaced. Failed before."""

from __future__ import annotations

import os
from pathlib import Path

from fabric_hpc.slurm import task_fast


def _env(job: str, name: str, **more: str) -> dict[str, str]:
    return {"SLURM_JOB_ID": job, "SLURM_JOB_NAME": name, **more}


def test_a_job_submitted_from_another_gets_its_own_directory(tmp_path: Path) -> None:
    parent = task_fast.ckpt_exports(tmp_path, _env("101", "pretrain"))
    assert parent["FABRIC_CKPT_DIR"].endswith("/pretrain") and parent[task_fast.CKPT_MARK].startswith("101:")
    child = task_fast.ckpt_exports(tmp_path, _env("102", "finetune", **parent))  # inherited through sbatch
    assert child["FABRIC_CKPT_DIR"] == str(Path(os.path.realpath(tmp_path)) / task_fast.job_user() / "finetune")
    assert child[task_fast.CKPT_MARK].startswith("102:")


def test_a_directory_the_job_chose_is_kept_also_inside_another_job(tmp_path: Path) -> None:
    parent = task_fast.ckpt_exports(tmp_path, _env("101", "pretrain"))
    assert task_fast.ckpt_exports(tmp_path, _env("102", "finetune", FABRIC_CKPT_DIR="/data/mine")) == {}
    chosen = {**parent, "FABRIC_CKPT_DIR": "/data/mine"}  # sbatch --export=ALL,FABRIC_CKPT_DIR=/data/mine
    assert task_fast.ckpt_exports(tmp_path, _env("102", "finetune", **chosen)) == {}
    # a later step of the same job (srun inside the batch script): its own, kept
    assert task_fast.ckpt_exports(tmp_path, _env("101", "pretrain", **parent)) == {}
