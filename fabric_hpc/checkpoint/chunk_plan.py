"""Which chunk files a rank writes: each tensor's metadata (shape, dtypes, chunk grid, split) and its
chunk pieces (a whole tensor on its chunk grid, or one rank's :class:`~fabric_hpc.checkpoint.tensors.Shard`
part), edge chunks padded as zarr stores them; shapes a checkpoint cannot hold are refused here, before
anything is written (:mod:`~fabric_hpc.checkpoint.writer` writes the pieces and commits)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fabric_hpc.checkpoint.errors import CheckpointError
from fabric_hpc.checkpoint.format import MAX_DIM, MAX_NDIM, SplitInfo, flatten, grid_shape
from fabric_hpc.checkpoint.tensors import Shard, host_view


@dataclass
class Piece:
    """One chunk file to write: ``name``'s chunk at grid ``index``, ``pad`` zero bytes after ``data``."""

    name: str
    index: list[int]
    data: np.ndarray
    pad: int


def chunk_meta(name: str, shape: list[int], logical: str, stored: str, chunk_shape: list[int],
               split: SplitInfo | None) -> dict[str, Any]:
    return {"path": name, "shape": shape, "dtype": logical, "stored_dtype": stored,
            "chunk_shape": chunk_shape, "split": split.model_dump() if split else None}


def plan(state: Mapping[str, Any] | list[tuple[str, Any]], rank: int, world: int,
         chunk_shapes: Mapping[str, list[int]] | None = None,
         splits: Mapping[str, SplitInfo] | None = None) -> tuple[dict[str, dict], list[Piece]]:
    """This rank's tensor metadata and the chunk pieces it must write (``state``: nested dicts, or
    the (name, tensor) pairs :func:`values.split_state` gives)."""
    metas: dict[str, dict] = {}
    pieces: list[Piece] = []
    replicated = 0
    for name, value in (state if isinstance(state, list) else flatten(state)):
        if isinstance(value, Shard):
            metas[name], piece = _plan_shard(name, value)
            if piece is not None:
                pieces.append(piece)
            continue
        owner = replicated % world
        replicated += 1
        arr, logical = host_view(value, name)
        check_shape(name, list(arr.shape))
        split = (splits or {}).get(name)
        if split is not None and split.problems(arr.ndim):
            raise CheckpointError(f"{name}: {split.problems(arr.ndim)[0]}")
        chunks = list((chunk_shapes or {}).get(name) or
                      (split.chunk_shape(arr.shape) if split else [max(1, s) for s in arr.shape]))
        if len(chunks) != arr.ndim or any(not isinstance(c, int) or c < 1 for c in chunks):
            raise CheckpointError(f"{name}: chunk shape {chunks} does not fit shape {list(arr.shape)}")
        if split is not None and chunks != split.chunk_shape(arr.shape):
            raise CheckpointError(f"{name}: chunk shape {chunks} does not match its split (dim {split.dim}, "
                                  f"parts {split.parts}: chunk shape {split.chunk_shape(arr.shape)})",
                                  hint="give the split alone (it sets the chunk shape), or no split")
        metas[name] = chunk_meta(name, list(arr.shape), logical, arr.dtype.name, chunks, split)
        if owner == rank:
            pieces.extend(grid_pieces(name, arr, chunks))
    return metas, pieces


def check_shape(name: str, shape: list[int]) -> None:
    """Refuse, before anything is written, a tensor shape a checkpoint cannot hold (the limits a
    reader checks a manifest against: format.MAX_NDIM dimensions of at most format.MAX_DIM)."""
    if len(shape) > MAX_NDIM:
        raise CheckpointError(f"{name}: shape {shape} has {len(shape)} dimensions; a checkpoint tensor has "
                              f"at most {MAX_NDIM}",
                              hint=f"reshape it to at most {MAX_NDIM} dimensions before saving (e.g. merge "
                                   "size-1 or trailing dimensions) and back after restoring")
    for dim, size in enumerate(shape):
        if size > MAX_DIM:
            raise CheckpointError(f"{name}: dimension {dim} of shape {shape} is {size:,}, over the limit of "
                                  f"{MAX_DIM:,} per dimension",
                                  hint="reshape it so that no dimension is longer (e.g. split that dimension "
                                       "in two) before saving")


def _plan_shard(name: str, shard: Shard) -> tuple[dict, Piece | None]:
    arr, logical = host_view(shard.data, name)
    shape = list(shard.global_shape)
    check_shape(name, shape)
    region = shard.region()
    want = [hi - lo for lo, hi in region]
    if list(arr.shape) != want:
        raise CheckpointError(f"{name}: part {list(shard.grid_part)} of {list(shard.grid_parts)} along dim "
                              f"{list(shard.dims)} must have shape {want}, got {list(arr.shape)}",
                              hint="split with torch.chunk semantics (Shard.of does this)")
    split = SplitInfo.of(shard.dims, shard.grid_parts)
    chunks = split.chunk_shape(shape)
    meta = chunk_meta(name, shape, logical, arr.dtype.name, chunks, split)
    if 0 in shape or 0 in want:
        return meta, None
    index = [0] * len(shape)
    for d, i in zip(shard.dims, shard.grid_part):
        index[d] = i
    return meta, _padded_piece(name, index, arr, chunks)


def grid_pieces(name: str, arr: np.ndarray, chunks: list[int]) -> list[Piece]:
    """The chunk files of a whole tensor on the grid ``chunks`` (edge chunks padded as zarr stores them)."""
    if 0 in arr.shape:
        return []
    out = []
    for index in np.ndindex(*grid_shape(list(arr.shape), chunks)):
        sel = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, chunks))
        out.append(_padded_piece(name, list(index), arr[sel], chunks))
    return out


def _padded_piece(name: str, index: list[int], arr: np.ndarray, chunks: list[int]) -> Piece:
    """Zarr stores edge chunks full-size: pad at the end when only dim 0 is short, else copy."""
    if list(arr.shape) == chunks or arr.ndim == 0:
        return Piece(name, index, np.ascontiguousarray(arr), 0)
    if list(arr.shape[1:]) == chunks[1:]:
        pad = (chunks[0] - arr.shape[0]) * math.prod(chunks[1:]) * arr.dtype.itemsize
        return Piece(name, index, np.ascontiguousarray(arr), pad)
    full = np.zeros(chunks, arr.dtype)
    full[tuple(slice(0, s) for s in arr.shape)] = arr
    return Piece(name, index, full, 0)
