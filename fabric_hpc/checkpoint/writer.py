"""Synchronous save: every rank writes its own chunk files, rank 0 commits atomically.

Write path: one chunk file per rank piece (one file per tensor for a single writer), written
with few large ``write()`` calls by a bounded thread pool; crc32c is computed block by block
right before each block is written; each file is fsync'd by its writer thread. The committer
then writes the zarr.json documents and the manifest, fsyncs every directory, renames the
temporary directory into place, fsyncs the root and swaps the ``latest`` pointer.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fabric_hpc.checkpoint import fsio, store
from fabric_hpc.checkpoint.chunk_plan import Piece, plan
from fabric_hpc.checkpoint.contracts import Communicator, SingleProcess
from fabric_hpc.checkpoint.errors import CheckpointError, CheckpointIOError, CheckpointStepAppearedError
from fabric_hpc.checkpoint.health import tmp_name
from fabric_hpc.checkpoint.format import (
    FORMAT_NAME, MANIFEST, ChunkEntry, Manifest, Provenance, SplitInfo, TensorEntry, ValueLeaves,
    array_metadata, chunk_key, dumps, manifest_document, group_metadata, required_version, str_key,
)
from fabric_hpc.checkpoint.manifest_checks import tensor_group_clashes
from fabric_hpc.checkpoint.values import MAX_VALUE_DEPTH, nests_too_deep, split_state
from fabric_hpc.events import emit, finite_json

DEFAULT_THREADS = 4


@dataclass(frozen=True)
class SaveResult:
    """What a save produced (returned on every rank)."""

    path: Path
    step: int
    nbytes: int
    seconds: float
    cleaned: list[str] = field(default_factory=list)
    existing: bool = False  # nothing written: the same checkpoint was already there (a rerun reshard)

    @property
    def gbps(self) -> float:
        return self.nbytes / self.seconds / 1e9 if self.seconds > 0 else float("inf")


def write_pieces(tmp: Path, pieces: list[Piece], threads: int,
                 metas: Mapping[str, dict] | None = None, *, fsync: bool = True) -> dict[str, list[dict]]:
    """Write this rank's chunk files in parallel (and the zarr.json of each tensor whose first
    chunk it holds), then fsync them in one concurrent batch (``fsync=False``: the caller
    fsyncs them later, before the commit); name -> chunk entries."""
    check_path_lengths(tmp, pieces)
    for name in sorted({p.name for p in pieces}):
        fsio.make_dirs(tmp / name)
    written: list[Path] = []

    def one(piece: Piece) -> tuple[str, dict]:
        path = tmp / piece.name / chunk_key(piece.index)
        try:
            nbytes, crc = fsio.write_file(path, piece.data, pad=piece.pad, fsync=False)
        except CheckpointIOError as exc:
            if isinstance(exc.__cause__, FileExistsError):  # another rank wrote this chunk file
                raise CheckpointError(f"{piece.name}: two ranks passed the same Shard part (both wrote "
                                      f"its chunk file {chunk_key(piece.index)})",
                                      hint="give each rank its own Shard part, e.g. part=comm.Get_rank(), "
                                           "parts=comm.Get_size()") from None
            raise
        written.append(path)
        if metas is not None and not any(piece.index):
            written.append(write_array_json(tmp, metas[piece.name]))
        return piece.name, {"index": piece.index, "nbytes": nbytes, "crc32c": crc}

    # largest first keeps the pool busy to the end
    order = sorted(pieces, key=lambda p: -p.data.nbytes)
    out: dict[str, list[dict]] = {}
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for name, entry in pool.map(one, order):
            out.setdefault(name, []).append(entry)
    # durability in one batch: fsyncs issued together share journal commits and device flushes
    if fsync:
        fsio.fsync_paths(written)
    return out


def check_path_lengths(tmp: Path, pieces: list[Piece]) -> None:
    """Refuse, before writing anything, a tensor whose chunk files' paths would be longer than the
    filesystem accepts (PATH_MAX): a deep nesting of long keys."""
    limit = fsio.path_max(tmp)
    base = len(os.fsencode(os.path.abspath(tmp)))
    for piece in pieces:
        longest = max(len(chunk_key(piece.index)), len("zarr.json"))
        need = base + 1 + len(piece.name.encode()) + 1 + longest
        if need >= limit:
            name = piece.name if len(piece.name) <= 120 else f"{piece.name[:80]}...{piece.name[-30:]}"
            raise CheckpointError(
                f"tensor {name!r} ({len(piece.name.encode())} bytes): its chunk file's path under "
                f"{tmp.parent} would be {need} bytes, over the filesystem's path limit of {limit} bytes",
                hint="use shorter or fewer nested keys for it, or a checkpoint root with a shorter path")


def write_array_json(tmp: Path, meta: dict) -> Path:
    """The ``zarr.json`` of one tensor (not fsync'd: the caller batches it before the commit)."""
    entry = TensorEntry(**_entry_kwargs(meta), chunks=[])
    path = tmp / meta["path"] / "zarr.json"
    fsio.write_small(path, dumps(array_metadata(entry)), fsync=False)
    return path


def _entry_kwargs(meta: dict) -> dict:
    return {**meta, "split": SplitInfo(**meta["split"]) if meta["split"] else None}


def save(directory: Path | str, state: Mapping[str, Any], *, step: int,
         comm: Communicator | None = None, layout: Mapping[str, Any] | None = None,
         tags: list[str] | tuple[str, ...] | None = (), metadata: Mapping[str, Any] | None = None,
         chunk_shapes: Mapping[str, list[int]] | None = None,
         splits: Mapping[str, SplitInfo] | None = None, record_world_size: int | None = None,
         threads: int = DEFAULT_THREADS, _after_chunks: Any = None,
         _created_at: str | None = None, _values: ValueLeaves | None = None) -> SaveResult:
    """Save ``state`` (nested dicts of arrays/tensors/:class:`Shard`) as checkpoint ``step``.

    With ``comm`` (an mpi4py communicator) every rank calls this with its own pieces; rank 0
    commits. Returns the committed checkpoint on every rank.

    ``chunk_shapes`` and ``splits`` (name -> :class:`SplitInfo`) lay out whole tensors written by one
    process as if they had been split (used by offline resharding and HDF5 import);
    ``record_world_size`` overrides the world size written to the manifest.

    Non-tensor leaves (None, bool, int, float, str, lists/tuples/dicts of them: an optimizer's
    ``param_groups``) are stored in the manifest and int keys are kept (``checkpoint.values``);
    ``_values`` gives them already encoded (async saves, reshard, HDF5 import).
    """
    comm = comm or SingleProcess()
    rank, world = comm.Get_rank(), comm.Get_size()
    root = store.as_path(directory, "directory")
    t0 = time.perf_counter()
    steps = check_header_everywhere(comm, step, layout, tags, metadata)
    started = collective(comm, lambda: (same_step(steps), _begin(root, step))[1] if rank == 0 else None)
    tmp, cleaned = Path(started[0]), started[1]
    values = _values  # this rank's non-tensor leaves (split off inside work: an error reaches every rank)
    try:
        def work() -> tuple[dict, dict]:
            nonlocal values
            tensors, found = split_state(state)
            values = _values if _values is not None else found
            metas, pieces = plan(tensors, rank, world, chunk_shapes, splits)
            written = write_pieces(tmp, pieces, threads, metas)
            if _after_chunks is not None:
                _after_chunks()
            return metas, written
        result = gather_or_raise(comm, work)
        header = save_header(step, record_world_size or world, layout, tags, metadata, _created_at, values)
        final = collective(comm, lambda: str(_commit(root, tmp, header, result)) if rank == 0 else None)
    except BaseException:
        if rank == 0:
            fsio.remove_tree(tmp)
        raise
    nbytes = sum(c["nbytes"] for _, w in (result or []) for cs in w.values() for c in cs) \
        if rank == 0 else 0
    nbytes = comm.bcast(nbytes, root=0)
    res = SaveResult(Path(final), step, nbytes, time.perf_counter() - t0, cleaned)
    if rank == 0:
        saved_event(final, step, nbytes, tier="direct", seconds=res.seconds,
                    world_size=record_world_size or world, nodes=None)
    return res


def saved_event(path: Path | str, step: int, nbytes: int, *, tier: str, seconds: float, world_size: int,
                nodes: int | None) -> None:
    """``checkpoint.saved``, one schema for every writer (docs/events.md): ``tier`` is ``direct``
    (:func:`save`, the stream writer), ``local`` (a node's tiered save) or ``shared`` (the drained
    copy, committed); ``seconds`` is that write's; ``nodes`` the tiered save's node count (None: direct)."""
    emit("checkpoint.saved", path=str(path), step=step, bytes=nbytes, tier=tier, seconds=round(seconds, 3),
         world_size=world_size, nodes=nodes)


def check_header(step: Any, layout: Any, tags: Any, metadata: Any) -> None:
    """Fail before writing anything if the manifest fields cannot be stored as JSON."""
    import json

    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"step must be a non-negative integer, got {step!r}")
    if step > store.MAX_STEP:
        raise CheckpointError(f"step {step} has more than 10 digits: checkpoint directories are step-NNNNNNNNNN",
                              hint=f"use a step of at most {store.MAX_STEP} (a counter, not a timestamp in ms)")
    tags = () if tags is None else tags  # None means no tags, as layout=None and metadata=None do
    if isinstance(tags, (str, bytes)) or not isinstance(tags, (list, tuple)) \
            or not all(isinstance(t, str) for t in tags):
        raise CheckpointError(f"tags must be a list of strings, got {tags!r}",
                              hint="e.g. tags=['best'] (a single string is not a list of tags)")
    for what, value in (("layout", layout), ("metadata", metadata)):
        if value is not None and not isinstance(value, Mapping):
            raise CheckpointError(f"{what} must be a dict (a JSON object), "
                                  f"got {type(value).__name__} {value!r:.60}",
                                  hint=f"e.g. {what}={{'lr': 3e-4}}, or leave it out")
        for key in dict(value or {}):
            if not isinstance(key, str):
                raise CheckpointError(f"{what} key {key!r} is a {type(key).__name__}; "
                                      f"{what} keys must be strings",
                                      hint=f"use {what}={{{str_key(key)!r}: ...}}")
        try:
            json.dumps(dict(value or {}), allow_nan=False)
        except (TypeError, ValueError) as exc:
            _name_nonfinite(dict(value or {}), what)
            raise CheckpointError(f"{what} must be a JSON object of plain values: {exc}",
                                  hint="pass numbers, strings, lists and dicts (no tensors or objects)") from None
        except RecursionError:
            deep = True
        else:  # a manifest reader refuses deeper nesting: pydantic cannot serialize it
            deep = any(nests_too_deep(x) for x in dict(value or {}).values())
        if deep:
            raise CheckpointError(f"{what} nests lists and dicts more than {MAX_VALUE_DEPTH} levels deep",
                                  hint="flatten it, or keep deep data in the saved state (or a file) instead")


def _name_nonfinite(value: dict, what: str) -> None:
    """A NaN loss is a number to its writer: a CheckpointError naming the first NaN or infinity in
    ``value`` (one json.dumps refused), and where such a number can be kept."""
    undefined: list[str] = []
    with contextlib.suppress(RecursionError):  # also circular (json.dumps's own message then)
        finite_json(value, what, undefined)
    if undefined:
        raise CheckpointError(f"{undefined[0]} is NaN or infinite: {what} is strict JSON, "
                              "without NaN or infinities",
                              hint="keep such a number in the saved state instead (a non-tensor leaf "
                                   "keeps NaN and infinities exactly), as a string, or leave it out")


def check_header_everywhere(comm: Communicator, step: Any, layout: Any, tags: Any,
                            metadata: Any) -> list | None:
    """:func:`check_header` on every rank, as a collective: a bad step, tags or metadata on any rank
    is raised on every rank (checked on one rank alone, the others hung in the save's first
    collective). Returns every rank's step on rank 0 (for :func:`same_step`), None elsewhere."""
    def mine() -> Any:
        check_header(step, layout, tags, metadata)
        return step
    return gather_or_raise(comm, mine)


def same_step(steps: list | None) -> None:
    """Refuse (on rank 0: run it inside a :func:`collective`) ranks that passed different steps."""
    if steps and len(set(steps)) > 1:
        shown = ", ".join(f"rank {r}: {s}" for r, s in enumerate(steps[:8]))
        shown += ", ..." if len(steps) > 8 else ""
        raise CheckpointError(f"ranks passed different steps: {shown}",
                              hint="pass the same step on every rank (e.g. comm.bcast(step, root=0))")


def inside_a_checkpoint(root: Path) -> Path | None:
    """The checkpoint that ``root`` is or lies in: the outermost of the nested Zarr groups (directories
    holding a ``zarr.json``) around it — ``step-N``, not its ``model`` group — or a save in progress (a
    ``.tmp-step-…`` directory, renamed into place at commit with whatever it holds) or being deleted."""
    found = None
    for d in (root, *root.parents):
        if (d / MANIFEST).is_file():
            found = d
        elif found is not None:
            break
        elif d.name.startswith((f"{store.TMP_PREFIX}step-", f"{store.TRASH_PREFIX}step-")) and d.is_dir():
            return d
    return found


def refuse_inside_checkpoint(path: str | os.PathLike[str], what: str) -> None:
    """CheckpointError (a ConfigError) when ``path`` is, or lies inside, a committed checkpoint step
    directory: what a prepare or an export writes there would change the checkpoint, which ``prune``
    then deletes with it. Symlinks are resolved too."""
    for p in {Path(os.path.abspath(path)), Path(path).resolve()}:
        if (inside := inside_a_checkpoint(p)) is not None:
            raise CheckpointError(f"refusing to write {what} {str(path)!r}: it is inside the checkpoint "
                                  f"{inside}",
                                  hint="give a path outside every checkpoint step directory (e.g. beside the "
                                       "checkpoint root); the checkpoint is only read")


def _begin(root: Path, step: int) -> tuple[str, list[str]]:
    if (inside := inside_a_checkpoint(Path(os.path.abspath(root)))) is not None:
        raise CheckpointError(f"refusing to save into {root}: it is inside the committed checkpoint {inside}",
                              hint="give a checkpoint root outside every step-N directory")
    if os.path.lexists(root) and not os.path.isdir(root):
        raise CheckpointError(f"checkpoint root {root} exists and is not a directory",
                              hint="give a directory (new or holding checkpoints) as the checkpoint root")
    fsio.make_dirs(root)
    with store.root_lock(root):
        cleaned = store.clean_leftovers(root)
        if (root / store.step_dir_name(step)).exists():
            raise CheckpointError(f"checkpoint for step {step} already exists in {root}",
                                  hint="save under a new step (`fabric ckpt` imports: --step N, convert: "
                                       "--out-step M), or prune/delete the old one first")
        tmp = root / tmp_name(store.step_dir_name(step))
        fsio.make_dir(tmp)
    return str(tmp), cleaned


def collective(comm: Communicator, fn: Any) -> Any:
    """Run ``fn`` on rank 0 and broadcast its value, or its error to every rank."""
    try:
        out: Any = ("ok", fn())
    except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
        out = ("err", exc)
    out = comm.bcast(out, root=0)
    if out[0] == "err":
        raise out[1]
    return out[1]


def _polite_wait(comm: Communicator) -> None:
    """Wait for every rank without spinning (MPICH busy-polls in blocking collectives, which on
    an oversubscribed node steals the CPU from ranks still writing). Plain barrier otherwise."""
    ibarrier = getattr(comm, "Ibarrier", None)
    if ibarrier is None or comm.Get_size() == 1:
        return
    req = ibarrier()
    while not req.Test():
        time.sleep(0.0005)


def gather_or_raise(comm: Communicator, fn: Any) -> list | None:
    try:
        mine: Any = ("ok", fn())
    except Exception as exc:  # noqa: BLE001
        mine = ("err", exc)
    _polite_wait(comm)
    gathered = comm.gather(mine, root=0)
    errors = [g[1] for g in gathered or [] if g[0] == "err"]
    first = comm.bcast(errors[0] if errors else (mine[1] if mine[0] == "err" else None), root=0)
    if first is not None:
        raise first
    return [g[1] for g in gathered] if gathered else None


def build_manifest(header: dict[str, Any], per_rank: list) -> Manifest:
    """The manifest of a save from every rank's (metadata, written chunks); checks completeness."""
    tensors = _merge(per_rank)
    version = required_version(tensors, header.get("values"))
    return Manifest(format=FORMAT_NAME, format_version=version, **header,
                    nbytes=sum(c.nbytes for t in tensors.values() for c in t.chunks), tensors=tensors)


def save_header(step: int, world: int, layout: Mapping[str, Any] | None, tags: Any,
                metadata: Mapping[str, Any] | None, created_at: str | None = None,
                values: ValueLeaves | None = None) -> dict[str, Any]:
    return {"step": step, "world_size": world, "layout": dict(layout or {}), "tags": list(tags or ()),
            "user_metadata": dict(metadata or {}), "values": values,
            "created_at": created_at or datetime.now(UTC).isoformat(timespec="seconds")}


def provenance() -> Provenance:
    """This process's host, user and Slurm job, and the time now (microseconds)."""
    import getpass
    import socket
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no $USER (a container's uid)
        user = None
    job = os.environ.get("SLURM_JOB_ID") or None
    return Provenance(host=socket.gethostname(), user=user, slurm_job_id=job,
                      saved_at=datetime.now(UTC).isoformat(timespec="microseconds"))


def _commit(root: Path, tmp: Path, header: dict[str, Any], per_rank: list) -> Path:
    manifest = build_manifest(header, per_rank)
    step = header["step"]
    write_metadata(tmp, manifest)
    final = root / store.step_dir_name(step)
    with store.root_lock(root):
        if final.exists():
            raise CheckpointStepAppearedError(
                f"checkpoint for step {step} appeared in {root} during the save (another save of the "
                "same step committed first)", path=final,
                hint=f"run one save per step and root; check the one there with "
                     f"`fabric ckpt verify {final}`, or save under another step or root")
        store.rename_into_place(root, tmp, final)
    return final


def _merge(per_rank: list[tuple[dict, dict]]) -> dict[str, TensorEntry]:
    metas: dict[str, dict] = {}
    chunks: dict[str, list[dict]] = {}
    for rank, (rank_metas, written) in enumerate(per_rank):
        for name, meta in rank_metas.items():
            if metas.setdefault(name, meta) != meta:
                raise CheckpointError(f"{name}: rank {rank} disagrees with rank 0 about the tensor: "
                                      f"{meta} vs {metas[name]}")
        for name, entries in written.items():
            chunks.setdefault(name, []).extend(entries)
    if clashes := tensor_group_clashes(metas):
        raise CheckpointError(clashes[0], hint="give the tensor and the group different names")
    out = {}
    for name in sorted(metas):
        entries = sorted(chunks.get(name, []), key=lambda c: c["index"])
        out[name] = TensorEntry(**_entry_kwargs(metas[name]), chunks=[ChunkEntry(**c) for c in entries])
    from fabric_hpc.checkpoint.manifest_checks import tensor_problems
    problems = tensor_problems(out)
    if problems:
        raise CheckpointError("ranks did not write a complete checkpoint: " + "; ".join(problems[:5]),
                              hint="every rank must pass the same tensor names and all parts")
    return out


def write_metadata(tmp: Path, manifest: Manifest, *, all_arrays: bool = False) -> None:
    """zarr.json for every group and the root (with the manifest), and for every array whose
    chunk 0 no rank wrote (or all arrays), then fsync all of them and every directory,
    concurrently. The checkpoint is not visible until the rename."""
    groups: set[str] = set()
    written: list[Path] = []
    for name, entry in manifest.tensors.items():
        if all_arrays or not any(not any(c.index) for c in entry.chunks):
            fsio.make_dirs(tmp / name)
            fsio.write_small(tmp / name / "zarr.json", dumps(array_metadata(entry)), fsync=False)
            written.append(tmp / name / "zarr.json")
        parts = name.split("/")
        groups.update("/".join(parts[:i]) for i in range(1, len(parts)))
    for group in sorted(groups):
        fsio.write_small(tmp / group / "zarr.json", dumps(group_metadata()), fsync=False)
        written.append(tmp / group / "zarr.json")
    fsio.write_small(tmp / MANIFEST, dumps(manifest_document(manifest, provenance())), fsync=False)
    written.append(tmp / MANIFEST)
    dirs = [Path(d) for d, _, _ in os.walk(tmp)]
    fsio.fsync_paths(written + dirs)
