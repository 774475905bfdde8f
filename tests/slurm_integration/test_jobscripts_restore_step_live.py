"""ckpt_restore.sbatch's STEP and dangling ``latest``, and train_gang.sbatch's exit 3 for a damaged
newest step, on a live cluster (every tier): a flipped byte (the structure check passes, the ranks'
restore finds the checksum, the script verifies after srun) and a truncated chunk (refused before srun)
both end the job FAILED with ExitCode 3:0."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fabric_hpc.checkpoint import list_checkpoints, restore, save

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RESTORE = (REPO / "jobscripts" / "ckpt_restore.sbatch").read_text()
TRAIN = (REPO / "jobscripts" / "train_gang.sbatch").read_text()
STEPS = (2, 4, 6)


def _ckpt(root: Path) -> Path:
    """Steps 2, 4, 6 as train_demo saves them (w all the step), ``latest`` naming 6."""
    for s in STEPS:
        state = {"model": {"w": np.full(16, float(s), dtype=np.float32), "step": np.array(s, dtype=np.int64)}}
        save(root, state, step=s, metadata={"job": None, "restart": "0", "started_from": None})
    return root


def _chunk(root: Path, step: int) -> Path:
    return root / f"step-{step:010d}" / "model" / "w" / "c.0"


def _restore_job(c: Any, ckpt: Path, dest: Path, step: int | None = None) -> tuple[dict[str, str], str]:
    env = f"--export=ALL,FABRIC={BIN / 'fabric'},CKPT={ckpt},WORLD_SIZE=2,DEST={dest}"
    jid = c.sbatch(env + (f",STEP={step}" if step is not None else ""), script=RESTORE)
    info = c.wait_job(jid, states=("COMPLETED", "FAILED"), timeout=90)
    return info, c.job_output(jid, info)


def test_ckpt_restore_step_restores_that_step(slurm_cluster: Any, tmp_path: Path) -> None:
    c, ckpt = slurm_cluster, _ckpt(tmp_path / "ck")
    info, out = _restore_job(c, ckpt, tmp_path / "older", step=4)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), out
    assert "ckpt_restore: ok" in out and str(tmp_path / "older" / "step-0000000004") in out, out
    assert [r.step for r in list_checkpoints(tmp_path / "older")] == [4]
    assert restore(tmp_path / "older", step=4)["model"]["w"].tolist() == [4.0] * 16


@pytest.mark.parametrize("step", [None, 2])
def test_ckpt_restore_dangling_latest(slurm_cluster: Any, tmp_path: Path, step: int | None) -> None:
    """``latest`` names a step moved away: verify warns (exit 0); restore takes the newest, or STEP."""
    c, ckpt = slurm_cluster, _ckpt(tmp_path / "ck")
    (ckpt / "latest").write_text("step-0000000008\n")
    info, out = _restore_job(c, ckpt, tmp_path / "dest", step=step)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), out
    want = 6 if step is None else step
    assert "ckpt_restore: ok" in out and f"step-{want:010d}" in out, out
    if step is None:
        assert "WARNING" in out and "step-0000000008, which is missing" in out, out
    assert [r.step for r in list_checkpoints(tmp_path / "dest")] == [want]
    assert restore(tmp_path / "dest", step=want)["model"]["w"].tolist() == [float(want)] * 16


def _train_job(c: Any, ckpt: Path, name: str) -> tuple[dict[str, str], str]:
    env = (f"--export=ALL,FABRIC_PYTHON={sys.executable},PYTHONPATH={REPO},FABRIC_CKPT_DIR={ckpt},"
           "TRAIN_STEPS=20,STEP_SECONDS=0.01")
    jid = c.sbatch(env, "-J", name, script=TRAIN)
    info = c.wait_job(jid, states=("FAILED",), timeout=90)
    return info, c.job_output(jid, info)


@pytest.mark.parametrize("run", [1, 2, 3])
def test_train_gang_flipped_newest_exits_3(slurm_cluster: Any, tmp_path: Path, run: int) -> None:
    """A flipped byte passes the structure check: both ranks start and their restore fails the CRC;
    whatever srun's status (3, or 143 after --kill-on-bad-exit), the job ends 3:0 naming the damage."""
    c, ckpt = slurm_cluster, _ckpt(tmp_path / "ck")
    chunk = _chunk(ckpt, 6)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    info, out = _train_job(c, ckpt, f"flip{run}")
    assert (info["ExitCode"], info["NumNodes"]) == ("3:0", "2"), (info, out)
    assert "crc32c" in out and "RESTORE_STEP" in out, out  # a rank's restore, or the verify after srun
    if "srun ended with status" in out:  # srun's 143: the script's verify names the step and exits 3
        assert f"step 6 in {ckpt}, which the run restored from, is damaged" in out, out
    assert [r.step for r in list_checkpoints(ckpt)] == list(STEPS)  # nothing saved over it


def test_train_gang_truncated_newest_exits_3_before_srun(slurm_cluster: Any, tmp_path: Path) -> None:
    c, ckpt = slurm_cluster, _ckpt(tmp_path / "ck")
    chunk = _chunk(ckpt, 6)
    chunk.write_bytes(chunk.read_bytes()[:-1])
    info, out = _train_job(c, ckpt, "truncated")
    assert info["ExitCode"] == "3:0", (info, out)
    assert f"train_check: error: step 6 in {ckpt}, which the run would restore from, is damaged" in out, out
    assert "chunk file has 63 bytes, expected 64" in out, out
    assert "train_demo: rank" not in out, out  # no rank started
    assert [r.step for r in list_checkpoints(ckpt)] == list(STEPS)
