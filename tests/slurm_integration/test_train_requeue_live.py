"""train_gang.sbatch on a live cluster: at the time limit's SIGUSR1 the gang saves, requeues itself
and resumes from the saved step; only the run that does the last step ends COMPLETED 0. A second job
in the same checkpoint directory refuses at its start; a scancel ends the job (no requeue)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = (REPO / "jobscripts" / "train_gang.sbatch").read_text()


def _submit(c: Any, ckpt: Path, steps: int, step_s: float, *args: str) -> int:
    env = (f"--export=ALL,FABRIC_PYTHON={sys.executable},PYTHONPATH={REPO},FABRIC_CKPT_DIR={ckpt},"
           f"TRAIN_STEPS={steps},STEP_SECONDS={step_s}")
    return c.sbatch(env, *args, script=SCRIPT)


def _until(what: str, ok: Any, c: Any, jid: int, timeout: float = 60.0) -> dict[str, str]:
    """Poll the job until ``ok(its scontrol fields)``."""
    deadline = time.monotonic() + timeout
    while True:
        info = c.job(jid)
        if ok(info):
            return info
        assert time.monotonic() < deadline, (f"job {jid} not {what} in {timeout:g}s", info, c.job_output(jid))
        time.sleep(0.1)


def _stepping(c: Any, jid: int) -> None:
    """Both ranks past their start (handlers installed, stepping)."""
    _until("stepping", lambda _i: c.job_output(jid).count("train_demo: rank") >= 2, c, jid)
    time.sleep(0.5)


def _ranks(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_sigusr1_saves_requeues_and_the_requeued_run_finishes(slurm_cluster: Any, tmp_path: Path) -> None:
    """It saved at step 324 of 100000 and ended COMPLETED 0 (Restarts=0): training stopped silently
    and --dependency=afterok jobs started on a model at step 324. Now rank 0 requeues the job after
    the save (PreemptionHandler.save_and_requeue) and the requeued run resumes from that step."""
    c, steps = slurm_cluster, 40
    jid = _submit(c, tmp_path / "ck", steps, 0.1, "-J", "requeue_probe")
    try:
        _stepping(c, jid)
        c.run(["scancel", "--batch", "--signal=USR1", str(jid)])  # what --signal=B:USR1@120 delivers
        pending = _until("requeued", lambda i: (i.get("Restarts"), i["JobState"]) == ("1", "PENDING"), c, jid)
        assert pending["Reason"] in ("BeginTime", "None", "Priority", "Resources"), pending
        time.sleep(1.5)  # past the revoke time of the first run's credential (what the requeue delay guards)
        c.run(["scontrol", "update", f"jobid={jid}", "StartTime=now"])  # Slurm's delay: cred_expire, 120 s
        done = c.wait_job(jid, timeout=60)
    finally:
        c.run(["scancel", str(jid)], check=False)
    assert (done["JobState"], done["ExitCode"], done["Restarts"]) == ("COMPLETED", "0:0", "1"), done
    out = c.job_output(jid, done)
    runs = [r for r in _ranks(out) if r["rank"] == 0]
    assert len(runs) == 2 and "SIGUSR1: asking the ranks" in out, out
    first, second = runs
    assert first["signal"] == "SIGUSR1" and first["requeueing"] is True and 0 < first["saved"] < steps, out
    assert (second["restored_step"], second["step"], second["saved"]) == (first["saved"], steps, steps), out
    assert second["requeueing"] is False and second["w0"] == float(steps)


def test_a_second_job_in_the_directory_refuses_and_scancel_does_not_requeue(slurm_cluster: Any,
                                                                            tmp_path: Path) -> None:
    """Two jobs with the same -J (one directory) both trained from step 0; the second crashed at its
    first save (`checkpoint for step 40 already exists`). It refuses at its start now (exit 3). A
    scancel's SIGTERM saves but does not requeue: the user's cancel ends the job."""
    c, ck = slurm_cluster, tmp_path / "ck"
    jid = _submit(c, ck, 100000, 0.05, "-J", "same_name")
    try:
        _stepping(c, jid)
        second = _submit(c, ck, 100, 0.05, "-J", "same_name")
        failed = c.wait_job(second, states=("FAILED",), timeout=60)
        assert failed["ExitCode"] == "3:0", failed
        err = c.job_output(second, failed)
        assert f"checkpoint directory {ck} is in use by another training run (job {jid}" in err, err
        assert "Traceback" not in err and "already exists" not in err, err
        c.run(["scancel", str(jid)])
        ended = _until("ended", lambda i: i["JobState"] not in ("RUNNING", "COMPLETING"), c, jid)
    finally:
        c.run(["scancel", str(jid)], check=False)
    time.sleep(1.0)  # what a wrongly requeued job would show by now
    info = c.job(jid)
    assert (ended["JobState"], info["JobState"], info["Restarts"]) == ("CANCELLED", "CANCELLED", "0"), info
