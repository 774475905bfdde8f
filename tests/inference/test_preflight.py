"""``fabric infer run --preflight``: what every rank checks before MPI starts, checked once and
before any rank (infer_batch.sbatch runs it before srun: a rank that failed at its start under
``srun --kill-on-bad-exit`` lost its error line when srun stopped the others; CI on Slurm 22.05).
Each case runs in a process of its own: the check loads the MPI library without starting MPI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .builders import make_config, random_items, write_spool

REPO = Path(__file__).resolve().parents[2]


def _preflight(tmp: Path, *extra: str, env: dict[str, str] | None = None,
               cfg: Path | None = None, spool: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "fabric_hpc.cli", "infer", "run", "--preflight",
           "--engine-config", str(cfg or make_config(tmp)),
           "--input", str(spool or write_spool(tmp, random_items(8, seed=3))), "--output", str(tmp / "out"),
           *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_a_ready_launch_passes_and_nothing_is_written(tmp_path: Path) -> None:
    pytest.importorskip("mpi4py")
    done = _preflight(tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"preflight": "ok", "output": str(tmp_path / "out")}
    assert not (tmp_path / "out").exists()  # a check: no output directory, no journal, no lock


def test_an_mpi_library_that_does_not_load_is_found_before_any_rank(tmp_path: Path) -> None:
    pytest.importorskip("mpi4py")
    done = _preflight(tmp_path, env={"MPI4PY_LIBMPI": str(tmp_path / "no-libmpi.so")})
    assert done.returncode == 5, done.stderr
    assert "cannot load the MPI library" in done.stderr and "MPI4PY_LIBMPI" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_a_missing_input_and_a_missing_textfile_dir_are_bad_input(tmp_path: Path) -> None:
    gone = _preflight(tmp_path, spool=tmp_path / "no-spool")
    assert gone.returncode == 3 and "no-spool" in gone.stderr and "Traceback" not in gone.stderr, gone.stderr
    textfile = _preflight(tmp_path, "--textfile-dir", str(tmp_path / "no-textfile"))
    assert textfile.returncode == 3 and "--textfile-dir" in textfile.stderr, textfile.stderr


def test_a_broken_engine_config_is_bad_input(tmp_path: Path) -> None:
    cfg = tmp_path / "engine.json"
    cfg.write_text(json.dumps({"engine": "simulated"}))
    done = _preflight(tmp_path, cfg=cfg)
    assert done.returncode == 3 and "engine" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_an_output_inside_the_input_is_refused_as_the_ranks_would(tmp_path: Path) -> None:
    spool = write_spool(tmp_path, random_items(8, seed=3))
    done = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", "infer", "run", "--preflight",
                           "--engine-config", str(make_config(tmp_path)), "--input", str(spool),
                           "--output", str(spool / "out")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), "PMI_RANK": "1"})
    assert done.returncode == 3 and "overlap" in done.stderr, done.stderr  # said, though not rank 0


def test_an_output_this_user_cannot_write_is_bad_input(tmp_path: Path) -> None:
    """Review: the help said the output directory was checked; only its contents were."""
    (tmp_path / "file").write_text("x")
    done = _preflight(tmp_path, "--output", str(tmp_path / "file" / "out"))  # below a file
    assert done.returncode == 3 and "is not a directory" in done.stderr, done.stderr
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        done = _preflight(tmp_path, "--output", str(locked / "out"))
        assert done.returncode == 3 and "not writable" in done.stderr, done.stderr
