"""The one way fabric-hpc replaces a file: readers see the old content or the new, never half.

A new temporary file is created beside the target (``.<name>.<host>-<pid>-<random>.tmp``, ``O_EXCL`` and
``O_NOFOLLOW``: never an existing file, never through a symlink), written, given its mode, fsync'd,
renamed over the target (whatever entry was there — file, symlink, FIFO — is replaced, never written
through), and the directory fsync'd; on any error the temporary file is removed and the target is
untouched. ``durable=False`` skips both fsyncs (files rewritten every few seconds whose loss in a
crash costs nothing: heartbeats, metrics snapshots).

    write_atomic(path, data, mode=0o644)            # bytes or str
    with atomic_output(path) as tmp:                # for writers that open the file themselves (h5py)
        write_somehow(tmp)

Writers that build a whole directory beside its final place (exports) take its name from
:func:`temp_sibling`; :func:`remove_stale_siblings` removes what killed writers on this host left.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["CannotCreateError", "atomic_output", "fsync_dir", "remove_stale_siblings", "temp_sibling",
           "write_atomic"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: This host in temporary names (a shared filesystem: a PID means something only on its own host).
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0])[:32] or "host"


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, mode: int | None = None,
                 durable: bool = True) -> Path:
    """Replace ``path`` with ``data`` (``str`` is written as UTF-8). ``mode``: the file's
    permissions (None: 0o666 less the umask, as ``open`` would give)."""
    view = memoryview(data.encode("utf-8") if isinstance(data, str) else data)
    with atomic_output(path, mode=mode, durable=durable) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    return Path(path)


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, mode: int | None = None,
                  durable: bool = True) -> Iterator[Path]:
    """Yield the path of a new, empty temporary file beside ``path`` to write by any means; on a
    normal exit it replaces ``path`` (fsync'd when ``durable``), on an exception it is removed."""
    target = Path(path)
    try:
        tmp = _create(target, mode)
    except OSError as exc:
        raise _about_target(exc, target, None) from exc
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        _unlink(tmp)
        raise _about_target(exc, target, tmp) from exc
    except BaseException:
        _unlink(tmp)
        raise
    if durable:
        fsync_dir(target.parent)


#: errors of writing the temporary file that a library may raise without a file name (h5py)
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS)


class CannotCreateError(OSError):
    """A directory that exists refused a new file with ENOENT (``/proc``, ``/sys``: filesystems
    that do not hold files): an OSError (errno ENOENT) that is not a FileNotFoundError, so it is
    not reported as a missing path."""


def _about_target(exc: OSError, target: Path, tmp: Path | None) -> OSError:
    """``exc`` about the temporary file, said about ``target`` (what the caller asked to write),
    with the system's one-line reason: a library's multi-line message (h5py's write failure
    carries the temporary name, a timestamp and buffer addresses) becomes ``strerror(errno)``.
    An error about another file (one the body read), or without a file name and not one of
    writing, is returned as it is."""
    named = os.fspath(exc.filename) if exc.filename is not None else None
    ours = tmp is None or named in (os.fspath(target), os.fspath(tmp)) or \
        (named is None and exc.errno in _WRITE_ERRNOS)  # tmp None: creating the temporary file failed
    if exc.errno is None or not ours:
        return exc
    if tmp is None and exc.errno == errno.ENOENT and target.parent.is_dir():
        return CannotCreateError(exc.errno, f"{target.parent} does not accept new files (creating one there "
                                            f"failed: {os.strerror(exc.errno)})", os.fspath(target))
    return OSError(exc.errno, os.strerror(exc.errno), os.fspath(target))  # its subclass for the errno


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new entry in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(target: Path, mode: int | None) -> Path:
    """A new, empty temporary file beside ``target`` (never an existing entry, never through a
    symlink), given ``mode`` (None: 0o666 less the umask)."""
    tmp = temp_sibling(target)
    fd = os.open(tmp, _FLAGS, 0o600 if mode is not None else 0o666)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        _unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _unlink(tmp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def temp_sibling(target: str | os.PathLike[str]) -> Path:
    """A new hidden name beside ``target`` for its content in the making:
    ``.<name>.<host>-<pid>-<random>.tmp``."""
    target = Path(target)
    return target.with_name(f".{target.name}.{_HOST}-{os.getpid()}-{os.urandom(4).hex()}.tmp")


def remove_stale_siblings(target: str | os.PathLike[str]) -> list[str]:
    """Remove the :func:`temp_sibling` files and directories of ``target`` that processes of this
    host left and that no longer run (a killed writer); another host's are left alone. Returns the
    names removed."""
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.{re.escape(_HOST)}-(?P<pid>\d+)-[0-9a-f]{{8}}\.tmp")
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or _pid_alive(int(m.group("pid"))):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            _unlink(Path(entry.path))
        removed.append(entry.name)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or not a pid we can ask about): leave it
    return True
