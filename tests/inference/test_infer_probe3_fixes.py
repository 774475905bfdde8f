"""Prober 3 (`fabric infer` with MPICH's mpiexec): stdin with several ranks refused before the
output directory is touched, an engine_dir spelled another way resumes, the job's busy share over
world size x job wall time, a missing --textfile-dir refused at start, a quoted next command, and
merge notes that say what is true."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main

from .builders import make_config, random_items, write_spool
from .test_mpi import FABRIC, MPIEXEC, REPO, finish, launch  # noqa: F401

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


@pytest.mark.mpi
def test_stdin_with_two_ranks_is_refused_before_the_output_is_touched(tmp_path: Path) -> None:
    from tests.real import require_real

    require_real("mpi", MPIEXEC.exists() and FABRIC.exists(), f"{MPIEXEC} or {FABRIC} missing")
    cfg = make_config(tmp_path)
    lines = "".join(json.dumps(it) + "\n" for it in random_items(10, max_new=4))
    out = tmp_path / "out"
    proc = subprocess.run([str(MPIEXEC), "-n", "2", str(FABRIC), "infer", "run", "--engine-config", str(cfg),
                           "--input", "-", "--output", str(out), "--no-progress"], input=lines, text=True,
                          capture_output=True, env=ENV, timeout=120, check=False)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "stdin input needs a single rank" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() or not [p.name for p in out.iterdir() if p.name != ".run.lock"], \
        sorted(p.name for p in out.iterdir())
    # the fix the error names (a spool) with the same --output is not refused
    spool = write_spool(tmp_path, random_items(10, max_new=4), files=1)
    assert main(["infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output", str(out),
                 "--no-progress"]) == 0
