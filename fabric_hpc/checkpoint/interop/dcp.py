"""PyTorch Distributed Checkpoint (``torch.distributed.checkpoint``) in and out.

DCP keeps its index in ``.metadata``, a Python pickle. Unpickling runs code chosen by whoever
wrote the file, so reading a DCP directory needs an explicit ``trust_pickle=True``
(``--trust-pickle`` on the CLI) and goes only through torch's own reader
(``FileSystemReader.read_metadata`` and ``dcp.load``); fabric never unpickles anything itself
and its own format stays pickle-free.

Import loads a few tensors at a time with ``dcp.load`` (no process group: ``no_dist=True``; DCP
reshards whatever the writers' layout was into whole tensors) and streams them into a fabric
checkpoint. A tensor that the writers split ``torch.chunk``-style along one dimension keeps that
split (one chunk file per writer's part). Export hands torch whole tensors memory-mapped from
the chunk files (CRC-32C checked first) and lets ``dcp.save`` write them into a temporary
directory that is renamed to OUT when complete; any world size can then ``dcp.load`` it
(e.g. as ``DTensor`` shards).
"""

from __future__ import annotations

import io
import math
import mmap
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fabric_hpc.checkpoint import fsio, store
from fabric_hpc.checkpoint.errors import CheckpointCorruptError, CheckpointError, CheckpointNotFoundError
from fabric_hpc.checkpoint.format import SplitInfo, chunk_key, split_bounds, stored_dtype
from fabric_hpc.checkpoint.interop.stream import StreamWriter, imported_name, read_stored
from fabric_hpc.checkpoint.parallel import Item, run_bounded
from fabric_hpc.checkpoint.reader import Checkpoint, open_checkpoint
from fabric_hpc.checkpoint.restore import require_readable
from fabric_hpc.checkpoint.writer import SaveResult, refuse_inside_checkpoint
from fabric_hpc.extras import require

METADATA = ".metadata"
BATCH_BYTES = 64 << 20  # small tensors are loaded together, up to this many bytes per dcp.load
WORKERS = 4  # tensors read and written at once (memory: at most 1.1x the largest tensor or batch)
PICKLE_HINT = ("pass --trust-pickle (trust_pickle=True) only for a checkpoint you or someone you trust "
               "wrote: DCP's .metadata is a Python pickle and unpickling it can run arbitrary code")
Progress = Callable[[int], None]


@contextmanager
def _quiet() -> Iterator[None]:
    """DCP warns on every no_dist call; the warning is about process groups we do not use."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.distributed\.checkpoint.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed\.checkpoint.*")
        yield


def read_dcp_metadata(src: Path | str, *, trust_pickle: bool) -> Any:
    """The DCP ``Metadata`` of ``src``, read by torch's FileSystemReader (refused without trust)."""
    src = Path(src)
    if not trust_pickle:
        raise CheckpointError(f"refusing to read {src / METADATA}: it is a pickle", hint=PICKLE_HINT)
    if not (src / METADATA).is_file():
        raise CheckpointNotFoundError(f"{src} is not a torch.distributed.checkpoint directory (no {METADATA})")
    require("torch.distributed.checkpoint", extra="torch", needed_for="reading PyTorch DCP")
    from torch.distributed.checkpoint import FileSystemReader
    try:
        md = FileSystemReader(str(src)).read_metadata()
    except Exception as exc:  # anything unpickling a damaged file raises
        raise CheckpointCorruptError(f"{src / METADATA}: not a readable DCP metadata file ({type(exc).__name__}: "
                                     f"{str(exc)[:200]})", hint="the DCP directory is damaged") from None
    _check_data_files(src, md)
    return md


def _check_data_files(src: Path, md: Any) -> None:
    """Every data file the metadata names lies in ``src`` (no path leaving it) and exists."""
    root = src.resolve()
    for info in (getattr(md, "storage_data", None) or {}).values():
        rel = getattr(info, "relative_path", None)
        if not isinstance(rel, str) or not rel or not (root / rel).resolve().is_relative_to(root):
            raise CheckpointCorruptError(f"{src / METADATA} names data file {rel!r}, which is not inside {src}",
                                         hint="the DCP directory is damaged or not trustworthy")
        if not (src / rel).is_file():
            raise CheckpointCorruptError(f"{src}: data file {rel} named in {METADATA} is missing",
                                         hint="copy the whole DCP directory (every .distcp file)")


def detect_split(size: tuple[int, ...], chunks: list[Any]) -> SplitInfo | None:
    """SplitInfo when the writers' chunks are exactly a torch.chunk split along one dimension."""
    if len(chunks) < 2 or not size:
        return None
    dims = {d for c in chunks for d in range(len(size)) if c.offsets[d] != 0 or c.sizes[d] != size[d]}
    if len(dims) != 1:
        return None
    dim = dims.pop()
    got = sorted((int(c.offsets[dim]), int(c.offsets[dim]) + int(c.sizes[dim])) for c in chunks)
    want = [split_bounds(size[dim], len(chunks), i) for i in range(len(chunks))]
    return SplitInfo(dim=dim, parts=len(chunks)) if got == want else None


def import_dcp(src: Path | str, root: Path | str, *, trust_pickle: bool = False, step: int = 0,
               prefix: str | None = None, skip_objects: bool = False,
               progress: Progress | None = None) -> SaveResult:
    """Import the DCP directory ``src`` as checkpoint ``step`` under ``root`` (whole tensors; a
    one-dimension torch.chunk split of the writers is kept). Non-tensor entries (pickled Python
    objects) are refused unless ``skip_objects``."""
    require("torch.distributed.checkpoint", extra="torch", needed_for="PyTorch DCP import")
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata
    md = read_dcp_metadata(src, trust_pickle=trust_pickle)
    items = md.state_dict_metadata
    tensors = {k: v for k, v in items.items() if isinstance(v, TensorStorageMetadata)}
    objects = sorted(set(items) - set(tensors))
    if objects and not skip_objects:
        raise CheckpointError(f"{src}: {len(objects)} entries are pickled Python objects, not tensors: {objects[:5]}",
                              hint="pass --skip-objects to import only the tensors")
    names = {k: imported_name(k, prefix, source="DCP") for k in tensors}
    meta = {"source": "torch-dcp", "skipped_objects": objects}
    direct = _direct_items(Path(src), md, tensors)
    with _quiet(), StreamWriter(root, step=step, metadata=meta, layout={"format": "dcp"}) as out:
        def one(batch: list[str]) -> None:
            if len(batch) == 1 and batch[0] in direct:
                value = _read_direct(Path(src), batch[0], tensors[batch[0]], direct[batch[0]])
                sd = {batch[0]: value}
            else:  # DCP's own load: reassembles any layout (and undoes stream transforms)
                sd = {k: torch.empty(tuple(tensors[k].size), dtype=tensors[k].properties.dtype) for k in batch}
                try:
                    dcp.load(sd, storage_reader=FileSystemReader(str(src)), no_dist=True)
                except Exception as exc:  # what torch's reader raises on damaged data files
                    raise CheckpointCorruptError(f"{src}: DCP's reader failed on {batch[:3]} ({type(exc).__name__}: "
                                                 f"{str(exc)[:200]})", hint="the DCP directory is damaged") from None
            for k in batch:
                out.add(names[k], sd[k], split=detect_split(tuple(tensors[k].size), tensors[k].chunks))
                if progress:
                    with lock:
                        progress(sd[k].numel() * sd[k].element_size())

        lock = threading.Lock()
        items = [Item(b, sum(_nbytes(tensors[k]) for k in b))
                 for b in [[k] for k in sorted(direct)] + _batches({k: v for k, v in tensors.items() if k not in direct})
                 if b]
        largest = max([it.cost for it in items] + [BATCH_BYTES])
        run_bounded(sorted(items, key=lambda it: -it.cost), one, workers=WORKERS, budget=int(1.1 * largest))
    assert out.result is not None
    return out.result


def _nbytes(md: Any) -> int:
    return math.prod(tuple(md.size)) * md.properties.dtype.itemsize


def _direct_items(src: Path, md: Any, tensors: dict[str, Any]) -> dict[str, list[tuple[Any, Any]]]:
    """Tensors whose chunks can be read one by one with ``torch.load(weights_only=True)`` (what
    DCP's FileSystemReader does for each item): every chunk's storage entry is a plain file name
    in ``src`` and has no stream transforms. fqn -> [(chunk metadata, storage info)]."""
    by_fqn: dict[str, dict[tuple[int, ...], Any]] = {}
    for index, info in (getattr(md, "storage_data", None) or {}).items():
        if index.fqn in tensors and index.offset is not None:  # objects (bytes entries) have none
            by_fqn.setdefault(index.fqn, {})[tuple(index.offset)] = info
    out = {}
    for fqn, tmd in tensors.items():
        infos = by_fqn.get(fqn, {})
        pairs = [(c, infos.get(tuple(c.offsets))) for c in tmd.chunks]
        if pairs and all(i is not None and not getattr(i, "transform_descriptors", None)
                         and isinstance(i.relative_path, str) and "/" not in i.relative_path
                         and i.relative_path not in ("", ".", "..") and (src / i.relative_path).is_file()
                         for _, i in pairs):
            out[fqn] = pairs
    return out


def _read_direct(src: Path, fqn: str, tmd: Any, pairs: list[tuple[Any, Any]]) -> Any:
    """The whole tensor ``fqn``: each chunk loaded from its slice of the data file (one copy,
    straight into the tensor's storage), assembled when there are several."""
    import torch
    whole = None
    for chunk, info in pairs:
        fd = os.open(src / info.relative_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if info.offset + info.length > os.fstat(fd).st_size:
                raise CheckpointCorruptError(f"{src / info.relative_path}: {fqn} needs bytes up to "
                                             f"{info.offset + info.length}, the file has {os.fstat(fd).st_size} "
                                             "(truncated)", hint="copy the DCP directory again")
            try:
                part = torch.load(_Slice(fd, info.offset, info.length), map_location="cpu", weights_only=True)
            except Exception as exc:
                raise CheckpointCorruptError(f"{src / info.relative_path}: cannot read {fqn} "
                                             f"(offset {info.offset}): {exc}", hint="the DCP directory is damaged") from None
        finally:
            os.close(fd)
        if not isinstance(part, torch.Tensor) or tuple(part.shape) != tuple(chunk.sizes) or \
                part.dtype != tmd.properties.dtype:
            raise CheckpointCorruptError(f"{src / info.relative_path}: {fqn} chunk at {list(chunk.offsets)} is not a "
                                         f"{tmd.properties.dtype} tensor of shape {list(chunk.sizes)}",
                                         hint="the DCP directory is damaged")
        if len(pairs) == 1:
            return part
        if whole is None:
            whole = torch.empty(tuple(tmd.size), dtype=tmd.properties.dtype)
        view = whole
        for d, (o, n) in enumerate(zip(chunk.offsets, chunk.sizes)):
            view = view.narrow(d, int(o), int(n))
        view.copy_(part)
        del part
    return whole


class _Slice(io.RawIOBase):
    """A read-only, seekable view of ``length`` bytes at ``offset`` of an open file (positional
    reads straight into the caller's buffer)."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self.fd, self.base, self.length, self.pos = fd, offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        n = min(len(view), self.length - self.pos)
        done = 0
        while done < n:
            got = os.preadv(self.fd, [view[done:n]], self.base + self.pos + done)
            if got == 0:
                raise EOFError("DCP data file is shorter than its metadata says")
            done += got
        self.pos += n
        return n

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else self.pos + pos if whence == 1 else self.length + pos
        return self.pos

    def tell(self) -> int:
        return self.pos


def _batches(tensors: dict[str, Any]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    size = 0
    for k in sorted(tensors):
        n = int(np.prod(tuple(tensors[k].size))) * tensors[k].properties.dtype.itemsize
        if out[-1] and size + n > BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(k)
        size += n
    return out


def export_dcp(path: Path | str, out: Path | str, *, step: int | None = None, prefix: str | None = None,
               progress: Progress | None = None) -> dict[str, Any]:
    """Write checkpoint ``path`` as a DCP directory ``out`` (keys: names with ``/`` -> ``.``, as
    DCP flattens nested dicts); ``out`` must not exist (or be empty)."""
    require("torch.distributed.checkpoint", extra="torch", needed_for="PyTorch DCP export")
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemWriter
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"{out} already exists", hint="export into a new directory")
    refuse_inside_checkpoint(out, "the DCP export")
    ckpt = open_checkpoint(path, step)
    pre = prefix.strip("/") + "/" if prefix else ""
    keys = {n: n[len(pre):].replace("/", ".") for n in ckpt.names if n.startswith(pre)}
    if not keys or len(set(keys.values())) != len(keys):
        raise CheckpointError(f"no tensors under prefix {prefix!r}" if not keys else
                              "two tensor names map to the same DCP key (after '/' -> '.')",
                              hint="export one subtree with --prefix")
    fsio.make_dirs(out.parent)
    tmp = fsio.export_tmp_dir(out)
    fsio.make_dir(tmp)
    try:
        with _quiet(), store.reading(ckpt.ref), ThreadPoolExecutor(max_workers=2) as pool:
            require_readable(ckpt)  # what verify calls DAMAGED is not exported
            checks: list[Future[None]] = []
            sd = {keys[n]: _mapped(ckpt, n, progress, pool, checks) for n in sorted(keys)}
            # torch writes (several threads) while the chunk CRCs are checked on the same pages;
            # nothing is published before every check has passed
            dcp.save(sd, storage_writer=FileSystemWriter(str(tmp), sync_files=True, thread_count=WORKERS),
                     no_dist=True)
            del sd
            for f in checks:
                f.result()
        fsio.fsync_paths([tmp])
        fsio.publish_dir(tmp, out)
    except BaseException:
        fsio.remove_tree(tmp)
        raise
    return {"path": str(out), "tensors": len(keys), "step": ckpt.step,
            "bytes": sum(c.nbytes for n in keys for c in ckpt.entry(n).chunks)}


def _mapped(ckpt: Checkpoint, name: str, progress: Progress | None, pool: ThreadPoolExecutor,
            checks: list[Future[None]]) -> Any:
    """A torch tensor over the chunk file (copy-on-write mmap) when the tensor is one unpadded
    chunk, its CRC-32C checked in ``pool`` (appended to ``checks``); otherwise read (and checked)
    into memory."""
    import torch
    entry = ckpt.entry(name)
    dt = stored_dtype(entry.dtype)
    if len(entry.chunks) == 1 and entry.chunk_shape == entry.shape and entry.shape and 0 not in entry.shape:
        chunk = entry.chunks[0]
        where = f"{entry.path}/{chunk_key(chunk.index)}"
        try:  # opened without following links, a regular file (as every read of a checkpoint)
            fd = fsio.open_in(ckpt.path, where)
        except OSError as exc:
            raise CheckpointCorruptError(f"damaged chunk {where}: {exc.strerror or exc}",
                                         hint="run `fabric ckpt verify`") from None
        try:
            if os.fstat(fd).st_size != chunk.nbytes:
                raise CheckpointCorruptError(f"damaged chunk {where}: resized", hint="run `fabric ckpt verify`")
            mm = mmap.mmap(fd, chunk.nbytes, access=mmap.ACCESS_COPY)
        finally:
            os.close(fd)
        data = np.frombuffer(mm, dt).reshape(tuple(entry.shape))

        def check() -> None:  # reads the file ahead of torch's writer, in the background
            if fsio.crc32c(data) != chunk.crc32c:
                raise CheckpointCorruptError(f"damaged chunk {where}: crc32c mismatch",
                                             hint="run `fabric ckpt verify` and export an older step")
        checks.append(pool.submit(check))
    else:
        data = read_stored(ckpt, name).data
    t = torch.from_numpy(data)
    if entry.dtype in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        t = t.view(torch.int16).view(torch.bfloat16) if dt.itemsize == 2 else t.view(getattr(torch, entry.dtype))
    if progress:
        progress(sum(c.nbytes for c in entry.chunks))
    return t
