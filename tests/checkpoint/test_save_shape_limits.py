"""A tensor shape a checkpoint cannot hold (more than format.MAX_NDIM dimensions, a dimension over
format.MAX_DIM) is refused in the plan, before anything is written, naming the tensor and the fix
(it was refused after every chunk file was written, blaming the ranks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import Shard, save
from fabric_hpc.checkpoint.errors import CheckpointError
from fabric_hpc.checkpoint.format import MAX_DIM, MAX_NDIM


def _refused(root: Path, state: dict) -> CheckpointError:
    written: list[int] = []
    with pytest.raises(CheckpointError) as err:
        save(root, state, step=1, _after_chunks=lambda: written.append(1))
    assert written == []  # refused in the plan, before any chunk file was written
    assert "ranks did not write a complete checkpoint" not in err.value.message
    assert not list(root.glob("step-*")) and not list(root.glob(".tmp-*"))
    return err.value


def test_a_tensor_with_too_many_dimensions_is_refused_before_writing(tmp_path: Path) -> None:
    err = _refused(tmp_path / "ck", {"big": np.ones(1000, np.float32), "odd": np.ones([1] * (MAX_NDIM + 1))})
    assert err.message.startswith("odd: shape [1, 1, 1, ") and f"has {MAX_NDIM + 1} dimensions" in err.message
    assert f"at most {MAX_NDIM}" in err.message and "reshape" in err.hint and "every rank" not in err.hint


def test_a_dimension_over_the_limit_is_refused_before_writing(tmp_path: Path) -> None:
    err = _refused(tmp_path / "ck", {"w": np.ones(4), "wide": np.empty((0, MAX_DIM + 1), np.uint8)})
    assert err.message.startswith("wide: dimension 1 of shape [0, 1099511627777] is 1,099,511,627,777")
    assert f"{MAX_DIM:,}" in err.message and "reshape" in err.hint


def test_a_shard_whose_global_shape_is_over_the_limits_is_refused(tmp_path: Path) -> None:
    shard = Shard(np.ones([1] * (MAX_NDIM + 1)), (2,) + (1,) * MAX_NDIM, dim=0, part=0, parts=2)
    err = _refused(tmp_path / "ck", {"s": shard})
    assert err.message.startswith("s: shape [2, 1, ") and f"has {MAX_NDIM + 1} dimensions" in err.message


def test_the_limits_themselves_are_accepted(tmp_path: Path) -> None:
    res = save(tmp_path / "ck", {"deep": np.ones([1] * MAX_NDIM), "wide": np.empty((0, MAX_DIM), np.uint8)},
               step=1)
    assert res.path.name == "step-0000000001"


def test_the_stream_writers_blocks_are_held_to_the_limits(tmp_path: Path) -> None:
    from fabric_hpc.checkpoint.interop.stream import StreamWriter
    blocks_read: list[int] = []

    def blocks():
        blocks_read.append(1)
        yield np.ones(1, np.float32)
    with pytest.raises(CheckpointError, match=r"^odd: shape \[1, .* has 33 dimensions"):
        with StreamWriter(tmp_path / "ck", step=1) as w:
            w.add_blocks("odd", (1,) * (MAX_NDIM + 1), "float32", blocks())
    assert blocks_read == [] and not list((tmp_path / "ck").glob("step-*"))
