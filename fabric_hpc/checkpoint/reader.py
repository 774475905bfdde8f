"""Reading checkpoints: byte-range reads of exactly the chunk bytes a region needs, straight
into the caller's (preallocated) array or tensor; restore with resharding; verify."""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from fabric_hpc.checkpoint import fsio, store
from fabric_hpc.checkpoint.errors import CheckpointCorruptError, CheckpointError, CheckpointNotFoundError
from fabric_hpc.checkpoint.format import (
    FP8_DTYPES, MANIFEST, NATIVE_DTYPES, VIEW_DTYPES, Manifest, TensorEntry, chunk_key, dtype_str,
    parse_manifest, stored_dtype,
)
from fabric_hpc.extras import require
from fabric_hpc.inputs import kind_of
from fabric_hpc.checkpoint.tensors import as_tuple, empty_like_target, is_torch, split_region, target_view

Region = tuple[tuple[int, int], ...]
_SCRATCH = 1 << 20  # bytes per CRC-32C block of a chunk checked before it is read


class Checkpoint:
    """An open, committed checkpoint. Reads verify the size and the crc32c of every chunk file
    touched (also one read only in part); a damaged chunk raises CheckpointCorruptError."""

    def __init__(self, ref: store.CheckpointRef, manifest: Manifest):
        self.ref = ref
        self.path = ref.path
        self.manifest = manifest
        self._held: Any = None
        #: check the CRC-32C of a chunk read only in part by streaming the rest of its file (once
        #: per chunk per Checkpoint); a caller that verifies every source itself may turn it off
        self.verify_partial = True
        self._verified: set[tuple[str, tuple[int, ...]]] = set()

    def __enter__(self) -> Checkpoint:
        """``with open_checkpoint(...) as ck:`` holds the readers' shared lock (prune skips the
        checkpoint meanwhile), as ``restore()`` and the exports do while they read."""
        held = store.reading(self.ref)
        held.__enter__()
        self._held = held
        return self

    def __exit__(self, *exc: Any) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.__exit__(*exc)

    def _check_still_there(self) -> None:
        """A missing chunk of a checkpoint whose directory is gone was pruned, not damaged."""
        if not os.path.isdir(self.path):
            raise CheckpointNotFoundError(
                f"checkpoint {self.path} was removed while it was being read (pruned?)",
                hint="read inside `with open_checkpoint(...) as ck:` (prune then skips it), or open the newest again")

    @property
    def step(self) -> int:
        return self.manifest.step

    @property
    def names(self) -> list[str]:
        return list(self.manifest.tensors)

    def entry(self, name: str) -> TensorEntry:
        try:
            return self.manifest.tensors[name]
        except KeyError:
            close = [n for n in self.names if name.split("/")[-1] in n][:5]
            raise CheckpointNotFoundError(f"no tensor {name!r} in {self.path}",
                                          hint=f"similar names: {close}" if close else
                                          "list them with `fabric ckpt show`") from None

    def read(self, name: str, *, region: Region | None = None, out: Any = None,
             dtype: Any = None, as_torch: bool = False) -> Any:
        """Read ``name`` (or the ``region`` of it: ((lo, hi), ...) per dimension) into ``out``
        (a preallocated array/tensor) or a new array; ``dtype`` casts on the way.

        A failed read never writes damaged bytes into ``out``: its shape and dtype are checked
        first, and each chunk's CRC-32C is checked before its bytes are copied. A damaged chunk
        found after others were read leaves their (correct) values in ``out``."""
        entry, region, shape = self.check(name, region=region, out=out)
        if out is None:
            want = check_dtype(dtype) if dtype is not None else entry.dtype
            _refuse_fp8_cast(name, entry.dtype, want, "dtype")
            out = _allocated(name, shape, want, lambda: empty_like_target(
                shape, want, torch_out=as_torch or want in VIEW_DTYPES))
        view, logical = target_view(out)
        if logical == entry.dtype:
            self._read_region(entry, region, view)
        else:
            tmp = _allocated(name, shape, entry.dtype, lambda: np.empty(shape, stored_dtype(entry.dtype)))
            self._read_region(entry, region, tmp)
            _cast_into(name, tmp, entry.dtype, out, logical)
        return out

    def check(self, name: str, *, region: Region | None = None,
              out: Any = None) -> tuple[TensorEntry, Region, tuple[int, ...]]:
        """What :meth:`read` checks before it reads a byte: ``name`` is in the checkpoint, the
        ``region`` lies inside it, its chunk files are regular files of the stated sizes, and
        ``out`` (if given) is a target of the region's shape whose dtype holds the stored values.
        Returns (entry, region, region shape); raises CheckpointError otherwise."""
        entry = self.entry(name)
        region = region or tuple((0, s) for s in entry.shape)
        if not _is_region(region):
            raise CheckpointError(f"{name}: region must be ((lo, hi), ...) whole numbers per dimension, got {region!r}",
                                  hint="e.g. region=((0, 2), (0, 8)) for the first two rows of an 8-column tensor")
        shape = tuple(hi - lo for lo, hi in region)
        if len(region) != len(entry.shape) or any(
                not 0 <= lo <= hi <= s for (lo, hi), s in zip(region, entry.shape)):
            raise CheckpointError(f"{name}: region {region} is outside shape {entry.shape}",
                                  hint=f"give one (lo, hi) per dimension with 0 <= lo <= hi <= its size: "
                                       f"{tuple((0, s) for s in entry.shape)} is the whole tensor")
        self.check_on_disk(entry, region)
        if out is not None:
            view, logical = target_view(out)
            if tuple(view.shape) != shape:
                raise CheckpointError(f"{name}: target shape {tuple(view.shape)} != region shape {shape}",
                                      hint=f"give a target of shape {shape} (or read without a target)")
            _refuse_fp8_cast(name, entry.dtype, logical, "target's dtype")
            if _truncates(entry.dtype, logical):
                raise CheckpointError(
                    f"{name}: the target's dtype {logical} cannot hold every stored {entry.dtype} value (it "
                    f"would truncate or wrap them)",
                    hint=f"give a target of dtype {entry.dtype} (or a wider one of its kind), or read "
                         f"without a target and convert the values yourself")
        return entry, region, shape

    def read_shard(self, name: str, part: int | tuple[int, ...], parts: int | tuple[int, ...], *,
                   dim: int | tuple[int, ...] | None = None, **kw: Any) -> Any:
        """Part ``part`` of ``parts`` along ``dim`` (default: the dims it was saved split on;
        tuples select a block of a mesh over several dims)."""
        return self.read(name, region=self.shard_region(name, part, parts, dim=dim), **kw)

    def shard_region(self, name: str, part: int | tuple[int, ...], parts: int | tuple[int, ...], *,
                     dim: int | tuple[int, ...] | None = None) -> Region | None:
        """The region :meth:`read_shard` reads (None: the whole tensor, a scalar)."""
        entry = self.entry(name)
        if not entry.shape:
            return None
        if dim is None:
            dims = tuple(entry.split.dims) if entry.split else (0,)
            dims = dims[:1] if isinstance(part, int) else dims
        else:
            dims = (dim,) if isinstance(dim, int) else tuple(dim)
        return split_region(tuple(entry.shape), dims, as_tuple(part), as_tuple(parts))

    def check_on_disk(self, entry: TensorEntry, region: Region | None = None) -> None:
        """Before anything is allocated: every chunk the region needs is a regular file of the
        size the manifest states (a manifest declaring a 4 TiB tensor over small files fails
        here, not with a MemoryError)."""
        region = region or tuple((0, s) for s in entry.shape)
        if any(hi <= lo for lo, hi in region):
            return
        by_index = {tuple(c.index): c for c in entry.chunks}
        ranges = [range(lo // c, math.ceil(hi / c)) for (lo, hi), c in zip(region, entry.chunk_shape)]
        for index in _product(ranges):
            chunk = by_index.get(tuple(index))
            path = self.path / entry.path / chunk_key(list(index))
            try:
                st = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                self._check_still_there()
                raise _corrupt(entry, index, "chunk file is missing") from None
            if not stat.S_ISREG(st.st_mode) or chunk is None or st.st_size != chunk.nbytes:
                why = f"is {kind_of(st.st_mode)}, not a regular file" if not stat.S_ISREG(st.st_mode) else \
                    "not in the manifest" if chunk is None else \
                    f"chunk file has {st.st_size} bytes, expected {chunk.nbytes}"
                raise _corrupt(entry, index, why)

    def _read_region(self, entry: TensorEntry, region: Region, dest: np.ndarray) -> None:
        if dest.size == 0:
            return
        chunks = entry.chunk_shape
        item = np.dtype(entry.stored_dtype).itemsize
        by_index = {tuple(c.index): c for c in entry.chunks}
        ranges = [range(lo // c, math.ceil(hi / c)) for (lo, hi), c in zip(region, chunks)]
        for index in _product(ranges):
            inter = [(max(lo, i * c), min(hi, (i + 1) * c))
                     for (lo, hi), i, c in zip(region, index, chunks)]
            chunk = by_index.get(tuple(index))
            if chunk is None:
                raise CheckpointCorruptError(f"{entry.path}: chunk {list(index)} is not in the manifest",
                                             problems=[f"{entry.path}/{chunk_key(list(index))}: missing"])
            key = (entry.path, tuple(index))
            whole = all(a == o * c and b == min((o + 1) * c, s)
                        for (a, b), o, c, s in zip(inter, index, chunks, entry.shape))
            check = key not in self._verified and (whole or self.verify_partial)
            _read_chunk(self.path, chunk.nbytes, chunk.crc32c, entry, index, inter, region, dest, item, check)
            if check:
                self._verified.add(key)


def _product(ranges: list[range]) -> Iterable[tuple[int, ...]]:
    if not ranges:
        yield ()
        return
    for idx in np.ndindex(*[len(r) for r in ranges]):
        yield tuple(r[i] for r, i in zip(ranges, idx))


def _read_chunk(step_dir: Path, nbytes: int, crc: int, entry: TensorEntry, index: tuple[int, ...],
                inter: list[tuple[int, int]], region: Region, dest: np.ndarray, item: int,
                check: bool = True) -> None:
    """Copy the part ``inter`` of one chunk into ``dest`` (``check``: after streaming the whole
    chunk file through CRC-32C, so a damaged chunk raises before any of its bytes reach ``dest``;
    the file is in the page cache then: normally no second disk read)."""
    chunks = entry.chunk_shape
    origin = [i * c for i, c in zip(index, chunks)]
    try:
        fd = fsio.open_in(step_dir, f"{entry.path}/{chunk_key(list(index))}")
    except FileNotFoundError:
        if not os.path.isdir(step_dir):
            raise CheckpointNotFoundError(f"checkpoint {step_dir} was removed while it was being read (pruned?)",
                                          hint="read inside `with open_checkpoint(...) as ck:` (prune then skips "
                                               "it), or open the newest again") from None
        raise _corrupt(entry, index, "chunk file is missing") from None
    except fsio.UnsafeFileError as exc:
        raise _corrupt(entry, index, exc.strerror) from None
    try:
        if os.fstat(fd).st_size != nbytes:
            raise _corrupt(entry, index, f"chunk file has {os.fstat(fd).st_size} bytes, expected {nbytes}")
        if check:
            _check_crc(fd, nbytes, crc, entry, index)
        ndim = len(chunks)
        k = ndim - 1
        while k > 0 and inter[k] == (origin[k], origin[k] + chunks[k]) and inter[k] == region[k]:
            k -= 1
        outer_ranges = [range(a, b) for a, b in inter[:k]]
        strides = [math.prod(chunks[d + 1:]) for d in range(ndim)]
        for outer in _product(outer_ranges):
            if ndim == 0:
                _read_or_fail(fd, dest, 0, entry, index)
                continue
            lin = sum((o - origin[d]) * strides[d] for d, o in enumerate(outer))
            lin += (inter[k][0] - origin[k]) * strides[k]
            sel = tuple(o - region[d][0] for d, o in enumerate(outer)) + \
                (slice(inter[k][0] - region[k][0], inter[k][1] - region[k][0]),)
            target = dest[sel]
            _read_or_fail(fd, target, lin * item, entry, index)
    finally:
        os.close(fd)


def _read_or_fail(fd: int, target: np.ndarray, offset: int, entry: TensorEntry, index: Any) -> None:
    try:
        fsio.read_into(fd, target, offset)
    except EOFError as exc:
        raise _corrupt(entry, index, str(exc)) from None


def _check_crc(fd: int, nbytes: int, crc: int, entry: TensorEntry, index: Any) -> None:
    """Stream the chunk file through CRC-32C in small blocks (they stay in the CPU cache)."""
    got, offset = 0, 0
    scratch = np.empty(min(nbytes, _SCRATCH), np.uint8)
    while offset < nbytes:
        piece = scratch[:min(scratch.size, nbytes - offset)]
        _read_or_fail(fd, piece, offset, entry, index)
        got = fsio.crc32c(piece, got)
        offset += piece.size
    if got != crc:
        raise _corrupt(entry, index, f"crc32c {got:#010x} != manifest {crc:#010x}")


def _corrupt(entry: TensorEntry, index: Any, why: str) -> CheckpointCorruptError:
    where = f"{entry.path}/{chunk_key(list(index))}"
    return CheckpointCorruptError(f"damaged chunk {where}: {why}", problems=[f"{where}: {why}"],
                                  hint="run `fabric ckpt verify` and restore an older step")


def check_dtype(dtype: Any) -> str:
    """The name of ``dtype`` (a string, a numpy dtype or scalar type, or a torch dtype) if it is
    one a checkpoint can hold (a CheckpointError listing them otherwise)."""
    name = dtype_str(dtype)
    if not isinstance(name, str) or (name not in NATIVE_DTYPES and name not in VIEW_DTYPES):
        raise CheckpointError(f"unknown dtype {name!r}", hint=f"dtypes: {', '.join(NATIVE_DTYPES + tuple(VIEW_DTYPES))}")
    return name


def dtype_kind(dtype: str) -> str:
    """numpy's kind letter of a logical dtype ("f" for bfloat16 and fp8 too)."""
    return "f" if dtype in VIEW_DTYPES else np.dtype(dtype).kind


def _truncates(stored: str, target: str) -> bool:
    """Whether filling a ``target`` array from ``stored`` values drops their kind or wraps them:
    floats into integers or bools, complex into reals, integers into a narrower integer or
    bool (precision casts, float64 -> bfloat16 or int64 -> float64, are allowed)."""
    s, t = dtype_kind(stored), dtype_kind(target)
    return (s in "fc" and t in "iub") or (s == "c" and t != "c") or \
        (s in "iu" and t in "iub" and not np.can_cast(np.dtype(stored), np.dtype(target), "safe"))


def _is_region(region: Any) -> bool:
    return isinstance(region, (tuple, list)) and all(
        isinstance(r, (tuple, list)) and len(r) == 2 and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool)
                                                              for x in r) for r in region)


def _refuse_fp8_cast(name: str, stored: str, target: str, what: str) -> None:
    """A cast to fp8 without per-tensor scales saturates (1e6 becomes 448): refused, as restore's dtype=."""
    if target in FP8_DTYPES and target != stored:
        raise CheckpointError(f"{name}: the {what} {target} would saturate the stored {stored} values (a "
                              "cast without per-tensor scales: float8_e4m3fn holds at most 448)",
                              hint="read as bfloat16 or float32; make an fp8 checkpoint with scales with "
                                   "`fabric ckpt convert` (a recipe casting to fp8)")


def _allocated(name: str, shape: tuple[int, ...], dtype: str, make: Callable[[], Any]) -> Any:
    """``make()`` (an allocation for ``name``), a CheckpointMemoryError naming it if it does not fit."""
    try:
        return make()
    except MemoryError:
        from fabric_hpc.checkpoint.reshard import out_of_memory
        nbytes = math.prod(shape) * stored_dtype(dtype).itemsize
        raise out_of_memory(name, nbytes, "a read", "the region read, whole,") from None


def _cast_into(name: str, src: np.ndarray, src_dtype: str, out: Any, out_dtype: str) -> None:
    """Fill ``out`` with ``src`` cast; values that overflow a narrower floating target (1e6 as
    float16: inf) are refused before ``out`` is written."""
    if src_dtype in VIEW_DTYPES or out_dtype in VIEW_DTYPES or is_torch(out):
        torch = require("torch", extra="torch", needed_for=f"reading {src_dtype} values as {out_dtype}")
        t = torch.from_numpy(src)
        if src_dtype in VIEW_DTYPES:
            t = t.view(getattr(torch, src_dtype)) if src.dtype.itemsize == 1 else \
                t.view(torch.int16).view(getattr(torch, src_dtype))
        target = out.detach() if is_torch(out) else torch.from_numpy(out)  # a parameter is filled in place
        cast = t.to(target.dtype)
        if _may_overflow(src_dtype, out_dtype):
            _refuse_overflow(name, src_dtype, out_dtype, int((torch.isinf(cast) & ~torch.isinf(t)).sum()))
        target.copy_(cast)
        return
    with np.errstate(over="ignore"):  # counted (and refused) below
        cast = src.astype(out_dtype, copy=False)
    if _may_overflow(src_dtype, out_dtype):
        _refuse_overflow(name, src_dtype, out_dtype, int(np.count_nonzero(np.isinf(cast) & ~np.isinf(src))))
    np.copyto(out, cast, casting="unsafe")


def _may_overflow(src_dtype: str, out_dtype: str) -> bool:
    """Whether a cast can turn finite values into inf: into a floating dtype from an integer or bool
    one, or from a floating one at least as wide (float32 -> bfloat16, bfloat16 -> float16)."""
    narrower = stored_dtype(out_dtype).itemsize <= stored_dtype(src_dtype).itemsize
    return dtype_kind(out_dtype) in "fc" and (dtype_kind(src_dtype) in "iub" or narrower)


def _refuse_overflow(name: str, src_dtype: str, out_dtype: str, count: int) -> None:
    if count:
        raise CheckpointError(f"{name}: {count:,} stored {src_dtype} value(s) overflow {out_dtype} (they "
                              "would become inf)",
                              hint=f"read it as {src_dtype} (or a wider dtype), or scale the values first")


def open_checkpoint(path: Path | str, step: int | None = None) -> Checkpoint:
    """Open the checkpoint at ``path`` (a checkpoint dir, or a root: ``step`` or latest)."""
    from fabric_hpc.checkpoint.health import step_mismatch
    ref = store.resolve(path, step)
    manifest = parse_manifest(read_manifest(ref.path), str(ref.path / MANIFEST))
    if (why := step_mismatch(ref.path, manifest)) is not None:  # a renamed or edited step: which is it?
        raise CheckpointCorruptError(why, problems=[why],
                                     hint="run `fabric ckpt verify --all` and restore another step, or "
                                          "rename the directory after its manifest")
    return Checkpoint(ref, manifest)


#: Largest manifest read (a checkpoint of a million chunks has a manifest of about 100 MiB).
MAX_MANIFEST_BYTES = 512 << 20


def read_manifest(step_dir: Path) -> bytes:
    """The raw manifest of a step directory (a regular file, never through a symlink)."""
    try:
        return fsio.read_in(step_dir, MANIFEST, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"{step_dir} has no {MANIFEST} (pruned, or not a checkpoint)",
                                      hint="list checkpoints with `fabric ckpt list DIR`") from None
    except fsio.UnsafeFileError as exc:
        raise CheckpointCorruptError(f"{step_dir}/{MANIFEST}: {exc.strerror}", problems=[f"{MANIFEST}: {exc.strerror}"],
                                     hint="run `fabric ckpt verify` and restore an older step") from None
    except PermissionError:
        raise store.denied(step_dir / MANIFEST) from None
    except NotADirectoryError:
        raise CheckpointNotFoundError(f"{step_dir} is not a directory",
                                      hint="give a checkpoint directory or a checkpoint root") from None
