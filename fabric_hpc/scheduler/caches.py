"""What a :class:`~fabric_hpc.scheduler.Scheduler` remembers between steps: one owned, bounded object.

Every entry is a pure function of its key (the decisions do not depend on what is cached: the
fast-path oracle tests run with and without it), so a cache may be emptied at any time. Each memo
has a size limit; a memo at its limit is emptied before a new key goes in (the simplest bound that
keeps lookups O(1); the keys of a long replay move on, so old entries are rarely useful).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any


_OFFERS: dict[tuple[type, type], bool] = {}


def offers(obj: object, capability: type) -> bool:
    """``isinstance(obj, capability)`` for a runtime-checkable Protocol of the contract, remembered
    per class (a Protocol check inspects every member, too slow for every step; the strategies
    declare their methods on the class)."""
    key = (type(obj), capability)
    hit = _OFFERS.get(key)
    if hit is None:
        hit = _OFFERS[key] = isinstance(obj, capability)
    return hit


class Memo:
    """A dict with a size limit (emptied when full)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data: dict[Hashable, Any] = {}

    def get(self, key: Hashable, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __contains__(self, key: Hashable) -> bool:
        return key in self.data

    def __len__(self) -> int:
        return len(self.data)

    def put(self, key: Hashable, value: Any) -> Any:
        if key not in self.data and len(self.data) >= self.limit:
            self.data.clear()
        self.data[key] = value
        return value

    def keep(self, items: dict[Hashable, Any]) -> None:
        """Replace the content with ``items`` (a driver's current working set)."""
        self.data = dict(items)


@dataclass
class StepCaches:
    """The scheduler's memory between steps (see module doc)."""

    #: id(RunningJob) -> (the job object, walltime end, GPU indices, first GPU, (end, indices)); the
    #: entry holds the object, so its ``id`` is not reused while cached. Trimmed to the running set.
    ends: Memo = field(default_factory=lambda: Memo(1 << 20))
    #: job id -> (job object, fabric, the job with its compact-placement constraint)
    compact: Memo = field(default_factory=lambda: Memo(100_001))
    #: (request, owners, release times, first GPUs) -> earliest (time, GPUs) or None
    starts: Memo = field(default_factory=lambda: Memo(1025))
    #: (request, tier, owners, running ids) for which no victim set frees a placement
    no_victims: Memo = field(default_factory=lambda: Memo(4097))

    def sizes(self) -> dict[str, int]:
        return {"ends": len(self.ends), "compact": len(self.compact), "starts": len(self.starts),
                "no_victims": len(self.no_victims)}

    def clear(self) -> None:
        for memo in (self.ends, self.compact, self.starts, self.no_victims):
            memo.data.clear()
