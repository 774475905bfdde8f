"""The site's mapping from Slurm QOS and partitions to scheduler tiers (``--tier-map``).

An admin expresses priority and preemption rights with QOS (and partitions); the scheduler works
with tiers (:data:`fabric_hpc.scheduler.DEFAULT_TIERS`: ``high``, ``normal``, ``spot``). Entries read
``qos:NAME=TIER`` or ``partition:NAME=TIER``. A job's tier is, first match wins:

1. its QOS's entry, 2. its partition's entry, 3. the ``tier=`` option of its ``--comment=fabric:…``,
4. its partition's name when that is a tier name, 5. ``normal``.

So a mapped QOS or partition cannot be overridden by the user's comment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fabric_hpc.errors import ConfigError
from fabric_hpc.scheduler import TIERS

_KINDS = ("qos", "partition")


@dataclass(frozen=True)
class TierMap:
    """QOS name -> tier and partition name -> tier."""

    qos: Mapping[str, str] = field(default_factory=dict)
    partition: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TierMap:
        """``["qos:NAME=TIER", "partition:NAME=TIER", ...]``; ConfigError naming a bad entry."""
        found: dict[str, dict[str, str]] = {k: {} for k in _KINDS}
        for entry in entries:
            kind, _, rest = entry.partition(":")
            name, _, tier = rest.partition("=")
            if kind not in _KINDS or not name or not tier:
                raise ConfigError(f"tier map entry {entry!r} is not KIND:NAME=TIER",
                                  hint="e.g. --tier-map qos:urgent=high --tier-map partition:preempt=spot")
            if tier not in TIERS:
                raise ConfigError(f"tier map entry {entry!r}: unknown tier {tier!r}",
                                  hint=f"tiers: {', '.join(TIERS)}")
            if name in found[kind] and found[kind][name] != tier:
                raise ConfigError(f"tier map: {kind} {name!r} is mapped twice ({found[kind][name]}, {tier})",
                                  hint="keep one entry per QOS or partition")
            found[kind][name] = tier
        return cls(qos=found["qos"], partition=found["partition"])

    def entries(self) -> list[str]:
        """The map as ``--tier-map`` entries (sorted), e.g. for the agent's start record."""
        return sorted(f"{kind}:{name}={tier}" for kind in _KINDS for name, tier in getattr(self, kind).items())

    def tier(self, qos: str, partition: str, requested: str | None) -> str:
        """The tier of a job with this QOS, partition and comment ``tier=`` option (see module doc)."""
        if qos and qos in self.qos:
            return self.qos[qos]
        if partition and partition in self.partition:
            return self.partition[partition]
        if requested in TIERS:
            return str(requested)
        return partition if partition in TIERS else "normal"
