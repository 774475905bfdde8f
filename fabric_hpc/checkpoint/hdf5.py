"""HDF5 interop (h5py): one ``.h5`` file per checkpoint, exact round trip.

Layout of the file: one dataset per tensor at its name (``model/layers/0/w``) holding the stored
bytes (bfloat16/float8 as their unsigned views) with attributes ``fabric_dtype``,
``fabric_chunk_shape`` and ``fabric_split``; the root attribute ``fabric_checkpoint`` is the
manifest as JSON. Import re-saves with the same step, layout, chunk grid and metadata, so the
chunk checksums come out identical; it checks each chunk's bytes against the carried manifest's
crc32c before writing that tensor, so a file damaged after export is refused (nothing committed), not
re-checksummed. Import streams one tensor at a time: it needs about the largest tensor in memory.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from fabric_hpc.atomic import atomic_output, remove_stale_siblings
from fabric_hpc.checkpoint import fsio
from fabric_hpc.checkpoint.errors import (
    CheckpointCorruptError, CheckpointError, CheckpointMemoryError, CheckpointNotFoundError,
)
from fabric_hpc.checkpoint.format import Manifest, TensorEntry, check_name, stored_dtype
from fabric_hpc.checkpoint.manifest_checks import tensor_problems
from fabric_hpc.checkpoint.reader import open_checkpoint
from fabric_hpc.checkpoint.restore import entry_nbytes, require_readable
from fabric_hpc.checkpoint.store import removed_on_failure
from fabric_hpc.checkpoint.tensors import HostArray
from fabric_hpc.checkpoint.stream import save_stream
from fabric_hpc.checkpoint.chunk_plan import grid_pieces
from fabric_hpc.checkpoint.writer import SaveResult

ROOT_ATTR = "fabric_checkpoint"


def export_h5(path: Path | str, h5_path: Path | str, *, step: int | None = None,
              progress: Callable[[int], None] | None = None, overwrite: bool = False) -> Path:
    """Write the checkpoint to ``h5_path`` (atomically: temp file, fsync, rename). An existing
    file is refused unless ``overwrite``; a path inside a checkpoint (a step directory, a Zarr
    group, or a checkpoint root such as the one exported) is always refused."""
    import h5py
    from fabric_hpc.inputs import output_path
    ckpt = open_checkpoint(path, step)
    h5_path = output_path(h5_path, what="HDF5 file")
    check_export_target(h5_path, overwrite=overwrite, roots=(Path(path), ckpt.path.parent))
    manifest = ckpt.manifest.model_dump(mode="json")
    remove_stale_siblings(h5_path)  # atomic_output's temporary files that killed exports left
    check_free_space(h5_path, ckpt.manifest.nbytes + len(json.dumps(manifest)) * 2 + _H5_OVERHEAD
                     + _H5_PER_TENSOR * len(ckpt.names))
    with ckpt, atomic_output(h5_path, mode=fsio.FILE_MODE) as tmp:
        require_readable(ckpt)  # what verify calls DAMAGED is not exported (under the readers' lock)
        f = h5py.File(tmp, "w")
        try:
            f.attrs[ROOT_ATTR] = json.dumps(manifest)
            for name in ckpt.names:
                _write_dataset(f, ckpt, name)
                if progress:
                    progress(entry_nbytes(ckpt, name))
        except BaseException:
            _close_quietly(f)  # the first error is the one to report (h5py's close raises its own)
            raise
        f.close()
    return h5_path


#: HDF5's own bytes besides the data (superblock, heaps, B-trees) and per dataset (headers, attributes)
_H5_OVERHEAD, _H5_PER_TENSOR = 1 << 20, 16 << 10


def check_free_space(target: Path, nbytes: int) -> None:
    """The "disk is full" error (exit 5) before writing, when ``target``'s filesystem has less than
    ``nbytes`` free for this user: HDF5 failing half-way leaves its library in a state that can crash
    the process when the file is closed."""
    import errno

    from fabric_hpc.inputs import os_error
    try:
        st = os.statvfs(target.parent)
    except OSError:
        return  # the write reports its own error
    free = st.f_bavail * st.f_frsize
    if st.f_blocks and free < nbytes:  # no blocks at all: /proc, /sys (the write says why)
        exc = OSError(errno.ENOSPC, f"{free:,} bytes free, {nbytes:,} needed", str(target))
        raise os_error(exc, path=target) from None


def _write_dataset(f, ckpt, name: str) -> None:
    entry = ckpt.entry(name)
    ckpt.check_on_disk(entry)  # sizes on disk match before allocating
    data = np.empty(entry.shape, stored_dtype(entry.dtype))
    ckpt._read_region(entry, tuple((0, s) for s in entry.shape), data)
    ds = f.create_dataset(name, data=data)
    ds.attrs["fabric_dtype"] = entry.dtype
    ds.attrs["fabric_chunk_shape"] = json.dumps(entry.chunk_shape)
    ds.attrs["fabric_split"] = json.dumps(entry.split.model_dump() if entry.split else None)


def _close_quietly(f) -> None:
    """Close an HDF5 file after a failed write (its own close error, e.g. RuntimeError "Can't
    decrement id ref count" after ENOSPC, is dropped: the caller raises the first one)."""
    import gc
    gc.collect()  # no dataset handle outlives the file (closing one after it can crash h5py)
    with contextlib.suppress(OSError, RuntimeError, ValueError):
        f.close()


def check_export_target(target: Path, *, overwrite: bool, roots: tuple[Path, ...] = ()) -> None:
    """CheckpointError when ``target`` lies inside a checkpoint or a checkpoint root (writing
    there could replace a chunk file or leave junk in a step), or exists and not ``overwrite``."""
    from fabric_hpc.checkpoint.store import read_latest
    from fabric_hpc.checkpoint.writer import inside_a_checkpoint

    parent = target.parent.resolve()
    given = {r.resolve() for r in roots}
    step = inside_a_checkpoint(parent)
    found = [d for d in (parent, *parent.parents)
             if d == step or d in given or read_latest(d) is not None or _holds_steps(d)]
    if found:  # named: the innermost; the example lies beside the outermost (a step's root), outside all
        raise CheckpointError(f"HDF5 file {str(target)!r} is inside the checkpoint directory "
                              f"{str(found[0])!r}: writing there could damage a checkpoint",
                              hint="write the HDF5 file outside every checkpoint directory, "
                                   f"e.g. {found[-1].parent / (found[-1].name + '.h5')}")
    if os.path.lexists(target) and not overwrite:
        raise CheckpointError(f"HDF5 file {str(target)!r} already exists",
                              hint="pass --force (export_h5(..., overwrite=True)) to replace it, or give a new file name")


def _holds_steps(d: Path) -> bool:
    from fabric_hpc.checkpoint.store import list_checkpoints
    try:
        return bool(list_checkpoints(d))
    except (OSError, CheckpointNotFoundError):
        return False


def import_h5(h5_path: Path | str, root: Path | str, *, step: int | None = None) -> SaveResult:
    """Create a checkpoint under ``root`` from an exported ``.h5`` file."""
    import h5py
    from fabric_hpc.inputs import check_path
    h5_path = Path(h5_path)
    if not h5_path.exists():
        raise CheckpointNotFoundError(f"no HDF5 file at {h5_path}",
                                      hint="check the path; write one with `fabric ckpt export CKPT --h5 FILE`")
    check_path(h5_path, what="HDF5 file")
    from fabric_hpc.inputs import os_error
    try:
        with open(h5_path, "rb"):  # permission denied is exit 5 naming the file, not "not HDF5"
            pass
    except OSError as exc:
        raise os_error(exc, "HDF5 file", h5_path) from None
    try:
        f = h5py.File(h5_path, "r")
    except OSError as exc:
        raise CheckpointCorruptError(f"{h5_path} is not a readable HDF5 file ({str(exc)[:200]})",
                                     hint="give a file written by `fabric ckpt export --h5`") from None
    with f:
        if ROOT_ATTR not in f.attrs:
            raise CheckpointCorruptError(f"{h5_path} was not exported by fabric (no {ROOT_ATTR} attribute)",
                                         hint="export it with `fabric ckpt export --h5`")
        manifest = _manifest(f.attrs[ROOT_ATTR], h5_path)
        for name in manifest.tensors:
            check_name(name)
        chunks = {name: entry.chunk_shape for name, entry in manifest.tensors.items()}
        splits = {name: entry.split for name, entry in manifest.tensors.items() if entry.split}
        with removed_on_failure(root):
            return save_stream(root, _tensors(f, manifest, h5_path),
                               step=manifest.step if step is None else step,
                               layout=manifest.layout, tags=manifest.tags, metadata=manifest.user_metadata,
                               chunk_shapes=chunks, splits=splits, record_world_size=manifest.world_size,
                               created_at=manifest.created_at, values=manifest.values)


def _tensors(f, manifest: Manifest, h5_path: Path) -> Iterator[tuple[str, HostArray]]:
    """Each dataset read and its chunks checked against the carried checksums, one at a time: the
    stream writer writes and drops it before the next is read (a damaged one aborts the import
    before anything is committed)."""
    for name, entry in manifest.tensors.items():
        data = _read_dataset(f, name, entry, h5_path)
        _check_chunks(name, data, entry, h5_path)
        yield name, HostArray(data, entry.dtype)
        del data


def _read_dataset(f, name: str, entry: TensorEntry, h5_path: Path) -> np.ndarray:
    """The stored bytes of ``name`` as the manifest's stored dtype; damage in the file's own
    structure (h5py raises KeyError/OSError/ValueError for it) is a corrupt-file error."""
    import h5py
    try:
        _check_inside(f, name, h5_path)
        ds = f[name] if name in f else None
        if not isinstance(ds, h5py.Dataset) or list(ds.shape) != entry.shape:
            raise CheckpointCorruptError(f"{h5_path}: dataset {name!r} is missing or not of shape {entry.shape}",
                                         hint="export the checkpoint again with `fabric ckpt export --h5`")
        if ds.external or ds.is_virtual:
            raise CheckpointCorruptError(
                f"{h5_path}: dataset {name!r} keeps its data outside the HDF5 file "
                f"({'external raw storage' if ds.external else 'a virtual dataset'}); import reads only "
                "data stored in the file", hint=_INSIDE_HINT)
        if ds.dtype.itemsize != np.dtype(stored_dtype(entry.dtype)).itemsize:
            raise CheckpointCorruptError(f"{h5_path}: dataset {name!r} holds {ds.dtype}, not {entry.dtype}",
                                         hint="export the checkpoint again with `fabric ckpt export --h5`")
        declared = _check_stored(ds, name, h5_path)  # before any allocation
        try:
            return np.asarray(ds[()], dtype=stored_dtype(entry.dtype))
        except MemoryError:
            from fabric_hpc.checkpoint.reshard import out_of_memory
            raise out_of_memory(name, declared, "import") from None
    except (CheckpointError, CheckpointMemoryError):
        raise  # said above, with its own fix
    except (KeyError, OSError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointCorruptError(f"{h5_path}: dataset {name!r} cannot be read ({str(exc)[:200]})",
                                     hint="the file is damaged: export the checkpoint again with "
                                          "`fabric ckpt export --h5`") from None


#: How far a filtered (compressed) dataset may expand: deflate's own limit is about 1032:1.
MAX_EXPANSION = 1100
_STORED_HINT = ("export the checkpoint again with `fabric ckpt export --h5` (it stores every dataset "
                "whole), or write every element of the dataset")


def _check_stored(ds, name: str, h5_path: Path) -> int:
    """The dataset's declared size in bytes, once the file is known to store it: a plain dataset all its
    bytes, a chunked one every chunk, a filtered one at least 1/MAX_EXPANSION of them. A dataset
    never (or partly) written reads as its fill value: import would allocate its whole declared shape
    for data the file does not hold (a 6 KB file declaring 16 GB), so it is refused before any read."""
    declared = int(ds.size) * ds.dtype.itemsize
    if declared == 0:
        return 0
    if ds.chunks is not None:
        grid = int(np.prod([-(-s // c) for s, c in zip(ds.shape, ds.chunks, strict=True)], dtype=object))
        have = ds.id.get_num_chunks()
        if have < grid:
            raise CheckpointCorruptError(
                f"{h5_path}: dataset {name!r} declares {declared:,} bytes (shape {list(ds.shape)}) but "
                f"stores {have:,} of its {grid:,} chunks: the others were never written", hint=_STORED_HINT)
    stored = ds.id.get_storage_size()
    filtered = ds.id.get_create_plist().get_nfilters() > 0
    if stored < declared and (not filtered or stored * MAX_EXPANSION < declared):
        raise CheckpointCorruptError(
            f"{h5_path}: dataset {name!r} declares {declared:,} bytes (shape {list(ds.shape)}) but the file "
            f"stores {stored:,} bytes for it{' (compressed beyond any real ratio)' if filtered else ''}: "
            "import does not allocate memory for data the file does not hold", hint=_STORED_HINT)
    return declared


_INSIDE_HINT = ("give a file written by `fabric ckpt export --h5` (its datasets hold their data), or "
                "copy the data into the file as plain datasets (h5py: read it, delete the link/dataset, "
                "write the array under the same name)")


def _check_inside(f, name: str, h5_path: Path) -> None:
    """Every path part of ``name`` is a hard link inside the file: an external link (to another
    file, a FIFO, a device) or a soft link is refused before anything is opened through it."""
    import h5py
    node = f
    parts = name.split("/")
    for i, part in enumerate(parts):
        link = node.get(part, getlink=True)
        if link is None:
            return  # missing: the caller says so
        if not isinstance(link, h5py.HardLink):
            where = "/".join(parts[:i + 1])
            external = isinstance(link, h5py.ExternalLink)
            to = f"to {link.filename}:{link.path}, outside the HDF5 file" if external \
                else f"to {getattr(link, 'path', '?')}"
            raise CheckpointCorruptError(
                f"{h5_path}: {where!r} is a {type(link).__name__} {to}; import reads only datasets "
                "stored in the file", hint=_INSIDE_HINT)
        if i < len(parts) - 1:
            node = node[part]
            if not isinstance(node, h5py.Group):
                return


def _check_chunks(name: str, data: np.ndarray, entry: TensorEntry, h5_path: Path) -> None:
    """Every chunk of ``data`` (cut on the manifest's grid, edges padded as the writer pads them)
    has the crc32c the carried manifest records for it."""
    want = {tuple(c.index): c.crc32c for c in entry.chunks}
    pieces = grid_pieces(name, data, entry.chunk_shape)
    if len(pieces) != len(want):
        raise CheckpointCorruptError(f"{h5_path}: tensor {name!r} has {len(pieces)} chunks on its grid, "
                                     f"the manifest lists {len(want)}")
    for piece in pieces:
        if want.get(tuple(piece.index)) != fsio.crc32c(piece.data, pad=piece.pad):
            raise CheckpointCorruptError(
                f"{h5_path}: tensor {name!r} chunk {piece.index} does not match the checksum exported with it "
                "(the file was changed or damaged after export)",
                hint="export the checkpoint again with `fabric ckpt export --h5`, or import another copy")


def _manifest(raw: str | bytes, h5_path: Path) -> Manifest:
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.validation import parse_model
    hint = "give a file written by `fabric ckpt export --h5`"
    try:
        manifest = parse_model(Manifest, json.loads(raw), source=f"{h5_path}: attribute {ROOT_ATTR}")
    except (ValueError, RecursionError, TypeError, ConfigError) as exc:
        raise CheckpointCorruptError(f"{h5_path}: the {ROOT_ATTR} attribute is not a valid manifest: "
                                     f"{str(exc)[:500]}", hint=hint) from None
    problems = tensor_problems(manifest.tensors)
    if problems:
        raise CheckpointCorruptError(f"{h5_path}: the manifest is inconsistent: " + "; ".join(problems[:5]),
                                     problems=problems)
    return manifest

