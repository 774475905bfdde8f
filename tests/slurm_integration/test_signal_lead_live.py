"""`sbatch --time=2 --signal=B:USR1@30 train_gang.sbatch` (a lead of 30 s, given at submit) was refused
for the script's own 120 s lead; the script reads the job's SubmitLine now (Slurm 23.02 and later; 24.11.5
shows none in scontrol, checked on Debian 13, so there the refusal names SBATCH_SIGNAL)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "jobscripts" / "train_gang.sbatch"


@pytest.mark.slurm_min(23, 2)
def test_a_signal_given_at_submit_sets_the_lead(slurm_cluster: Any, tmp_path: Path) -> None:
    c = slurm_cluster
    env = (f"--export=ALL,FABRIC_PYTHON={sys.executable},PYTHONPATH={REPO},FABRIC_CKPT_DIR={tmp_path / 'ck'},"
           "TRAIN_STEPS=10,STEP_SECONDS=0.05")
    jid = c.sbatch(env, "--time=2", "--signal=B:USR1@30", script=SCRIPT.read_text())
    info = c.wait_job(jid, states=("COMPLETED", "FAILED"), timeout=90)
    out = c.job_output(jid, info)
    # scontrol shows SubmitLine from 25.11 (24.05.8, 24.11.5 showed none): the job says how to give it
    if c.version[:2] < (25, 11):
        assert info["ExitCode"] == "3:0" and "SBATCH_SIGNAL=B:USR1@N sbatch" in out, (info, out)
        return
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), (info, out)
    assert "within the" not in out, out
