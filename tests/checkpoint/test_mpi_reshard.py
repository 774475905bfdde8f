"""Save on N ranks, restore on M ranks, with a real mpiexec (resharding along the saved dim)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.real import require_real

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = ROOT / ".venv" / "bin" / "mpiexec"

pytestmark = pytest.mark.mpi


def _mpi(n: int, *args: str) -> str:
    require_real("mpi", MPIEXEC.exists(), f"{MPIEXEC} missing (pip install '.[mpi]')")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([str(MPIEXEC), "-n", str(n), sys.executable, "-m", "tests.checkpoint.mpi_worker",
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize(("save_on", "restore_on"), [(4, [1, 2, 3]), (2, [4]), (3, [2])])
def test_save_on_n_restore_on_m(tmp_path: Path, save_on: int, restore_on: list[int]) -> None:
    assert f"OK save world={save_on}" in _mpi(save_on, "save", str(tmp_path), "10")
    for m in restore_on:
        assert f"OK restore world={m}" in _mpi(m, "restore", str(tmp_path))


@pytest.mark.slow
def test_save_on_4_restore_on_8(tmp_path: Path) -> None:
    _mpi(4, "save", str(tmp_path), "1")
    assert "OK restore world=8" in _mpi(8, "restore", str(tmp_path))


def test_two_dim_mesh_save_restores_on_other_meshes_and_plain_zarr(tmp_path: Path) -> None:
    """Blocks of a 2x2 mesh (tensor x sequence parallel style) saved by 4 ranks restore as blocks
    of a 2x3 mesh (6 ranks), along the first split dim (3 ranks), whole (1 rank) and via zarr."""
    import zarr

    from tests.checkpoint.builders import full_state
    assert "OK save-mesh world=4" in _mpi(4, "save-mesh", str(tmp_path), "5", "2x2")
    assert "OK restore-mesh world=6" in _mpi(6, "restore-mesh", str(tmp_path), "2x3")
    assert "OK restore-mesh world=3" in _mpi(3, "restore-mesh", str(tmp_path), "-")
    assert "OK restore-mesh world=1" in _mpi(1, "restore-mesh", str(tmp_path), "1x1")
    truth = full_state(seed=11, scale=3)["model"]["layers"]["0"]["w"]
    plain = zarr.open_group(tmp_path / "step-0000000005", mode="r")["model/layers/0/w"]
    assert plain.chunks == (15, 3) and plain[...].tobytes() == truth.tobytes()
