"""The site's mapping from Slurm QOS and partitions to scheduler tiers (``--tier-map``).

An admin expresses priority and preemption rights with QOS (and partitions); the scheduler works
with tiers (:data:`fabric_hpc.scheduler.DEFAULT_TIERS`: ``high``, ``normal``, ``spot``). Entries read
``qos:NAME=TIER`` or ``partition:NAME=TIER``. A job's tier is, first match wins:

1. its QOS's entry, 2. its partition's entry, 3. the ``tier=`` option of its ``--comment=fabric:…``,
4. its partition's name when that is a tier name (of several, the lowest), 5. ``normal``.

QOS names match ignoring case, as Slurm matches them (it stores ``sacctmgr add qos Urgent`` as ``urgent``,
and assoc_mgr.c compares with ``xstrcasecmp``): ``qos:Urgent=high`` maps the job Slurm reports with QOS
``urgent``. Partition names are case-sensitive in Slurm (partition_mgr.c ``xstrcmp``) and here. Spaces around
a name are dropped (``partition:hi =high`` maps ``hi``); a name with a space inside is refused (Slurm has
none). Whether each name exists in Slurm is checked where Slurm is asked (:mod:`fabric_hpc.slurm.tier_check`).

So a mapped QOS or partition cannot be overridden by the user's comment. A job submitted to several
partitions (``-p debug,lo``; Slurm reports ``debug,lo`` until it starts) or, where Slurm allows it,
several QOS (``--qos=a,b``) may run in any of them: when any of them is mapped, the job's tier is the
*lowest* among its mapped ones (``-p debug,lo`` with ``debug=normal``, ``lo=spot`` is ``spot``) and the
comment has no say. Unmapped names in such a list do not count: a user may already claim any tier for
a job in an unmapped partition by its comment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from fabric_hpc.errors import ConfigError
from fabric_hpc.scheduler import TIERS

_KINDS = ("qos", "partition")


@dataclass(frozen=True)
class TierMap:
    """QOS name -> tier and partition name -> tier."""

    qos: Mapping[str, str] = field(default_factory=dict)
    partition: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if any(name != name.lower() for name in self.qos):  # Slurm's QOS names ignore case
            object.__setattr__(self, "qos", {name.lower(): tier for name, tier in self.qos.items()})

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TierMap:
        """``["qos:NAME=TIER", "partition:NAME=TIER", ...]``; ConfigError naming a bad entry."""
        found: dict[str, dict[str, str]] = {k: {} for k in _KINDS}
        for entry in entries:
            kind, _, rest = entry.partition(":")
            name, _, tier = rest.partition("=")
            kind, name, tier = kind.strip(), name.strip(), tier.strip()
            if kind not in _KINDS or not name or not tier:
                raise ConfigError(f"tier map entry {entry!r} is not KIND:NAME=TIER",
                                  hint="e.g. --tier-map qos:urgent=high --tier-map partition:preempt=spot")
            if any(c.isspace() for c in name):
                raise ConfigError(f"tier map entry {entry!r}: the {kind} name {name!r} has a space inside "
                                  f"(no Slurm {kind} name has one)", hint="write the name as Slurm shows it "
                                  "(sinfo -s, sacctmgr show qos format=name)")
            if kind == "qos":
                name = name.lower()  # Slurm stores and matches QOS names in lower case
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
        """The tier of a job with this QOS, partition and comment ``tier=`` option (see module doc);
        ``qos`` and ``partition`` may be comma-separated lists."""
        for names, mapped in ((qos.lower(), self.qos), (partition, self.partition)):
            if found := lowest(mapped, names):
                return found
        if requested in TIERS:
            return str(requested)
        return lowest(_BY_NAME, partition) or "normal"


_BY_NAME = MappingProxyType({t: t for t in TIERS})  # a partition named after a tier


def lowest(mapped: Mapping[str, str], names: str) -> str | None:
    """The lowest tier (the last in :data:`~fabric_hpc.scheduler.TIERS`) that ``mapped`` gives any
    name of the comma-separated ``names``; None when none is mapped."""
    if not mapped:  # (the usual site map: no QOS or partition mapped)
        return None
    tiers = {mapped[n] for n in (n.strip() for n in names.split(",")) if n and n in mapped}
    return max(tiers, key=TIERS.index) if tiers else None
