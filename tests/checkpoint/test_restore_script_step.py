"""``jobscripts/ckpt_restore.sbatch`` run non-live (bash, FABRIC=the CLI): a ``latest`` naming a step
that was moved aside is a warning, not damage (verify exits 0 as restore falls back to the newest
committed step); STEP picks the step to verify and reshard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import open_checkpoint, restore, save

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "jobscripts" / "ckpt_restore.sbatch"


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    for step in (1, 2, 3):
        save(tmp_path / "ck", {"w": np.full(4, step, np.float32)}, step=step)
    return tmp_path / "ck"


def _job(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    fabric = tmp_path / "fabric"
    fabric.write_text(f'#!/bin/bash\nPYTHONPATH={ROOT} exec {sys.executable} -m fabric_hpc.cli "$@"\n')
    fabric.chmod(0o755)
    env = {**{k: v for k, v in os.environ.items() if k not in ("STEP", "WORLD_SIZE", "DEST")},
           "FABRIC": str(fabric), **env}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fabric_hpc.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_latest_naming_a_step_moved_aside_verifies_with_a_warning(ckpt: Path, tmp_path: Path) -> None:
    (ckpt / "step-0000000003").rename(tmp_path / "aside")  # train_gang's set-aside fix
    assert restore(ckpt)["w"][0] == 2  # restore falls back to the newest committed step
    run = _cli("ckpt", "verify", str(ckpt), "--json")
    assert run.returncode == 0, run.stderr
    root, step = json.loads(run.stdout)
    assert root["ok"] and root["step"] is None and root["problems"] == []
    assert "step-0000000003, which is missing" in root["warnings"][0]
    assert f"echo step-0000000002 > {ckpt / 'latest'}" in root["warnings"][0]
    assert step["step"] == 2 and step["ok"]
    job = _job(tmp_path, CKPT=str(ckpt), WORLD_SIZE="2", DEST=str(tmp_path / "out"))
    assert job.returncode == 0, job.stderr
    assert "WARNING" in job.stdout and "ckpt_restore: ok" in job.stdout
    assert open_checkpoint(tmp_path / "out").step == 2


def test_step_picks_the_step_to_verify_and_reshard(ckpt: Path, tmp_path: Path) -> None:
    job = _job(tmp_path, CKPT=str(ckpt), STEP="0001", WORLD_SIZE="2", DEST=str(tmp_path / "out"))
    assert job.returncode == 0, job.stderr
    assert "ck/step-0000000001" in job.stdout and "step-0000000003  " not in job.stdout
    out = open_checkpoint(tmp_path / "out")
    assert out.step == 1 and out.manifest.world_size == 2
    assert restore(tmp_path / "out")["w"][0] == 1


def test_a_bad_or_missing_step_exits_3_naming_it(ckpt: Path, tmp_path: Path) -> None:
    job = _job(tmp_path, CKPT=str(ckpt), STEP="latest")
    assert job.returncode == 3 and "STEP='latest' is not a step number" in job.stderr
    job = _job(tmp_path, CKPT=str(ckpt), STEP="7", WORLD_SIZE="2", DEST=str(tmp_path / "out"))
    assert job.returncode == 3 and "no checkpoint for step 7" in job.stderr
    assert not (tmp_path / "out").exists()


def test_damage_of_the_root_itself_names_the_latest_fix(ckpt: Path) -> None:
    (ckpt / "latest").write_text("../../etc\n")
    run = _cli("ckpt", "verify", str(ckpt))
    assert run.returncode == 3
    assert f"echo step-NNNNNNNNNN > {ckpt / 'latest'}" in run.stderr


def test_without_step_verify_and_restore_take_the_same_step(ckpt: Path, tmp_path: Path) -> None:
    """A training job committing step 4 between verify and restore (here: just before restore runs):
    restore reshards step 3, the one verified, not the newer step 4 no one verified."""
    fabric = tmp_path / "fabric"
    fabric.write_text(f'#!/bin/bash\nif [[ "$2" == restore ]]; then PYTHONPATH={ROOT} {sys.executable} -c '
                      f'"import numpy as np; from fabric_hpc.checkpoint import save; '
                      f'save(\'{ckpt}\', {{\'w\': np.full(4, 4, np.float32)}}, step=4)"; fi\n'
                      f'PYTHONPATH={ROOT} exec {sys.executable} -m fabric_hpc.cli "$@"\n')
    fabric.chmod(0o755)
    env = {**{k: v for k, v in os.environ.items() if k != "STEP"}, "FABRIC": str(fabric), "CKPT": str(ckpt),
           "WORLD_SIZE": "2", "DEST": str(tmp_path / "out")}
    job = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert job.returncode == 0, job.stderr
    assert "ck/step-0000000003" in job.stdout and open_checkpoint(ckpt).step == 4
    out = open_checkpoint(tmp_path / "out")
    assert out.step == 3 and restore(tmp_path / "out")["w"][0] == 3


def test_a_checkpoint_path_beginning_with_a_dash_is_a_path(ckpt: Path, tmp_path: Path) -> None:
    ckpt.rename(tmp_path / "-ck")
    fabric = tmp_path / "fabric"
    fabric.write_text(f'#!/bin/bash\nPYTHONPATH={ROOT} exec {sys.executable} -m fabric_hpc.cli "$@"\n')
    fabric.chmod(0o755)
    env = {**{k: v for k, v in os.environ.items() if k != "STEP"}, "FABRIC": str(fabric), "CKPT": "-ck",
           "WORLD_SIZE": "2", "DEST": "out"}
    job = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert job.returncode == 0, job.stderr
    assert open_checkpoint(tmp_path / "out").step == 3
