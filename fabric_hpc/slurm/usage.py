"""The agent's fairshare usage: a :class:`~fabric_hpc.scheduler.UsageLedger` kept in its state directory.

Slurm's own usage (``sshare``, with slurmdbd) is read by :mod:`fabric_hpc.slurm.usage_source` when
``usage_source`` says so; this ledger is kept every cycle anyway (it is the fallback). It charges each
Slurm account the GPUs its jobs hold, like the simulator does: at each cycle the
interval since the previous cycle is charged with the GPUs held at the previous cycle (every
running job with GPUs, fabric-marked or not, by its Slurm account), then the ledger is written
atomically (temp file, fsync, rename) to ``<state_dir>/usage.json``. A restarted agent (even after
``kill -9``) loads it and charges the gap since the last write with the GPUs held then.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from fabric_hpc.atomic import write_atomic
from fabric_hpc.errors import ConfigError
from fabric_hpc.events import open_regular
from fabric_hpc.scheduler import UsageLedger
from fabric_hpc.scheduler.priority import DAY

FILE = "usage.json"
_MAX_BYTES = 16 << 20


class AgentUsage:
    """The ledger plus the GPUs each account held at the last charge, persisted in ``state_dir``."""

    def __init__(self, state_dir: Path, half_life_s: float = 7 * DAY) -> None:
        self.path = Path(state_dir) / FILE
        self.ledger = UsageLedger(half_life_s)
        self.held: dict[str, int] = {}
        self.went_back_s: float | None = None  # the last charge found the clock this far behind the ledger
        if self.path.exists():
            self._load(half_life_s)

    def _load(self, half_life_s: float) -> None:
        with os.fdopen(open_regular(self.path, os.O_RDONLY), "rb") as fh:  # a FIFO: ConfigError, no hang
            raw = fh.read(_MAX_BYTES + 1)
        try:
            data = json.loads(raw) if len(raw) <= _MAX_BYTES else None
        except (ValueError, RecursionError):  # nested too deep: damaged like any other bad JSON
            data = None
        if not isinstance(data, dict) or set(data) != {"ledger", "held"} or not _held_ok(data["held"]):
            raise ConfigError(f"{self.path} is not the agent's usage file", hint="remove it to start usage from zero")
        ledger = UsageLedger.from_dict(data["ledger"], source=str(self.path)) \
            if isinstance(data["ledger"], dict) else None
        if ledger is None:
            raise ConfigError(f"{self.path}: no ledger object", hint="remove it to start usage from zero")
        if ledger.half_life_s != half_life_s:
            raise ConfigError(f"{self.path} was kept with a half-life of {ledger.half_life_s:g} s, not {half_life_s:g}",
                              hint="keep the half-life, or remove the file to start usage from zero")
        self.ledger, self.held = ledger, dict(data["held"])

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
        data = {"ledger": self.ledger.to_dict(), "held": self.held}
        write_atomic(self.path, json.dumps(data), mode=0o600)


def _held_ok(held: object) -> bool:
    return isinstance(held, dict) and all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                          and v >= 0 for k, v in held.items())
