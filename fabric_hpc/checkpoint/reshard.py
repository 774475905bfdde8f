"""Offline resharding: rewrite a checkpoint so every split tensor is laid out for N ranks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from fabric_hpc.checkpoint.errors import CheckpointError, CheckpointMemoryError, CheckpointStepAppearedError
from fabric_hpc.checkpoint.format import Manifest, SplitInfo, stored_dtype
from fabric_hpc.checkpoint.reader import Checkpoint, open_checkpoint
from fabric_hpc.checkpoint.restore import entry_nbytes, require_readable
from fabric_hpc.checkpoint.store import reading, removed_on_failure, step_dir_name
from fabric_hpc.checkpoint.tensors import HostArray, check_mesh
from fabric_hpc.errors import FabricError
from fabric_hpc.checkpoint.stream import save_stream
from fabric_hpc.checkpoint.writer import SaveResult


#: far more ranks than any job runs (a value beyond it is a typo, and each part is a chunk file)
MAX_WORLD_SIZE = 1 << 20


def reshard(path: Path | str, out_root: Path | str, world_size: int, *, step: int | None = None,
            mesh: tuple[int, ...] | None = None, progress: Callable[[int], None] | None = None) -> SaveResult:
    """Write checkpoint ``path`` to ``out_root`` with split tensors chunked for ``world_size``
    parts (one chunk file per rank), same step and metadata. A tensor split over as many
    dimensions as ``mesh`` has (product = ``world_size``) is laid out as blocks of that mesh;
    every other split tensor is split along its first split dimension. Streams: reads, writes and
    drops one tensor at a time, so it needs about the largest tensor's size in memory (twice that
    when comparing with a step already in ``out_root``).

    The manifest's ``layout`` is kept as the source's plus ``resharded_from`` (its world size):
    its keys describe the tensors' content (e.g. ``tp`` rows ordered for that many ranks by
    ``convert``), which rechunking does not change; ``world_size`` and each tensor's ``split``
    describe the new chunking.

    Rerun-safe (a requeued job): when ``out_root`` already holds the step, it is compared with
    what this reshard would write (metadata, split layout, every tensor's bytes, its chunk
    checksums verified); the same reshard is kept as is (``SaveResult.existing``), anything else
    is refused with a CheckpointError naming the difference."""
    if not 1 <= world_size <= MAX_WORLD_SIZE:
        raise CheckpointError(f"--to-world-size must be in 1..{MAX_WORLD_SIZE:,}, got {world_size}")
    check_mesh(mesh, world_size)
    t0 = time.perf_counter()
    ckpt = open_checkpoint(path, step)
    check_out_apart(path, out_root)
    _check_mesh_fits(ckpt.manifest, mesh)
    with reading(ckpt.ref):
        require_readable(ckpt)
        m = ckpt.manifest
        splits = {name: _new_split(ckpt.entry(name).split.dims, mesh, world_size)
                  for name in ckpt.names if ckpt.entry(name).split is not None}
        layout = {**m.layout, "resharded_from": m.world_size}
        dest = Path(out_root) / step_dir_name(m.step)
        if os.path.lexists(dest):
            return _existing(dest, ckpt, splits, layout, world_size, t0)
        try:
            with removed_on_failure(out_root):
                return save_stream(out_root, _tensors(ckpt, progress), step=m.step, layout=layout,
                                   tags=m.tags, metadata=m.user_metadata, splits=splits,
                                   record_world_size=world_size, values=m.values)
        except CheckpointStepAppearedError as exc:  # a concurrent reshard committed first
            if not dest.exists():
                raise
            return _existing(dest, ckpt, splits, layout, world_size, t0, exc)


def _new_split(dims: tuple[int, ...] | list[int], mesh: tuple[int, ...] | None, world_size: int) -> SplitInfo:
    """A split tensor's layout for ``world_size``: blocks of ``mesh`` when it has one factor per split
    dimension, else split along its first split dimension."""
    return SplitInfo.of(dims, mesh) if mesh is not None and len(mesh) == len(dims) \
        else SplitInfo.of(dims[:1], [world_size])


def _tensors(ckpt: Checkpoint, progress: Callable[[int], None] | None) -> Iterator[tuple[str, HostArray]]:
    """Each tensor of ``ckpt`` read whole, one at a time (the stream writer writes and drops it
    before asking for the next: peak memory is about the largest tensor, not the checkpoint)."""
    for name in ckpt.names:
        yield name, HostArray(_read_whole(ckpt, name), ckpt.entry(name).dtype)
        if progress:
            progress(entry_nbytes(ckpt, name))


def _existing(dest: Path, ckpt: Checkpoint, splits: dict[str, SplitInfo], layout: dict, world_size: int,
              t0: float, raced: CheckpointStepAppearedError | None = None) -> SaveResult:
    """The result for a ``dest`` already there (a rerun, or a concurrent reshard that committed first):
    kept when it is exactly this reshard, else a CheckpointError naming the difference."""
    _check_same_reshard(dest, ckpt, splits, layout, world_size, raced)
    return SaveResult(dest, ckpt.manifest.step, open_checkpoint(dest).manifest.nbytes,
                      time.perf_counter() - t0, existing=True)


def check_out_apart(source: Path | str, out_root: Path | str) -> None:
    """CheckpointError when ``out_root`` is the checkpoint being read, lies inside it, or holds it
    (compared after resolving symlinks): a reshard written there would meet the source's own step
    and could only be refused with advice to delete the one copy."""
    src, out = Path(os.path.realpath(source)), Path(os.path.realpath(out_root))
    if out == src:
        why = "is the checkpoint being read"
    elif src in out.parents:
        why = f"is inside the checkpoint being read ({source})"
    elif out in src.parents:
        why = f"holds the checkpoint being read ({source})"
    else:
        return
    raise CheckpointError(f"--out {out_root} {why}; the reshard would be written over its source",
                          hint="give another directory as --out (a new checkpoint root)")


def _check_mesh_fits(m: Manifest, mesh: tuple[int, ...] | None) -> None:
    """A mesh that fits no split tensor (one factor per split dimension) would be ignored, every
    tensor split along its first dimension instead: refused, naming the split dims there are."""
    if mesh is None:
        return
    dims = {name: e.split.dims for name, e in m.tensors.items() if e.split is not None}
    if dims and not any(len(d) == len(mesh) for d in dims.values()):
        shown = ", ".join(f"{n} over dims {d}" for n, d in list(dims.items())[:3])
        want = " or ".join(str(c) for c in sorted({len(d) for d in dims.values()}))
        raise CheckpointError(
            f"--mesh {'x'.join(map(str, mesh))} has {len(mesh)} dimensions, but no tensor of this checkpoint is "
            f"split over {len(mesh)} dimensions ({shown}): the mesh would be ignored",
            hint=f"give one mesh factor per split dimension ({want} here, multiplying to the world size), "
                 "or drop --mesh to split along the first split dimension")


def _read_whole(ckpt: Checkpoint, name: str) -> np.ndarray:
    """Tensor ``name`` in its stored dtype, every chunk read whole (so its crc32c is checked)."""
    entry = ckpt.entry(name)
    ckpt.check_on_disk(entry)  # sizes on disk match before allocating
    try:
        data = np.empty(entry.shape, stored_dtype(entry.dtype))
    except MemoryError:
        raise out_of_memory(name, entry_nbytes(ckpt, name), "reshard") from None
    ckpt._read_region(entry, tuple((0, s) for s in entry.shape), data)
    return data


def _check_same_reshard(dest: Path, ckpt: Checkpoint, splits: dict[str, SplitInfo], layout: dict,
                        world_size: int, raced: CheckpointStepAppearedError | None = None) -> None:
    """CheckpointError unless ``dest`` is exactly the reshard of ``ckpt`` for ``world_size``
    (``raced``: the commit race that found it, whose fix is kept when it is not)."""
    src = ckpt.manifest
    try:
        why = _reshard_difference(dest, ckpt, splits, layout, world_size)
    except FabricError as exc:
        why = f"it cannot be read: {exc.message}"
    if why is not None:
        during = " (written by another save during this reshard)" if raced is not None else ""
        raise CheckpointError(f"{dest.parent} already holds step {src.step}{during}, which is not this "
                              f"reshard ({why})",
                              hint=f"write it to a new --out directory (or delete {dest} if it is not needed)")


def _reshard_difference(dest: Path, ckpt: Checkpoint, splits: dict[str, SplitInfo], layout: dict,
                        world_size: int) -> str | None:
    """What differs between ``dest`` and the reshard (None: nothing; chunk checksums verified).
    Compares one tensor at a time (the source's and ``dest``'s copies of it in memory)."""
    src = ckpt.manifest
    with open_checkpoint(dest) as ck:
        m = ck.manifest
        header = [("world size", m.world_size, world_size), ("layout", m.layout, layout),
                  ("tags", m.tags, src.tags), ("metadata", m.user_metadata, src.user_metadata),
                  ("non-tensor values", m.values, src.values),
                  ("tensors", sorted(m.tensors), sorted(ckpt.names))]
        for what, got, want in header:
            if got != want:
                return f"its {what} {got!r} differs from {want!r}"
        for name in ckpt.names:
            entry, source = ck.entry(name), ckpt.entry(name)
            if entry.dtype != source.dtype or entry.shape != source.shape or entry.split != splits.get(name):
                return f"tensor {name!r} is {entry.dtype} {entry.shape} split {entry.split}"
            # byte views of flat copies: a 0-d array (a step counter) cannot change its dtype's itemsize
            got, want = _read_whole(ck, name).reshape(-1), _read_whole(ckpt, name).reshape(-1)
            if not _same_bytes(got.view(np.uint8), want.view(np.uint8)):
                return f"tensor {name!r} holds other values"
            del got, want
    return None


def _same_bytes(a: np.ndarray, b: np.ndarray, block: int = 1 << 24) -> bool:
    """``a`` and ``b`` (flat uint8) are equal, compared block by block (no whole-size bool array)."""
    return a.size == b.size and all(np.array_equal(a[i:i + block], b[i:i + block])
                                    for i in range(0, a.size, block))


def out_of_memory(name: str, nbytes: int, what: str, holds: str = "about one tensor, the largest,"
                  ) -> CheckpointMemoryError:
    """The error for a tensor that did not fit in memory (``what``: the command reading it, which
    ``holds`` that much at a time)."""
    return CheckpointMemoryError(
        f"tensor {name!r} ({nbytes:,} bytes) does not fit in this process's memory ({what} holds {holds} "
        "at a time)",
        hint="run it with more memory: a larger --mem (or --mem-per-cpu) in the sbatch script, a host with "
             "more free memory, or a higher ulimit -v")
