"""The checkpoint directory: committed ``step-NNNNNNNNNN`` checkpoints, the ``latest`` pointer,
the save lock and the cleanup of leftovers from crashed saves.

Layout of a checkpoint root::

    ROOT/latest                 one line: the name of the newest committed checkpoint
    ROOT/step-0000000100/       a committed checkpoint (a Zarr v3 group; manifest in its zarr.json)
    ROOT/.tmp-step-N-<host>-<pid>-<hex>/  a save in progress (removed by the next save
                                or prune once its writer died)
    ROOT/.drain-step-N-<token>/ a tiered save's staging in the shared root (removed by a prune
                                once every node's drainer is gone, or once a step >= N committed)
    ROOT/.lock                  held (flock) by the committer while saving or pruning
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fabric_hpc.atomic import atomic_output, write_atomic
from fabric_hpc.checkpoint import fsio
from fabric_hpc.checkpoint.errors import (CheckpointCorruptError, CheckpointError, CheckpointIOError,
                                         CheckpointNotFoundError)
from fabric_hpc.errors import FabricError, require_whole
from fabric_hpc.checkpoint.format import MANIFEST, MAX_STEP
from fabric_hpc.events import open_regular

LATEST = "latest"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
DRAIN_PREFIX = ".drain-"  # a tiered save's staging directory in the shared root (tiers.drain)
LATEST_TMP_PREFIX = ".latest"  # write_atomic's ".latest.<host>-<pid>-<hex>.tmp"; older versions ".latest-<pid>-<hex>"
_STEP_DIR = re.compile(r"^step-(\d{10})$")


def step_dir_name(step: int) -> str:
    return f"step-{step:010d}"


@dataclass(frozen=True)
class CheckpointRef:
    """A committed checkpoint: its directory and step."""

    path: Path
    step: int


def list_checkpoints(root: Path) -> list[CheckpointRef]:
    """Committed checkpoints under ``root``, oldest first (temporary and trash dirs ignored)."""
    root = Path(root)
    if not root.is_dir():
        from fabric_hpc.inputs import kind_of
        what = f"is {kind_of(root.stat().st_mode)}, not a directory" if root.exists() else "does not exist"
        raise CheckpointNotFoundError(f"no checkpoint directory at {root} ({what})",
                                      hint="check the path; checkpoints are saved with `save(DIR, ...)`")
    refs = []
    for entry in os.scandir(root):
        m = _STEP_DIR.match(entry.name)
        if m and entry.is_dir(follow_symlinks=False) and os.path.exists(os.path.join(entry.path, MANIFEST)):
            refs.append(CheckpointRef(Path(entry.path), int(m.group(1))))
    return sorted(refs, key=lambda r: r.step)


def read_latest(root: Path) -> str | None:
    """The step directory ``latest`` names, or None when it is missing or names anything but a
    ``step-NNNNNNNNNN`` directory (a symlink, a FIFO or a path is never followed). A commit killed
    between renaming its step into place and replacing ``latest`` is completed here: see
    :func:`interrupted_latest`."""
    name = _read_pointer(root, LATEST)
    if name is None:
        return None
    return interrupted_latest(root, name) or name


def _read_pointer(root: Path, entry: str) -> str | None:
    try:
        raw = fsio.read_in(root, entry, 4096)
    except (FileNotFoundError, NotADirectoryError, fsio.UnsafeFileError):
        return None
    except PermissionError:
        raise denied(Path(root) / entry) from None
    name = raw.decode("ascii", "replace").strip()
    return name if _STEP_DIR.match(name) else None


def interrupted_latest(root: Path, current: str) -> str | None:
    """The newer committed step a leftover temporary ``latest`` (``.latest.<host>-<pid>-<hex>.tmp``)
    names, if any. A commit writes (and fsyncs) that file before it renames its step directory into
    place and replaces ``latest`` with it after, so a process killed in between (SIGKILL, a node
    failure) leaves a committed step that ``latest`` does not name yet, and this file naming it. Not
    completing the move would make a resumed job restore the step before and then be refused its
    next save of that step ("already exists"). A ``latest`` written after that file (a user who edited it
    by hand to choose the step to resume from) wins: the leftover is older than what it would replace."""
    newest = None
    try:
        entries = [e.name for e in os.scandir(root) if e.name.startswith(LATEST_TMP_PREFIX)]
        edited = os.lstat(Path(root) / LATEST).st_mtime_ns
    except OSError:
        return None
    for entry in entries:
        try:
            name = _read_pointer(root, entry)
            written = os.lstat(Path(root) / entry).st_mtime_ns
        except CheckpointIOError:  # another user's: not this reader's business
            continue
        except OSError:  # removed meanwhile (the next save cleaned it up)
            continue
        if name is not None and name > current and (newest is None or name > newest) and written >= edited \
                and not os.path.islink(Path(root) / name) and (Path(root) / name / MANIFEST).is_file():
            newest = name
    return newest


def as_path(path: object, what: str = "path") -> Path:
    """``path`` (a str or os.PathLike) as a Path; anything else (None, a number) is a CheckpointError."""
    if isinstance(path, (str, os.PathLike)) and str(path):
        return Path(path)
    raise CheckpointError(f"{what} must be a directory path (str or pathlib.Path), got {type(path).__name__} "
                          f"{path!r:.40}", hint="e.g. 'ckpt/run1' or pathlib.Path('ckpt/run1')")


def resolve(path: Path | str, step: int | None = None) -> CheckpointRef:
    """A checkpoint directory itself, or under a root: ``step`` or else ``latest`` (falling back
    to the newest committed one when the pointer is missing or dangling)."""
    if step is not None:
        require_whole(step, "step", error=CheckpointError, hint="a step number, e.g. step=100 (--step 100)")
    path = as_path(path)
    if step is not None and (m := _STEP_DIR.match(path.name)) and (path / MANIFEST).is_file():
        if int(m.group(1)) == step:
            return CheckpointRef(path, step)
        raise CheckpointNotFoundError(f"{path} is the checkpoint of step {int(m.group(1))}, not a root of "
                                      f"checkpoints: it has no step {step}",
                                      hint=f"give its root {path.parent} with --step {step} (step={step} in "
                                           f"Python), or {path} without a step")
    if (path / MANIFEST).is_file() and step is None:
        m = _STEP_DIR.match(path.name)
        if not m and (inside := next((d for d in path.parents if _STEP_DIR.match(d.name)
                                      and (d / MANIFEST).is_file()), None)) is not None:
            raise CheckpointNotFoundError(f"{path} is a group of tensors inside the checkpoint {inside}",
                                          hint=f"give {inside} (or its root {inside.parent})")
        return CheckpointRef(path, int(m.group(1)) if m else -1)
    # ``latest`` first: the step it names was committed before it was written, so the listing that
    # follows holds it unless it was pruned since (gone, not damaged); read after the listing, it
    # could name a step committed in between that the listing missed
    latest = read_latest(path) if step is None else None
    refs = list_checkpoints(path)
    steps = [r.step for r in refs][-10:]
    if step is not None:
        for ref in refs:
            if ref.step == step:
                return ref
        if os.path.lexists(path / step_dir_name(step)):
            raise CheckpointCorruptError(
                f"{path}: {step_dir_name(step)} is {why_uncommitted(path / step_dir_name(step))}",
                hint=_uncommitted_fix(path / step_dir_name(step), steps),
                problems=[f"{step_dir_name(step)}: {why_uncommitted(path / step_dir_name(step))}"])
        raise CheckpointNotFoundError(f"no checkpoint for step {step} in {path}",
                                      hint=f"steps present: {steps}")
    for ref in refs:  # only a real step directory inside the root (list_checkpoints skips symlinks)
        if ref.path.name == latest:
            return ref
    _refuse_damaged_latest(path, latest, steps)
    if not refs:
        raise CheckpointNotFoundError(f"no committed checkpoint in {path}",
                                      hint="save one first, or point at the right directory")
    return refs[-1]


def _refuse_damaged_latest(root: Path, latest: str | None, steps: list[int]) -> None:
    """CheckpointCorruptError when ``latest`` is damaged (not a regular file naming a step) or
    names an entry that is not a committed checkpoint (no manifest, a symlink, not a directory):
    restoring the newest committed step instead would be a silent rollback. A ``latest`` naming
    a step that is gone (pruned by hand) is not damage: the caller falls back to the newest."""
    if latest is None and os.path.lexists(root / LATEST):
        problem = f"{LATEST}: {LATEST_DAMAGED}"
        raise CheckpointCorruptError(
            f"{root}: {problem}; not falling back silently",
            hint=(f"give --step explicitly (step=N in Python; steps: {steps}), or rewrite it "
                  f"(e.g. `echo step-NNNNNNNNNN > {root / LATEST}` naming the step to resume from), "
                  "after `fabric ckpt verify --all`") if steps
            else f"{root} holds no committed step: remove {root / LATEST} or save a new checkpoint there",
            problems=[problem])
    if latest is not None and os.path.lexists(root / latest):  # there, but not a committed checkpoint
        why = why_uncommitted(root / latest)
        damaged = "damaged (no zarr.json)" if why.startswith("not a committed") and (root / latest).is_dir() \
            else why
        raise CheckpointCorruptError(
            f"{root}: latest names {latest}, which is {damaged}; not falling back silently",
            hint=_uncommitted_fix(root / latest, steps), problems=[f"{latest}: {why}"])


#: what :func:`root_problems` and a refused restore say about a ``latest`` that cannot be read
LATEST_DAMAGED = "not a regular file naming a step-NNNNNNNNNN directory"


def why_uncommitted(entry: Path) -> str:
    """Why an entry named like a step is not a committed checkpoint (the one wording of list,
    verify and restore)."""
    if entry.is_symlink():
        return "a symlink (not followed): a step directory must be a real directory inside the root"
    if unreadable(entry):
        return f"unreadable: permission denied ({entry})"
    return f"not a committed checkpoint ({MANIFEST} missing, or not a directory)"


def unreadable(entry: Path) -> bool:
    """Whether ``entry``'s manifest cannot be looked at for lack of permission (another user's 0700)."""
    try:
        os.stat(entry / MANIFEST)
    except PermissionError:
        return True
    except OSError:
        return False
    return False


def denied(*paths: Path | str) -> CheckpointIOError:
    """The exit-5 error for paths this user may not read, naming each full path."""
    return CheckpointIOError(f"{', '.join(map(str, paths))}: permission denied",
                             hint="check the owner and permissions of that path and its directory (or run as "
                                  "a user who may read it)")


def _uncommitted_fix(entry: Path, steps: list[int]) -> str:
    if not steps:  # nothing else to restore: say what brings a step back
        again = ("put the directory itself there (remove the link, then move the directory it points to "
                 "there)") if entry.is_symlink() else "copy it again in full from where it came from"
        return (f"{entry.parent} holds no other committed step: {again}, or save a new checkpoint there "
                f"(`fabric ckpt verify {entry.parent} --all` lists the damage)")
    if entry.is_symlink():
        return (f"put the directory itself at {entry} (remove the link, then move the directory it points to "
                f"there), or restore another step (--step N; step=N in Python; steps: {steps})")
    return (f"restore an older step explicitly (--step N; step=N in Python; steps: {steps}), "
            "after `fabric ckpt verify --all`")


def root_problems(root: Path) -> list[str]:
    """Damage of the root itself that per-step checks cannot see: a ``latest`` that is not a step
    name (or names a missing step and no step is committed), and step directories without a manifest
    (a commit renames a complete directory into place, so these are not crash leftovers). A ``latest``
    naming a missing step while others are committed is not damage (:func:`root_warnings`)."""
    root = Path(root)
    problems = []
    if os.path.lexists(root / LATEST):
        latest = read_latest(root)
        if latest is None:
            problems.append(f"{LATEST}: {LATEST_DAMAGED}")
        elif not os.path.lexists(root / latest) and not list_checkpoints(root):
            problems.append(f"{LATEST}: names {latest}, which is missing, and no step is committed")
    for ref in uncommitted_steps(root):
        problems.append(f"{ref.path.name}: {why_uncommitted(ref.path)}")
    return problems


def root_warnings(root: Path) -> list[str]:
    """What is odd about the root but not damage: a ``latest`` naming a step that is gone (moved aside
    or pruned by hand) while others are committed, which restore (and the next save) replace by the
    newest committed step, as the warning says with its fix."""
    root = Path(root)
    latest = read_latest(root) if os.path.lexists(root / LATEST) else None
    if latest is None or os.path.lexists(root / latest):
        return []
    refs = list_checkpoints(root)
    if not refs:
        return []
    newest = refs[-1].path.name
    return [f"{LATEST}: names {latest}, which is missing; restore uses the newest committed step, {newest} "
            f"(to make that explicit: `echo {newest} > {root / LATEST}`, or pass --step {refs[-1].step}; "
            "the next save rewrites it)"]


def uncommitted_steps(root: Path) -> list[CheckpointRef]:
    """Entries named like a step that are not committed checkpoints (no manifest, or not a
    directory), oldest first: a commit renames a complete directory into place, so these were
    copied partially or damaged, never left by a crash."""
    committed = {r.path.name for r in list_checkpoints(root)}
    return sorted((CheckpointRef(Path(e.path), int(m.group(1))) for e in os.scandir(root)
                   if (m := _STEP_DIR.match(e.name)) and e.name not in committed), key=lambda r: r.step)


@contextmanager
def removed_on_failure(root: Path | str) -> Iterator[None]:
    """When ``root`` does not exist yet and the body fails (ENOSPC, a read-only mount), remove the
    directory it created if nothing but the save lock is left in it (a failed save removes its
    temporary directory itself): a failed command leaves no empty checkpoint root behind."""
    root = Path(root)
    created = not os.path.lexists(root)
    try:
        yield
    except BaseException:
        if created and root.is_dir() and not root.is_symlink():
            _remove_if_only_lock(root)
        raise


def _remove_if_only_lock(root: Path) -> None:
    """Remove ``root`` if it holds only an idle ``.lock`` (held exclusively while removing, so a
    save that started meanwhile keeps its root)."""
    try:
        with root_lock(root, blocking=False) as held:
            if held and set(os.listdir(root)) == {".lock"}:
                os.unlink(root / ".lock")
                root.rmdir()
    except (OSError, CheckpointIOError):
        pass  # another process is using it, or the filesystem refuses: leave it


@contextmanager
def root_lock(root: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Exclusive flock on ``ROOT/.lock`` for the committer (save, prune). Yields whether held."""
    try:
        fd = open_regular(Path(root) / ".lock", os.O_RDWR | os.O_CREAT, fsio.FILE_MODE)  # no link
    except OSError as exc:  # a read-only mount, another user's root: as a new root there says it
        raise fsio._io_error("open the save lock", Path(root) / ".lock", exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def clean_leftovers(root: Path) -> list[str]:
    """Remove what crashed saves and prunes left behind (:func:`health.remove_abandoned`: a
    temporary directory whose writer is alive, another save in progress, is kept) and stray
    ``latest`` temporaries; fix a dangling ``latest``. Call only while holding :func:`root_lock`
    (``latest`` is only written under it). Returns the names removed."""
    from fabric_hpc.checkpoint import health
    pointer = _read_pointer(root, LATEST)
    if pointer is not None and (pending := interrupted_latest(root, pointer)) is not None:
        set_latest(root, pending)  # complete the commit that was killed before it moved latest
    removed = [lo.path.name for lo in health.remove_abandoned(root)]
    for entry in os.scandir(root):
        if entry.name.startswith(LATEST_TMP_PREFIX) and not entry.is_dir(follow_symlinks=False):
            os.unlink(entry.path)
            removed.append(entry.name)
    latest = read_latest(root)
    if latest is None or not (Path(root) / latest / MANIFEST).is_file():
        refs = list_checkpoints(root)
        if refs:
            set_latest(root, refs[-1].path.name)
    if removed:
        fsio.fsync_dir(root)
    return removed


def rename_into_place(root: Path, tmp: Path, final: Path) -> None:
    """Commit: rename the complete ``tmp`` directory to ``final`` and move ``latest`` to it (as
    :func:`advance_latest`). Call under :func:`root_lock`. The new ``latest`` is written to its
    temporary file before the rename, so a full disk (or quota, or inode table) fails the save before
    anything is committed (the caller removes ``tmp``), not after: a committed step that ``latest``
    does not name would be skipped by the next restore and refused ("already exists") by the retry."""
    root = Path(root)
    current = read_latest(root)
    if current is not None and current >= final.name and (root / current / MANIFEST).is_file():
        os.rename(tmp, final)
        fsio.fsync_dir(root)
        return
    try:
        with atomic_output(root / LATEST, mode=fsio.FILE_MODE) as pointer:
            _write_synced(pointer, (final.name + "\n").encode())  # ENOSPC surfaces here, not later
            os.rename(tmp, final)
            fsio.fsync_dir(root)
    except OSError as exc:
        if final.is_dir() and not tmp.exists():  # committed; only moving latest failed (the pointer's
            try:  # temporary file went with the error): move it now, else say so
                set_latest(root, final.name)
                return
            except (OSError, FabricError):
                raise fsio._io_error(f"move {LATEST} to the committed {final.name} in", root, exc) from exc
        if exc.filename is not None and os.path.basename(exc.filename) == LATEST:
            raise fsio._io_error("write", tmp / LATEST, exc) from exc
        raise fsio._io_error("rename into place", tmp, exc) from exc


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def set_latest(root: Path, name: str) -> None:
    write_atomic(Path(root) / LATEST, name + "\n", mode=fsio.FILE_MODE)


def advance_latest(root: Path, name: str) -> None:
    """Point ``latest`` at the just-committed ``name`` unless it already names a committed step
    with a higher number (``latest`` is the highest step, as ``list`` and ``prune`` count it: an
    import or save of an older step must not roll restores back). Call under :func:`root_lock`."""
    current = read_latest(root)
    if current is None or current < name or not (Path(root) / current / MANIFEST).is_file():
        set_latest(root, name)


@contextmanager
def reading(ref: CheckpointRef) -> Iterator[None]:
    """Hold a shared flock on the checkpoint's manifest while reading, so prune skips it."""
    try:
        fd = fsio.open_in(ref.path, MANIFEST)
    except FileNotFoundError as exc:
        raise CheckpointNotFoundError(f"checkpoint {ref.path} disappeared (pruned?)",
                                      hint="restore the newest one again") from exc
    except fsio.UnsafeFileError as exc:
        from fabric_hpc.checkpoint.errors import CheckpointCorruptError
        raise CheckpointCorruptError(f"{ref.path}: {exc.strerror}", problems=[exc.strerror]) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        if not os.path.exists(ref.path / MANIFEST) or \
                os.stat(ref.path / MANIFEST).st_ino != os.fstat(fd).st_ino:
            raise CheckpointNotFoundError(f"checkpoint {ref.path} was pruned while opening it",
                                          hint="restore the newest one again")
        yield
    finally:
        os.close(fd)
