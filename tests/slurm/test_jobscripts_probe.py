"""jobscripts/*.sbatch on what a prober found (run by bash without a cluster, `srun` and `fabric` stubs
that log): a time limit within train_gang's signal lead, infer_batch's variables checked up front, and
infer_batch's failure trailer following the ranks' exit status."""

from __future__ import annotations

import pytest

from tests.slurm.test_jobscripts_variables import _script


@pytest.mark.parametrize("limit", [60, 120])
def test_train_gang_refuses_a_time_limit_within_the_signal_lead(tmp_path, limit: int) -> None:
    """`-t 1` (60 s) with --signal=B:USR1@120: the signal came a few seconds in, after some steps, so
    the program's "before the first step" check never fired and every run saved and requeued itself
    again. The documented exit 3 now comes from the time limit itself, before any rank starts."""
    proc, ran = _script(tmp_path, "train_gang", SLURM_JOB_START_TIME="1000000",
                        SLURM_JOB_END_TIME=str(1000000 + limit))
    assert proc.returncode == 3 and ran == [], (proc.stderr, ran)
    assert f"time limit, {limit} s, is within the 120 s lead" in proc.stderr and "--time" in proc.stderr


def test_train_gang_runs_with_a_time_limit_over_the_lead(tmp_path) -> None:
    proc, ran = _script(tmp_path, "train_gang", SLURM_JOB_START_TIME="1000000", SLURM_JOB_END_TIME="1000121")
    assert proc.returncode == 0 and len(ran) == 1 and ran[0].startswith("srun "), (proc.stderr, ran)


@pytest.mark.parametrize(("limit", "code"), [("1:00", 3), ("02:00", 3), ("2:01", 0), ("1:00:00", 0),
                                             ("1-00:00:00", 0), ("UNLIMITED", 0)])
def test_train_gang_reads_the_time_limit_from_squeue_before_slurm_23(tmp_path, limit: str, code: int) -> None:
    """Slurm 22.05 sets no SLURM_JOB_END_TIME: the script asks squeue (%l, [D-][H:]M:S)."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "squeue").write_text(f"#!/bin/bash\necho '{limit}'\n")
    (tmp_path / "bin" / "squeue").chmod(0o755)
    proc, ran = _script(tmp_path, "train_gang", SLURM_JOB_ID="77")
    assert proc.returncode == code and len(ran) == (0 if code else 1), (proc.stderr, ran)
