"""Run a convert: every output tensor streamed, block by block, into a new checkpoint.

Memory: tensors are converted in parallel (:mod:`fabric_hpc.checkpoint.parallel`). An unsplit
tensor that is cast or copied from one whole source is written block by block (never whole in
memory); others are gathered whole. Blocks of source rows and the cast's float32 temporaries
are at most ``block_bytes`` (8 MiB as float32, or 1/16 of the largest tensor when smaller). A
tensor starts only while the tensors in flight hold at most the memory budget (1.1x the largest
tensor by default), so the peak stays within 1.2x the largest tensor (tested).

Every input chunk's CRC-32C is checked before the result is committed: on the way (a whole
read, or a streamed source in order) or by a separate streaming pass; the output goes through
the same atomic commit as a save, with CRCs, and a convert that fails at any point leaves no
new checkpoint behind. Casts and the fp8 layout: :mod:`fabric_hpc.checkpoint.convert.cast`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fabric_hpc.checkpoint import fsio, store
from fabric_hpc.checkpoint.convert.cast import Caster, Workspace, anon
from fabric_hpc.checkpoint.convert.plan import Planner, Spec, scale_name
from fabric_hpc.checkpoint.convert.quant import input_scale_name
from fabric_hpc.checkpoint.convert.quant import fp8_facts
from fabric_hpc.checkpoint.convert.recipe import FP8_DTYPES, Recipe, load_recipe
from fabric_hpc.checkpoint.errors import CheckpointCorruptError
from fabric_hpc.checkpoint.format import chunk_key, stored_dtype
from fabric_hpc.checkpoint.interop.stream import StreamWriter
from fabric_hpc.extras import require
from fabric_hpc.checkpoint.parallel import Item, run_bounded
from fabric_hpc.checkpoint.reader import Checkpoint, open_checkpoint
from fabric_hpc.checkpoint.tensors import HostArray

BLOCK_BYTES = 8 << 20  # rows per cast block, measured as float32 (at most; 1/16 of the largest tensor)
MIN_BLOCK_BYTES = 256 << 10
TRANSPOSE_BYTES = 4 << 20  # source rows read at a time for a transposed tensor
DEFAULT_WORKERS = 4
Progress = Callable[[int], None]


@dataclass
class ConvertReport:
    """What a convert wrote; ``tensors`` has one row per output tensor (with the cast error)."""

    path: Path
    step: int
    nbytes: int
    seconds: float
    tensors: list[dict[str, Any]] = field(default_factory=list)
    parallel: dict[str, int] = field(default_factory=dict)  # peak_bytes / peak_tensors in flight, budget

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "step": self.step, "bytes": self.nbytes,
                "seconds": round(self.seconds, 3), "parallel": self.parallel, "tensors": self.tensors}


def convert(path: Path | str, out_root: Path | str, recipe: Recipe | Mapping[str, Any] | str | Path, *,
            step: int | None = None, out_step: int | None = None, block_bytes: int | None = None,
            workers: int | None = None, memory_budget: int | None = None,
            progress: Progress | None = None) -> ConvertReport:
    """Convert checkpoint ``path`` (``step`` or latest) with ``recipe`` into ``out_root``.

    ``workers`` threads convert tensors in parallel (default: up to 4), admitting a tensor only
    while the memory the tensors in flight hold stays within ``memory_budget`` bytes (default:
    1.1x the largest input or output tensor, leaving room for the interpreter under the 1.2x
    rule); a tensor over the budget runs alone."""
    t0 = time.perf_counter()
    require("torch", extra="torch", needed_for="checkpoint convert")  # its casts and workers run on torch
    recipe = load_recipe(recipe)
    ckpt = open_checkpoint(path, step)
    ckpt.verify_partial = False  # every source is CRC-checked whole (_verify_source) before it is used
    planner = Planner(ckpt, recipe)
    specs = planner.plan()
    # the fp8 facts are recomputed from what this convert writes (a source's would name old tensors)
    meta = {**{k: v for k, v in ckpt.manifest.user_metadata.items() if k != "quantization"},
            "converted_from": {"path": str(ckpt.path), "step": ckpt.step},
            "recipe": recipe.model_dump(mode="json", exclude_defaults=True)}
    layout = {**ckpt.manifest.layout, **planner.layout} if recipe.tp is None else dict(planner.layout)
    largest = max([_out_bytes(s) for s in specs] + [_entry_bytes(ckpt, n) for n in ckpt.names] + [1])
    block = block_bytes or min(BLOCK_BYTES, max(MIN_BLOCK_BYTES, largest // 16))
    job = _Job(ckpt, block, _self_checked(ckpt, specs), progress)
    items = sorted((Item(s, job.cost(s)) for s in specs), key=lambda it: -it.cost)
    with store.reading(ckpt.ref), StreamWriter(out_root, step=ckpt.step if out_step is None else out_step,
                                               layout=layout, tags=ckpt.manifest.tags, metadata=meta) as w:
        job.writer = w
        with _one_torch_thread() as init:
            done, stats = run_bounded(items, job.one, workers=workers or DEFAULT_WORKERS, initializer=init,
                                      budget=int(1.1 * largest) if memory_budget is None else memory_budget)
        rows = sorted(done, key=lambda r: r["name"])
        # the per-tensor quantisation error travels with the checkpoint (JSON, small)
        errors = {r["name"]: r["rel_rms_error"] for r in rows if "rel_rms_error" in r}
        if errors:
            w.header["user_metadata"]["cast_rel_rms_error"] = errors
        quant = fp8_facts({n: (m["dtype"], list(m["shape"])) for n, m in w.metas.items()})
        if quant is not None:  # what export-hf turns into config.json's quantization_config
            w.header["user_metadata"]["quantization"] = quant
    assert w.result is not None
    return ConvertReport(w.result.path, w.result.step, w.result.nbytes, time.perf_counter() - t0, rows,
                         {"peak_bytes": stats.peak_bytes, "peak_tensors": stats.peak_items,
                          "budget": int(1.1 * largest) if memory_budget is None else memory_budget})


@contextmanager
def _one_torch_thread() -> Iterator[Callable[[], None]]:
    """Workers run torch's casts on one thread each (the parallelism is over tensors; torch's own
    threads on small blocks cost several times the CPU, spinning between blocks). torch keeps the
    count process-wide for new threads, so the caller's setting is put back afterwards."""
    import torch
    before = torch.get_num_threads()
    try:
        yield lambda: torch.set_num_threads(1)
    finally:
        torch.set_num_threads(before)


class _Job:
    """One output tensor per call of :meth:`one` (any thread): check its sources' CRCs once,
    gather and cast its rows, write it (and its fp8 scale)."""

    def __init__(self, ckpt: Checkpoint, block: int, verified: set[str], progress: Progress | None) -> None:
        self.ckpt, self.block, self.verified = ckpt, block, verified
        self.writer: StreamWriter | None = None
        self.locks = {n: threading.Lock() for n in ckpt.names}
        self._progress, self._plock = progress, threading.Lock()

    def cost(self, spec: Spec) -> int:
        """Bytes the tensor holds while converted: the output (unless streamed) and scale, the
        block workspace and the buffer of a separate CRC pass over a source."""
        stream = _stream_mode(self.ckpt, spec)
        n = _out_bytes(spec) if not stream else _out_bytes(spec) - math.prod(spec.shape) * stored_dtype(
            spec.cast.to if spec.cast else spec.dtype).itemsize
        if spec.cast is not None or stream:
            n += Workspace.nbytes(_block_elems(spec, self.block), cast=spec.cast is not None, out=stream,
                                   item=stored_dtype(spec.dtype).itemsize)
        if any(src not in self.verified for src in spec.sources):
            n += self.block
        if spec.cols is not None:
            n += TRANSPOSE_BYTES
        return n

    def one(self, spec: Spec) -> dict[str, Any]:
        ckpt, w = self.ckpt, self.writer
        assert w is not None
        for src in spec.sources:
            with self.locks[src]:
                if src not in self.verified:
                    _verify_source(ckpt, src, self.block)
                    self.verified.add(src)
        row = _write_tensor(ckpt, spec, self.block, w)
        if self._progress:  # source bytes consumed, so a bar over the source's size reaches its end
            with self._plock:
                self._progress(sum((g.hi - g.lo) * _row_bytes(ckpt, g.src) for g in spec.segs if g.src is not None))
        return row


def _entry_bytes(ckpt: Checkpoint, name: str) -> int:
    e = ckpt.entry(name)
    return math.prod(e.shape) * stored_dtype(e.dtype).itemsize


def _out_bytes(spec: Spec) -> int:
    to = spec.cast.to if spec.cast else spec.dtype
    n = math.prod(spec.shape) * stored_dtype(to).itemsize
    if to in FP8_DTYPES:
        n += 4 * (spec.rows if spec.cast is not None and spec.cast.scale == "channel" else 1)
    return n


def _block_elems(spec: Spec, block: int) -> int:
    """Elements of one cast block of ``spec``: whole rows, about ``block`` bytes as float32."""
    row_elems = max(1, math.prod(spec.shape[1:]))
    step = max(1, (block // 4) // row_elems)
    return min(step, spec.rows) * row_elems


def _row_bytes(ckpt: Checkpoint, name: str) -> int:
    e = ckpt.entry(name)
    return math.prod(e.shape[1:]) * stored_dtype(e.dtype).itemsize


def _streamed(ckpt: Checkpoint, spec: Spec) -> str | None:
    """The source of a tensor made of one whole single-chunk tensor, read in order (its CRC-32C
    is computed on the way, block by block, when it is cast or streamed), else None."""
    if len(spec.segs) != 1 or spec.segs[0].src is None or spec.cols is not None:
        return None
    seg, entry = spec.segs[0], ckpt.entry(spec.segs[0].src)
    whole = seg.src_lo == 0 and seg.hi - seg.lo == (entry.shape[0] if entry.shape else 1)
    return seg.src if whole and len(entry.chunks) == 1 and entry.chunk_shape == entry.shape else None


def _self_checked(ckpt: Checkpoint, specs: list[Spec]) -> set[str]:
    """Sources whose CRCs are checked while they are read, so they need no separate pass: every
    use reads them whole into a whole output tensor without a cast (the reader checks each chunk
    it reads whole), or streams them in order (cast or written block by block). Nothing is
    committed before every check has passed."""
    uses: set[str] = set()
    partial: set[str] = set()
    for spec in specs:
        streamed = _streamed(ckpt, spec) if spec.cast is not None or _stream_mode(ckpt, spec) else None
        for seg in spec.segs:
            if seg.src is None:
                continue
            uses.add(seg.src)
            entry = ckpt.entry(seg.src)
            whole = seg.src_lo == 0 and seg.hi - seg.lo == (entry.shape[0] if entry.shape else 1)
            if not whole or spec.cols is not None or (spec.cast is not None and seg.src != streamed):
                partial.add(seg.src)
    return set(uses) - partial


def _verify_source(ckpt: Checkpoint, name: str, block: int) -> None:
    """CRC-32C of every chunk file of ``name``, read through one buffer of at most ``block`` bytes."""
    import os
    entry = ckpt.entry(name)
    buf = anon(min(block, max([c.nbytes for c in entry.chunks] + [1])))
    for c in entry.chunks:
        where = f"{entry.path}/{chunk_key(c.index)}"
        problem = None
        try:
            fd = os.open(ckpt.path / entry.path / chunk_key(c.index), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            problem = "chunk file is missing"
        else:
            try:
                size = os.fstat(fd).st_size
                crc, offset = 0, 0
                while size == c.nbytes and offset < size:
                    piece = buf[:min(buf.size, size - offset)]
                    fsio.read_into(fd, piece, offset)
                    crc = fsio.crc32c(piece, crc)
                    offset += piece.size
                problem = f"{size} bytes, manifest says {c.nbytes}" if size != c.nbytes else \
                    None if crc == c.crc32c else f"crc32c {crc:#010x} != manifest {c.crc32c:#010x}"
            finally:
                os.close(fd)
        if problem:
            raise CheckpointCorruptError(f"damaged chunk {where}: {problem}", problems=[f"{where}: {problem}"],
                                         hint="run `fabric ckpt verify` and convert an older step")


def _fill(ckpt: Checkpoint, spec: Spec, lo: int, hi: int, dest: np.ndarray) -> None:
    """Rows lo:hi of ``spec`` (stored form) into ``dest`` (C-contiguous, hi - lo rows)."""
    if spec.cols is not None:
        _fill_transposed(ckpt, spec, lo, hi, dest)
        return
    if not spec.shape:
        ckpt._read_region(ckpt.entry(spec.segs[0].src), (), dest)  # type: ignore[arg-type]
        return
    trail = tuple((0, s) for s in spec.shape[1:])
    for s in spec.segs:
        a, b = max(lo, s.lo), min(hi, s.hi)
        if a >= b:
            continue
        target = dest[a - lo:b - lo]
        if s.src is None:
            target[...] = 0
        else:
            src_lo = s.src_lo + (a - s.lo)
            ckpt._read_region(ckpt.entry(s.src), ((src_lo, src_lo + b - a), *trail), target)


def _fill_transposed(ckpt: Checkpoint, spec: Spec, lo: int, hi: int, dest: np.ndarray) -> None:
    """Rows lo:hi of a transposed ``spec``: columns of its source rows, read ``TRANSPOSE_BYTES``
    at a time (source rows x the wanted columns) and written transposed into ``dest``."""
    assert spec.cols is not None
    c0 = spec.cols[0]
    dt = stored_dtype(spec.dtype)
    step = max(1, TRANSPOSE_BYTES // max(1, (hi - lo) * dt.itemsize))
    buf = np.empty(min(step, spec.shape[1]) * (hi - lo), dt)
    for s in spec.segs:  # rows s.lo:s.hi of the tensor before the transpose
        if s.src is None:
            dest[:, s.lo:s.hi] = 0
            continue
        for r in range(0, s.hi - s.lo, step):
            r1 = min(s.hi - s.lo, r + step)
            tmp = buf[:(r1 - r) * (hi - lo)].reshape(r1 - r, hi - lo)
            ckpt._read_region(ckpt.entry(s.src), ((s.src_lo + r, s.src_lo + r1), (c0 + lo, c0 + hi)), tmp)
            dest[:, s.lo + r:s.lo + r1] = tmp.T


def _stream_mode(ckpt: Checkpoint, spec: Spec) -> bool:
    """Whether ``spec`` is written block by block, never whole in memory: an unsplit tensor (one
    chunk file) that is cast or copied from one whole source (whose CRC is computed on the way)."""
    return spec.split is None and len(spec.shape) > 0 and 0 not in spec.shape and \
        (spec.cast is not None or _streamed(ckpt, spec) is not None)


def _write_tensor(ckpt: Checkpoint, spec: Spec, block: int, w: StreamWriter) -> dict[str, Any]:
    """Gather (and cast) the rows of ``spec`` and write it, and its fp8 scale; the report row."""
    to = spec.cast.to if spec.cast else spec.dtype
    row: dict[str, Any] = {"name": spec.name, "shape": list(spec.shape), "dtype": to, "from_dtype": spec.dtype,
                           "sources": spec.sources, "bytes": math.prod(spec.shape) * stored_dtype(to).itemsize}
    if spec.notes:
        row["notes"] = spec.notes
    stream = _stream_mode(ckpt, spec)
    if spec.cast is None and not stream:
        out = np.empty(spec.shape, stored_dtype(to))
        _fill(ckpt, spec, 0, spec.rows, out)
        w.add(spec.name, HostArray(out, to), split=spec.split)
        return row
    rd = _BlockReader(ckpt, spec, block, stream)
    caster = Caster(spec, to, rd.work) if spec.cast is not None else None
    if caster is not None and caster.needs_amax:
        for lo, hi in rd.blocks:
            caster.observe(rd.read(lo, hi, True))
    first = caster is None or not caster.needs_amax
    if stream:
        def blocks() -> Iterator[np.ndarray]:
            for lo, hi in rd.blocks:
                src = rd.read(lo, hi, first)
                if caster is None:
                    yield src
                else:
                    dest = rd.work.out[:src.size * stored_dtype(to).itemsize].view(stored_dtype(to))
                    caster.cast(src, dest.reshape(src.shape), lo)
                    yield dest
        w.add_blocks(spec.name, spec.shape, to, blocks())
    else:
        out = np.empty(spec.shape, stored_dtype(to))
        for lo, hi in rd.blocks:
            caster.cast(rd.read(lo, hi, first), out[lo:hi] if spec.shape else out, lo)  # type: ignore[union-attr]
        w.add(spec.name, HostArray(out, to), split=spec.split)
        del out
    rd.check()
    if caster is not None:
        row.update(caster.report())
        scale = caster.scale_array()
        if scale is not None:
            ssplit = spec.split if spec.split is not None and spec.split.dim == 0 and scale.data.ndim else None
            w.add(scale_name(spec.name), scale, split=ssplit)
        if spec.input_scale is not None:
            row["input_scale"] = spec.input_scale
            w.add(input_scale_name(spec.name), HostArray(np.array(spec.input_scale, np.float32), "float32"))
    return row


class _BlockReader:
    """Rows of ``spec`` in blocks of about ``block`` bytes (as float32) through one workspace;
    the CRC-32C of a streamed source is computed on the first pass and checked by :meth:`check`."""

    def __init__(self, ckpt: Checkpoint, spec: Spec, block: int, stream: bool) -> None:
        self.ckpt, self.spec = ckpt, spec
        self.trail = spec.shape[1:]
        elems = _block_elems(spec, block)
        step = max(1, elems // max(1, math.prod(self.trail)))
        self.work = Workspace(elems, cast=spec.cast is not None, out=stream, item=stored_dtype(spec.dtype).itemsize)
        self.blocks = [(lo, min(spec.rows, lo + step)) for lo in range(0, spec.rows, step)]
        self.streamed = _streamed(ckpt, spec)
        self.crc = 0

    def read(self, lo: int, hi: int, first: bool) -> np.ndarray:
        spec, dt = self.spec, stored_dtype(self.spec.dtype)
        shape = ((hi - lo), *self.trail) if spec.shape else ()
        scratch = self.work.src[:math.prod(shape) * dt.itemsize].view(dt).reshape(shape)
        _fill(self.ckpt, spec, lo, hi, scratch)
        if self.streamed is not None and first:
            self.crc = fsio.crc32c(scratch, self.crc)
        return scratch

    def check(self) -> None:
        if self.streamed is None:
            return
        chunk = self.ckpt.entry(self.streamed).chunks[0]
        if self.crc != chunk.crc32c:
            where = f"{self.streamed}/{chunk_key(chunk.index)}"
            raise CheckpointCorruptError(f"damaged chunk {where}: crc32c {self.crc:#010x} != manifest "
                                         f"{chunk.crc32c:#010x}", problems=[f"{where}: checksum mismatch"],
                                         hint="run `fabric ckpt verify` and convert an older step")


__all__ = ["ConvertReport", "convert"]
