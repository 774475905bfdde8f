"""Run a convert: stream every output tensor, block by block, into a new checkpoint.

Memory: one output tensor at a time plus blocks of source rows of at most ``block_bytes``
(8 MiB as float32) and a few float32 temporaries of the same size while casting, so the peak stays near the largest output tensor (the bound is tested). Every
input chunk's CRC-32C is checked (a streaming pass over the chunk file, bounded memory) before
its rows are used; the output goes through the same atomic commit as a save, with CRCs, and a
convert that fails at any point leaves no new checkpoint behind.

fp8 layout (as vLLM loads fp8 checkpoints, e.g. ``CompressedTensorsW8A8Fp8.create_weights`` in
vllm/model_executor/layers/quantization/compressed_tensors/schemes/compressed_tensors_w8a8_fp8.py):
the weight is stored as float8 with its original name and shape, and a float32
``<name>_scale`` sits beside it: a scalar (per tensor) or ``[rows, 1]`` (per output channel);
the dequantised weight is ``weight.float() * weight_scale``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fabric_hpc.checkpoint import fsio, store
from fabric_hpc.checkpoint.convert.plan import Planner, Spec, scale_name
from fabric_hpc.checkpoint.convert.recipe import FP8_DTYPES, Recipe, load_recipe
from fabric_hpc.checkpoint.errors import CheckpointCorruptError, CheckpointError
from fabric_hpc.checkpoint.format import chunk_key, stored_dtype
from fabric_hpc.checkpoint.interop.stream import StreamWriter
from fabric_hpc.checkpoint.reader import Checkpoint, open_checkpoint
from fabric_hpc.checkpoint.tensors import HostArray

BLOCK_BYTES = 8 << 20  # rows per cast block, measured as float32
Progress = Callable[[int], None]


@dataclass
class ConvertReport:
    """What a convert wrote; ``tensors`` has one row per output tensor (with the cast error)."""

    path: Path
    step: int
    nbytes: int
    seconds: float
    tensors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "step": self.step, "bytes": self.nbytes,
                "seconds": round(self.seconds, 3), "tensors": self.tensors}


def convert(path: Path | str, out_root: Path | str, recipe: Recipe | Mapping[str, Any] | str | Path, *,
            step: int | None = None, out_step: int | None = None, block_bytes: int = BLOCK_BYTES,
            progress: Progress | None = None) -> ConvertReport:
    """Convert checkpoint ``path`` (``step`` or latest) with ``recipe`` into ``out_root``."""
    t0 = time.perf_counter()
    recipe = load_recipe(recipe)
    ckpt = open_checkpoint(path, step)
    planner = Planner(ckpt, recipe)
    specs = planner.plan()
    rows: list[dict[str, Any]] = []
    meta = {**ckpt.manifest.user_metadata,
            "converted_from": {"path": str(ckpt.path), "step": ckpt.step},
            "recipe": recipe.model_dump(mode="json", exclude_defaults=True)}
    layout = {**ckpt.manifest.layout, **planner.layout} if recipe.tp is None else dict(planner.layout)
    verified = _self_checked(ckpt, specs)
    work = _Workspace(block_bytes)
    with store.reading(ckpt.ref), StreamWriter(out_root, step=ckpt.step if out_step is None else out_step,
                                               layout=layout, tags=ckpt.manifest.tags, metadata=meta) as w:
        for spec in specs:
            for src in spec.sources:
                if src not in verified:
                    _verify_source(ckpt, src, work)
                    verified.add(src)
            out, scale, row = _materialize(ckpt, spec, work, _streamed(ckpt, spec))
            w.add(spec.name, out, split=spec.split)
            if scale is not None:
                ssplit = spec.split if spec.split is not None and spec.split.dim == 0 and scale.data.ndim else None
                w.add(scale_name(spec.name), scale, split=ssplit)
            rows.append(row)
            del out, scale
            if progress:  # source bytes consumed, so a bar over the source's size reaches its end
                progress(sum((g.hi - g.lo) * _row_bytes(ckpt, g.src) for g in spec.segs if g.src is not None))
        # the per-tensor quantisation error travels with the checkpoint (JSON, small)
        errors = {r["name"]: r["rel_rms_error"] for r in rows if "rel_rms_error" in r}
        if errors:
            w.header["user_metadata"]["cast_rel_rms_error"] = errors
    assert w.result is not None
    return ConvertReport(w.result.path, w.result.step, w.result.nbytes, time.perf_counter() - t0, rows)


def _row_bytes(ckpt: Checkpoint, name: str) -> int:
    e = ckpt.entry(name)
    return math.prod(e.shape[1:]) * stored_dtype(e.dtype).itemsize


def _streamed(ckpt: Checkpoint, spec: Spec) -> str | None:
    """The source of a cast that reads one whole single-chunk tensor in order (its CRC-32C is
    computed on the way, block by block), else None."""
    if spec.cast is None or len(spec.segs) != 1 or spec.segs[0].src is None:
        return None
    seg, entry = spec.segs[0], ckpt.entry(spec.segs[0].src)
    whole = seg.src_lo == 0 and seg.hi - seg.lo == (entry.shape[0] if entry.shape else 1)
    return seg.src if whole and len(entry.chunks) == 1 and entry.chunk_shape == entry.shape else None


def _self_checked(ckpt: Checkpoint, specs: list[Spec]) -> set[str]:
    """Sources whose CRCs are checked while they are read, so they need no separate pass: every
    use reads them whole without a cast (the reader checks each chunk it reads whole), or one
    cast streams them in order. Nothing is committed before every check has passed."""
    uses: set[str] = set()
    partial: set[str] = set()
    for spec in specs:
        streamed = _streamed(ckpt, spec)
        for seg in spec.segs:
            if seg.src is None:
                continue
            uses.add(seg.src)
            entry = ckpt.entry(seg.src)
            whole = seg.src_lo == 0 and seg.hi - seg.lo == (entry.shape[0] if entry.shape else 1)
            if not whole or (spec.cast is not None and seg.src != streamed):
                partial.add(seg.src)
    return set(uses) - partial


def _verify_source(ckpt: Checkpoint, name: str, work: _Workspace) -> None:
    """CRC-32C of every chunk file of ``name``, read through the workspace buffer (no allocation)."""
    import os
    entry = ckpt.entry(name)
    work.reserve(work.elems)
    buf = work.src
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


def _materialize(ckpt: Checkpoint, spec: Spec, work: _Workspace,
                 streamed: str | None = None) -> tuple[HostArray, HostArray | None, dict]:
    src_dt = stored_dtype(spec.dtype)
    to = spec.cast.to if spec.cast else spec.dtype
    out = np.empty(spec.shape, stored_dtype(to))
    row = {"name": spec.name, "shape": list(spec.shape), "dtype": to, "from_dtype": spec.dtype,
           "sources": spec.sources, "bytes": out.nbytes}
    if spec.notes:
        row["notes"] = spec.notes
    if spec.cast is None:
        _fill(ckpt, spec, 0, spec.rows, out)
        return HostArray(out, to), None, row
    trail = spec.shape[1:]
    row_elems = math.prod(trail)
    step = max(1, work.elems // max(1, row_elems))
    work.reserve(min(step, spec.rows) * row_elems)
    blocks = [(lo, min(spec.rows, lo + step)) for lo in range(0, spec.rows, step)]
    caster = _Caster(spec, to, work)

    crc = [0]

    def read(lo: int, hi: int, first: bool) -> np.ndarray:
        shape = ((hi - lo), *trail) if spec.shape else ()
        scratch = work.src[:math.prod(shape) * src_dt.itemsize].view(src_dt).reshape(shape)
        _fill(ckpt, spec, lo, hi, scratch)
        if streamed is not None and first:
            crc[0] = fsio.crc32c(scratch, crc[0])
        return scratch

    if caster.needs_amax:
        for lo, hi in blocks:
            caster.observe(read(lo, hi, True))
    for lo, hi in blocks:
        caster.cast(read(lo, hi, not caster.needs_amax), out[lo:hi] if spec.shape else out, lo)
    if streamed is not None:
        chunk = ckpt.entry(streamed).chunks[0]
        if crc[0] != chunk.crc32c:
            where = f"{streamed}/{chunk_key(chunk.index)}"
            raise CheckpointCorruptError(f"damaged chunk {where}: crc32c {crc[0]:#010x} != manifest "
                                         f"{chunk.crc32c:#010x}", problems=[f"{where}: checksum mismatch"],
                                         hint="run `fabric ckpt verify` and convert an older step")
    row.update(caster.report())
    return HostArray(out, to), caster.scale_array(), row


class _Workspace:
    """Buffers reused by every block of every tensor (source rows, two float32 blocks), so the
    cast allocates nothing per block and the heap does not grow with the tensor count."""

    def __init__(self, block_bytes: int) -> None:
        import torch
        self.torch = torch
        self.elems = max(1, block_bytes // 4)
        self.src = np.empty(0, np.uint8)
        self.x = self.tmp = torch.empty(0)

    def reserve(self, elems: int) -> None:
        if self.x.numel() < elems:
            self.src = np.empty(elems * 4, np.uint8)
            self.x, self.tmp = self.torch.empty(elems), self.torch.empty(elems)

    def floats(self, which: str, shape: tuple[int, ...]) -> Any:
        buf = self.x if which == "x" else self.tmp
        return buf[:math.prod(shape)].view(shape)


class _Caster:
    """Block-wise dtype conversion (torch on CPU, in the workspace) with error statistics;
    fp8 with scales."""

    def __init__(self, spec: Spec, to: str, work: _Workspace) -> None:
        import torch
        self.torch, self.spec, self.to, self.work = torch, spec, to, work
        self.fp8 = to in FP8_DTYPES
        self.per_channel = self.fp8 and spec.cast is not None and spec.cast.scale == "channel"
        self.needs_amax = self.fp8 and not self.per_channel
        self.fmax = float(torch.finfo(getattr(torch, to)).max) if self.fp8 else 0.0
        self.amax = 0.0
        self.scales = np.ones((spec.rows, 1), np.float32) if self.per_channel else None
        self.err2 = self.ref2 = self.max_err = 0.0

    def _tensor(self, arr: np.ndarray, logical: str) -> Any:
        t = self.torch.from_numpy(arr)
        if logical == "bfloat16":
            return t.view(self.torch.int16).view(self.torch.bfloat16)
        return t.view(getattr(self.torch, logical)) if logical in FP8_DTYPES else t

    def _floats(self, block: np.ndarray) -> Any:
        x = self.work.floats("x", block.shape)
        x.copy_(self._tensor(block, self.spec.dtype))
        return x

    def observe(self, block: np.ndarray) -> None:
        x = self._floats(block)
        if x.numel():
            self._amax_ok(self.torch.abs(x, out=self.work.floats("tmp", tuple(x.shape))).max())

    def _amax_ok(self, amax: Any) -> None:
        """NaN/inf propagate into the maximum: one check covers the block."""
        if not bool(self.torch.isfinite(amax).all()):
            raise CheckpointError(f"cast {self.spec.name}: the tensor has NaN or inf values; fp8 scales "
                                  f"cannot be computed", hint="fix the source, or leave this tensor out of the cast")
        self.amax = max(self.amax, float(amax.max()) if amax.numel() else 0.0)

    def cast(self, block: np.ndarray, dest: np.ndarray, lo: int) -> None:
        torch = self.torch
        x = self._floats(block)
        tmp = self.work.floats("tmp", tuple(x.shape))
        out = self._tensor(dest, self.to)
        if self.fp8:
            if self.per_channel:
                amax = torch.abs(x, out=tmp).reshape(x.shape[0], -1).amax(dim=1)
                self._amax_ok(amax)
                scale = torch.where(amax > 0, amax / self.fmax, torch.ones_like(amax))
                self.scales[lo:lo + x.shape[0], 0] = scale.numpy()  # type: ignore[index]
                scale = scale.reshape(-1, *([1] * (x.dim() - 1)))
            else:
                scale = torch.tensor(self.amax / self.fmax if self.amax > 0 else 1.0, dtype=torch.float32)
            torch.div(x, scale, out=tmp).clamp_(-self.fmax, self.fmax)
            out.copy_(tmp)
            tmp.copy_(out).mul_(scale)
        else:
            out.copy_(x)
            tmp.copy_(out)
        tmp.sub_(x)
        flat_d, flat_x = tmp.reshape(-1), x.reshape(-1)
        self.err2 += float(torch.dot(flat_d, flat_d))
        self.ref2 += float(torch.dot(flat_x, flat_x))
        if tmp.numel():
            self.max_err = max(self.max_err, float(tmp.abs_().max()))

    def scale_array(self) -> HostArray | None:
        if not self.fp8:
            return None
        if self.per_channel:
            shape = (self.spec.rows, *([1] * (len(self.spec.shape) - 1)))
            return HostArray(self.scales.reshape(shape), "float32")  # type: ignore[union-attr]
        return HostArray(np.array(self.amax / self.fmax if self.amax > 0 else 1.0, np.float32), "float32")

    def report(self) -> dict[str, Any]:
        rel = math.sqrt(self.err2 / self.ref2) if self.ref2 > 0 else 0.0
        out: dict[str, Any] = {"rel_rms_error": rel, "max_abs_error": self.max_err}
        if self.fp8:
            out["scale"] = "channel" if self.per_channel else "tensor"
        return out


__all__ = ["ConvertReport", "convert"]
