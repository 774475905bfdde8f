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
    own = Path(os.path.realpath(tmp_path)) / task_fast.job_user() / "finetune"
    assert child["FABRIC_CKPT_DIR"] == str(own)
    assert child[task_fast.CKPT_MARK].startswith("102:")


def test_a_directory_the_job_chose_is_kept_also_inside_another_job(tmp_path: Path) -> None:
    parent = task_fast.ckpt_exports(tmp_path, _env("101", "pretrain"))
    assert task_fast.ckpt_exports(tmp_path, _env("102", "finetune", FABRIC_CKPT_DIR="/data/mine")) == {}
    chosen = {**parent, "FABRIC_CKPT_DIR": "/data/mine"}  # sbatch --export=ALL,FABRIC_CKPT_DIR=/data/mine
    assert task_fast.ckpt_exports(tmp_path, _env("102", "finetune", **chosen)) == {}
    # a later step of the same job (srun inside the batch script): its own, kept
    assert task_fast.ckpt_exports(tmp_path, _env("101", "pretrain", **parent)) == {}


def test_an_inherited_directory_is_unset_when_the_jobs_own_is_refused(tmp_path: Path) -> None:
    """The new job's own directory refused (a symlink in its place): before, only a note, and the task kept
    the other job's FABRIC_CKPT_DIR, whose checkpoints it then overwrote."""
    from fabric_hpc.slurm.prolog import task_exports
    from fabric_hpc.slurm.task_fast import export_lines
    from fabric_hpc.topology import build, generators

    parent = task_fast.ckpt_exports(tmp_path, _env("101", "pretrain"))
    user = Path(os.path.realpath(tmp_path)) / task_fast.job_user()
    user.mkdir(exist_ok=True)
    (user / "finetune").symlink_to(tmp_path)
    notes: list[str] = []
    out = task_exports(build(generators.superpod(1)), _env("102", "finetune", **parent), topo_dir=tmp_path,
                       ckpt_root=tmp_path, notes=notes)
    assert out["FABRIC_CKPT_DIR"] is None and any("no FABRIC_CKPT_DIR" in n for n in notes), (out, notes)
    assert "unset FABRIC_CKPT_DIR\n" in export_lines(out, notes)
    assert f"unset {task_fast.CKPT_MARK}\n" in export_lines(out, notes)  # the other job's mark goes with it
