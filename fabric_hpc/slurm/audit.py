"""The agent's logs in its state directory: ``decisions.jsonl`` (the audit log that ``fabric slurm why``
and ``fabric slurm report`` read) and, with ``record_cycles``, ``cycles.jsonl``.

Both are bounded: a file that would grow past :data:`LOG_MAX_BYTES` is renamed to ``<name>.1``
(replacing the one before) and a new one starts (:class:`fabric_hpc.events.JsonLinesWriter`), so an
agent never fills its disk. The waiting reasons, the one record a cycle may repeat, are written when
they change and otherwise at most every :data:`WAITING_REFRESH_S`.
"""

from __future__ import annotations

from pathlib import Path

from fabric_hpc.events import JsonLinesWriter

AUDIT_LOG = "decisions.jsonl"
CYCLES_LOG = "cycles.jsonl"
#: A log's size before it is rotated to ``<name>.1``: at most about twice this on disk per log.
LOG_MAX_BYTES = 64 << 20
#: Unchanged waiting reasons are written again after this long (readers of the log's tail find them).
WAITING_REFRESH_S = 600.0


def rotated_names() -> tuple[str, ...]:
    """The rotated logs' names (what ``fabric slurm uninstall --purge-state`` removes besides the logs)."""
    return (AUDIT_LOG + ".1", CYCLES_LOG + ".1")


def audit_writer(state_dir: Path) -> JsonLinesWriter:
    """The audit log: each cycle's records fsync'd before the agent acts; read by ``fabric slurm why``."""
    return JsonLinesWriter(state_dir / AUDIT_LOG, mode=0o640, max_bytes=LOG_MAX_BYTES)


def cycles_writer(state_dir: Path) -> JsonLinesWriter:
    """The cycle recording (``record_cycles``): replayable, not needed to act, so not fsync'd."""
    return JsonLinesWriter(state_dir / CYCLES_LOG, fsync=False, mode=0o640, max_bytes=LOG_MAX_BYTES)


class WaitingLog:
    """Decides when the cycle's waiting reasons go to the audit log: when they differ from the last
    written, or :data:`WAITING_REFRESH_S` after it."""

    def __init__(self) -> None:
        self._last: dict[int, str] | None = None
        self._at = float("-inf")

    def due(self, waiting: dict[int, str], now: float) -> bool:
        if waiting == self._last and now - self._at < WAITING_REFRESH_S:
            return False
        self._last, self._at = dict(waiting), now
        return True
