"""train_gang.sbatch with a damaged checkpoint to restore ends with exit 3 (the CLI's code for a damaged
checkpoint), not with whatever srun returned: a rank that finds the damage exits 3 and
``--kill-on-bad-exit`` kills the others, so srun's status is 143 (128+SIGTERM) as often as 3.
Run by bash without a cluster (srun is a stub that ends as srun does then); train_check is real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import save

REPO = Path(__file__).resolve().parents[2]

# srun after one rank exited 3 and --kill-on-bad-exit terminated the other: 128 + SIGTERM
_KILLED = """#!/bin/bash
echo "srun $*" >> "$STUB_LOG"
echo "srun: error: n2: task 1: Exited with exit code 3" >&2
exit 143
"""


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    save(tmp_path / "ck", {"w": np.arange(64, dtype=np.float32)}, step=10)
    return tmp_path / "ck"


def _chunk(ckpt: Path) -> Path:
    step = ckpt / "step-0000000010" / "w"
    return next(p for p in step.rglob("*") if p.is_file() and p.name != "zarr.json")


def _job(tmp_path: Path, ckpt: Path) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "srun").write_text(_KILLED)
    (bin_dir / "srun").chmod(0o755)
    (tmp_path / "log").unlink(missing_ok=True)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")},
           "PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_LOG": str(tmp_path / "log"),
           "FABRIC_PYTHON": sys.executable, "PYTHONPATH": str(REPO), "FABRIC_CKPT_DIR": str(ckpt),
           "TRAIN_STEPS": "20"}
    return subprocess.run(["bash", str(REPO / "jobscripts" / "train_gang.sbatch")], capture_output=True,
                          text=True, env=env, timeout=120)


def test_a_damaged_chunk_ends_the_job_with_exit_3_not_srun_s_143(tmp_path: Path, ckpt: Path) -> None:
    chunk = _chunk(ckpt)
    data = bytearray(chunk.read_bytes())
    data[5] ^= 0xFF  # same size: only its CRC-32C tells (every rank's restore; not the cheap pre-check)
    chunk.write_bytes(bytes(data))
    job = _job(tmp_path, ckpt)
    assert "srun --kill-on-bad-exit=1" in (tmp_path / "log").read_text()
    assert job.returncode == 3, job.stderr
    assert "step 10 in" in job.stderr and "is damaged" in job.stderr and "checksum" in job.stderr
    assert "RESTORE_STEP=<step>" in job.stderr


def test_ranks_killed_for_another_reason_keep_srun_s_status(tmp_path: Path, ckpt: Path) -> None:
    job = _job(tmp_path, ckpt)
    assert job.returncode == 143, job.stderr
    assert "is damaged" not in job.stderr


def test_a_truncated_chunk_is_refused_before_any_rank_starts(tmp_path: Path, ckpt: Path) -> None:
    chunk = _chunk(ckpt)
    chunk.write_bytes(chunk.read_bytes()[:-4])
    job = _job(tmp_path, ckpt)
    assert job.returncode == 3, job.stderr
    assert not (tmp_path / "log").exists()  # srun never ran
    assert "train_check: error:" in job.stderr and "RESTORE_STEP=<step>" in job.stderr
