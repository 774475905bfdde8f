"""Tiers: save to fast node-local storage, drain to a shared filesystem in the background,
restore from whichever tier holds the newest complete checkpoint. Works across nodes.

Every rank writes its chunk files into its own node's local root; no rank waits for the shared
filesystem. Ranks are grouped into nodes by a node name (the host name by default).

Local root (on each node)::

    LOCAL/step-N/        a complete checkpoint (one node holds every chunk: a single-node job)
    LOCAL/part-step-N/   this node's part of a multi-node checkpoint: its chunk files, the full
                         metadata and manifest, and ``part.json`` (token, node index, chunk list)

Shared root::

    SHARED/.drain-step-N-TOKEN/   chunk files arriving from each node, plus one ``.node-I`` marker
                                  per node, written after that node's files are fsync'd
    SHARED/step-N/                committed by the node whose marker completes the set

Each node drains its own part in a background thread (copy, fsync, marker). Under the shared
root's lock, the node that finds every marker present writes the metadata and manifest,
renames the staging directory to ``step-N`` and moves ``latest`` forward: the global commit
needs no collective call, so it can run while the training loop goes on. A node that dies
before its marker leaves a staging directory that never commits; the next commit of a later
step removes it. ``flock`` must work across nodes on the shared filesystem (NFSv4, Lustre
mounted with ``flock``, GPFS).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import re
import shutil
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabric_hpc.checkpoint import fsio, health, store
from fabric_hpc.checkpoint.contracts import Communicator, SingleProcess
from fabric_hpc.checkpoint.errors import (
    CheckpointCorruptError, CheckpointError, CheckpointNotFoundError,
)
from fabric_hpc.checkpoint.format import MANIFEST, Manifest, chunk_key, parse_manifest
from fabric_hpc.checkpoint.part_file import PART_FILE, held_chunks, read_part_file
from fabric_hpc.checkpoint.values import split_state
from fabric_hpc.checkpoint.shared_tier import (  # noqa: F401 (callers import them from here)
    DRAIN_DIR, newest_complete, wait_committed)
from fabric_hpc.checkpoint.reader import read_manifest
from fabric_hpc.checkpoint.retention import RetentionPolicy, prune, remove_if_idle
from fabric_hpc.checkpoint.chunk_plan import plan
from fabric_hpc.checkpoint.writer import (
    DEFAULT_THREADS, SaveResult, build_manifest, check_header_everywhere, collective, gather_or_raise,
    same_step, save_header, saved_event, write_metadata, write_pieces,
)
from fabric_hpc.errors import FabricError
from fabric_hpc.events import emit

PART_PREFIX = "part-"
DRAIN_PREFIX = store.DRAIN_PREFIX
_PART_DIR = re.compile(r"^part-step-(\d{10})$")


@dataclass(frozen=True)
class LocalPart:
    """What one node holds of a tiered save: a complete checkpoint (``nodes == 1``) or a part."""

    path: Path
    step: int
    token: str
    node: int
    nodes: int

    @property
    def complete(self) -> bool:
        return self.nodes == 1


def save_local(local: Path | str, state: Mapping[str, Any], *, step: int, comm: Communicator | None = None,
               node: str | None = None, layout: Mapping[str, Any] | None = None,
               tags: list[str] | tuple[str, ...] | None = (), metadata: Mapping[str, Any] | None = None,
               threads: int = DEFAULT_THREADS, shared: Path | str | None = None) -> tuple[SaveResult, LocalPart | None]:
    """Collective: every rank writes its pieces of ``state`` under its node's ``local`` root;
    each node's first rank commits what the node holds (see the module doc). Returns the
    save's result, and this node's part on the node's first rank (which drains it; None on
    the other ranks). A step already committed in ``local`` (or in ``shared``, when given) is
    refused, as a plain save of an existing step is."""
    comm = comm or SingleProcess()
    rank, world = comm.Get_rank(), comm.Get_size()
    steps = check_header_everywhere(comm, step, layout, tags, metadata)  # an error on any rank: on all
    collective(comm, lambda: same_step(steps) if rank == 0 else None)
    t0 = time.perf_counter()
    keys, leader = node_keys(comm, node)
    order = list(dict.fromkeys(keys))
    token = comm.bcast(os.urandom(6).hex() if rank == 0 else None, root=0)
    part = LocalPart(Path(local) / store.step_dir_name(step), step, token, order.index(keys[rank]), len(order))
    # named by the node's first rank (host, pid), which writes and commits it: a later save or prune
    # removes it only once that process is gone (health.leftovers)
    procs = comm.bcast(comm.gather((health.writer_host(), os.getpid()), root=0), root=0)
    host, pid = procs[keys.index(keys[rank])]
    tmp = Path(local) / f"{store.TMP_PREFIX}{store.step_dir_name(step)}-{host}-{pid}-{token[:8]}"
    gather_or_raise(comm, lambda: _begin_local(Path(local), step, tmp, shared) if leader else None)
    try:
        values = None  # this rank's non-tensor leaves (split off inside work: an error reaches every rank)

        def work() -> tuple[dict, dict]:
            nonlocal values
            tensors, values = split_state(state)
            metas, pieces = plan(tensors, rank, world)
            return metas, write_pieces(tmp, pieces, threads)
        per_rank = gather_or_raise(comm, work)
        header = save_header(step, world, layout, tags, metadata, values=values)
        manifest, held = collective(comm, lambda: _manifest_and_owners(header, per_rank, keys, order)
                                    if rank == 0 else None)
        gather_or_raise(comm, lambda: _finish_local(tmp, part, manifest, held[part.node]) if leader else None)
    except BaseException:
        if leader:
            fsio.remove_tree(tmp)
        raise
    if not part.complete:
        part = LocalPart(Path(local) / f"{PART_PREFIX}{store.step_dir_name(step)}", step, token,
                         part.node, part.nodes)
    res = SaveResult(part.path, step, manifest.nbytes, time.perf_counter() - t0)
    if rank == 0:
        saved_event(part.path, step, manifest.nbytes, tier="local", seconds=res.seconds, world_size=world,
                    nodes=part.nodes)
    return res, part if leader else None


def node_keys(comm: Communicator, node: str | None) -> tuple[list[str], bool]:
    """Collective: every rank's node name, and whether this rank is its node's first rank."""
    keys = comm.bcast(comm.gather(node or socket.gethostname(), root=0), root=0)
    return keys, keys.index(keys[comm.Get_rank()]) == comm.Get_rank()


def _begin_local(local: Path, step: int, tmp: Path, shared: Path | str | None) -> None:
    if shared is not None and (Path(shared) / store.step_dir_name(step)).exists():
        raise CheckpointError(f"checkpoint for step {step} already exists in the shared tier "
                              f"{Path(shared) / store.step_dir_name(step)}",
                              hint="save under a new step, or prune/delete the old one first")
    fsio.make_dirs(local)
    with store.root_lock(local):
        store.clean_leftovers(local)
        for name in (store.step_dir_name(step), f"{PART_PREFIX}{store.step_dir_name(step)}"):
            if (local / name).exists():
                raise CheckpointError(f"checkpoint for step {step} already exists in {local / name}",
                                      hint="save under a new step, or prune/delete the old one first")
        fsio.make_dir(tmp)


def _manifest_and_owners(header: dict, per_rank: list, keys: list[str],
                         order: list[str]) -> tuple[Manifest, list[list[list]]]:
    """The global manifest, and for each node the [tensor, chunk index] pairs it holds."""
    held: list[list[list]] = [[] for _ in order]
    for rank, (_, written) in enumerate(per_rank):
        held[order.index(keys[rank])].extend([name, c["index"]] for name, cs in written.items() for c in cs)
    return build_manifest(header, per_rank), held


def _finish_local(tmp: Path, part: LocalPart, manifest: Manifest, held: list[list]) -> None:
    write_metadata(tmp, manifest, all_arrays=True)
    local = tmp.parent
    if part.complete:
        final = local / store.step_dir_name(part.step)
    else:
        info = {"step": part.step, "token": part.token, "node": part.node, "nodes": part.nodes, "chunks": held}
        fsio.write_small(tmp / PART_FILE, json.dumps(info).encode())
        fsio.fsync_dir(tmp)
        final = local / f"{PART_PREFIX}{store.step_dir_name(part.step)}"
    with store.root_lock(local):
        if part.complete:
            store.rename_into_place(local, tmp, final)
        else:
            os.rename(tmp, final)
            fsio.fsync_dir(local)


def local_parts(local: Path | str) -> list[LocalPart]:
    """The parts of multi-node checkpoints under a local root, oldest first. A part whose part
    file is damaged is left out (and left where it is) with a ``checkpoint.part_damaged`` warning
    event: its step cannot commit to the shared tier from this node, and no restore reads parts."""
    parts, damaged = _scan_parts(local)
    for file, step, err in damaged:
        emit("checkpoint.part_damaged", path=file, step=step, problem=err.message, fix=err.hint)
    return parts


def _scan_parts(local: Path | str) -> tuple[list[LocalPart], list[tuple[str, int, CheckpointCorruptError]]]:
    """The good parts under a local root, oldest first, and (part file, step, error) of each
    damaged one."""
    out, damaged = [], []
    root = Path(local)
    for entry in (os.scandir(root) if root.is_dir() else []):
        if (m := _PART_DIR.match(entry.name)) and os.path.lexists(os.path.join(entry.path, PART_FILE)):
            step = int(m.group(1))
            try:
                info = read_part_file(Path(entry.path), step)  # a FIFO never blocks
            except CheckpointCorruptError as exc:
                damaged.append((os.path.join(entry.path, PART_FILE), step, exc))
                continue
            out.append(LocalPart(Path(entry.path), step, info["token"], info["node"], info["nodes"]))
    return sorted(out, key=lambda p: p.step), sorted(damaged, key=lambda d: d[1])


def drain(part: LocalPart, shared: Path | str) -> Path | None:
    """Copy this node's files of ``part`` into the shared staging directory, mark the node
    done, and commit ``step-N`` if every node is done. Returns the committed path (also when
    it already existed with this very manifest: a retried drain), or None while other nodes are
    still draining. A different checkpoint already committed for the step is an error: the
    part is not drained (and so never pruned from the local tier)."""
    t0 = time.perf_counter()
    shared = Path(shared)
    fsio.make_dirs(shared)
    final = shared / store.step_dir_name(part.step)
    manifest = parse_manifest(read_manifest(part.path), str(part.path / MANIFEST))  # no link, no FIFO
    if final.exists():
        return _same_checkpoint(final, part, manifest)
    if part.complete:
        held = [[name, c.index] for name, e in manifest.tensors.items() for c in e.chunks]
    else:
        held = held_chunks(part.path, part.step, manifest)  # a damaged part file: CheckpointCorruptError
    staging = shared / f"{DRAIN_PREFIX}{store.step_dir_name(part.step)}-{part.token}"
    fsio.make_dirs(staging)
    health.write_drainer(staging, part.node, part.nodes)  # before any chunk: prune keeps it while we live
    with store.root_lock(shared):  # a retried drain: its old marker must not let another node commit
        (staging / f".node-{part.node}").unlink(missing_ok=True)  # while its chunks are copied anew
    _copy_chunks(part.path, staging, held)
    fsio.write_small(staging / f".node-{part.node}", b"")
    try:
        fsio.fsync_dir(staging)
    except FileNotFoundError:  # the last node saw this marker and committed the step meanwhile (renamed staging)
        pass
    with store.root_lock(shared):
        if final.exists() or not staging.exists():
            return final if final.exists() else None
        markers = [staging / f".node-{i}" for i in range(part.nodes)]
        if not all(m.exists() for m in markers):
            return None
        if problems := health.chunk_size_problems(staging, manifest):  # never commit a step with a hole
            lacking = "; ".join(problems[:3])
            raise CheckpointCorruptError(f"step {part.step}: every node marked its part drained, but the "
                                         f"staging directory {staging} lacks chunks ({lacking})",
                                         hint="drain again from every node's local tier (TieredStore(resume="
                                              "True)); the shared tier keeps its previous step")
        write_metadata(staging, manifest, all_arrays=True)
        for m in markers + sorted(staging.glob(f"{health.DRAINER_PREFIX}*")):
            m.unlink()
        fsio.fsync_dir(staging)
        try:  # latest written before the rename, as every other commit: a full disk fails the drain whole
            store.rename_into_place(shared, staging, final)
        except FabricError:  # not committed: every node's next drain of this step starts it afresh
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _remove_stale_drains(shared, part.step)
    saved_event(final, part.step, manifest.nbytes, tier="shared", seconds=time.perf_counter() - t0,
                world_size=manifest.world_size, nodes=part.nodes)
    return final


def _same_checkpoint(final: Path, part: LocalPart, manifest: Manifest) -> Path:
    """``final`` when it is the checkpoint ``part`` belongs to (an earlier drain committed it)."""
    try:
        committed = parse_manifest(read_manifest(final), str(final / MANIFEST))
    except FabricError:
        committed = None
    if committed != manifest:
        raise CheckpointError(f"checkpoint for step {part.step} already exists in the shared tier {final}; "
                              f"the local one at {part.path} was not drained",
                              hint="save under a new step, or prune/delete the shared one, then drain again")
    return final


def _copy_chunks(src: Path, staging: Path, held: list[list], threads: int = DEFAULT_THREADS) -> None:
    """Copy this node's chunk files into ``staging`` with a few threads, then fsync them and
    their directories in one batch (as the writer does)."""
    fsio.make_dirs(staging)
    dirs = {staging}
    for name in {name for name, _ in held}:
        d = staging / name
        fsio.make_dirs(d)
        while d != staging:
            dirs.add(d)
            d = d.parent

    def one(item: list) -> Path:
        name, index = item
        dst = staging / name / chunk_key(index)
        dst.unlink(missing_ok=True)  # a retried drain of this node
        _copy_file(src / name / chunk_key(index), dst)
        return dst

    files = fsio.thread_map(one, held, threads)  # each copy starts afresh: safe to run again
    fsio.fsync_paths(files + sorted(dirs))


def _copy_file(src: Path, dst: Path) -> None:
    """Copy in the kernel (sendfile), no user-space buffer; fsync'd later in one batch."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, fsio.FILE_MODE)
    try:
        with os.fdopen(fsio.open_in(src.parent, src.name), "rb") as fin:  # a regular file, never blocks
            size, offset = os.fstat(fin.fileno()).st_size, 0
            while offset < size:
                sent = os.sendfile(fd, fin.fileno(), offset, min(size - offset, 1 << 30))
                if sent == 0:
                    raise CheckpointError(f"{src} shrank while it was drained", hint="save again")
                offset += sent
    finally:
        os.close(fd)


def _remove_stale_drains(shared: Path, step: int) -> None:
    """Staging directories of this or older steps can never commit now (a node died)."""
    for entry in os.scandir(shared):
        m = DRAIN_DIR.match(entry.name)
        if m and int(m.group(1)) <= step:
            fsio.remove_tree(Path(entry.path))


#: How long an exiting process waits for a TieredStore that was not closed to finish its drains.
EXIT_DRAIN_S = 600.0


class TieredStore:
    """Save to ``local`` (fast, per node), drain to ``shared`` in a background thread, prune the
    local tier once drained. With ``comm`` (mpi4py), ``save`` is collective; ``node`` names this
    rank's node (default: the host name); each node's first rank drains and prunes its node's
    local tier. ``resume`` drains what a previous run of the job left
    undrained in the local tier. Use as a context manager, or call ``close()``."""

    def __init__(self, local: Path | str, shared: Path | str, *, comm: Communicator | None = None,
                 node: str | None = None, local_retention: RetentionPolicy | None = RetentionPolicy(keep_last=2),
                 resume: bool = True) -> None:
        self.local, self.shared = Path(local), Path(shared)
        self.comm, self.node = comm, node
        self.local_retention = local_retention
        self.errors: list[BaseException] = []
        self._error_steps: list[int] = []  # the step of each of ``errors``
        self._saved: list[int] = []  # every step saved through this store
        self._pending: list[int] = []  # steps saved through this store, not yet seen committed on shared
        self._queue: queue.Queue[LocalPart | None] = queue.Queue()
        self._leader = node_keys(comm or SingleProcess(), node)[1]
        if resume and self._leader:
            for part in self._undrained():
                self._queue.put(part)
        self._thread = threading.Thread(target=self._drain, name="ckpt-drain", daemon=True)
        self._thread.start()
        self._closed = False
        atexit.register(self._at_exit)  # a store never closed: its drain is not cut off by the exit

    def save(self, state: Mapping[str, Any], *, step: int, **kw: Any) -> SaveResult:
        """Save to the local tier (collective with ``comm``); the drain follows in the background."""
        res, part = save_local(self.local, state, step=step, comm=self.comm, node=self.node,
                               shared=self.shared, **kw)
        self._pending.append(step)
        self._saved.append(step)
        if part is not None:
            self._queue.put(part)
        return res

    def _undrained(self) -> list[LocalPart]:
        try:
            done = {r.step for r in store.list_checkpoints(self.shared)}
        except CheckpointNotFoundError:
            done = set()
        try:
            whole = [LocalPart(r.path, r.step, os.urandom(6).hex(), 0, 1) for r in store.list_checkpoints(self.local)]
        except CheckpointNotFoundError:
            return []
        return sorted((p for p in whole + local_parts(self.local) if p.step not in done), key=lambda p: p.step)

    def _drain(self) -> None:
        while (part := self._queue.get()) is not None:
            try:
                t0 = time.perf_counter()
                final = drain(part, self.shared)
                emit("checkpoint.drained", src=str(part.path), dest=str(final) if final else None,
                     node=part.node, nodes=part.nodes, seconds=round(time.perf_counter() - t0, 3))
                self._prune_local(part.step)
            except BaseException as exc:  # noqa: BLE001 - surfaced through .errors / flush()
                self.errors.append(exc)
                self._error_steps.append(part.step)
            finally:
                self._queue.task_done()

    def _prune_local(self, drained: int) -> None:
        """Apply the local retention to what is drained (step <= ``drained``), never to newer
        saves still waiting in the queue."""
        if self.local_retention is None:
            return
        prune(self.local, self.local_retention, upto_step=drained)
        parts = _scan_parts(self.local)[0]  # a damaged part is kept (local_parts warned of it)
        keep = {p.step for p in parts[-self.local_retention.keep_last:]}
        with store.root_lock(self.local):
            for p in parts:
                if p.step <= drained and p.step not in keep:
                    remove_if_idle(self.local, store.CheckpointRef(p.path, p.step))

    def flush(self, timeout: float | None = 1800.0) -> None:
        """Wait until this node has drained everything queued and every step saved through this
        store is committed on the shared tier and visible from this rank (the commit happens when
        the last node finishes its drain). Call it on every rank: afterwards ``newest()`` gives
        every rank the same step. Raises this node's first drain error, or
        :class:`CheckpointIOError` when a step is not committed within ``timeout`` seconds
        (None: wait forever), naming the nodes that have not drained it."""
        self._queue.join()
        if self.errors:
            raise self.errors[0]
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending:
            step = self._pending[0]
            wait_committed(self.shared, step, deadline, timeout)
            self._pending.pop(0)

    def newest(self) -> store.CheckpointRef:
        """The newest complete checkpoint this node can restore from (local tier wins a tie).
        After ``flush()`` on every rank, every rank gets the same step."""
        return newest_complete(self.local, self.shared)

    def close(self) -> None:
        """Finish the drains queued, then stop; raises the first drain error (the shared tier lacks that
        step: its only copy is on this node's local tier, which a job's end may wipe)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
            atexit.unregister(self._at_exit)
        if lost := self._unresolved():
            raise lost[0]

    def _unresolved(self) -> list[BaseException]:
        """The drain errors of steps no later step saved through this store is committed after on the
        shared tier (one that is supersedes an earlier step's failed drain; another run's steps do not)."""
        done = [s for s in self._saved if (self.shared / store.step_dir_name(s) / MANIFEST).is_file()]
        return [e for e, step in zip(self.errors, self._error_steps) if not any(s > step for s in done)]

    def _at_exit(self) -> None:
        """At the interpreter's exit, a store still open finishes its drains (at most
        :data:`EXIT_DRAIN_S`); a drain that failed or did not finish is a ``checkpoint.drain_unfinished``
        event and an error on the ``fabric_hpc.checkpoint`` logger."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(EXIT_DRAIN_S)
        if self._thread.is_alive():
            self._report(f"still draining after {EXIT_DRAIN_S:.0f} s")
        elif lost := self._unresolved():
            self._report(str(lost[0]))

    def _report(self, why: str) -> None:
        """A drain that did not reach the shared tier, where no caller sees an error: an event and a log."""
        emit("checkpoint.drain_unfinished", local=str(self.local), shared=str(self.shared), error=why)
        logging.getLogger("fabric_hpc.checkpoint").error(
            "a tiered save did not reach the shared tier %s (%s): its copy is only in %s; close() the "
            "TieredStore (or use it as a context manager) and check flush()", self.shared, why, self.local)

    def __enter__(self) -> TieredStore:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # an error of the with-block wins; a drain error beside it is reported, not raised
            self.close()
        except BaseException as drain_error:  # noqa: BLE001 - the block's own error propagates
            self._report(str(drain_error))
