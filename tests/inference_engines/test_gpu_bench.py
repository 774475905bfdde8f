"""The GPU benchmark script runs end to end in its CPU smoke mode (tiny model, 48 requests):
baseline generate() at two batch sizes, the harness + PyTorch engine on 1 rank and on 2 real
MPI ranks, each checked exactly-once."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.real import require_real

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.mpi
def test_gpu_benchmark_tiny_mode_runs() -> None:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    require_real("mpi", mpiexec.exists() or shutil.which("mpiexec") is not None, "no mpiexec")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.inference_gpu", "--tiny",
                           "--no-write"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "CPU smoke run" in out and "NOT the H100 measurement" in out
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| ([^|]+?) \| (.+)$", out, re.M)}
    for name in ("baseline generate() B=8", "baseline generate() B=32",
                 "fabric harness + PyTorch engine, 1 rank", "fabric, 2 MPI ranks sharing one device"):
        assert name in rows, out
        cells = [c.strip() for c in rows[name].split("|")]
        assert cells[0] == "48"  # every request done
        assert float(cells[1].replace(",", "")) > 0  # useful output tokens/s
    fabric = [c.strip() for c in rows["fabric harness + PyTorch engine, 1 rank"].split("|")]
    assert float(fabric[3].rstrip(" %")) < 1.0  # padding waste of the lanes
    baseline = [c.strip() for c in rows["baseline generate() B=32"].split("|")]
    assert float(baseline[3].rstrip(" %")) > 20.0  # static batching pads a lot
    assert "48 items on 1 rank, 48 on 2 ranks" in out
