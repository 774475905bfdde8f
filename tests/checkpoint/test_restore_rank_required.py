"""restore(root, world_size=2) without rank= returned rank 0's part on every rank; rank=True was
taken as rank 1. A world size above one now needs the rank, a whole number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointError, Shard, restore, save


@pytest.fixture
def root(tmp_path: Path) -> Path:
    save(tmp_path, {"w": Shard(np.arange(8, dtype=np.float32), (8,), dim=0, part=0, parts=1)}, step=1)
    return tmp_path


def test_a_world_size_above_one_needs_the_rank(root: Path) -> None:
    with pytest.raises(CheckpointError, match="rank") as info:
        restore(root, world_size=2)
    assert "rank=" in info.value.hint
    assert restore(root, rank=1, world_size=2)["w"].tolist() == [4, 5, 6, 7]
    assert restore(root)["w"].shape == (8,) and restore(root, world_size=1)["w"].shape == (8,)


@pytest.mark.parametrize("kw", [dict(rank=True, world_size=2), dict(rank=0, world_size=True),
                                dict(rank=1.0, world_size=2), dict(rank="1", world_size=2)])
def test_a_rank_or_world_size_that_is_not_a_whole_number_is_refused(root: Path, kw: dict) -> None:
    with pytest.raises(CheckpointError, match="whole number"):
        restore(root, **kw)


def test_numpy_integers_are_whole_numbers(root: Path) -> None:
    assert restore(root, rank=np.int64(0), world_size=np.int32(2))["w"].tolist() == [0, 1, 2, 3]
