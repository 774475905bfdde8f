"""RESTORE_STEP (--restore-step) in the job scripts' training programs (train_demo, train_tiny), as
a prober found it: newer steps than the restored one are refused before training (their save would
collide after it), and a RESTORE_STEP on an empty directory is an error, not a run from step 0."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from tests.slurm.test_train_programs import DEMO, TINY, _one_error, _report, _train


def _steps(ck: Path) -> list[str]:
    return sorted(p.name for p in ck.glob("step-*"))


@pytest.mark.parametrize("module", [DEMO, TINY])
def test_newer_steps_than_restore_step_are_refused_before_training(tmp_path: Path, module: str) -> None:
    """Steps 2 and 4 saved; RESTORE_STEP=2 with 4 steps trained 2->4, then failed `checkpoint for
    step 4 already exists` (exit 3), nothing saved. Now it refuses at its start, naming step 4 and
    how to move it aside; following that fix the run saves step 4."""
    ck = tmp_path / "my ck"
    _report(_train(module, ck, "--steps", "2", SLURM_JOB_ID="40"))
    _report(_train(module, ck, "--steps", "4", SLURM_JOB_ID="41"))
    before = _steps(ck)
    proc = _train(module, ck, "--steps", "4", "--restore-step", "2", SLURM_JOB_ID="42")
    err = _one_error(proc, 3, "step(s) 4 newer than the step this run starts from (2)", "mv ", "--job-name")
    assert "started at step" not in proc.stdout and _steps(ck) == before  # refused before training
    fix = err.split("`")[1]  # the hint's command, run as given (the path has a space)
    assert subprocess.run(["bash", "-c", fix], capture_output=True, text=True).returncode == 0, fix
    assert _steps(ck) == ["step-0000000002"]
    done = _report(_train(module, ck, "--steps", "4", "--restore-step", "2", SLURM_JOB_ID="42"))
    assert (done["restored_step"], done["saved"]) == (2, 4)


def test_newer_steps_past_the_last_step_are_left_alone(tmp_path: Path) -> None:
    """Only a step this run could save is a collision: one past its last step is not."""
    ck = tmp_path / "ck"
    _report(_train(DEMO, ck, "--steps", "2"))
    _report(_train(DEMO, ck, "--steps", "9"))
    done = _report(_train(DEMO, ck, "--steps", "5", "--restore-step", "2", SLURM_JOB_ID="7"))
    assert (done["restored_step"], done["saved"]) == (2, 5)


@pytest.mark.parametrize("module", [DEMO, TINY])
def test_restore_step_on_an_empty_directory_is_an_error(tmp_path: Path, module: str) -> None:
    """RESTORE_STEP=400 on an empty directory (e.g. a changed -J) started at step 0 and COMPLETED."""
    ck = tmp_path / "ck"
    proc = _train(module, ck, "--steps", "3", "--restore-step", "400")
    _one_error(proc, 3, "--restore-step (RESTORE_STEP) 400", "no checkpoint at all", "--job-name")
    assert "started at step" not in proc.stdout and _steps(ck) == []




@pytest.mark.parametrize("module", [DEMO, TINY])
def test_a_rank_that_starts_after_rank_0_saved_restores_what_rank_0_did(tmp_path: Path, module: str) -> None:
    """Rank 1 restored whatever rank 0 had saved by the time it started: rank 0 restored 0, rank 1
    restored 10, and the ranks diverged. A save of this very run (job and SLURM_RESTART_COUNT) now
    stands for the step that run started from; a requeued run's ranks restore the previous run's save."""
    ck = tmp_path / "ck"
    run = {"SLURM_JOB_ID": "90"}
    assert _report(_train(module, ck, "--steps", "3", SLURM_PROCID="0", **run))["saved"] == 3
    late = _report(_train(module, ck, "--steps", "3", SLURM_PROCID="1", **run))
    assert (late["restored_step"], late["step"]) == (0, 3)  # from scratch, as rank 0
    again = {**run, "SLURM_RESTART_COUNT": "1"}  # the requeued run starts from step 3
    assert _report(_train(module, ck, "--steps", "5", SLURM_PROCID="0", **again))["saved"] == 5
    late = _report(_train(module, ck, "--steps", "5", SLURM_PROCID="1", **again))
    assert (late["restored_step"], late["step"]) == (3, 5)
    (ck / "step-0000000005").rename(tmp_path / "aside")  # RESTORE_STEP=3 in another job, and its late rank
    other = {"SLURM_JOB_ID": "91", "SLURM_RESTART_COUNT": "0"}
    first = _report(_train(module, ck, "--steps", "6", "--restore-step", "3", SLURM_PROCID="0", **other))
    assert first["saved"] == 6
    late = _report(_train(module, ck, "--steps", "6", "--restore-step", "3", SLURM_PROCID="1", **other))
    assert (late["restored_step"], late["step"]) == (3, 6)
