"""train_gang.sbatch and ckpt_restore.sbatch check every variable they read before anything runs,
naming it (exit 3, bad input); run by bash without a cluster, with `srun` and `fabric` stubs that log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# `fabric ckpt show --json` answers as the CLI's indented JSON (ckpt_restore reads the step `latest` names)
_LOGGER = ('#!/bin/bash\necho "$(basename "$0") $*" >> "$STUB_LOG"\n'
           'if [[ " $* " == *" ckpt show "* ]]; then printf \'{\\n  "path": "ck/step-0000000005",\\n'
           '  "step": 5\\n}\\n\'; fi\n')


def _script(tmp_path: Path, name: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for stub in ("srun", "fabric"):
        (bin_dir / stub).write_text(_LOGGER)
        (bin_dir / stub).chmod(0o755)
    log = tmp_path / "log"
    log.unlink(missing_ok=True)
    # train_gang.sbatch runs its start checks (fabric_hpc.slurm.train_check) with FABRIC_PYTHON
    python = {"FABRIC_PYTHON": sys.executable, "PYTHONPATH": str(REPO)} if name == "train_gang" else {}
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", str(REPO / "jobscripts" / f"{name}.sbatch")], capture_output=True,
                          text=True,
                          env={**base, "PATH": f"{bin_dir}:{base['PATH']}", "STUB_LOG": str(log),
                               "FABRIC_CKPT_DIR": str(tmp_path / "ck"), **python, **env}, timeout=60)
    return proc, log.read_text().splitlines() if log.is_file() else []


@pytest.mark.parametrize(("env", "named"), [
    ({"TRAIN_STEPS": "abc"}, "TRAIN_STEPS='abc'"),
    ({"TRAIN_STEPS": "-5"}, "TRAIN_STEPS='-5'"),
    ({"STEP_SECONDS": "-1"}, "STEP_SECONDS='-1'"),
    ({"STEP_SECONDS": "1e400"}, "STEP_SECONDS='1e400'"),
    ({"RESTORE_STEP": "latest"}, "RESTORE_STEP='latest'"),
    ({"TRAIN_MODULE": "os; rm"}, "TRAIN_MODULE='os; rm'"),
])
def test_train_gang_refuses_a_bad_variable_up_front(tmp_path: Path, env: dict[str, str], named: str) -> None:
    """STEP_SECONDS=-1 reached every rank as a traceback (ValueError: sleep length must be non-negative)."""
    proc, ran = _script(tmp_path, "train_gang", **env)
    assert proc.returncode == 3 and named in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert ran == []  # no rank started


def test_train_gang_passes_restore_step(tmp_path: Path) -> None:
    """RESTORE_STEP (new: resume from an older step when the newest is damaged) reaches the program
    as --restore-step; without it the command line is the documented one."""
    import numpy as np

    from fabric_hpc.checkpoint import save

    save(tmp_path / "ck", {"w": np.zeros(2)}, step=40)  # the step the start checks look for
    proc, ran = _script(tmp_path, "train_gang", RESTORE_STEP="40", TRAIN_STEPS="100", STEP_SECONDS="0.25")
    assert proc.returncode == 0, proc.stderr
    tail = f"--ckpt-dir {tmp_path / 'ck'} --steps 100 --step-seconds 0.25 --restore-step 40"
    assert ran[0].endswith(tail), ran
    proc, ran = _script(tmp_path, "train_gang", STEP_SECONDS=".5")
    assert proc.returncode == 0 and ran[0].endswith("--steps 200 --step-seconds .5"), (proc.stderr, ran)


@pytest.mark.parametrize(("env", "words"), [
    ({"WORLD_SIZE": "2"}, ["WORLD_SIZE=2 needs DEST"]),
    ({"WORLD_SIZE": "zero", "DEST": "out"}, ["WORLD_SIZE='zero'"]),
    ({"WORLD_SIZE": "0", "DEST": "out"}, ["WORLD_SIZE='0'"]),
    ({"WORLD_SIZE": "08", "DEST": "out"}, ["WORLD_SIZE='08'"]),
    ({"DEST": "out"}, ["DEST needs WORLD_SIZE"]),
    ({"CKPT": ""}, ["set CKPT"]),
])
def test_ckpt_restore_refuses_a_bad_variable_up_front(tmp_path: Path, env: dict[str, str],
                                                      words: list[str]) -> None:
    """WORLD_SIZE=2 without DEST skipped the reshard and printed `ckpt_restore: ok`; WORLD_SIZE=zero was
    refused only after the list and verify passes, naming '--to-world-size'. Both exit 3 at once now."""
    proc, ran = _script(tmp_path, "ckpt_restore", **{"CKPT": "ck", **env})
    assert proc.returncode == 3, proc.stderr
    assert all(w in proc.stderr for w in words) and "--to-world-size" not in proc.stderr, proc.stderr
    assert ran == [] and "ckpt_restore: ok" not in proc.stdout


def test_ckpt_restore_reshards_with_both(tmp_path: Path) -> None:
    proc, ran = _script(tmp_path, "ckpt_restore", CKPT="ck", WORLD_SIZE="2", DEST="out")
    assert proc.returncode == 0 and "ckpt_restore: ok" in proc.stdout, proc.stderr
    assert ran == ["fabric ckpt list -- ck", "fabric ckpt show --json -- ck",  # the step `latest` names, once
                   "fabric ckpt verify --step 5 -- ck",
                   "fabric ckpt restore --to-world-size 2 --out out --step 5 -- ck"]
    proc, ran = _script(tmp_path, "ckpt_restore", CKPT="ck")  # neither: list and verify only
    assert proc.returncode == 0 and len(ran) == 3, proc.stderr
