"""Fixes from a new-user probe of ``fabric ckpt`` (real files and real commands through main())."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import Shard, save
from fabric_hpc.checkpoint.reshard import reshard
from tests.checkpoint.builders import run_cli

STEP = "step-0000000200"


@pytest.fixture
def ck3(tmp_path: Path) -> Path:
    """Step 200 saved by 3 ranks (a reshard of a one-rank save), layout {"tp": 3}."""
    w = np.arange(60, dtype=np.float32).reshape(12, 5)
    save(tmp_path / "src", {"model": {"w": Shard.of(w, 0, 0, 1)}, "b": np.ones(3)}, step=200, layout={"tp": 3})
    reshard(tmp_path / "src", tmp_path / "ck3", 3)
    return tmp_path / "ck3"


def _tree(root: Path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.parametrize("size", ["2", "3"])
@pytest.mark.parametrize("how", ["same", "inside", "holds", "symlink"])
def test_restore_out_overlapping_the_source_is_refused_up_front(ck3: Path, tmp_path: Path, capsys, how: str,
                                                               size: str) -> None:
    """--out == the source root was refused with advice to delete the only copy (or a layout blame)."""
    os.symlink(ck3, tmp_path / "link")
    src, out = {"same": (ck3, ck3), "inside": (ck3, ck3 / "sub"), "holds": (ck3 / STEP, ck3),
                "symlink": (tmp_path / "link", ck3)}[how]
    before = _tree(ck3)
    code, _, err = run_cli(capsys, "ckpt", "restore", str(src), "--to-world-size", size, "--out", str(out))
    assert code == 3, err
    assert "the checkpoint being read" in err and "fix: give another directory as --out" in err
    assert "delete" not in err and "differs" not in err
    assert _tree(ck3) == before
