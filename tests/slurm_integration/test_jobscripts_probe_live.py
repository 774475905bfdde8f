"""jobscripts/*.sbatch on a live cluster, on what a prober found: a --time within train_gang's signal
lead exits 3 before any rank runs (instead of requeueing every run at its start)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.slurm_integration.test_train_requeue_live import _submit

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_a_time_limit_within_the_signal_lead_exits_3(slurm_cluster: Any, tmp_path: Path) -> None:
    """`-t 1` (60 s, within --signal=B:USR1@120): SIGUSR1 came a few seconds in, after some steps, and
    each run saved and requeued itself. Slurm gives the batch script SLURM_JOB_START_TIME and
    SLURM_JOB_END_TIME: the script refuses the time limit before srun, exit 3, never requeued."""
    c = slurm_cluster
    jid = _submit(c, tmp_path / "ck", 400, 0.005, "-t", "1", "-J", "short_limit")
    info = c.wait_job(jid, states=("FAILED",), timeout=60)
    out = c.job_output(jid, info)
    assert (info["JobState"], info["ExitCode"], info.get("Restarts")) == ("FAILED", "3:0", "0"), (info, out)
    assert "time limit, 60 s, is within the 120 s lead" in out and "train_demo: rank" not in out, out
    assert not (tmp_path / "ck").exists() or not list((tmp_path / "ck").glob("step-*"))
