"""Structured events: one JSON object per observable thing that happens.

Library code calls :func:`emit`; it never configures logging. Events go to the standard
``logging`` logger ``fabric_hpc.events`` at INFO with the payload attached as ``record.event``,
so an application decides where they go. The CLI installs :class:`JsonLinesFormatter` (``-v``
shows them on stderr); daemons and harnesses that must keep an audit trail use
:class:`JsonLinesWriter`, which appends fsync'd lines to a file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOGGER_NAME = "fabric_hpc.events"
_logger = logging.getLogger(LOGGER_NAME)
#: the longest event line :class:`JsonLinesFormatter` writes (and a bounded :class:`JsonLinesWriter`)
MAX_EVENT_CHARS = 64 << 10
#: in an event cut to :data:`MAX_EVENT_CHARS`, a field whose JSON is longer than this is replaced
MAX_FIELD_CHARS = 4 << 10


def _default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset, tuple)):
        return finite_json(list(obj))
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return finite_json(obj.item())
    return str(obj)


def finite_json(obj: Any, path: str = "", undefined: list[str] | None = None) -> Any:
    """``obj`` (JSON types) with every NaN/infinite float replaced by ``None``; the JSON paths of
    the replaced values are appended to ``undefined``. Strict JSON has no NaN or Infinity."""
    if isinstance(obj, float) and not math.isfinite(obj):
        if undefined is not None:
            undefined.append(path or "$")
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v, f"{path}.{k}" if path else str(k), undefined) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v, f"{path}[{i}]", undefined) for i, v in enumerate(obj)]
    return obj


def _dumps(obj: Any) -> str:
    return json.dumps(finite_json(obj), default=_default, separators=(",", ":"), allow_nan=False)


def to_json(payload: dict[str, Any], *, max_chars: int | None = None) -> str:
    """Serialise an event payload as one compact line of strict JSON (no newline): NaN and
    infinities become ``null`` (:func:`finite_json`). With ``max_chars``, a longer line is cut
    (:func:`bounded`)."""
    text = _dumps(payload)
    if max_chars is None or len(text) <= max_chars:
        return text
    return bounded(payload, max_chars)


def _stub(value: Any, text: str) -> dict[str, Any]:
    stub: dict[str, Any] = {"truncated": True, "json_chars": len(text)}
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        stub["count"] = len(value)
    if isinstance(value, (list, tuple)):
        stub["first"] = [v for v in value[:10] if len(_dumps(v)) <= 256]
    return stub


def bounded(payload: dict[str, Any], max_chars: int = MAX_EVENT_CHARS) -> str:
    """``payload`` as JSON of at most ``max_chars`` (at least 256): each field whose JSON is longer
    than :data:`MAX_FIELD_CHARS` becomes ``{"truncated": true, "json_chars", "count", "first"}``
    (count and first ten items of a list) and the event gets ``"truncated": true``; if that is still
    too long, only ``ts``, ``event`` and ``truncated`` are kept."""
    kept: dict[str, Any] = {}
    for key, value in payload.items():
        text = _dumps(value)
        kept[key] = value if len(text) <= min(MAX_FIELD_CHARS, max_chars // 4) else _stub(value, text)
    kept["truncated"] = True
    text = _dumps(kept)
    if len(text) <= max_chars:
        return text
    return _dumps({"ts": payload.get("ts"), "event": str(payload.get("event"))[:100], "truncated": True})


def make_event(name: str, **fields: Any) -> dict[str, Any]:
    """The event dict: ``{"ts": <unix seconds>, "event": name, **fields}``."""
    return {"ts": round(time.time(), 6), "event": name, **fields}


def emit(name: str, **fields: Any) -> dict[str, Any]:
    """Emit a structured event and return it. Cheap when nobody listens."""
    return emit_event(make_event(name, **fields))


def emit_event(event: dict[str, Any]) -> dict[str, Any]:
    """Emit an event made before (:func:`make_event`) as it is, its ``ts`` kept: a copy of it written
    elsewhere too (the agent's audit log) is the same record, so the two can be joined."""
    if _logger.isEnabledFor(logging.INFO):
        _logger.info(event["event"], extra={"event": event})
    return event


class JsonLinesFormatter(logging.Formatter):
    """Formats ``fabric_hpc.events`` records as their JSON payload, other records as JSON too."""

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        if event is None:
            event = {
                "ts": round(record.created, 6),
                "event": "log",
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
            }
        return to_json(event, max_chars=MAX_EVENT_CHARS)


@contextlib.contextmanager
def naming_file(path: str | os.PathLike[str]) -> Iterator[None]:
    """Re-raise an OSError that names no file (a write or fsync on an open file: a full disk
    says only ``No space left on device``) as the same error naming ``path``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, os.fspath(path)) from exc


def open_regular(path: str | os.PathLike[str], flags: int, mode: int = 0o600, *, follow: bool = False,
                 dir_fd: int | None = None, shown: str | os.PathLike[str] | None = None) -> int:
    """``os.open`` of a regular file that is never a symbolic link (``flags`` gain O_NOFOLLOW,
    O_NONBLOCK and O_CLOEXEC; the fd is left blocking): ConfigError naming the path and the fix for
    a symbolic link, a FIFO or a device, so nothing is written (or created) through one, and no read
    blocks on a FIFO; with O_EXCL, an existing entry of that name is a ConfigError too. For every file
    opened in place in a state, output, spool or checkpoint directory (locks, logs, spool files).
    ``follow=True`` (O_RDONLY reads of files a user may link into place, such as spool files) follows
    a symbolic link to a regular file. ``dir_fd``: ``path`` is relative to that open directory
    (``shown``: the path the messages name)."""
    from fabric_hpc.errors import ConfigError

    if shown is None:
        shown = path

    flags |= os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    doing = "read" if flags & os.O_ACCMODE == os.O_RDONLY else "write to"
    hint = (f"remove {shown} (or move it away); it is created again as a plain file" if doing != "read"
            else f"replace {shown} by a plain file (or move it away)")
    try:
        fd = os.open(path, flags, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a symbolic link; a FIFO with no reader
            raise ConfigError(f"{shown} is a symbolic link or a special file, not a regular file: "
                              f"refusing to {doing} it", hint=hint) from None
        if exc.errno == errno.EEXIST:  # O_EXCL: a file of that name, a link or a FIFO planted there
            raise ConfigError(f"{shown} already exists: refusing to write over it", hint=hint) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO with a reader, a device
        os.close(fd)
        raise ConfigError(f"{shown} is not a regular file: refusing to {doing} it", hint=hint)
    os.set_blocking(fd, True)
    return fd


class JsonLinesWriter:
    """Append-only JSON-lines file, each record written whole (unbuffered) and (optionally) fsync'd
    before returning; a record whose write fails is cut off again, never written later.

    Thread-safe. Files are created 0600 (``mode``): audit logs can name users' jobs. With
    ``max_bytes``, a write that would take the file past it first renames the file to ``<name>.1``
    (replacing the one before) and starts a new one: at most about twice ``max_bytes`` on disk.
    With ``max_line``, an event longer than that is cut (:func:`bounded`); without it (journals,
    whose records must stay whole) lines are written as they are. The file is opened without
    following a symbolic link and must be a regular file (:class:`~fabric_hpc.errors.ConfigError`).
    One process (one writer) per file: the size checks for rotation and the cut-back after a failed
    write assume no other writer appends to it.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True, mode: int = 0o600,
                 max_bytes: int | None = None, max_line: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._mode, self._fsync, self._max, self._max_line = mode, fsync, max_bytes, max_line
        self._fd: int | None = self._open()
        self._cut_to: tuple[int, int, int] | None = None  # (st_dev, st_ino, size): a cut still to make
        self._lock = threading.Lock()

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        return open_regular(self.path, flags, self._mode)

    def _fileno(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path}: the writer is closed")
        return self._fd

    @property
    def rotated(self) -> Path:
        """Where the previous file goes when this one is full (``max_bytes``)."""
        return self.path.with_name(self.path.name + ".1")

    def _rotate_for(self, size: int) -> None:
        if self._max is None:
            return
        now = os.fstat(self._fileno()).st_size  # every write goes straight to the file: the size on disk
        if now > 0 and now + size > self._max:
            os.close(self._fileno())
            self._fd = None
            try:
                os.replace(self.path, self.rotated)
            finally:  # renamed or not, later writes go to an open file
                self._fd = self._open()

    def write(self, event: dict[str, Any]) -> None:
        self.write_many([event])

    def write_many(self, events: list[dict[str, Any]]) -> None:
        """Append ``events`` in order with one write and (optionally) one fsync: all are on disk on return.

        The bytes go to the file unbuffered. A write that fails (a full disk) is undone: the file is cut
        back to its size before it, so no part of these records is ever written later, by this call or
        the next one (an audit log must not record, after the fact, actions that never ran)."""
        data = "".join(to_json(e, max_chars=self._max_line) + "\n" for e in events).encode()
        with self._lock, naming_file(self.path):
            self._apply_cut()  # on the file it belongs to, before a rotation opens another one
            self._rotate_for(len(data))
            fd = self._fileno()
            before = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:  # O_APPEND: each piece lands at the end
                    view = view[os.write(fd, view):]
                if self._fsync:
                    os.fsync(fd)
            except BaseException:
                self._undo(fd, before)
                raise

    def _undo(self, fd: int, size: int) -> None:
        """Cut the file back to ``size`` after a failed write (a shrinking truncate needs no space); if even
        that fails, the next write cuts it first (and fails if it still cannot), so no record is ever
        glued onto the failed one's fragment."""
        try:
            os.ftruncate(fd, size)
        except OSError:
            st = os.fstat(fd)
            self._cut_to = (st.st_dev, st.st_ino, size)

    def _apply_cut(self) -> None:
        """Make the cut a failed write left pending, on the open file if it is the one the cut belongs to
        (never another file: cutting a new, empty one to that size would fill it with NULs); raises the
        OSError when it still cannot be made."""
        if self._cut_to is None:
            return
        fd = self._fileno()
        st = os.fstat(fd)
        dev, ino, size = self._cut_to
        if (st.st_dev, st.st_ino) == (dev, ino):
            os.ftruncate(fd, size)
        self._cut_to = None

    def reopen(self) -> None:
        """Close the file and open ``path`` again (created when missing): after logrotate moved it. A cut
        still pending is made on the old file first; if it still fails, the failed record's fragment stays
        at the end of the moved file, and the new file starts clean."""
        with self._lock:
            new = self._open()  # an error leaves the old file open and written
            if self._fd is not None:
                try:
                    self._apply_cut()
                except OSError:
                    self._cut_to = None  # the old file is no longer written: nothing is glued onto it
                os.close(self._fd)
            self._fd = new

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)

    def __del__(self) -> None:
        """A writer dropped unclosed (an agent object a caller discards) closes its file: every record is
        already written, so nothing is lost."""
        fd = self.__dict__.get("_fd")
        if fd is not None:
            self._fd = None
            os.close(fd)

    def __enter__(self) -> JsonLinesWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cut_torn_tail(path: str | os.PathLike[str]) -> int:
    """Truncate a JSON-lines file after its last newline; return the bytes cut (0 if none or no file).

    Every write of :class:`JsonLinesWriter` ends with a newline, so bytes after the last one are
    a write cut short (a full disk, a crash). Appending after them would glue the next record onto
    the fragment and damage the file in the middle; call this before reopening a file to append,
    while no other process writes to it."""
    try:
        fd = open_regular(Path(path), os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        keep, block = size, 1 << 16
        while keep > 0:  # scan back from the end for the last newline
            start = max(0, keep - block)
            data = os.pread(fd, keep - start, start)
            nl = data.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            keep = start
        if keep < size:
            os.ftruncate(fd, keep)
            os.fsync(fd)
        return size - keep
    finally:
        os.close(fd)


#: the longest line :func:`iter_json_lines` reads (a journal record of a large chunk); the file
#: itself may be of any length: it is read a line at a time
MAX_JSON_LINE_BYTES = 256 << 20


def read_json_lines(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a JSON-lines file (:func:`iter_json_lines`) in a list."""
    return list(iter_json_lines(path))


def iter_json_lines(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The records of a JSON-lines file, read a line at a time (no limit on the file's size); a torn
    last line (no newline after it: a crash mid-write) that does not parse is ignored, any other line
    must be a JSON object, and no line may be longer than :data:`MAX_JSON_LINE_BYTES` (ConfigError)."""
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.inputs import check_regular, os_error

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise os_error(exc, "JSON-lines file", path) from None
    with os.fdopen(fd, "rb") as fh:
        check_regular(fd, "JSON-lines file", path, limit=1 << 62)
        os.set_blocking(fd, True)
        n = 0
        while line := fh.readline(MAX_JSON_LINE_BYTES + 1):
            n += 1
            torn = not line.endswith(b"\n")  # the last line, cut short
            if len(line) > MAX_JSON_LINE_BYTES and torn:
                if _skip_line(fh):  # a torn over-long last line: ignored as any torn line is
                    raise ConfigError(f"{path}:{n}: a line longer than {MAX_JSON_LINE_BYTES:,} bytes",
                                      hint="the file is damaged in the middle; restore it from a copy "
                                           "or remove the line")
                break
            if not line.strip():
                continue
            try:
                obj = json.loads(line.decode("utf-8"))
            except (ValueError, RecursionError):  # not JSON, or not UTF-8
                if torn:
                    break
                obj = None
            if not isinstance(obj, dict):
                raise ConfigError(
                    f"{path}:{n}: not a JSON object line",
                    hint="the file is damaged in the middle; restore it from a copy or remove the line",
                ) from None
            yield obj


def _skip_line(fh: Any) -> bool:
    """Read past the rest of a line; whether it ended with a newline (False: at the end of the file)."""
    while block := fh.read(1 << 20):
        if (nl := block.find(b"\n")) >= 0:
            fh.seek(nl + 1 - len(block), os.SEEK_CUR)  # a regular file: back to just after the newline
            return True
    return False
