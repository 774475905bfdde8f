"""A manifest whose ``split`` disagrees with its chunk grid (the format's rule: chunk shape = the
global shape with each split dimension ``n`` replaced by ``ceil(n / parts)``) is damage: verify
reports it, show/restore refuse it (exit 3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointError, restore, save, verify
from fabric_hpc.checkpoint.errors import CheckpointCorruptError
from fabric_hpc.checkpoint.format import SplitInfo
from tests.checkpoint.builders import run_cli


def _saved(tmp_path: Path) -> Path:
    res = save(tmp_path / "ck", {"w": np.arange(21, dtype=np.float32).reshape(7, 3),
                                 "m": np.ones((8, 6), np.float32), "v": np.ones(5)},
               step=5, splits={"w": SplitInfo(dim=0, parts=4), "m": SplitInfo(dim=[0, 1], parts=[4, 2]),
                               "v": SplitInfo(dim=0, parts=4)})
    return res.path


def _set_split(step: Path, name: str, split: dict) -> None:
    doc = json.loads((step / "zarr.json").read_bytes())
    doc["attributes"]["fabric_checkpoint"]["tensors"][name]["split"] = split
    (step / "zarr.json").write_text(json.dumps(doc))


def test_a_consistent_split_verifies(tmp_path: Path) -> None:
    step = _saved(tmp_path)
    assert verify(step).ok  # including v: 5 rows in 4 parts of 2 (the last part empty)


@pytest.mark.parametrize("name,split", [
    ("w", {"dim": 0, "parts": 10**12}),  # chunks of 2 rows on a 4 x 1 grid
    ("w", {"dim": 0, "parts": 1}),
    ("w", {"dim": 1, "parts": 4}),
    ("m", {"dim": [0, 1], "parts": [4, 3]}),  # the grid is 4 x 2
    ("m", {"dim": [1, 0], "parts": [4, 2]}),
])
def test_a_split_that_disagrees_with_the_grid_is_damage(tmp_path: Path, capsys, name: str,
                                                         split: dict) -> None:
    step = _saved(tmp_path)
    _set_split(step, name, split)
    report = verify(step)
    assert not report.ok, report
    assert any("split" in p and "chunk shape" in p for p in report.problems), report.problems
    with pytest.raises(CheckpointCorruptError, match="split"):
        restore(step)
    for cmd in ("verify", "show"):
        code, out, err = run_cli(capsys, "ckpt", cmd, str(step))
        assert code == 3, (cmd, code, out, err)


def test_save_refuses_a_chunk_shape_that_disagrees_with_its_split(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="split"):
        save(tmp_path / "ck", {"w": np.ones((8, 2))}, step=1, chunk_shapes={"w": [3, 2]},
             splits={"w": SplitInfo(dim=0, parts=4)})
    assert not (tmp_path / "ck" / "step-0000000001").exists()
