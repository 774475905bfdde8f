"""`infer.finish` carries the run's real exit code (SRE report): a run over --max-rejected exited 3
(cli.error exit 3) while every rank's infer.finish said exit_code 0 -- the CLI checked the rejected
lines after run_job had emitted it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from tests.real import require_real

from .builders import make_config, random_items, write_spool
from .test_mpi import FABRIC, MPIEXEC, REPO

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
BAD = ["{broken", "[1, 2]", '{"id": "x"}']


def _events(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


@pytest.mark.mpi
def test_each_rank_finishes_with_the_runs_exit_code_under_mpiexec(tmp_path: Path) -> None:
    require_real("mpi", MPIEXEC.exists() and FABRIC.exists(), f"{MPIEXEC} or {FABRIC} missing")
    spool = write_spool(tmp_path, random_items(20, max_new=4), files=2, extra_lines=BAD)
    proc = subprocess.run([str(MPIEXEC), "-n", "2", str(FABRIC), "-v", "infer", "run", "--engine-config",
                           str(make_config(tmp_path)), "--input", str(spool), "--output",
                           str(tmp_path / "out"), "--no-progress", "--max-rejected", "0"], capture_output=True, text=True,
                          env={**ENV, "SLURM_JOB_ID": "777"}, timeout=180, check=False)
    assert proc.returncode == 3, proc.stderr[-3000:]
    events = _events(proc.stderr)
    (error,) = [e for e in events if e["event"] == "cli.error"]  # said once, by rank 0
    assert error["exit_code"] == 3 and "--max-rejected" in error["error"]
    said = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(said) == 1 and "dead-lettered" in said[0] and "Traceback" not in proc.stderr
    for rank in (0, 1):
        mine = [e for e in events if e.get("rank") == rank and e["event"].startswith("infer.")]
        assert mine[-1]["event"] == "infer.finish", mine[-3:]
        assert mine[-1]["exit_code"] == 3 and "dead-lettered" in mine[-1]["error"], mine[-1]
    # the results are committed all the same (the error says so): the run merges after the fix
    assert main(["infer", "merge", str(tmp_path / "out")]) == 0


def test_a_single_rank_finishes_with_exit_code_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spool = write_spool(tmp_path, random_items(10, max_new=4), files=1, extra_lines=BAD)
    rc = main(["-v", "infer", "run", "--engine-config", str(make_config(tmp_path)), "--input", str(spool),
               "--output", str(tmp_path / "out"), "--no-progress", "--max-rejected", "2"])
    events = _events(capsys.readouterr().err)
    assert rc == 3
    infer = [e for e in events if e["event"].startswith("infer.")]
    assert infer[-1]["event"] == "infer.finish" and infer[-1]["exit_code"] == 3
    assert [e["event"] for e in events][-1] == "cli.error"       # the CLI's own event after the run's
    # within the limit: exit 0 and infer.finish 0
    rc = main(["-v", "infer", "run", "--engine-config", str(make_config(tmp_path)), "--input", str(spool),
               "--output", str(tmp_path / "out2"), "--no-progress", "--max-rejected", "3"])
    finish = [e for e in _events(capsys.readouterr().err) if e["event"] == "infer.finish"]
    assert rc == 0 and finish[-1]["exit_code"] == 0 and "error" not in finish[-1]
