"""A collective save whose step, tags or metadata is bad (or differs) on some ranks only: the error
is raised on every rank (no rank hangs in a collective), with a real mpiexec. A hang is bounded by
the launch's timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.real import require_real

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = ROOT / ".venv" / "bin" / "mpiexec"
TIMEOUT = 60

pytestmark = pytest.mark.mpi

_WORKER = """
import os, sys
import numpy as np
from mpi4py import MPI
from fabric_hpc.checkpoint import AsyncSaver, save
from fabric_hpc.errors import FabricError
comm = MPI.COMM_WORLD
r = comm.Get_rank()
case, root = sys.argv[1], sys.argv[2]


def say(line):  # one write per line: the two ranks share the pipe, print() writes in pieces
    os.write(1, (line + "\\n").encode())


step, kw = 1, {}
if case == "meta_on_0" and r == 0:
    kw["metadata"] = {"val_loss": np.float32(0.25)}   # only rank 0 evaluated
if case == "tags_on_1" and r == 1:
    kw["tags"] = [1]
if case == "step_on_1" and r == 1:
    step = -1
if case == "step_differs" and r == 1:
    step = 2
state = {"b": np.ones(2)}
try:
    if case == "tiers_tags_on_1":
        from fabric_hpc.checkpoint.tiers import save_local
        save_local(root, state, step=step, comm=comm, tags=["x", 2] if r == 1 else ["x"])
    elif case.startswith("async"):
        if r == 0:
            kw["metadata"] = {"val_loss": np.float32(0.25)}
        with AsyncSaver(root, comm=comm) as saver:
            handle = saver.save(state, step=step, **kw)
            try:
                handle.wait(timeout=60)
            except TimeoutError:
                say(f"rank{r} TIMEOUT")
                raise
    else:
        save(root, state, step=step, comm=comm, **kw)
    say(f"rank{r} saved")
except FabricError as exc:
    say(f"rank{r} ERR {type(exc).__name__}: {exc.message} / {exc.hint}")
comm.Barrier()
if r == 0:
    held = sorted(p for p in os.listdir(root) if p.startswith("step-")) if os.path.isdir(root) else []
    say(f"root holds {held}")
say(f"rank{r} done")
"""


def _mpi2(case: str, root: Path) -> str:
    require_real("mpi", MPIEXEC.exists(), f"{MPIEXEC} missing (pip install '.[mpi]')")
    proc = subprocess.Popen([str(MPIEXEC), "-n", "2", sys.executable, "-c", _WORKER, case, str(root)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # mpiexec and both ranks
        out, err = proc.communicate()
        pytest.fail(f"{case}: a rank hung in the save (killed after {TIMEOUT} s):\n{out}\n{err}")
    assert proc.returncode == 0, out + err
    assert "rank0 done" in out and "rank1 done" in out, out + err
    return out


@pytest.mark.parametrize(("case", "message"), [
    ("meta_on_0", "ERR CheckpointError: metadata must be a JSON object of plain values"),
    ("tags_on_1", "ERR CheckpointError: tags must be a list of strings, got [1]"),
    ("step_on_1", "ERR CheckpointError: step must be a non-negative integer, got -1"),
    ("tiers_tags_on_1", "ERR CheckpointError: tags must be a list of strings, got ['x', 2]"),
])
def test_a_bad_header_on_one_rank_is_raised_on_every_rank(tmp_path: Path, case: str, message: str) -> None:
    out = _mpi2(case, tmp_path / "ck")
    assert f"rank0 {message}" in out and f"rank1 {message}" in out, out
    assert "root holds []" in out, out


def test_ranks_passing_different_steps_are_refused_on_every_rank(tmp_path: Path) -> None:
    out = _mpi2("step_differs", tmp_path / "ck")
    want = "ERR CheckpointError: ranks passed different steps: rank 0: 1, rank 1: 2"
    assert f"rank0 {want}" in out and f"rank1 {want}" in out, out
    assert "pass the same step on every rank" in out, out
    assert "root holds []" in out, out  # nothing committed under rank 0's step


def test_an_async_save_with_bad_metadata_on_one_rank_fails_on_every_rank(tmp_path: Path) -> None:
    out = _mpi2("async_meta_on_0", tmp_path / "ck")
    message = "ERR CheckpointError: metadata must be a JSON object of plain values"
    assert f"rank0 {message}" in out and f"rank1 {message}" in out, out
    assert "TIMEOUT" not in out and "root holds []" in out, out
