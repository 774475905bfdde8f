"""jobscripts/*.sbatch on what a prober found (run by bash without a cluster, `srun` and `fabric` stubs
that log): a time limit within train_gang's signal lead, infer_batch's variables checked up front, and
infer_batch's failure trailer following the ranks' exit status."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.slurm.test_jobscripts_variables import REPO, _script


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


_GOOD = {"ENGINE_CONFIG": "engine.json", "INPUT": "spool", "OUTPUT": "out"}


@pytest.mark.parametrize(("env", "named"), [
    ({"ENGINE_CONFIG": ""}, "ENGINE_CONFIG is not set"),
    ({"INPUT": ""}, "INPUT is not set"),
    ({"OUTPUT": ""}, "OUTPUT is not set"),
    ({"MAX_REJECTED": "lots"}, "MAX_REJECTED='lots'"),
    ({"MAX_REJECTED": "1.5"}, "MAX_REJECTED='1.5'"),
    ({"MAX_REJECTED": "150%"}, "MAX_REJECTED='150%'"),
    ({"MAX_REJECTED": "-1"}, "MAX_REJECTED='-1'"),
    ({"CKPT": "ck", "MAX_BATCH_SIZE": "0"}, "MAX_BATCH_SIZE='0'"),
    ({"CKPT": "ck", "MAX_INPUT_LEN": "big"}, "MAX_INPUT_LEN='big'"),
    ({"CKPT": "ck", "MAX_NUM_TOKENS": "-4"}, "MAX_NUM_TOKENS='-4'"),
    ({"CKPT": "ck", "MAX_SEQ_LEN": "1"}, "MAX_SEQ_LEN='1'"),
    ({"CKPT": "ck", "CKPT_STEP": "latest"}, "CKPT_STEP='latest'"),
    ({"CKPT": "ck", "DTYPE": "fp8"}, "DTYPE='fp8'"),
])
def test_infer_batch_refuses_a_bad_variable_up_front(tmp_path, env: dict[str, str], named: str) -> None:
    """MAX_REJECTED=lots, MAX_BATCH_SIZE=0, CKPT_STEP=latest reached `fabric infer` on every rank as a
    click usage error naming its flag, exit 2; ENGINE_CONFIG unset was bash's `${VAR:?}` message, exit 1.
    Each is one line naming the variable, exit 3, before anything runs (as train_gang.sbatch)."""
    proc, ran = _script(tmp_path, "infer_batch", **{**_GOOD, **env})
    assert proc.returncode == 3 and named in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert ran == [] and "--" not in proc.stderr.split(":", 2)[1]


@pytest.mark.parametrize("value", ["0", "100", "0.05", ".5", "1", "1.0", "5%", "12.5%", "100%"])
def test_infer_batch_passes_a_good_max_rejected(tmp_path, value: str) -> None:
    proc, ran = _script(tmp_path, "infer_batch", **_GOOD, MAX_REJECTED=value)
    assert proc.returncode == 0 and f"--max-rejected {value} " in ran[0] + " ", (proc.stderr, ran)


@pytest.mark.parametrize(("rc", "resubmit"), [(3, False), (5, False), (143, True), (137, True)])
def test_infer_batch_says_resubmit_only_after_a_stop(tmp_path, rc: int, resubmit: bool) -> None:
    """Every failure ended "not merged: resubmit with the same OUTPUT to resume", even after a rank had
    said "use a new --output directory" (exit 3). Only a stop (143, 137) says resubmit now."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text(f'#!/bin/bash\necho "srun $*" >> "$STUB_LOG"\nexit {rc}\n')
    (tmp_path / "bin" / "srun").chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", str(REPO / "jobscripts" / "infer_batch.sbatch")], capture_output=True,
                          text=True, timeout=60,
                          env={**base, **_GOOD, "FABRIC": "true", "STUB_LOG": str(tmp_path / "log"),
                               "PATH": f"{tmp_path / 'bin'}:{base['PATH']}"})
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == rc and "not merged" in last, proc.stderr
    assert ("resubmit with the same OUTPUT" in last) is resubmit, last
