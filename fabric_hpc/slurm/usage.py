"""The agent's fairshare usage: a :class:`~fabric_hpc.scheduler.UsageLedger` kept in its state directory.

Slurm's own usage (``sshare``, with slurmdbd) is read by :mod:`fabric_hpc.slurm.usage_source` when
``usage_source`` says so; this ledger is kept every cycle anyway (it is the fallback). It charges each
Slurm account the GPUs its jobs hold, like the simulator does: at each cycle the
interval since the previous cycle is charged with the GPUs held at the previous cycle (every
running job with GPUs, fabric-marked or not, by its Slurm account), then the ledger is written
atomically (temp file, fsync, rename) to ``<state_dir>/usage.json``. A restarted agent (even after
``kill -9``) loads it and charges the gap since the last write with the GPUs held then. A file that is
not one (damaged, another format, a number out of range) is moved aside at start
(``usage.json.damaged-<UTC time>``, an ``agent.usage_ignored`` record) and usage starts from zero.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

from fabric_hpc.atomic import write_atomic
from fabric_hpc.errors import ConfigError
from fabric_hpc.events import open_regular
from fabric_hpc.slurm.manifest import free_name
from fabric_hpc.scheduler import UsageLedger
from fabric_hpc.scheduler.priority import DAY

FILE = "usage.json"
_MAX_BYTES = 16 << 20
#: Bounds on usage.json's numbers (a larger one is damage): GPUs one account holds, a ledger time (unix
#: seconds, year ~33658) and decayed GPU-seconds (a million GPUs for ~30,000 years).
MAX_HELD_GPUS = 1 << 31
MAX_TIME_S = 1e12
MAX_USAGE_GPU_S = 1e18


class AgentUsage:
    """The ledger plus the GPUs each account held at the last charge, persisted in ``state_dir``.

    A ``usage.json`` that is not the agent's (damaged, another format, too large, a number out of range)
    is not read: usage starts from zero, ``damaged`` says why, and :meth:`set_aside` (at the agent's start,
    under its lock; else before the first save) moves the file to ``usage.json.damaged-<UTC time>``."""

    def __init__(self, state_dir: Path, half_life_s: float = 7 * DAY) -> None:
        self.path = Path(state_dir) / FILE
        self.ledger = UsageLedger(half_life_s)
        self.held: dict[str, int] = {}
        self.went_back_s: float | None = None  # the last charge found the clock this far behind the ledger
        self.damaged: str | None = None  # why usage.json was not read, until it is set aside
        if self.path.exists():
            self._load(half_life_s)

    def _load(self, half_life_s: float) -> None:
        with os.fdopen(open_regular(self.path, os.O_RDONLY), "rb") as fh:  # a FIFO: ConfigError, no hang
            raw = fh.read(_MAX_BYTES + 1)
        try:
            ledger, held = _parse(raw, str(self.path))
        except ConfigError as exc:
            self.damaged = exc.message
            return
        if ledger.half_life_s != half_life_s:
            raise ConfigError(f"{self.path} was kept with a half-life of {ledger.half_life_s:g} s, not {half_life_s:g}",
                              hint="keep the half-life, or remove the file to start usage from zero")
        self.ledger, self.held = ledger, held

    def set_aside(self) -> dict[str, str] | None:
        """Move a damaged ``usage.json`` (``damaged``) to ``usage.json.damaged-<UTC time>`` (never over an
        earlier one) and return the ``agent.usage_ignored`` record's fields; None when there is none."""
        if self.damaged is None:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = free_name(self.path.with_name(f"{FILE}.damaged-{stamp}"))  # never over an earlier one
        os.rename(self.path, aside)  # under the agent's lock: no other writer in this directory
        why, self.damaged = self.damaged, None
        return {"file": str(self.path), "moved_to": str(aside), "reason": why}

    def charge(self, now: float, held_now: Mapping[str, int]) -> dict[str, float]:
        """Charge ``[last, now)`` with the GPUs held at the last charge, remember ``held_now``, save.

        Returns the decayed usage per account at ``now``. A clock that went back behind the ledger's
        time is not charged: the ledger restarts at ``now`` (``went_back_s`` says by how much, until the
        next charge), so charging resumes at once rather than when the clock catches up.
        """
        last = self.ledger.time
        self.went_back_s = None if last is None or now >= last else last - now
        if self.went_back_s is None:
            self.ledger.advance(now, self.held)
        else:
            self.ledger.restart_at(now)
        self.held = {a: int(g) for a, g in sorted(held_now.items()) if g}
        self.save()
        return self.ledger.usage()

    def save(self) -> None:
        self.set_aside()  # a damaged file is kept for a look, not replaced
        data = {"ledger": self.ledger.to_dict(), "held": self.held}
        write_atomic(self.path, json.dumps(data), mode=0o600)


def _parse(raw: bytes, source: str) -> tuple[UsageLedger, dict[str, int]]:
    """The ledger and the GPUs held in ``usage.json``'s bytes; ConfigError saying what is wrong."""
    try:
        data = json.loads(raw) if len(raw) <= _MAX_BYTES else None
    except (ValueError, RecursionError):  # nested too deep: damaged like any other bad JSON
        data = None
    if not isinstance(data, dict) or set(data) != {"ledger", "held"} or not _held_ok(data["held"]):
        raise ConfigError(f"{source} is not the agent's usage file (or a GPU count is not an integer "
                          f"0..{MAX_HELD_GPUS})")
    if not isinstance(data["ledger"], dict):
        raise ConfigError(f"{source}: no ledger object")
    ledger = UsageLedger.from_dict(data["ledger"], source=source)
    t, usage = ledger.time, ledger.usage()
    if (t is not None and t > MAX_TIME_S) or any(v > MAX_USAGE_GPU_S for v in usage.values()) \
            or ledger.half_life_s <= 0:
        raise ConfigError(f"{source}: a number out of range (time over {MAX_TIME_S:g} s, usage over "
                          f"{MAX_USAGE_GPU_S:g} GPU-s, or a half-life of 0)")
    return ledger, dict(data["held"])


def _held_ok(held: object) -> bool:
    return isinstance(held, dict) and all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                          and 0 <= v <= MAX_HELD_GPUS for k, v in held.items())
