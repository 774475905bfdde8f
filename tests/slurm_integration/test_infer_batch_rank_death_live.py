"""infer_batch.sbatch on a live cluster when a rank fails: the job ends at once, never holding its
allocation until the time limit, with srun's status saying why (docs/inference.md "When a rank fails").

Before: srun ran without --kill-on-bad-exit, so a rank killed with SIGKILL (the OOM killer) or one
that exited before MPI_Init left the others waiting for it (in the harness's rendezvous, or in
MPI_Init) until the time limit; a SIGTERM (scancel) printed an IndexError traceback per rank."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from fabric_hpc.inference import CostModel, EngineLimits, write_simulated_artefact
from tests.real import require_real

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.mpi]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCRIPT = (REPO / "jobscripts" / "infer_batch.sbatch").read_text()
N_ITEMS = 600


@pytest.fixture(scope="module")
def cluster(slurm_cluster_factory):
    require_real("mpi", (BIN / "fabric").exists(), f"{BIN / 'fabric'} is missing (pip install -e .)")
    pytest.importorskip("mpi4py")
    return slurm_cluster_factory(None, nodes=2)


@pytest.fixture()
def work(tmp_path: Path) -> dict:
    """A simulated engine slow enough that the run lasts ~10 s, and a spool of N_ITEMS items."""
    limits = EngineLimits(max_batch_size=8, max_num_tokens=512, max_input_len=64, max_seq_len=96,
                          kv_capacity_tokens=1024)
    cost = CostModel(base_s=0.02, prefill_s_per_token=1e-7, decode_s_per_seq=2e-6, ctx_s_per_token=0.0)
    cfg = write_simulated_artefact(tmp_path / "engine", limits=limits, cost=cost)
    (tmp_path / "engine.json").write_text(json.dumps(cfg))
    spool = tmp_path / "spool"
    spool.mkdir()
    items = [{"id": f"i{k}", "prompt": [k % 97 + 1] * (1 + k % 20), "max_new_tokens": 4} for k in range(N_ITEMS)]
    (spool / "a.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    return {"tmp": tmp_path, "spool": spool, "out": tmp_path / "out", "ids": sorted(i["id"] for i in items)}


def _submit(c, work: dict, *extra_env: str, fabric: Path = BIN / "fabric") -> int:
    env = ",".join(["--export=ALL", f"FABRIC={fabric}", f"ENGINE_CONFIG={work['tmp'] / 'engine.json'}",
                    f"INPUT={work['spool']}", f"OUTPUT={work['out']}", f"PATH={BIN}:{c.env['PATH']}",
                    f"PYTHONPATH={REPO}", *extra_env])
    return c.sbatch(env, "--time=5", script=SCRIPT)  # before the fix a dead rank held it 5 minutes


def _rank_pid(c, jobid: int, rank: int) -> int | None:
    """The `fabric infer run` process of task ``rank`` of ``jobid`` of cluster ``c`` (not srun, not the
    batch script; not another cluster's job of that id: pytest-xdist runs clusters side by side)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if (f"SLURM_JOB_ID={jobid}".encode() in env and f"SLURM_PROCID={rank}".encode() in env
                and f"SLURM_CONF={c.conf_path}".encode() in env and b"SLURM_STEP_ID=0" in env
                and b"infer\0run\0" in cmd):
            return int(entry)
    return None


def _wait_mid_run(c, jobid: int, work: dict, rank: int) -> int:
    journal = work["out"] / "journal" / f"rank-{rank:05d}.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pid = _rank_pid(c, jobid, rank)
        if pid and journal.is_file() and journal.stat().st_size:  # it has committed work
            return pid
        assert c.job(jobid)["JobState"] in ("PENDING", "RUNNING"), c.job_output(jobid)
        time.sleep(0.1)
    raise AssertionError(f"rank {rank} never committed work:\n{c.job_output(jobid)}")


def _ended(c, jobid: int, states: tuple[str, ...], within: float) -> tuple[dict, str]:
    info = c.wait_job(jobid, states=states, timeout=within)
    return info, c.job_output(jobid, info)


def _resume_and_merge(c, work: dict) -> None:
    jid = _submit(c, work)
    info, out = _ended(c, jid, ("COMPLETED",), 120)
    got = [json.loads(line)["id"] for line in (work["out"] / "results.jsonl").read_text().splitlines()]
    assert sorted(got) == work["ids"], out  # every item exactly once after the rerun


def test_kill9_of_one_rank_ends_the_job_at_once_with_137(cluster, work):
    jid = _submit(cluster, work)
    os.kill(_wait_mid_run(cluster, jid, work, 1), signal.SIGKILL)  # as the OOM killer does
    # within 20 s, below slurmstepd's KillWait (30 s): before, rank 0's teardown could block for good in
    # its send of FATAL to the dead rank (~1 run in 15) and only KillWait's SIGKILL ended the job
    info, out = _ended(cluster, jid, ("FAILED",), 20)
    assert info["ExitCode"] == "137:0", out
    assert "srun exit 137" in out and "resubmit with the same OUTPUT" in out, out
    assert not (work["out"] / "results.jsonl").exists()  # not merged: the run is incomplete
    _resume_and_merge(cluster, work)


def test_an_ordered_failure_keeps_the_cli_exit_code(cluster, work):
    jid = _submit(cluster, work, "FABRIC_INFER_FAULT=1:8")  # rank 1's engine fails after 8 items
    info, out = _ended(cluster, jid, ("FAILED",), 60)
    assert info["ExitCode"] == "5:0", out  # the CLI's code for an external failure, not 137
    assert out.count("error: rank 1: ") == 1 and "error: rank 0" not in out, out
    assert "Traceback" not in out and "srun exit 5" in out, out


def test_a_rank_that_exits_before_mpi_init_ends_the_job(cluster, work):
    wrapper = work["tmp"] / "fabric-wrapper"
    wrapper.write_text(f'#!/bin/bash\nif [[ "$SLURM_PROCID" == 1 && "$2" == run ]]; then exit 7; fi\n'
                       f'exec {BIN / "fabric"} "$@"\n')
    wrapper.chmod(0o755)
    jid = _submit(cluster, work, fabric=wrapper)
    info, out = _ended(cluster, jid, ("FAILED",), 60)  # before: rank 0 sat in MPI_Init until the limit
    assert info["ExitCode"] in ("143:0", "7:0"), out  # measured: 143 (srun's SIGTERM to rank 0)
    assert "Traceback" not in out, out


def test_scancel_ends_every_rank_without_a_traceback(cluster, work):
    jid = _submit(cluster, work)
    _wait_mid_run(cluster, jid, work, 1)
    cluster.run(["scancel", str(jid)])
    info, out = _ended(cluster, jid, ("CANCELLED",), 60)
    assert "Traceback" not in out and "IndexError" not in out, out
    deadline = time.monotonic() + 30
    while (_rank_pid(cluster, jid, 0) or _rank_pid(cluster, jid, 1)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (_rank_pid(cluster, jid, 0) or _rank_pid(cluster, jid, 1)), "a rank outlived scancel"
    _resume_and_merge(cluster, work)


def test_a_config_error_is_printed_once_and_exits_3(cluster, work):
    """Before: each rank printed the same error and the job log held a --json document per run. The
    script's preflight now finds it once, before srun starts any rank."""
    cfg = json.loads((work["tmp"] / "engine.json").read_text())
    (work["tmp"] / "engine.json").write_text(json.dumps({**cfg, "engine_dir": str(work["tmp"] / "gone")}))
    info, out = _ended(cluster, _submit(cluster, work), ("FAILED",), 60)
    assert info["ExitCode"] == "3:0", out
    assert out.count("error: ") == 1 and "gone" in out and "not started" in out, out
    assert "ranks on" not in out and "{" not in out, out  # no rank started, no JSON document in the log
