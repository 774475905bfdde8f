"""Tiers: save to fast node-local storage, drain committed checkpoints to a shared path in the
background, restore from whichever tier holds the newest complete checkpoint.

Draining copies a committed checkpoint into the shared root with the same protocol as a save:
temporary directory, fsync'd files and directories, rename, ``latest`` swap. Single node (all
ranks see the same local directory)."""

from __future__ import annotations

import os
import queue
import shutil
import threading
from pathlib import Path
from typing import Any

from fabric_hpc.checkpoint import fsio, store
from fabric_hpc.checkpoint.errors import CheckpointNotFoundError
from fabric_hpc.checkpoint.reader import open_checkpoint
from fabric_hpc.checkpoint.retention import RetentionPolicy, prune
from fabric_hpc.checkpoint.writer import SaveResult, save
from fabric_hpc.events import emit


def copy_checkpoint(src: Path | str, dest_root: Path | str) -> Path:
    """Durably copy a committed checkpoint directory into ``dest_root`` (atomic commit there)."""
    ckpt = open_checkpoint(src)
    dest_root = Path(dest_root)
    fsio.make_dirs(dest_root)
    final = dest_root / ckpt.path.name
    with store.root_lock(dest_root):
        store.clean_leftovers(dest_root)
        if final.exists():
            return final
        tmp = dest_root / f"{store.TMP_PREFIX}{ckpt.path.name}-{os.getpid()}-{os.urandom(4).hex()}"
    with store.reading(ckpt.ref):
        dirs = []
        for dirpath, _, files in os.walk(ckpt.path):
            rel = Path(dirpath).relative_to(ckpt.path)
            fsio.make_dir(tmp / rel)
            dirs.append(tmp / rel)
            for name in files:
                _copy_file(Path(dirpath) / name, tmp / rel / name)
    for d in sorted(dirs, key=lambda p: -len(p.parts)):
        fsio.fsync_dir(d)
    with store.root_lock(dest_root):
        os.rename(tmp, final)
        fsio.fsync_dir(dest_root)
        latest = store.read_latest(dest_root)
        if latest is None or latest < final.name:
            store.set_latest(dest_root, final.name)
    return final


def _copy_file(src: Path, dst: Path) -> None:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, fsio.FILE_MODE)
    try:
        with open(src, "rb") as fin, os.fdopen(os.dup(fd), "wb") as fout:
            shutil.copyfileobj(fin, fout, fsio.BLOCK)
        os.fsync(fd)
    finally:
        os.close(fd)


def newest_complete(*roots: Path | str) -> store.CheckpointRef:
    """The newest committed checkpoint across tiers (first root wins a tie: the fast one)."""
    best: store.CheckpointRef | None = None
    for root in roots:
        try:
            refs = store.list_checkpoints(Path(root))
        except CheckpointNotFoundError:
            continue
        if refs and (best is None or refs[-1].step > best.step):
            best = refs[-1]
    if best is None:
        raise CheckpointNotFoundError(f"no committed checkpoint in any tier: {[str(r) for r in roots]}")
    return best


class TieredStore:
    """Save locally (fast), drain to ``shared`` in a background thread, prune the local tier."""

    def __init__(self, local: Path | str, shared: Path | str, *,
                 local_retention: RetentionPolicy | None = RetentionPolicy(keep_last=2)) -> None:
        self.local, self.shared = Path(local), Path(shared)
        self.local_retention = local_retention
        self.errors: list[BaseException] = []
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self._thread = threading.Thread(target=self._drain, name="ckpt-drain", daemon=True)
        self._thread.start()

    def save(self, state: Any, *, step: int, **kw: Any) -> SaveResult:
        result = save(self.local, state, step=step, **kw)
        self._queue.put(result.path)
        return result

    def enqueue(self, path: Path) -> None:
        """Drain an already committed local checkpoint (e.g. from an AsyncSaver)."""
        self._queue.put(Path(path))

    def _drain(self) -> None:
        while (path := self._queue.get()) is not None:
            try:
                dest = copy_checkpoint(path, self.shared)
                emit("checkpoint.drained", src=str(path), dest=str(dest))
                if self.local_retention:
                    prune(self.local, self.local_retention)
            except BaseException as exc:  # noqa: BLE001 - surfaced through .errors / flush()
                self.errors.append(exc)
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until everything queued has reached the shared tier; raise the first error."""
        self._queue.join()
        if self.errors:
            raise self.errors[0]

    def newest(self) -> store.CheckpointRef:
        return newest_complete(self.local, self.shared)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
