"""Restore (with resharding onto any world size) and verify."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fabric_hpc.checkpoint import fsio, store, values
from fabric_hpc.checkpoint.errors import (
    CheckpointCorruptError, CheckpointError, CheckpointIOError, CheckpointNotFoundError,
)
from fabric_hpc.checkpoint.health import step_mismatch
from fabric_hpc.checkpoint.format import (
    FP8_DTYPES, MANIFEST, Manifest, TensorEntry, array_metadata, chunk_key, flatten, parse_manifest,
    unflatten,
)
from fabric_hpc.checkpoint.reader import Checkpoint, check_dtype, dtype_kind, open_checkpoint, read_manifest
from fabric_hpc.checkpoint.tensors import check_mesh
from fabric_hpc.errors import require_whole
from fabric_hpc.events import emit

Progress = Callable[[int], None]


def restore(path: Path | str, *, step: int | None = None, names: list[str] | None = None,
            rank: int | None = None, world_size: int = 1, mesh: tuple[int, ...] | None = None,
            into: Mapping[str, Any] | None = None, dtype: Any = None, as_torch: bool = False,
            threads: int = 4, progress: Progress | None = None) -> dict[str, Any]:
    """Restore a checkpoint as nested dicts.

    Tensors saved split (``Shard``) come back as this rank's part of ``world_size`` parts along
    the first dimension they were split on (resharding: any world size); the others come back
    whole. ``mesh`` (e.g. ``(2, 4)``, product = ``world_size``) restores tensors split over as
    many dimensions as a block of that mesh instead: rank -> mesh coordinates row-major, like
    ``torch.distributed.DeviceMesh``. ``rank`` is required when ``world_size`` > 1. ``names``
    selects tensors (partial restore; a prefix selects a subtree); ``into`` gives preallocated
    targets (nested dicts of arrays/tensors) that are filled in place and returned (a non-tensor
    leaf there, e.g. ``param_groups``, asks for the stored value, returned in its place); ``dtype``
    (a floating dtype, not fp8: a cast without scales saturates) casts the floating tensors read:
    integer and bool tensors (steps, ids, masks) and 0-d (scalar) tensors of any dtype (PyTorch
    Adam's float32 ``step``, a GradScaler's scale) are never cast. A target whose integer dtype
    cannot hold the stored one is refused, and so is an fp8 target, and a cast (``dtype`` or a
    narrower float target) that would turn a stored finite value into inf.

    A failed restore never writes damaged bytes into ``into``: every target's shape and dtype
    (and every chunk file's size) is checked before any is written, and each chunk's CRC-32C
    before its bytes are copied; a damaged chunk found after others leaves their values filled.
    """
    if isinstance(names, (str, bytes)) or not (names is None or isinstance(names, Iterable)):
        raise CheckpointError(f"names must be a list of tensor names or prefixes, got {names!r}",
                              hint=f"e.g. names=[{names!r}] (a single string is not a list of names)")
    names = None if names is None else list(names)
    if into is not None and not isinstance(into, Mapping):
        raise CheckpointError(f"into must be nested dicts of arrays/tensors, got {type(into).__name__}",
                              hint="e.g. into={'model': {'w': np.empty(...)}} (the names the checkpoint holds)")
    dtype = check_dtype(dtype) if dtype is not None else None  # "bfloat16", torch.bfloat16, np.float32
    if dtype is not None and dtype_kind(dtype) != "f":
        raise CheckpointError(f"restore's dtype casts floating tensors only, got {dtype}",
                              hint="give a floating dtype (e.g. float32, bfloat16); integer and bool tensors "
                                   "are restored as stored")
    if dtype in FP8_DTYPES:  # a plain cast has no scale: 1e6 would become 448
        raise CheckpointError(f"restore cannot cast to {dtype}: a cast without per-tensor scales saturates "
                              f"(float8_e4m3fn holds at most 448)",
                              hint="restore as bfloat16 or float32; make an fp8 checkpoint with scales with "
                                   "`fabric ckpt convert` (a recipe casting to fp8)")
    for attempt in range(3):
        try:
            return _restore_once(path, step, names, _Parts(rank, world_size, mesh), into, dtype,
                                 as_torch, threads, progress)
        except CheckpointNotFoundError as exc:
            # the checkpoint `latest` named was pruned between resolving and locking it: the
            # newest one is another checkpoint now; try again (only when no step was pinned)
            if step is not None or "pruned" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


class _Parts:
    """Which part of a split tensor this rank restores."""

    def __init__(self, rank: int | None, world_size: int, mesh: tuple[int, ...] | None) -> None:
        for what, v in (("rank", rank), ("world_size", world_size)):
            whole = isinstance(v, (int, np.integer)) and not isinstance(v, bool)
            if not whole and (v is not None or what == "world_size"):
                raise CheckpointError(f"restore's {what} must be a whole number, got {v!r}",
                                      hint="restore(path, rank=comm.Get_rank(), world_size=comm.Get_size())")
        require_whole(int(world_size), "world_size", minimum=1, error=CheckpointError,
                      hint="the restoring job's number of ranks: restore(path, rank=comm.Get_rank(), "
                           "world_size=comm.Get_size()), or leave it out (1) in a single process")
        if rank is None:
            if world_size > 1:
                raise CheckpointError(f"restore with world_size={world_size} needs this process's rank "
                                      f"(without it every rank would get rank 0's part)",
                                      hint="restore(path, rank=comm.Get_rank(), world_size=comm.Get_size())")
            rank = 0
        rank, world_size = int(rank), int(world_size)
        if not 0 <= rank < world_size:
            raise CheckpointError(f"rank {rank} is outside world size {world_size}",
                                  hint="pass the restoring job's world size with the rank: restore(path, "
                                       "rank=comm.Get_rank(), world_size=comm.Get_size())" if world_size == 1
                                  else f"rank must be in 0..{world_size - 1}: pass each rank's own "
                                       "comm.Get_rank() and the restoring job's comm.Get_size()")
        check_mesh(mesh, world_size)
        self.rank, self.world_size, self.mesh = rank, world_size, mesh
        self.coords = tuple(int(c) for c in np.unravel_index(rank, mesh)) if mesh else None

    def region(self, ckpt: Checkpoint, name: str, entry: TensorEntry) -> Any:
        """The region of ``name`` this rank restores (None: the whole tensor)."""
        if entry.split is None or self.world_size == 1:
            return None
        dims = entry.split.dims
        if self.mesh is not None and len(dims) == len(self.mesh):
            return ckpt.shard_region(name, self.coords, self.mesh, dim=tuple(dims))
        return ckpt.shard_region(name, self.rank, self.world_size, dim=dims[0])


def _restore_once(path: Path | str, step: int | None, names: list[str] | None, parts: _Parts,
                  into: Mapping[str, Any] | None, dtype: str | None,
                  as_torch: bool, threads: int, progress: Progress | None) -> dict[str, Any]:
    ckpt = open_checkpoint(path, step)
    targets = dict(flatten(into)) if into is not None else {}
    wanted = _select(ckpt, names, targets)
    out: dict[str, Any] = {}
    with store.reading(ckpt.ref):
        require_readable(ckpt)
        # every target's shape and dtype, and every chunk file's size, before any target is written
        regions = {n: parts.region(ckpt, n, ckpt.entry(n)) for n in wanted}
        for name in wanted:
            ckpt.check(name, region=regions[name], out=targets.get(name))

        def one(name: str) -> tuple[str, Any]:
            entry = ckpt.entry(name)
            # 0-d tensors (Adam's float32 `step`, a loss scale) come back as stored: bf16 turns 3001 into 3008
            cast = dtype if name not in targets and dtype_kind(entry.dtype) == "f" and entry.shape else None
            value = ckpt.read(name, region=regions[name], out=targets.get(name), dtype=cast,
                              as_torch=as_torch)
            if progress:
                progress(entry_nbytes(ckpt, name))
            return name, value

        order = sorted(wanted, key=lambda n: -entry_nbytes(ckpt, n))
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            for name, value in pool.map(one, order):
                out[name] = value
    emit("checkpoint.restored", path=str(ckpt.path), step=ckpt.step, tensors=len(out),
         rank=parts.rank, world_size=parts.world_size)
    picked = values.selected(ckpt.manifest.values, lambda n: _wanted_value(n, names, targets))
    out.update({n: _narrowed(n, v, names) for n, v in picked.items()})
    tree = unflatten({n: out[n] for n in sorted(out)})
    if ckpt.manifest.values is not None:
        values.restore_int_keys(tree, ckpt.manifest.values.int_keys)
    return tree


def _wanted_value(name: str, names: list[str] | None, targets: Mapping[str, Any]) -> bool:
    """Non-tensor leaves come back with a whole restore, or when ``names`` selects them, or a name
    inside them (a dict holding no tensors is one value; a restore into targets returns what it
    filled and the values its non-tensor leaves name)."""
    if name in targets:  # a non-tensor leaf of ``into`` (checked: stored as a value)
        return True
    if names is None:
        return not targets
    return any(name == w or name.startswith(w.rstrip("/") + "/") or w.startswith(name + "/") for w in names)


def _narrowed(name: str, value: Any, names: list[str] | None) -> Any:
    """The parts of the value ``name`` (a dict holding no tensors) that ``names`` points inside
    (``cfg/lr`` of ``cfg``), nested under their own keys; the whole value when a name selects it.
    A path that does not lead through its dicts is not found."""
    inside = [w[len(name) + 1:] for w in names or () if w.startswith(name + "/")]
    if not inside or any(name == w or name.startswith(w.rstrip("/") + "/") for w in names or ()):
        return value
    out: dict = {}
    for rest in inside:
        node, into, parts = value, out, rest.rstrip("/").split("/")
        for i, part in enumerate(parts):
            key = next((k for k in node if str(k) == part), None) if isinstance(node, dict) else None
            if key is None:
                raise CheckpointNotFoundError(
                    f"no {name + '/' + rest!r} in the checkpoint: the value {name!r} (a dict holding no "
                    f"tensors) has no {'/'.join(parts[:i + 1])!r}",
                    hint=f"names=[{name!r}] restores the whole value (its keys may hold '/')")
            node = node[key]
            into = into.setdefault(key, {}) if i < len(parts) - 1 else into
            if i == len(parts) - 1:
                into[key] = node
    return out


def entry_nbytes(ckpt: Checkpoint, name: str) -> int:
    return sum(c.nbytes for c in ckpt.entry(name).chunks)


def _select(ckpt: Checkpoint, names: list[str] | None, targets: Mapping[str, Any]) -> list[str]:
    if targets:
        _check_targets(ckpt, targets)
    if names is None:
        return [n for n in targets if values.is_tensor_like(targets[n])] if targets else ckpt.names
    chosen = []
    for want in names:
        hit = [n for n in ckpt.names if n == want or n.startswith(want.rstrip("/") + "/")]
        if not hit and not values.selected(ckpt.manifest.values, lambda n: _wanted_value(n, [want], {})):
            ckpt.entry(want)  # raises with suggestions
        chosen.extend(hit)
    return sorted(set(chosen))


def _check_targets(ckpt: Checkpoint, targets: Mapping[str, Any]) -> None:
    """Every ``into`` leaf names what the checkpoint holds: a tensor target a tensor, a non-tensor
    (an optimizer's ``param_groups``, a scheduler's ``state_dict()``) a value, which comes back in
    the returned dict (Python values cannot be filled in place)."""
    stored = ckpt.manifest.values.leaves if ckpt.manifest.values is not None else {}
    missing = []
    for name, target in targets.items():
        if values.is_tensor_like(target):
            if name in stored:
                raise CheckpointError(
                    f"into[{name!r}] is a {type(target).__name__}, but the checkpoint holds a value (not a "
                    f"tensor) at {name!r}",
                    hint="put the value itself (e.g. the state_dict()'s) or None there: it comes back in the "
                         "dict restore returns")
            if name not in ckpt.manifest.tensors:
                missing.append(name)
        elif name not in stored:
            inside = [n for n in ckpt.names if n == name or n.startswith(name + "/")]
            if not inside:
                missing.append(name)
                continue
            where, what = _placeholder(name, target, inside)
            first = next(n for n in inside if n == where or n.startswith(where + "/"))
            entry = ckpt.entry(first)
            there = "a tensor there" if first == where else f"tensors under it ({first!r} first)"
            raise CheckpointError(
                f"into target {where!r} is {what}, not a tensor target: the checkpoint stores {there}",
                hint=f"give preallocated arrays/tensors ({first!r}: shape {tuple(entry.shape)}, "
                     f"{entry.dtype}; an optimizer that has not stepped has no state tensors to fill), or "
                     f"leave it out of into=: restore(path, names=[{where!r}]) returns new arrays")
    if missing:
        raise CheckpointNotFoundError(f"into= targets not in the checkpoint (neither a tensor nor a value): "
                                      f"{missing[:5]}",
                                      hint="list what it holds with `fabric ckpt show --json`")


def _placeholder(name: str, target: Any, inside: list[str]) -> tuple[str, str]:
    """(the stored tensor name a non-tensor ``into`` leaf stands for, what that leaf is): a dict
    holding no tensor (``{"w": None}``) flattens to one leaf; look inside it for a stored name."""
    node, path = target, name
    while isinstance(node, Mapping):
        key = next((k for k in node
                    if any(n == f"{path}/{k}" or n.startswith(f"{path}/{k}/") for n in inside)), None)
        if key is None:
            break
        node, path = node[key], f"{path}/{key}"
    where = path
    what = ("an empty dict" if node == {} else "a dict holding no tensors") if isinstance(node, Mapping) \
        else "None" if node is None else f"a {type(node).__name__}"
    return where, what


@dataclass
class VerifyReport:
    """The outcome of :func:`verify`: empty ``problems`` means intact."""

    path: Path
    step: int | None  # None: the report of a root itself (its ``latest``, step dirs without a manifest)
    tensors: int = 0
    chunks: int = 0
    nbytes: int = 0
    problems: list[str] = field(default_factory=list)
    unreadable: bool = False  # permission denied: nothing could be checked (exit 5, not damage)
    warnings: list[str] = field(default_factory=list)  # not damage (a root's ``latest`` naming a gone step)
    newer_format: bool = False  # a newer fabric-hpc wrote it: not checked (``problems`` says why), not damage

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def damaged(self) -> bool:
        return not self.ok and not self.newer_format

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "step": self.step, "ok": self.ok, "tensors": self.tensors,
                "chunks": self.chunks, "bytes": self.nbytes, "problems": self.problems,
                "unreadable": self.unreadable, "warnings": self.warnings, "newer_format": self.newer_format}


def verify(path: Path | str, *, step: int | None = None, threads: int = 2,
           progress: Progress | None = None) -> VerifyReport:
    """Check every chunk's size and crc32c, every zarr.json against the manifest, and that no
    chunk file is missing or unexpected. Never raises for damage: it is listed in the report."""
    try:
        ref = store.resolve(path, step)
    except CheckpointCorruptError as exc:  # a damaged `latest`, or a step that is not committed
        return VerifyReport(Path(path), None, problems=[exc.message])
    report = VerifyReport(ref.path, ref.step if ref.step >= 0 else None)
    try:
        manifest = parse_manifest(read_manifest(ref.path), str(ref.path / MANIFEST))
        if (why := step_mismatch(ref.path, manifest)) is not None:
            report.problems.append(why)
    except CheckpointIOError as exc:  # permission denied
        report.problems.append(exc.message)
        report.unreadable = True
        return report
    except CheckpointCorruptError as exc:
        report.problems.extend(exc.problems or [exc.message])
        return report
    except CheckpointNotFoundError:
        report.problems.append(f"{ref.path}: {MANIFEST} is missing")
        return report
    report.tensors = len(manifest.tensors)
    pruned = CheckpointNotFoundError(f"checkpoint {ref.path} was removed while it was being verified "
                                     "(pruned?)", hint="verify the newest one again (`fabric ckpt list`)")
    try:
        with store.reading(ref):  # prune skips a step being verified, as one being restored
            report.problems.extend(_content_problems(ref.path, manifest, threads, progress))
    except CheckpointNotFoundError:
        raise pruned from None
    except CheckpointCorruptError as exc:  # the manifest turned into a symlink meanwhile
        report.problems.append(exc.message)
    if report.problems and not os.path.isdir(ref.path):  # removed anyway (rm -rf): not damage
        raise pruned
    report.chunks = sum(len(e.chunks) for e in manifest.tensors.values())
    report.nbytes = sum(c.nbytes for e in manifest.tensors.values() for c in e.chunks)
    return report


def _content_problems(step_dir: Path, manifest: Manifest, threads: int,
                      progress: Progress | None) -> list[str]:
    """What :func:`verify` finds under ``step_dir`` besides the manifest: its structure, then every chunk."""
    special, meta = structure_problems(step_dir, manifest)
    named = _special_paths(special)  # already reported: not again as a bad chunk
    tasks = []
    for name, entry in manifest.tensors.items():
        for chunk in entry.chunks:
            if not _under(f"{name}/{chunk_key(chunk.index)}", named):
                tasks.append((f"{name}/{chunk_key(chunk.index)}", chunk.nbytes, chunk.crc32c))

    def check(task: tuple[str, int, int]) -> str | None:
        rel, nbytes, crc = task
        problem = _check_file(step_dir, rel, nbytes, crc)
        if progress:
            progress(nbytes)
        return f"{rel}: {problem}" if problem else None

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return special + meta + [p for p in pool.map(check, sorted(tasks, key=lambda t: -t[1])) if p]


def structure_problems(step_dir: Path, manifest: Manifest) -> tuple[list[str], list[str]]:
    """What :func:`verify` checks besides the chunk bytes: (symlinks, FIFOs, sockets and devices
    under the step directory; each array's ``zarr.json`` against the manifest and unexpected
    chunk files). The one check of "is this step readable" that verify and the restores share."""
    special = _special_entries(step_dir)
    named = _special_paths(special)
    meta = [p for name, entry in manifest.tensors.items() if not _under(f"{name}/zarr.json", named)
            for p in _check_array_meta(step_dir, name, entry)]
    return special, meta


def _special_paths(special: list[str]) -> set[str]:
    """The paths :func:`_special_entries` reported (a symlinked tensor directory is one problem)."""
    return {p.split(": ", 1)[0] for p in special}


def _under(rel: str, paths: set[str]) -> bool:
    """Whether ``rel`` is one of ``paths`` or lies under one of them."""
    parts = rel.split("/")
    return any("/".join(parts[:i]) in paths for i in range(1, len(parts) + 1))


def require_readable(ckpt: Checkpoint) -> None:
    """CheckpointCorruptError unless ``ckpt`` passes :func:`verify`'s structural checks (the chunk
    bytes, sizes and CRC-32C, are checked as each chunk is read). Restore and reshard call it
    while holding the readers' lock, so what verify calls DAMAGED is never restored."""
    special, meta = structure_problems(ckpt.path, ckpt.manifest)
    if special or meta:
        require_intact(VerifyReport(ckpt.path, ckpt.step, problems=special + meta))


def _check_array_meta(root: Path, name: str, entry: Any) -> list[str]:
    import json
    try:
        doc = json.loads(fsio.read_in(root, f"{name}/zarr.json", 1 << 20))
    except FileNotFoundError:
        return [f"{name}/zarr.json: missing"]
    except fsio.UnsafeFileError as exc:
        return [exc.strerror]
    except (ValueError, RecursionError):
        return [f"{name}/zarr.json: not valid JSON"]
    if not isinstance(doc, dict):
        return [f"{name}/zarr.json: not a JSON object"]
    want = array_metadata(entry)
    problems = [f"{name}/zarr.json: {k} is {doc.get(k)!r}, manifest says {want[k]!r}"
                for k in ("shape", "data_type", "chunk_grid", "chunk_key_encoding", "codecs", "node_type",
                          "zarr_format") if doc.get(k) != want[k]]
    attrs = doc.get("attributes")
    fabric = attrs.get("fabric") if isinstance(attrs, dict) else None  # other attributes are the user's
    if fabric != want["attributes"]["fabric"]:
        problems.append(f"{name}/zarr.json: attributes.fabric is {fabric!r}, manifest says "
                        f"{want['attributes']['fabric']!r}")
    expected = {chunk_key(c.index) for c in entry.chunks}
    # regular files only: a symlink, FIFO, socket or device is listed once, by _special_entries
    try:
        found = {e.name for e in os.scandir(root / name)
                 if (e.name == "c" or e.name.startswith("c.")) and e.is_file(follow_symlinks=False)}
    except OSError as exc:  # removed (or replaced) since its zarr.json was read
        return [*problems, f"{name}: cannot be listed ({exc.strerror})"]
    problems += [f"{name}/{k}: chunk file not in the manifest" for k in sorted(found - expected)]
    return problems


def _special_entries(step_dir: Path) -> list[str]:
    """Symlinks, FIFOs, sockets and devices anywhere under the step directory (never followed)."""
    import stat

    from fabric_hpc.inputs import kind_of
    problems, stack = [], [step_dir]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError as exc:
            problems.append(f"{os.path.relpath(d, step_dir)}: cannot be listed ({exc.strerror})")
            continue
        for e in entries:
            try:
                mode = e.stat(follow_symlinks=False).st_mode
            except FileNotFoundError:  # removed since the listing: gone is not special
                continue
            if stat.S_ISDIR(mode):
                stack.append(Path(e.path))
            elif not stat.S_ISREG(mode):
                problems.append(f"{os.path.relpath(e.path, step_dir)}: is {kind_of(mode)} (not followed)")
    return sorted(problems)


def _check_file(step_dir: Path, rel: str, nbytes: int, crc: int) -> str | None:
    try:
        fd = fsio.open_in(step_dir, rel)
    except FileNotFoundError:
        return "missing"
    except fsio.UnsafeFileError as exc:
        return exc.strerror
    try:
        size = os.fstat(fd).st_size
        if size != nbytes:
            return f"truncated or resized: {size} bytes, manifest says {nbytes}"
        got, offset = 0, 0
        buf = np.empty(min(nbytes, fsio.BLOCK), np.uint8)
        while offset < nbytes:
            piece = buf[:min(buf.size, nbytes - offset)]
            try:
                fsio.read_into(fd, piece, offset)
            except EOFError:
                return f"shrank while being read ({os.fstat(fd).st_size} bytes now, manifest says {nbytes})"
            got = fsio.crc32c(piece, got)
            offset += piece.size
        return None if got == crc else f"checksum mismatch (crc32c {got:#010x}, manifest {crc:#010x})"
    finally:
        os.close(fd)


def require_intact(report: VerifyReport) -> None:
    if not report.ok:
        raise CheckpointCorruptError(
            f"checkpoint {report.path} is damaged: " + "; ".join(report.problems[:5]) +
            (f" (+{len(report.problems) - 5} more)" if len(report.problems) > 5 else ""),
            problems=report.problems, hint="restore an older step (`fabric ckpt list`)")


__all__ = ["VerifyReport", "restore", "verify", "require_intact", "require_readable", "structure_problems",
           "CheckpointError"]
