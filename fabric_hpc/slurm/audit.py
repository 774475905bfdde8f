"""The agent's logs in its state directory: ``decisions.jsonl`` (the audit log that ``fabric slurm why``
and ``fabric slurm report`` read) and, with ``record_cycles``, ``cycles.jsonl``.

Both are bounded: a file that would grow past :data:`LOG_MAX_BYTES` is renamed to ``<name>.1``
(replacing the one before) and a new one starts (:class:`fabric_hpc.events.JsonLinesWriter`), so an
agent never fills its disk. A starting agent cuts a torn last line (a crash or a full disk mid-write) off
both before it appends (:func:`repair_logs`). The waiting reasons, the one record a cycle may repeat, are written when
they change and otherwise at most every :data:`WAITING_REFRESH_S`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError
from fabric_hpc.events import JsonLinesWriter, cut_torn_tail

AUDIT_LOG = "decisions.jsonl"
CYCLES_LOG = "cycles.jsonl"
#: A log's size before it is rotated to ``<name>.1``: at most about twice this on disk per log.
LOG_MAX_BYTES = 64 << 20
#: What readers take from the logs' end (``decisions.jsonl``, then ``.1`` when that is shorter).
TAIL_BYTES = 8 << 20
MAX_LINE = 64 << 10
#: Unchanged waiting reasons are written again after this long (readers of the log's tail find them).
WAITING_REFRESH_S = 600.0
#: The most jobs one ``agent.waiting`` record lists: a cycle with more writes several (each well under a
#: log shipper's line limit, e.g. Loki's 256 KB, and the event stream's 64 KiB).
WAITING_PER_RECORD = 1000
#: The latest ``ts`` a record may carry (3000-01-01 UTC): a record outside 1970 to this is damaged (a bad
#: clock or an edited line), as no platform's time functions may be able to show it.
TS_MAX = 32503680000.0


def waiting_records(waiting: dict[int, str], holds: dict[str, Any] | None = None,
                    reserved: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The fields of the cycle's ``agent.waiting`` records: ``jobs`` (job -> reason), in job order, at
    most :data:`WAITING_PER_RECORD` a record, each with the ``holds`` and ``reserved`` of its own jobs.
    Readers take each job's entry from the last record naming it, so the split changes nothing read."""
    ids = sorted(waiting)
    out = []
    for at in range(0, len(ids), WAITING_PER_RECORD):
        keys = [str(j) for j in ids[at:at + WAITING_PER_RECORD]]
        part: dict[str, Any] = {"jobs": {k: waiting[int(k)] for k in keys}}
        for name, table in (("holds", holds), ("reserved", reserved)):
            if mine := {k: table[k] for k in keys if table and k in table}:
                part[name] = mine
        out.append(part)
    return out


def rotated_names() -> tuple[str, ...]:
    """The rotated logs' names (what ``fabric slurm uninstall --purge-state`` removes besides the logs)."""
    return (AUDIT_LOG + ".1", CYCLES_LOG + ".1")


def audit_writer(state_dir: Path) -> JsonLinesWriter:
    """The audit log: each cycle's records fsync'd before the agent acts; read by ``fabric slurm why``."""
    return JsonLinesWriter(state_dir / AUDIT_LOG, mode=0o640, max_bytes=LOG_MAX_BYTES)


def cycles_writer(state_dir: Path) -> JsonLinesWriter:
    """The cycle recording (``record_cycles``): replayable, not needed to act, so not fsync'd."""
    return JsonLinesWriter(state_dir / CYCLES_LOG, fsync=False, mode=0o640, max_bytes=LOG_MAX_BYTES)


def repair_logs(state_dir: Path) -> list[tuple[Path, int]]:
    """Cut the torn last line off the audit log and the cycle recording (:func:`~fabric_hpc.events.cut_torn_tail`):
    (path, bytes cut) of each repaired. Call it holding the agent's lock, before appending: a record
    written after a fragment would be glued onto it and both lost to readers."""
    cuts = [(state_dir / name, cut_torn_tail(state_dir / name)) for name in (AUDIT_LOG, CYCLES_LOG)]
    return [(path, cut) for path, cut in cuts if cut]


class WaitingLog:
    """Decides when the cycle's waiting reasons go to the audit log: when they (or the reservations: job ->
    ``start``, ``hosts``, ``after``; a start by the minute) differ from the last written, or
    :data:`WAITING_REFRESH_S` after it."""

    def __init__(self) -> None:
        self._last: tuple[dict[int, str], dict[str, Any]] | None = None
        self._at = float("-inf")

    def due(self, waiting: dict[int, str], now: float,
            reserved: dict[str, dict[str, Any]] | None = None) -> bool:
        key = (dict(waiting), {j: (int(r["start"] // 60), r["hosts"], r["after"])
                               for j, r in (reserved or {}).items()})
        if key == self._last and now - self._at < WAITING_REFRESH_S:
            return False
        self._last, self._at = key, now
        return True


@dataclass
class AuditTail:
    """The audit log's last records, oldest first: each a JSON object with a string ``event`` and
    a numeric ``ts``; ``damaged`` counts other lines (a torn last line is a write in progress, not
    damage); ``truncated`` says older records were not read."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    damaged: int = 0
    truncated: bool = False


def read_tail(state_dir: Path, limit: int = TAIL_BYTES) -> AuditTail:
    """The last ``limit`` bytes of the audit log, reaching into the rotated ``.1`` when the current
    file is shorter. FileNotFoundError when there is no log; other OSErrors are the caller's."""
    path = state_dir / AUDIT_LOG
    blob, size = _tail(path, limit)
    older = b""
    if size < limit:
        with contextlib.suppress(FileNotFoundError):
            older, old_size = _tail(path.with_name(AUDIT_LOG + ".1"), limit - size)
            size += old_size
    tail = AuditTail(truncated=size > limit)
    lines = (older + blob).split(b"\n")
    if tail.truncated:
        lines = lines[1:]  # the first line is cut
    for i, line in enumerate(lines):
        if line.strip():
            entry = _entry(line)
            if entry is None:
                tail.damaged += i < len(lines) - 1
            else:
                tail.entries.append(entry)
    return tail


def _tail(path: Path, limit: int) -> tuple[bytes, int]:
    """(the last ``limit`` bytes of ``path``, its size); a regular file only, never a FIFO."""
    with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK | os.O_NOFOLLOW)) as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ConfigError(f"the agent's audit log {path} is not a regular file",
                              hint="the agent writes it as a plain file: remove what is there")
        size = fh.seek(0, 2)
        fh.seek(max(0, size - limit))
        return fh.read(limit), size


def _entry(line: bytes) -> dict[str, Any] | None:
    if len(line) > MAX_LINE:
        return None
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):
        return None
    ts = entry.get("ts") if isinstance(entry, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("event"), str) \
            or isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0 <= ts < TS_MAX:
        return None
    return entry


def clock(ts: float, fmt: str = "%Y-%m-%d %H:%M:%S", *, utc: bool = False,
          today: str | None = None) -> str:
    """``ts`` (seconds since 1970) as ``fmt`` in local time (UTC with ``utc``), as ``today`` instead where
    that is given and ``ts`` is today; a time the platform cannot show (too far off, not finite) as the
    number."""
    try:
        when = dt.datetime.fromtimestamp(ts, dt.timezone.utc if utc else None)
        now = dt.datetime.now(when.tzinfo)
        return when.strftime(today if today is not None and when.date() == now.date() else fmt)
    except (OverflowError, OSError, ValueError):
        return f"{ts:g} s after 1970 (not a time this system can show)"
