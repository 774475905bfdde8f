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
    # one launch of max(restore_on) ranks: ranks 0..m-1 restore as the ranks of a world of m
    out = _mpi(max(restore_on), "restore", str(tmp_path), ",".join(map(str, restore_on)))
    for m in restore_on:
        assert f"OK restore world={m}" in out


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
    out = _mpi(6, "restore-mesh", str(tmp_path), "2x3,-3,1x1")  # 2x3 mesh, first dim on 3, whole
    for world in (6, 3, 1):
        assert f"OK restore-mesh world={world}" in out
    truth = full_state(seed=11, scale=3)["model"]["layers"]["0"]["w"]
    plain = zarr.open_group(tmp_path / "step-0000000005", mode="r")["model/layers/0/w"]
    assert plain.chunks == (15, 3) and plain[...].tobytes() == truth.tobytes()


def test_multi_node_tiers_drain_each_node_and_commit_once(tmp_path: Path) -> None:
    """4 ranks on 2 "nodes" with separate local roots: each node holds only its ranks' chunks,
    drains them, and the shared tier gets complete, verifiable checkpoints; 6 ranks restore."""
    from fabric_hpc.checkpoint import list_checkpoints, open_checkpoint, verify
    from fabric_hpc.checkpoint.store import read_latest
    from fabric_hpc.checkpoint.tiers import local_parts
    assert "OK tiered world=4" in _mpi(4, "tiered", str(tmp_path))
    shared = tmp_path / "shared"
    assert [r.step for r in list_checkpoints(shared)] == [1, 2, 3] and read_latest(shared) == "step-0000000003"
    assert all(verify(shared, step=s).ok for s in (1, 2, 3))
    assert [p.name for p in shared.iterdir() if p.name.startswith(".drain-")] == []
    for node in ("n0", "n1"):
        parts = local_parts(tmp_path / f"local-{node}")
        assert [p.step for p in parts] == [2, 3]  # local retention keep_last=2, after draining
        held = {c.name for c in (parts[-1].path / "model" / "layers" / "1" / "w").glob("c.*")}
        # dim 1 of 6 columns in 4 parts (torch.chunk): 2, 2, 2 and an empty fourth part
        assert held == ({"c.0.0", "c.0.1"} if node == "n0" else {"c.0.2"})
        assert list_checkpoints(tmp_path / f"local-{node}") == []  # a part is never a restorable checkpoint
    assert open_checkpoint(shared).manifest.world_size == 4
    assert "OK restore world=6" in _mpi(6, "restore", str(shared))


def test_multi_node_commit_waits_for_every_node_and_cleans_dead_drains(tmp_path: Path) -> None:
    from fabric_hpc.checkpoint import list_checkpoints, restore, verify
    from fabric_hpc.checkpoint.tiers import drain, local_parts
    _mpi(4, "tiered-parts", str(tmp_path), "1,2")  # steps 1 and 2 saved in turn by one launch
    shared = tmp_path / "shared"
    n0 = {p.step: p for p in local_parts(tmp_path / "local-n0")}
    n1 = {p.step: p for p in local_parts(tmp_path / "local-n1")}
    assert drain(n0[1], shared) is None  # node 1 has not drained step 1: nothing committed
    assert list_checkpoints(shared) == []
    # node 1 "dies" before draining step 1; step 2 drains on both nodes and commits
    assert drain(n1[2], shared) is None
    final = drain(n0[2], shared)
    assert final == shared / "step-0000000002" and verify(shared).ok
    assert [p.name for p in shared.iterdir() if p.name.startswith(".drain-")] == []  # step 1's staging removed
    assert drain(n1[2], shared) == final  # a repeated drain is a no-op
    assert restore(shared)["optim"]["step"] == 42


def test_tiers_docs_pattern_restores_the_same_step_on_every_rank(tmp_path: Path) -> None:
    """The Tiers example of docs/checkpoint.md (one node per rank): after ``flush()``, ``newest()``
    must name the newest step on every rank. Before the fix ``flush()`` returned once this node's
    own drain was done, and a rank could restore step 2 while the other restored step 3."""
    assert "OK tiered-agree world=2" in _mpi(2, "tiered-agree", str(tmp_path), "30")

