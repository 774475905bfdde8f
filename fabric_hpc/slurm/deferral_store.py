"""The agent's own deferrals, kept across restarts: ``<state_dir>/deferrals.json``.

A waiting gang's begin time is the plugin's (submit time + ``fallback_s``) until the agent renews it
(``StartTime=now+fallback_s``); from then on only the agent knows that begin time is its own
(:attr:`~fabric_hpc.slurm.actions.Actions.asked`, :attr:`~fabric_hpc.slurm.actions.Actions.deferrals`).
Without this file a restarted agent (SIGTERM, ``kill -9``, a crash) took a renewed begin time for the
user's ``--begin`` and left the gang waiting on idle GPUs until it ran out.

The file holds, per pending job, the begin times the agent asked for, the one it set last, its refused
deferrals in a row (with the time of the next try) and, for a job whose own begin time (``--begin``, Slurm's
delay after a requeue) the agent took over, that time (``begin``: the restarted agent still waits for it, and
``fabric slurm why`` says it, :func:`own_begins`), and the hosts of the pin the agent set (``pin``, kept
while the job lives: any other ``ReqNodeList`` is someone else's, which the agent never clears,
:func:`own_pins`). It is rewritten (:func:`fabric_hpc.atomic.write_atomic`,
not fsync'd: a lost write costs at most one fallback's wait) after a cycle that changed it, and read once at
start, under the agent's lock; entries of jobs no longer pending are dropped by the first cycle
(:meth:`~fabric_hpc.slurm.actions.Actions.forget`). At most :data:`MAX_JOBS` jobs are kept (those deferred
last). A file that is not one of these (corrupt, foreign, too large) is ignored: the agent logs one
``agent.deferrals_ignored`` record and starts without it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import compress, expand
from fabric_hpc.slurm.jobs_file import JobsFile
from fabric_hpc.slurm.actions import ASKED_KEPT, MAX_DEFER_FAILURES, Actions

DEFERRALS_FILE = "deferrals.json"
FORMAT = "fabric-agent-deferrals/2"
#: The format of releases before 2026-12-07: no ``pin`` (which ReqNodeLists were the agent's is not known).
FORMAT_1 = "fabric-agent-deferrals/1"
#: The audit records after which a job holds no pin of the agent's (not ``agent.requeue``: written before
#: the requeue, whose unpin of the old pin follows it and may not have been sent).
CLEARS_PIN = frozenset({"agent.unpin", "agent.handoff"})
#: Jobs kept in the file (the latest deferred); about 100 bytes each.
MAX_JOBS = 50_000
#: Largest file read back (bytes).
MAX_BYTES = 16 << 20


class DeferralStore:
    """Saves and loads the deferral memory of an :class:`~fabric_hpc.slurm.actions.Actions`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / DEFERRALS_FILE
        self._file = JobsFile(self.path, FORMAT, "deferrals", MAX_BYTES, older=(FORMAT_1,))
        #: Pins sent after this time may be missing from the file (:meth:`recover_pins`): its last save, or
        #: -inf where no file of this format was read (none, ignored, or an earlier release's).
        self.saved_at = -math.inf

    def save(self, actions: Actions) -> None:
        """Rewrite the file when the memory changed since the last save (or load)."""
        # the pins of ended jobs (kept a while for a requeue) go first when the file is full
        jobs = sorted(set(actions.asked) | set(actions.deferrals) | set(actions.defer_retry)
                      | set(actions.pins),
                      key=lambda j: (j not in actions.pins_ended, actions.deferrals.get(j, 0.0)))[-MAX_JOBS:]
        self._file.save({str(j): _entry(actions, j) for j in jobs})

    def load(self, actions: Actions) -> str | None:
        """Fill ``actions`` from the file; None when it was read (or there is none), else why it was
        ignored."""
        self.saved_at = -math.inf
        entries, why = self._file.load()
        if why is not None:
            return why
        try:
            parsed = {int(k): _parse(v) for k, v in entries.items()}
        except (ValueError, TypeError, KeyError) as exc:
            return f"damaged: {type(exc).__name__}: {str(exc)[:200]}"
        if self._file.read_format == FORMAT:
            saved = self._file.saved if self._file.saved is not None else self._mtime()
            # a save in the future: this clock or the saver's is wrong; read the whole tail back, in order
            self.saved_at = saved if saved <= time.time() else -math.inf
        for job_id, (asked, until, retry, begin, pin) in list(parsed.items())[-MAX_JOBS:]:
            if pin is not None:
                actions.pins[job_id] = pin
            if begin is not None:
                actions.waits[job_id] = begin
            if asked:
                actions.asked[job_id] = asked
            if until is not None:
                actions.deferrals[job_id] = until
            if retry is not None:
                actions.defer_retry[job_id] = retry
        return None

    def _mtime(self) -> float:
        """The file's mtime, for a file an earlier release saved without its time: the file server's clock,
        which may differ from this host's (the audit log's)."""
        try:
            return self.path.stat().st_mtime
        except OSError:
            return -math.inf

    def recover_pins(self, actions: Actions) -> int:
        """Add the pins the audit log has (``agent.place``, written before any is sent to Slurm) from after
        this file's last save (:attr:`saved_at`, after :meth:`load`): an agent killed between sending a
        cycle's pins and saving this file, or one of a release that saved no pins (an upgrade), would
        otherwise take its own pins for someone else's and hand those jobs to Slurm. Pins of jobs that
        ended are kept :data:`~fabric_hpc.slurm.actions.ENDED_PIN_MEMORY_S` from the first cycle (``forget``:
        a requeue of an ended job), then dropped. Returns how many were read."""
        from fabric_hpc.slurm.audit import read_tail

        since = self.saved_at
        try:
            entries = read_tail(self.path.parent).entries
        except (OSError, ConfigError):
            return 0  # no log, or not one to read: nothing written ahead to recover
        found: dict[int, frozenset[str]] = {}
        for e in entries:  # in order: a later unpin or hand-over cleared the pin again
            if e["ts"] < since:
                continue
            if e["event"] == "agent.place" and (placed := _placed(e)) is not None:
                found[placed[0]] = placed[1]
            elif e["event"] in CLEARS_PIN and isinstance(e.get("job"), int):
                found.pop(e["job"], None)
        actions.pins.update(found)
        return len(found)


def _placed(entry: dict[str, Any]) -> tuple[int, frozenset[str]] | None:
    """(job, hosts) of an ``agent.place`` record; None when it is not of that shape."""
    job, hosts = entry.get("job"), entry.get("hosts")
    if isinstance(job, bool) or not isinstance(job, int) or not isinstance(hosts, list) or not hosts \
            or not all(isinstance(h, str) for h in hosts):
        return None
    return job, frozenset(hosts)


def _entry(actions: Actions, job_id: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"asked": actions.asked.get(job_id, [])}
    if job_id in actions.deferrals:
        entry["until"] = actions.deferrals[job_id]
    if job_id in actions.defer_retry:
        entry["retry"] = list(actions.defer_retry[job_id])
    if job_id in actions.waits:
        entry["begin"] = actions.waits[job_id]
    if job_id in actions.pins:
        entry["pin"] = compress(sorted(actions.pins[job_id]))
    return entry


def own_pins(state_dir: str | Path) -> dict[int, frozenset[str]] | None:
    """The pins the agent set (job id -> hosts), as its last cycle saved them; None where the file is
    missing, not readable by this user or not one of the agent's (who set a ReqNodeList cannot be told)."""
    path = Path(state_dir) / DEFERRALS_FILE
    file = JobsFile(path, FORMAT, "deferrals", MAX_BYTES, older=(FORMAT_1,))
    entries, why = file.load()
    if why is not None or file.read_format != FORMAT:  # an earlier release's file has no pins to tell by
        return None
    try:
        return {int(k): _pin(v["pin"]) for k, v in entries.items() if isinstance(v, dict) and "pin" in v}
    except (ValueError, TypeError):
        return None


def _pin(value: Any) -> frozenset[str]:
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a host list: {str(value)[:80]!r}")
    return frozenset(expand(value))


def own_begins(state_dir: str | Path) -> dict[int, float]:
    """The jobs' own begin times the agent took over (job id -> time), as its last cycle saved them; empty
    where the file is missing, not readable by this user or not one of the agent's (nothing to tell)."""
    path = Path(state_dir) / DEFERRALS_FILE
    entries, _ = JobsFile(path, FORMAT, "deferrals", MAX_BYTES, older=(FORMAT_1,)).load()
    try:
        return {int(k): _time(v["begin"]) for k, v in entries.items() if isinstance(v, dict) and "begin" in v}
    except (ValueError, TypeError):
        return {}


def _time(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"not a time: {value!r}")
    return float(value)


def _parse(entry: Any) -> tuple[list[float], float | None, tuple[int, float] | None, float | None,
                               frozenset[str] | None]:
    """One job's (asked times, last begin time set, (refused deferrals in a row, next try), its own begin
    time taken over, the hosts of the agent's pin); ValueError when it is not of that shape."""
    if not isinstance(entry, dict) or not isinstance(entry.get("asked", []), list):
        raise ValueError(f"not a job entry: {str(entry)[:80]}")
    asked = [_time(t) for t in entry.get("asked", [])][-ASKED_KEPT:]
    until = _time(entry["until"]) if "until" in entry else None
    retry = None
    if "retry" in entry:
        n, at = entry["retry"]
        if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= MAX_DEFER_FAILURES:
            raise ValueError(f"not a count of refused deferrals: {n!r}")
        retry = (n, _time(at))
    pin = _pin(entry["pin"]) if "pin" in entry else None
    return asked, until, retry, _time(entry["begin"]) if "begin" in entry else None, pin
