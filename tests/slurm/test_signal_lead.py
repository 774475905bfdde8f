"""train_gang.sbatch reads the job's own --signal lead (a command-line --signal overrides the script's
#SBATCH line): `sbatch --time=2 --signal=B:USR1@30 train_gang.sbatch` was refused for a 120 s lead it
did not have. Run by bash without a cluster, with `srun`, `fabric` and `scontrol` stubs."""

from __future__ import annotations

import pytest

from tests.slurm.test_jobscripts_variables import _script


def _scontrol(tmp_path, submit_line: str | None) -> None:
    (tmp_path / "bin").mkdir(exist_ok=True)
    line = f"   SubmitLine={submit_line}" if submit_line is not None else "   JobState=RUNNING"
    (tmp_path / "bin" / "scontrol").write_text(f"#!/bin/bash\necho 'JobId=77 JobName=t'\necho '{line}'\n")
    (tmp_path / "bin" / "scontrol").chmod(0o755)


@pytest.mark.parametrize(("submit_line", "env"), [
    ("sbatch --time=2 --signal=B:USR1@30 train_gang.sbatch", {}),  # Slurm >= 23.02 shows SubmitLine
    ("sbatch --time=2 --signal B:USR1@30 train_gang.sbatch", {}),
    (None, {"SBATCH_SIGNAL": "B:USR1@30"}),  # sbatch's environment form, in the job's environment
    ("sbatch --time=2 --signal=B:USR1 train_gang.sbatch", {}),  # no @: sbatch(1)'s default, 60 s
])
def test_a_signal_lead_given_at_submit_replaces_the_scripts(tmp_path, submit_line, env) -> None:
    _scontrol(tmp_path, submit_line)
    proc, ran = _script(tmp_path, "train_gang", SLURM_JOB_ID="77", SLURM_JOB_START_TIME="1000000",
                        SLURM_JOB_END_TIME="1000120", **env)
    assert proc.returncode == 0 and len(ran) == 1 and ran[0].startswith("srun "), (proc.stderr, ran)


def test_a_longer_lead_given_at_submit_is_the_one_checked(tmp_path) -> None:
    _scontrol(tmp_path, "sbatch -t 3 --signal=B:USR1@200 train_gang.sbatch")
    proc, ran = _script(tmp_path, "train_gang", SLURM_JOB_ID="77", SLURM_JOB_START_TIME="1000000",
                        SLURM_JOB_END_TIME="1000180")
    assert proc.returncode == 3 and ran == [], (proc.stderr, ran)
    assert "time limit, 180 s, is within the 200 s lead" in proc.stderr and "@200" in proc.stderr, proc.stderr


def test_without_a_submit_line_the_scripts_lead_applies_and_the_hint_names_sbatch_signal(tmp_path) -> None:
    _scontrol(tmp_path, None)  # Slurm 22.05: no SubmitLine
    proc, ran = _script(tmp_path, "train_gang", SLURM_JOB_ID="77", SLURM_JOB_START_TIME="1000000",
                        SLURM_JOB_END_TIME="1000120")
    assert proc.returncode == 3 and ran == [], (proc.stderr, ran)
    assert "within the 120 s lead" in proc.stderr and "SBATCH_SIGNAL" in proc.stderr, proc.stderr
