"""Pending reasons on a live slurmctld (admin probe 7; unit: tests/slurm/test_reason_names.py and
tests/slurm/test_why_own_hosts.py): a `scontrol requeuehold` job reads `JobHeldUser` through the cli
backend (scontrol's Reason= shows "job_requeued_in_held_state") and through pyslurm (25.11: "job
requeued in held state"), as slurmrestd's state_reason; an unmarked `sbatch -w n7` on a drained n7
reads `ReqNodeNotAvail` everywhere, and `fabric slurm why` does not blame the agent for its -w."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.slurm import open_client
from fabric_hpc.slurm.contract import Job
from fabric_hpc.slurm.why import explain
from tests.real import require_real
from tests.slurm_integration.pyslurm_worker import PyslurmWorker

pytestmark = [pytest.mark.slurm]


def _until(read: Callable[[], Job], done: Callable[[Job], bool], timeout: float = 40.0) -> Job:
    deadline = time.monotonic() + timeout
    while not done(job := read()):
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    return job


def _pyslurm_reason(cluster: Any, job_id: int, log: Path) -> str | None:
    """The reason pyslurm reads (Slurm 25.11 only, where pyslurm 25.11 talks to slurmctld)."""
    if cluster.version[:2] != (25, 11):
        return None
    require_real("pyslurm", importlib.util.find_spec("pyslurm") is not None, "pyslurm is not installed")
    worker = PyslurmWorker(cluster.env, log=log)
    try:
        return worker.job(job_id).reason
    finally:
        worker.close()


def test_a_requeue_held_job_reads_job_held_user(slurm_cluster: Any, tmp_path: Path) -> None:
    c, cli = slurm_cluster, open_client("cli", env=slurm_cluster.env)
    jid = c.sbatch("-N1", "--gres=gpu:1", "--requeue", wrap="sleep 300")
    try:
        c.wait_job(jid, states=("RUNNING",), timeout=30)
        c.run(["scontrol", "requeuehold", str(jid)])
        job = _until(lambda: cli.job(jid), lambda j: j.state == "PENDING")
        raw = c.run(["scontrol", "show", "job", str(jid), "-o"]).stdout
        assert job.reason == "JobHeldUser", raw
        assert next(j for j in cli.jobs() if j.job_id == jid).reason == "JobHeldUser"
        on_25_11 = c.version[:2] == (25, 11)
        assert _pyslurm_reason(c, jid, tmp_path / "pyslurm.log") == ("JobHeldUser" if on_25_11 else None)
        assert "job_requeued_in_held_state" not in explain(cli, jid, state_dir=tmp_path)["text"]
    finally:
        c.run(["scancel", str(jid)], check=False)


def test_an_unmarked_jobs_own_nodelist_on_a_drained_node(slurm_cluster: Any, tmp_path: Path) -> None:
    c, cli = slurm_cluster, open_client("cli", env=slurm_cluster.env)
    c.run(["scontrol", "update", "NodeName=n7", "State=DRAIN", "Reason=probe7"])
    jid = None
    try:
        jid = c.sbatch("-N1", "-w", "n7", "--gres=gpu:1", wrap="sleep 300")
        job = _until(lambda: cli.job(jid), lambda j: j.reason != "None")
        assert job.reason == "ReqNodeNotAvail", job
        on_25_11 = c.version[:2] == (25, 11)
        assert _pyslurm_reason(c, jid, tmp_path / "pyslurm.log") == ("ReqNodeNotAvail" if on_25_11 else None)
        text = explain(cli, jid, state_dir=tmp_path)["text"]
        assert "It asks for n7 itself (-w/--nodelist; not a fabric job" in text, text
        assert "agent pinned" not in text, text
    finally:
        if jid is not None:
            c.run(["scancel", str(jid)], check=False)
        c.run(["scontrol", "update", "NodeName=n7", "State=RESUME"], check=False)
