"""Offline resharding: rewrite a checkpoint so every split tensor is laid out for N ranks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from fabric_hpc.checkpoint.errors import CheckpointError
from fabric_hpc.checkpoint.format import SplitInfo, stored_dtype, unflatten
from fabric_hpc.checkpoint.reader import open_checkpoint
from fabric_hpc.checkpoint.restore import entry_nbytes
from fabric_hpc.checkpoint.store import reading
from fabric_hpc.checkpoint.tensors import HostArray, check_mesh
from fabric_hpc.checkpoint.writer import SaveResult, save


#: far more ranks than any job runs (a value beyond it is a typo, and each part is a chunk file)
MAX_WORLD_SIZE = 1 << 20


def reshard(path: Path | str, out_root: Path | str, world_size: int, *, step: int | None = None,
            mesh: tuple[int, ...] | None = None, progress: Callable[[int], None] | None = None) -> SaveResult:
    """Write checkpoint ``path`` to ``out_root`` with split tensors chunked for ``world_size``
    parts (one chunk file per rank), same step and metadata. A tensor split over as many
    dimensions as ``mesh`` has (product = ``world_size``) is laid out as blocks of that mesh;
    every other split tensor is split along its first split dimension. Holds one copy of the state."""
    if not 1 <= world_size <= MAX_WORLD_SIZE:
        raise CheckpointError(f"--to-world-size must be in 1..{MAX_WORLD_SIZE:,}, got {world_size}")
    check_mesh(mesh, world_size)
    ckpt = open_checkpoint(path, step)
    state, splits = {}, {}
    with reading(ckpt.ref):
        for name in ckpt.names:
            entry = ckpt.entry(name)
            ckpt.check_on_disk(entry)  # sizes on disk match before allocating
            data = np.empty(entry.shape, stored_dtype(entry.dtype))
            ckpt._read_region(entry, tuple((0, s) for s in entry.shape), data)
            state[name] = HostArray(data, entry.dtype)
            if entry.split is not None:
                dims = entry.split.dims
                splits[name] = SplitInfo.of(dims, mesh) if mesh is not None and len(mesh) == len(dims) \
                    else SplitInfo.of(dims[:1], [world_size])
            if progress:
                progress(entry_nbytes(ckpt, name))
    m = ckpt.manifest
    return save(out_root, unflatten(state), step=m.step, layout={**m.layout, "resharded_from": m.world_size},
                tags=m.tags, metadata=m.user_metadata, splits=splits, record_world_size=world_size)
