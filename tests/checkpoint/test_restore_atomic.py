"""A failed restore(into=...) leaves the targets as they were: every target's shape and dtype is
checked before any byte is read, and a chunk's CRC-32C is checked before its bytes reach a target
(a damaged chunk once left NaNs in the model; a bad shape left the tensors before it filled)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointCorruptError, CheckpointError, restore, save
from fabric_hpc.checkpoint.reader import open_checkpoint


def _flip(path: Path, at: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[at:at + 4] = b"\xff\xff\xff\x7f"
    path.write_bytes(bytes(data))


def _state() -> dict:
    return {"model": {"a": np.ones(4, np.float32), "b": np.ones(3, np.float32), "z": np.ones(2, np.float32)}}


@pytest.mark.parametrize("bad, why", [(np.zeros(5, np.float32), "target shape"),
                                      (np.zeros(3, np.int32), "cannot hold")])
def test_a_bad_target_is_refused_before_any_target_is_filled(tmp_path: Path, bad: np.ndarray,
                                                              why: str) -> None:
    save(tmp_path, _state(), step=1)
    tgt = {"model": {"a": np.zeros(4, np.float32), "b": bad, "z": np.zeros(2, np.float32)}}
    with pytest.raises(CheckpointError, match=why):
        restore(tmp_path, into=tgt)
    assert all(not v.any() for v in tgt["model"].values())  # a and z were filled before: now untouched


def test_a_damaged_chunk_never_reaches_the_target(tmp_path: Path) -> None:
    save(tmp_path, {"w": np.ones(8, np.float32)}, step=1)
    _flip(tmp_path / "step-0000000001" / "w" / "c.0")
    t = np.zeros(8, np.float32)
    with pytest.raises(CheckpointCorruptError, match="crc32c"):
        restore(tmp_path, into={"w": t})
    assert t.tolist() == [0.0] * 8  # was [nan, 1.0, ...]


def test_a_damaged_chunk_read_in_part_never_reaches_the_target(tmp_path: Path) -> None:
    save(tmp_path, {"w": np.ones((8, 3), np.float32)}, step=1)
    _flip(tmp_path / "step-0000000001" / "w" / "c.0.0")
    t = np.zeros((2, 3), np.float32)
    with pytest.raises(CheckpointCorruptError, match="crc32c"):
        open_checkpoint(tmp_path).read("w", region=((0, 2), (0, 3)), out=t)
    assert not t.any()


def test_a_damaged_chunk_in_a_cast_or_torch_target_never_reaches_it(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    save(tmp_path, {"w": np.ones(8, np.float32), "d": np.ones(4, np.float64)}, step=1)
    _flip(tmp_path / "step-0000000001" / "w" / "c.0")
    _flip(tmp_path / "step-0000000001" / "d" / "c.0")
    t, d = torch.zeros(8), torch.zeros(4)  # d: float64 stored, cast into float32
    for into in ({"w": t}, {"d": d}):
        with pytest.raises(CheckpointCorruptError):
            restore(tmp_path, into=into)
    assert not t.any() and not d.any()


def test_good_restores_still_fill_every_target(tmp_path: Path) -> None:
    save(tmp_path, {"w": np.arange(24, dtype=np.float32).reshape(8, 3)}, step=1)
    t = np.zeros((8, 3), np.float32)
    assert restore(tmp_path, into={"w": t})["w"] is t and t[7, 2] == 23
    part = open_checkpoint(tmp_path).read("w", region=((2, 4), (1, 3)))
    assert part.tolist() == [[7, 8], [10, 11]]
