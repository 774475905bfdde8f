"""Cheap health of a checkpoint root for ``list`` and ``prune``: is each step whole (its manifest
parses, names the directory's step, and every chunk file is there with the manifest's size), and
what did killed saves and prunes leave behind. ``fabric ckpt verify`` reads every byte; this
reads only metadata."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from fabric_hpc.checkpoint import fsio, store
from fabric_hpc.checkpoint.errors import (
    CheckpointIOError, CheckpointNewerFormatError, CheckpointNotFoundError,
)
from fabric_hpc.checkpoint.format import MANIFEST, Manifest, chunk_key, parse_manifest
from fabric_hpc.errors import FabricError

NEWER, DAMAGED, UNREADABLE = "newer", "damaged", "unreadable"


@dataclass(frozen=True)
class StepHealth:
    """``state``: None (whole), :data:`NEWER`, :data:`DAMAGED` or :data:`UNREADABLE`; ``why`` says
    what is wrong; ``manifest`` is set when it could be read."""

    ref: store.CheckpointRef
    state: str | None
    why: str = ""
    manifest: Manifest | None = None


def step_health(ref: store.CheckpointRef) -> StepHealth:
    """The metadata-only check of one committed step (see the module docstring)."""
    from fabric_hpc.checkpoint.reader import read_manifest
    from fabric_hpc.checkpoint.restore import structure_problems
    try:
        m = parse_manifest(read_manifest(ref.path), str(ref.path / MANIFEST))
    except CheckpointNewerFormatError as exc:
        return StepHealth(ref, NEWER, f"{exc.message} (fix: {exc.hint})")
    except CheckpointIOError as exc:  # permission denied
        return StepHealth(ref, UNREADABLE, exc.message)
    except (OSError, FabricError) as exc:
        return StepHealth(ref, DAMAGED, getattr(exc, "message", None) or str(exc), None)
    if (why := step_mismatch(ref.path, m)) is not None:
        return StepHealth(ref, DAMAGED, why, m)
    try:
        special, meta = structure_problems(ref.path, m)
        problems = special + meta + chunk_size_problems(ref.path, m)
    except PermissionError as exc:
        return StepHealth(ref, UNREADABLE, f"{exc.filename or ref.path}: permission denied", m)
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        return StepHealth(ref, DAMAGED, "; ".join(problems[:3]) + more, m)
    return StepHealth(ref, None, "", m)


def step_mismatch(step_dir: Path, m: Manifest) -> str | None:
    """"directory says 59, manifest says 58" when a ``step-N`` directory's manifest names another step."""
    match = re.match(r"^step-(\d{10})$", step_dir.name)
    if match and int(match.group(1)) != m.step:
        return f"{step_dir}: directory says {int(match.group(1))}, manifest says {m.step}"
    return None


def chunk_size_problems(step_dir: Path, m: Manifest) -> list[str]:
    """Chunk files missing or of another size than the manifest says (no byte is read)."""
    problems = []
    for name, entry in m.tensors.items():
        for chunk in entry.chunks:
            rel = f"{name}/{chunk_key(chunk.index)}"
            try:
                size = os.stat(step_dir / rel, follow_symlinks=False).st_size
            except FileNotFoundError:
                problems.append(f"{rel}: missing")
                continue
            except NotADirectoryError:
                problems.append(f"{rel}: missing (a file where a directory should be)")
                continue
            if size != chunk.nbytes:
                problems.append(f"{rel}: {size} bytes, manifest says {chunk.nbytes}")
    return problems


@dataclass(frozen=True)
class Leftover:
    """A ``.tmp-*`` directory of a save, a ``.trash-*`` of a prune or a ``.drain-*`` staging
    directory of a tiered save (in its shared root) under a root."""

    path: Path
    nbytes: int
    pid: int | None
    host: str | None
    state: str  # "abandoned" (safe to remove), "in progress" (a live writer), "unknown writer"

    def as_dict(self) -> dict:
        return {"path": str(self.path), "bytes": self.nbytes, "pid": self.pid, "host": self.host,
                "state": self.state}


#: ``.tmp-step-N-<host>-<pid>-<hex>`` (this version's saves); ``.tmp-step-N-<pid>-<hex>`` (older)
_TMP_HOST = re.compile(r"^\.tmp-step-\d{10}-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}$")
_TMP_PID = re.compile(r"^\.tmp-step-\d{10}-(?P<pid>\d+)-[0-9a-f]{8}$")


def tmp_name(step_dir_name: str) -> str:
    """The name of a save's temporary directory: it names the writer's host and pid, so ``prune``
    can tell a killed save's leftover from a save in progress."""
    return f"{store.TMP_PREFIX}{step_dir_name}-{writer_host()}-{os.getpid()}-{os.urandom(4).hex()}"


def writer_host() -> str:
    """This process's host as a save records it: the host name and its PID namespace (``host@ID``, the
    inode of /proc/self/ns/pid), so that a save in a container or a job's own PID namespace, whose pid
    another namespace cannot see, is never taken for a dead one (an older version reads the whole text
    as another host: "unknown writer", kept)."""
    ns = _pid_namespace()
    return socket.gethostname() if ns is None else f"{socket.gethostname()}@{ns}"


def _pid_namespace() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


#: The initial PID namespace's inode (the kernel's PROC_PID_INIT_INO): a process there sees every process.
INIT_PID_NAMESPACE = 0xEFFFFFFC


def _namespace_gone(ns: int) -> bool:
    """Whether no process of PID namespace ``ns`` lives on this host any more (its writer is dead): known only
    to root in the initial namespace, which sees every process and its namespace (/proc's ``hidepid`` does
    not hide them from root); otherwise False."""
    if _pid_namespace() != INIT_PID_NAMESPACE or os.geteuid() != 0:
        return False
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and entry.name != "1":  # init is in the initial namespace, not ns
            try:
                if os.stat(f"/proc/{entry.name}/ns/pid").st_ino == ns:
                    return False
            except FileNotFoundError:  # that process ended meanwhile, unless it is only hidden
                if os.path.exists(f"/proc/{entry.name}"):
                    return False
            except OSError:  # cannot tell
                return False
    return True


def _split_host(text: str | None) -> tuple[str | None, int | None]:
    """(host name, PID namespace or None) of a recorded :func:`writer_host`."""
    if text is None:
        return None, None
    name, at, ns = text.rpartition("@")
    return (name, int(ns)) if at and ns.isdigit() else (text, None)


def leftovers(root: Path) -> list[Leftover]:
    """Temporary directories of saves, trash of prunes and staging directories of tiered saves'
    drains under ``root``, by name. Trash is always "abandoned": a prune deletes its trash while
    holding the root lock, which prune takes too. See :func:`_drain_leftover` for a drain's."""
    found: list[Leftover] = []
    newest: int | None = None  # the newest committed step, looked up when a drain's staging is found
    for e in sorted(os.scandir(root), key=lambda e: e.name):
        if e.name.startswith(store.TRASH_PREFIX):
            found.append(Leftover(Path(e.path), _du(Path(e.path)), None, None, "abandoned"))
        elif e.name.startswith(store.TMP_PREFIX) and e.is_dir(follow_symlinks=False):
            m = _TMP_PID.match(e.name) or _TMP_HOST.match(e.name)
            host = m.groupdict().get("host") if m else None
            pid = int(m.group("pid")) if m else None
            state = _writer_state(host, pid)
            found.append(Leftover(Path(e.path), _du(Path(e.path)), pid, _split_host(host)[0], state))
        elif (m := _DRAIN.match(e.name)) and e.is_dir(follow_symlinks=False):
            if newest is None:
                newest = max((r.step for r in store.list_checkpoints(root)), default=-1)
            found.append(_drain_leftover(Path(e.path), int(m.group("step")), newest))
    return found


#: ``.drain-step-N-<token>``: a tiered save's staging directory, shared by every node of the save;
#: each node's drainer records itself in it (``.drainer-I``: host, pid, number of nodes) first
_DRAIN = re.compile(r"^\.drain-step-(?P<step>\d{10})-[0-9a-f]+$")
DRAINER_PREFIX = ".drainer-"


def write_drainer(staging: Path, node: int, nodes: int) -> None:
    """Record this process as node ``node``'s drainer of a staging directory (see :func:`leftovers`)."""
    from fabric_hpc.checkpoint import fsio
    doc = {"host": writer_host(), "pid": os.getpid(), "nodes": nodes}
    path = staging / f"{DRAINER_PREFIX}{node}"
    path.unlink(missing_ok=True)  # a retried drain of this node
    fsio.write_small(path, json.dumps(doc).encode())


def _drain_leftover(path: Path, step: int, newest: int) -> Leftover:
    """A staging directory is abandoned once a step >= its own committed (it can never commit: the
    commit removes such), or when every node's drainer recorded itself on this host and is gone.
    A live drainer keeps it "in progress"; a node not recorded yet, another host, or a staging
    directory of an older version (no records) keeps it as "unknown writer"."""
    size = _du(path)
    if step <= newest:
        return Leftover(path, size, None, None, "abandoned")
    records = {}
    for f in path.glob(f"{DRAINER_PREFIX}*"):
        try:
            doc = json.loads(fsio.read_in(path, f.name, 1 << 16))  # a FIFO: unknown writer, never a hang
            node = int(f.name[len(DRAINER_PREFIX):])
            records[node] = (str(doc["host"]), int(doc["pid"]), int(doc["nodes"]))
        except (OSError, ValueError, KeyError, TypeError, RecursionError):  # deep JSON fits in 64 KiB
            return Leftover(path, size, None, None, "unknown writer")
    states = [_writer_state(host, pid) for host, pid, _ in records.values()]
    one = next(iter(records.values())) if len(records) == 1 else (None, None, 0)
    if "in progress" in states:
        state = "in progress"
    elif states and all(s == "abandoned" for s in states) and set(records) == set(range(len(records))) \
            and {n for _, _, n in records.values()} == {len(records)}:
        state = "abandoned"  # every node recorded: none is still to come
    else:
        state = "unknown writer"
    return Leftover(path, size, one[1], _split_host(one[0])[0], state)


def _writer_state(host: str | None, pid: int | None) -> str:
    name, ns = _split_host(host)
    if pid is None or name is None or name != socket.gethostname():
        return "unknown writer"  # another node's save (a shared filesystem), or an older name: kept
    if ns is not None and ns != _pid_namespace():  # another PID namespace (a container): its pid means
        return "abandoned" if _namespace_gone(ns) else "unknown writer"  # nothing here; gone with it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "abandoned"
    except PermissionError:
        return "in progress"  # alive, another user's
    return "in progress"


def remove_abandoned(root: Path) -> list[Leftover]:
    """Remove the abandoned leftovers (call while holding :func:`store.root_lock`)."""
    from fabric_hpc.checkpoint import fsio
    gone = [lo for lo in leftovers(root) if lo.state == "abandoned"]
    for lo in gone:
        if lo.path.is_dir() and not lo.path.is_symlink():
            fsio.remove_tree(lo.path)
        else:
            lo.path.unlink(missing_ok=True)
    return gone


def _du(path: Path) -> int:
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(d, f), follow_symlinks=False).st_size
    return total


def root_state(path: Path) -> str:
    """"root" (a checkpoint root, or an empty directory), "checkpoint" (a step directory itself) or
    "other" (a directory that holds neither: not a checkpoint root). CheckpointNotFoundError when
    ``path`` is not a directory."""
    store.list_checkpoints(path)  # the one "does not exist / not a directory" error
    if (path / MANIFEST).is_file():
        return "checkpoint"
    names = os.listdir(path)
    if not names or any(n in _ROOT_FILES or n.startswith(_ROOT_PREFIXES) for n in names):
        return "root"
    return "other"


#: what only a checkpoint root holds: ``latest``, the save lock, inference pins, a training run's lock
#: (``fabric_hpc.slurm.trainer.RUN_LOCK``: a run that has not saved yet)
_ROOT_FILES = frozenset({store.LATEST, ".lock", ".pins", ".train.lock"})
_ROOT_PREFIXES = ("step-", store.TMP_PREFIX, store.TRASH_PREFIX, store.DRAIN_PREFIX, store.LATEST_TMP_PREFIX)


def require_root(path: Path, command: str) -> None:
    """CheckpointNotFoundError (exit 3) unless ``path`` is a checkpoint root (or an empty directory)."""
    state = root_state(path)
    if state == "checkpoint":
        raise CheckpointNotFoundError(
            f"{path}: it is a checkpoint itself, not a root of checkpoints",
            hint=f"give its root {path.parent} to `fabric ckpt {command}` "
                 f"(`fabric ckpt show {path}` shows it)")
    if state == "other":
        raise CheckpointNotFoundError(
            f"{path} is not a checkpoint root (no step-NNNNNNNNNN directories, no `latest`)",
            hint="give the directory checkpoints are saved into (the one holding step-NNNNNNNNNN "
                 "directories)")
