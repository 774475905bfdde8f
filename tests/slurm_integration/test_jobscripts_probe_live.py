"""jobscripts/*.sbatch on a live cluster, on what a prober found: a --time within train_gang's signal
lead exits 3 before any rank runs (instead of requeueing every run at its start); the ranks of a
requeued run restore the same step (each save records its run: SLURM_RESTART_COUNT)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from tests.slurm_integration.test_train_requeue_live import _ranks, _stepping, _submit, _until

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _past_the_second_of(seen: float) -> None:
    """Wait until the clock is past the second of ``seen`` (when the requeue was already seen).

    It failed under load on 22.05: FAILED, exit 1, no line of the requeued run (slurmctld: "Killing
    non-startable batch JobId=2: Job credential revoked"; slurmd: "Job 2 already killed, do not launch
    batch job"). The requeue revokes the job's launch credentials of its second and before; Slurm's
    requeue delay (cred_expire + 1 s) waits that out, StartTime=now does not: a scheduler pass in the
    requeue's second started the run with a revoked credential."""
    end = math.floor(seen) + 1
    while time.time() < end:
        time.sleep(0.05)


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


def test_the_ranks_of_a_requeued_run_restore_the_same_step(slurm_cluster: Any, tmp_path: Path) -> None:
    """A rank restored whatever rank 0 had saved by the time it started. A save of this very run now
    stands for the step it started from, keyed by the job and SLURM_RESTART_COUNT: a requeued run
    (same job id) must still restore the first run's save on every rank."""
    c, steps = slurm_cluster, 40
    jid = _submit(c, tmp_path / "ck", steps, 0.1, "-J", "ranks_agree")
    try:
        _stepping(c, jid)
        c.run(["scancel", "--batch", "--signal=USR1", str(jid)])
        _until("requeued", lambda i: (i.get("Restarts"), i["JobState"]) == ("1", "PENDING"), c, jid)
        _past_the_second_of(time.time())
        c.run(["scontrol", "update", f"jobid={jid}", "StartTime=now"])
        done = c.wait_job(jid, timeout=90)
    finally:
        c.run(["scancel", str(jid)], check=False)
    out = c.job_output(jid, done)
    ranks = _ranks(out)
    saved = next(r["saved"] for r in ranks if r["rank"] == 0 and r["requeueing"])
    second = [r for r in ranks if not r["signalled"]]  # the requeued run, to the end
    assert sorted(r["rank"] for r in second) == [0, 1], out
    assert {(r["restored_step"], r["step"]) for r in second} == {(saved, steps)}, out
