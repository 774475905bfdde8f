"""Streaming save: a checkpoint written one tensor at a time through the one commit path.

:func:`fabric_hpc.checkpoint.save` takes the whole state at once; importers and converters hold
one tensor at a time instead. :class:`StreamWriter` uses the same pieces as ``save`` (the
temporary directory and leftover cleanup of ``_begin``, ``plan``/``write_pieces`` for chunk files
with CRC-32C, ``_commit`` for the manifest, fsyncs, rename and ``latest``), so a streamed
checkpoint is indistinguishable from a saved one, and one that fails leaves nothing visible.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fabric_hpc.checkpoint import chunk_plan, fsio, writer
from fabric_hpc.checkpoint.errors import CheckpointError
from fabric_hpc.checkpoint.format import MAX_PART, SplitInfo, check_name, chunk_key, stored_dtype
from fabric_hpc.checkpoint.reader import Checkpoint
from fabric_hpc.checkpoint.tensors import HostArray


class StreamWriter:
    """Write checkpoint ``step`` under ``root`` tensor by tensor; commit on a clean exit.

    >>> with StreamWriter("ckpts", step=0, metadata={"source": "hf"}) as w:   # doctest: +SKIP
    ...     for name, tensor in tensors():
    ...         w.add(name, tensor)
    >>> w.result.path                                                         # doctest: +SKIP

    An exception inside the block (or a failing commit) removes the temporary directory: no
    ``step-N`` appears and ``latest`` is untouched.
    """

    def __init__(self, root: Path | str, *, step: int, layout: Mapping[str, Any] | None = None,
                 tags: list[str] | tuple[str, ...] | None = (), metadata: Mapping[str, Any] | None = None,
                 world_size: int = 1, threads: int = writer.DEFAULT_THREADS) -> None:
        writer.check_header(step, layout, tags, metadata)
        self.root, self.step, self.threads = Path(root), step, threads
        self.header = writer.save_header(step, world_size, layout, tags, metadata)
        self.metas: dict[str, dict] = {}
        self.written: dict[str, list[dict]] = {}
        self.tmp: Path | None = None
        self.result: writer.SaveResult | None = None
        self._t0 = 0.0
        self._lock = threading.Lock()

    def __enter__(self) -> StreamWriter:
        self._t0 = time.perf_counter()
        self._made_root = not self.root.exists()
        tmp, self.cleaned = writer._begin(self.root, self.step)
        self.tmp = Path(tmp)
        return self

    def add(self, name: str, value: Any, *, split: SplitInfo | None = None,
            chunk_shape: list[int] | None = None) -> None:
        """Write tensor ``name`` now (numpy array, torch tensor or :class:`HostArray`); ``split``
        records a tensor-parallel layout (one chunk file per part), as in ``save(splits=...)``.
        Several threads may add different tensors at once."""
        if self.tmp is None:
            raise CheckpointError("StreamWriter.add outside its `with` block")
        with self._lock:
            if name in self.metas or name in self.written:
                raise CheckpointError(f"tensor {name!r} written twice")
            self.written[name] = []  # claimed
        metas, pieces = chunk_plan.plan({name: value}, 0, 1, {name: chunk_shape} if chunk_shape else None,
                                    {name: split} if split else None)
        # fsync'd together before the commit (as save does), not one tensor at a time
        written = writer.write_pieces(self.tmp, pieces, self.threads, metas, fsync=False)
        with self._lock:
            self.metas.update(metas)
            for key, entries in written.items():
                self.written.setdefault(key, []).extend(entries)

    def add_blocks(self, name: str, shape: tuple[int, ...], dtype: str, blocks: Iterable[np.ndarray]) -> None:
        """Write tensor ``name`` (logical ``dtype``, not split: one chunk file) from blocks of its
        rows in order, in the stored dtype, so it is never whole in memory."""
        if self.tmp is None:
            raise CheckpointError("StreamWriter.add_blocks outside its `with` block")
        check_name(name)
        chunk_plan.check_shape(name, list(shape))  # before writing any block
        stored = stored_dtype(dtype)
        meta = chunk_plan.chunk_meta(name, list(shape), dtype, stored.name, [max(1, s) for s in shape], None)
        with self._lock:
            if name in self.metas or name in self.written:
                raise CheckpointError(f"tensor {name!r} written twice")
            self.written[name] = []
        fsio.make_dirs(self.tmp / name)
        index = [0] * len(shape)
        nbytes, crc = fsio.write_blocks(self.tmp / name / chunk_key(index), blocks, fsync=False)
        if nbytes != math.prod(shape) * stored.itemsize:
            raise CheckpointError(f"{name}: {nbytes} bytes written, shape {list(shape)} needs "
                                  f"{math.prod(shape) * stored.itemsize}")
        writer.write_array_json(self.tmp, meta)
        with self._lock:
            self.metas[name] = meta
            self.written[name] = [{"index": index, "nbytes": nbytes, "crc32c": crc}]

    def _discard(self) -> None:
        """Remove the temporary directory, and the root too when this writer created it and
        nothing but its lock file is in it (a failed import leaves no trace)."""
        assert self.tmp is not None
        fsio.remove_tree(self.tmp)
        if self._made_root and {e.name for e in self.root.iterdir()} <= {".lock"}:
            (self.root / ".lock").unlink(missing_ok=True)
            self.root.rmdir()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            self._discard()
            return
        try:
            fsio.fsync_paths([self.tmp / name / chunk_key(c["index"]) for name, cs in self.written.items() for c in cs]
                             + [self.tmp / name / "zarr.json" for name, cs in self.written.items()
                                if any(not any(c["index"]) for c in cs)])
            final = writer._commit(self.root, self.tmp, self.header, [(self.metas, self.written)])
        except BaseException:
            self._discard()
            raise
        nbytes = sum(c["nbytes"] for cs in self.written.values() for c in cs)
        self.result = writer.SaveResult(final, self.step, nbytes, time.perf_counter() - self._t0, self.cleaned)
        writer.saved_event(final, self.step, nbytes, tier="direct", seconds=self.result.seconds,
                           world_size=self.header["world_size"], nodes=None)


def read_stored(ckpt: Checkpoint, name: str,
                region: tuple[tuple[int, int], ...] | None = None) -> HostArray:
    """Tensor ``name`` (or a region of it) in its stored form (bf16/fp8 as unsigned views), CRC
    checked for every chunk read whole. Call inside ``store.reading(ckpt.ref)``."""
    entry = ckpt.entry(name)
    region = region or tuple((0, s) for s in entry.shape)
    ckpt.check_on_disk(entry, region)  # a manifest declaring a huge tensor fails here, not in np.empty
    data = np.empty(tuple(hi - lo for lo, hi in region), stored_dtype(entry.dtype))
    ckpt._read_region(entry, region, data)
    return HostArray(data, entry.dtype)


def imported_name(key: str, prefix: str | None, *, source: str) -> str:
    """The checkpoint name of an imported tensor ``key`` (under ``prefix``), checked like a saved one.
    A key keeps its dots (one flat name) unless it is not valid as one name part (too long): then
    it is cut at dots into parts (:func:`_cut_at_dots`), as ``export-hf`` joins a nested name's parts."""
    cut = "/".join(_cut_at_dots(part) or part for part in key.split("/"))
    name = f"{prefix.strip('/')}/{cut}" if prefix else cut
    if prefix:
        try:
            check_name(prefix.strip("/"))
        except CheckpointError as exc:
            raise CheckpointError(f"prefix {prefix!r} is not a valid tensor name: {exc.message}",
                                  hint="give a prefix of parts made of letters, digits, '_', '.', '-' joined "
                                       "by '/' (e.g. model)") from None
    try:
        check_name(name)
    except CheckpointError as exc:
        raise CheckpointError(f"{source} key {key!r} is not a valid tensor name: {exc.message}",
                              hint="rename the key: its parts (between '/', or cut at '.' when too long) "
                                   "must be letters, digits, '_', '.', '-', at most 200 characters, "
                                   "not starting with '.', '-' or '__', not 'c' or 'zarr.json'") from None
    return name


def _cut_at_dots(part: str) -> str | None:
    """``part``, when it is not a valid name part (over the 200 characters one holds, or e.g.
    ``zarr.json``), cut at dots into valid name parts joined by '/', each as long as it can be
    from the left; None when it is valid as it is or cannot be cut into valid parts."""
    segs = part.split(".")

    def valid(i: int, j: int) -> bool:
        try:
            return len(check_name(".".join(segs[i:j]))) == 1
        except CheckpointError:
            return False
    if valid(0, len(segs)):
        return None
    ok = [False] * len(segs) + [True]  # ok[i]: segs[i:] can be cut into valid parts
    for i in range(len(segs) - 1, -1, -1):
        # a part of more than MAX_PART + 1 pieces is over MAX_PART characters (each adds a dot)
        ok[i] = any(ok[j] and valid(i, j) for j in range(i + 1, min(len(segs), i + MAX_PART + 1) + 1))
    if not ok[0]:
        return None
    out, i = [], 0
    while i < len(segs):
        j = next(j for j in range(min(len(segs), i + MAX_PART + 1), i, -1) if ok[j] and valid(i, j))
        out.append(".".join(segs[i:j]))
        i = j
    return "/".join(out)
