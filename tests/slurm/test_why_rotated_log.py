"""`fabric slurm why` after the documented logrotate setup (decisions.jsonl moved to olddir, then HUP):
the new log begins with ``agent.logs_reopened``, after the job was placed. Who placed it cannot be told
from there; it said "Slurm's own scheduler did" for a job the agent placed."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from fabric_hpc.slurm.contract import Job
from fabric_hpc.slurm.why import explain
from tests.slurm.test_why_probe_fixes import _One, audit

HOSTS = ("n1", "n2")


def _running(job_id: int, submitted: float) -> Job:
    return Job(job_id=job_id, name="r", state="RUNNING", comment="fabric", nodes=2, gpus_per_node=8,
               node_list=HOSTS, gpus={h: tuple(range(8)) for h in HOSTS}, submit_time=submitted,
               start_time=submitted + 60)


def test_a_log_that_begins_after_a_reopen_sends_the_reader_to_the_moved_copies(tmp_path: Path) -> None:
    now = time.time()
    reopened = {"files": [str(tmp_path / "decisions.jsonl")]}
    state = audit(tmp_path, ("agent.logs_reopened", now - 600, reopened),
                  ("agent.waiting", now - 500, {"jobs": {"9": "Resources"}}))
    out = explain(_One(_running(5, now - 7200)), 5, state_dir=state)  # type: ignore[arg-type]
    text = out["text"]
    assert "Slurm's own scheduler did" not in text, text
    assert "older than the part of the agent's decision log read" in text, text
    assert "logrotate" in text and f"grep -E '\"(for_)?job\":5[,}}]'" in text, text
    assert out["decisions"]["older"]["path"] == str(tmp_path / "decisions.jsonl")


def test_a_log_that_begins_after_the_job_was_submitted_counts_as_older_records_elsewhere(
        tmp_path: Path) -> None:
    now = time.time()
    state = audit(tmp_path, ("agent.waiting", now - 500, {"jobs": {"9": "Resources"}}))
    out = explain(_One(_running(5, now - 7200)), 5, state_dir=state)  # type: ignore[arg-type]
    assert "Slurm's own scheduler did" not in out["text"] and "older" in out["decisions"], out["text"]


def test_a_job_submitted_after_the_reopen_is_still_told_slurm_placed_it(tmp_path: Path) -> None:
    now = time.time()
    state = audit(tmp_path, ("agent.logs_reopened", now - 600, {"files": []}),
                  ("agent.waiting", now - 500, {"jobs": {"9": "Resources"}}))
    young = replace(_running(6, now - 300), start_time=now - 200)
    out = explain(_One(young), 6, state_dir=state)  # type: ignore[arg-type]
    assert "Slurm's own scheduler did" in out["text"] and "older" not in out["decisions"], out["text"]
