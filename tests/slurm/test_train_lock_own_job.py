"""Probed live: rank 0's node lost by Slurm (its slurmd killed, the node set down) while rank 0 lived on.
Slurm requeued the job; the requeued run found the checkpoint directory "in use by another training run
(job 840, …)" with the fix "give this run its own directory … or --dependency=afterany:<that job>": job
840 was itself, and neither fix applies. The holder is now named as an earlier run of this job, with what
to do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time; from pathlib import Path; from fabric_hpc.slurm import trainer; "
        "trainer.lock_dir(Path(sys.argv[1])); print('held', flush=True); time.sleep(120)")


def _env(job: str, restarts: int = 0) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "FABRIC_"))}
    return {**base, "PYTHONPATH": str(REPO), "SLURM_JOB_ID": job, "SLURM_RESTART_COUNT": str(restarts)}


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """The directory, locked by a live process of job 840 (the old run's rank 0)."""
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(ckpt)], env=_env("840"), text=True,
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        yield ckpt, proc
    finally:
        proc.kill()
        proc.wait()


def _check(ckpt: Path, job: str, restarts: int = 1) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fabric_hpc.slurm.train_check", "--ckpt-dir", str(ckpt),
                           "--steps", "100"], env=_env(job, restarts), capture_output=True, text=True,
                          timeout=120)


Held = tuple[Path, subprocess.Popen[str]]


def test_an_earlier_run_of_the_same_job_is_named_with_its_fix(held: Held) -> None:
    ckpt, proc = held
    run = _check(ckpt, "840")
    assert run.returncode == 3, run.stderr
    assert f"is held by an earlier run of this job (job 840, pid {proc.pid} on " in run.stderr, run.stderr
    assert f"kill {proc.pid}" in run.stderr and "scontrol requeue 840" in run.stderr, run.stderr
    assert "or submit it again into the same checkpoint directory" in run.stderr, run.stderr
    assert "afterany" not in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_another_jobs_run_keeps_its_words(held: tuple[Path, subprocess.Popen[str]]) -> None:
    ckpt, _proc = held
    run = _check(ckpt, "841")
    assert run.returncode == 3, run.stderr
    assert "is in use by another training run (job 840" in run.stderr and "afterany" in run.stderr, run.stderr


def test_a_first_run_sharing_the_holders_job_id_is_another_job(held: Held) -> None:
    """Job ids start again after slurmctld loses its state, and two clusters may share the storage: a run
    that was never requeued (SLURM_RESTART_COUNT 0) is not told to kill the holder."""
    ckpt, _proc = held
    run = _check(ckpt, "840", restarts=0)
    assert run.returncode == 3, run.stderr
    assert "is in use by another training run (job 840" in run.stderr and "kill" not in run.stderr, run.stderr
