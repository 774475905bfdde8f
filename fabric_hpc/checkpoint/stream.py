"""The stream writer: a single-process save fed one tensor at a time (offline reshard, HDF5 import).

:func:`writer.save` takes the whole state at once; :func:`save_stream` takes an iterator of
``(name, tensor)`` pairs and writes each tensor's chunk files before asking for the next, so a
caller that reads tensors lazily holds about one tensor (the largest) in memory, not the whole
checkpoint. It shares :func:`writer.save`'s begin (temporary step directory under the root lock),
its planning and chunk writer, and its commit (manifest, fsyncs, rename, ``latest``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fabric_hpc.checkpoint import fsio, store
from fabric_hpc.checkpoint.errors import CheckpointError
from fabric_hpc.checkpoint.format import SplitInfo, ValueLeaves
from fabric_hpc.checkpoint.chunk_plan import plan
from fabric_hpc.checkpoint.writer import (
    DEFAULT_THREADS, SaveResult, _begin, _commit, check_header, save_header, saved_event, write_pieces,
)


def save_stream(directory: Path | str, tensors: Iterable[tuple[str, Any]], *, step: int,
                layout: Mapping[str, Any] | None = None, tags: list[str] | tuple[str, ...] | None = (),
                metadata: Mapping[str, Any] | None = None,
                chunk_shapes: Mapping[str, list[int]] | None = None,
                splits: Mapping[str, SplitInfo] | None = None, record_world_size: int | None = None,
                threads: int = DEFAULT_THREADS, created_at: str | None = None,
                values: ValueLeaves | None = None) -> SaveResult:
    """Save checkpoint ``step`` from ``tensors`` (flat name -> array/tensor/HostArray pairs, read
    lazily by the caller): each is written and released before the next is taken. The same
    checkpoint :func:`writer.save` writes for the same state; a failure removes the partial step."""
    root = store.as_path(directory, "directory")
    t0 = time.perf_counter()
    check_header(step, layout, tags, metadata)
    tmp_name, cleaned = _begin(root, step)
    tmp = Path(tmp_name)
    metas: dict[str, dict] = {}
    written: dict[str, list[dict]] = {}
    try:
        for name, value in tensors:
            if name in metas:
                raise CheckpointError(f"tensor {name!r} was given twice", hint="give each tensor once")
            meta, pieces = plan([(name, value)], 0, 1, chunk_shapes, splits)
            del value  # the pieces view it; dropped with them below, before the next tensor is read
            metas.update(meta)
            for key, entries in write_pieces(tmp, pieces, threads, meta).items():
                written.setdefault(key, []).extend(entries)
            del pieces
        header = save_header(step, record_world_size or 1, layout, tags, metadata, created_at, values)
        final = _commit(root, tmp, header, [(metas, written)])
    except BaseException:
        fsio.remove_tree(tmp)
        raise
    nbytes = sum(c["nbytes"] for cs in written.values() for c in cs)
    res = SaveResult(final, step, nbytes, time.perf_counter() - t0, cleaned)
    saved_event(final, step, nbytes, tier="direct", seconds=res.seconds,
                world_size=record_world_size or 1, nodes=None)
    return res
