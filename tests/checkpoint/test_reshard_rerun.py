"""``jobscripts/ckpt_restore.sbatch`` (and ``fabric ckpt restore``) rerun on the same DEST: the
same reshard already there is verified and kept (a requeued job succeeds); anything else there is
refused with a restore-specific fix, and never modified."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import Shard, open_checkpoint, save, verify
from fabric_hpc.checkpoint.reshard import reshard
from fabric_hpc.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "jobscripts" / "ckpt_restore.sbatch"


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    w = np.arange(48, dtype=np.float32).reshape(12, 4)
    save(tmp_path / "ck", {"model": {"w": Shard.of(w, 0, 0, 1)}, "b": np.full(3, 7)}, step=10, tags=["t"])
    return tmp_path / "ck"


def _job(tmp_path: Path, ckpt: Path, world: int, dest: Path) -> subprocess.CompletedProcess:
    fabric = tmp_path / "fabric"
    fabric.write_text(f'#!/bin/bash\nPYTHONPATH={ROOT} exec {sys.executable} -m fabric_hpc.cli "$@"\n')
    fabric.chmod(0o755)
    env = {**os.environ, "CKPT": str(ckpt), "WORLD_SIZE": str(world), "DEST": str(dest), "FABRIC": str(fabric)}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def test_rerun_of_the_jobscript_keeps_the_same_reshard(tmp_path: Path, ckpt: Path) -> None:
    dest = tmp_path / "restored"
    first = _job(tmp_path, ckpt, 3, dest)
    assert first.returncode == 0 and "ckpt_restore: ok" in first.stdout, first.stderr
    before = _snapshot(dest)
    again = _job(tmp_path, ckpt, 3, dest)  # requeued: same CKPT, WORLD_SIZE, DEST
    assert again.returncode == 0 and "ckpt_restore: ok" in again.stdout, again.stdout + again.stderr
    assert "already holds this reshard" in again.stdout and "Traceback" not in again.stderr
    assert _snapshot(dest) == before and verify(dest).ok


def test_rerun_into_a_dest_holding_another_reshard_is_refused_with_a_restore_fix(tmp_path: Path, ckpt: Path) -> None:
    dest = tmp_path / "restored"
    assert _job(tmp_path, ckpt, 2, dest).returncode == 0
    before = _snapshot(dest)
    other = _job(tmp_path, ckpt, 3, dest)
    assert other.returncode == 3 and "not this reshard" in other.stderr and "world size" in other.stderr
    assert "new --out directory" in other.stderr and "prune" not in other.stderr and "Traceback" not in other.stderr
    assert _snapshot(dest) == before


def test_rerun_over_changed_or_damaged_dest_is_refused(tmp_path: Path, ckpt: Path) -> None:
    dest = tmp_path / "restored"
    reshard(ckpt, dest, 2)
    save(tmp_path / "ck2", {"model": {"w": Shard.of(np.zeros((12, 4), np.float32), 0, 0, 1)}, "b": np.full(3, 7)},
         step=10, tags=["t"])
    with pytest.raises(ConfigError, match="tensor 'model/w' holds other values"):
        reshard(tmp_path / "ck2", dest, 2)  # same shapes and metadata, other values
    chunk = dest / "step-0000000010" / "model" / "w" / "c.1.0"
    raw = bytearray(chunk.read_bytes())
    raw[0] ^= 1
    chunk.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="cannot be read: damaged chunk") as info:
        reshard(ckpt, dest, 2)
    assert "new --out" in (info.value.hint or "")
    assert reshard(ckpt, tmp_path / "fresh", 2).existing is False
    assert open_checkpoint(tmp_path / "fresh").manifest.world_size == 2
