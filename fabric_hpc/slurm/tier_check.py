"""Does each ``tier_map`` entry name a partition or QOS Slurm has? (``fabric agent check``, agent start).

An entry naming nothing (``partition:nosuch=high``, a typo) maps no job, silently: every job of the
partition meant keeps its comment's tier. The partitions are those Slurm lists for its nodes (every backend
reports them; a partition without nodes runs no job either); the QOS those ``sacctmgr -nP show qos
format=name`` lists (they live in slurmdbd: without accounting, or without ``sacctmgr``, the QOS entries are
not checked, and a note says so). QOS names compare ignoring case, partition names exactly (as Slurm does:
:mod:`fabric_hpc.slurm.tiers`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fabric_hpc.errors import FabricError
from fabric_hpc.slurm.contract import Node
from fabric_hpc.slurm.tiers import TierMap

#: The most names listed in a problem's text.
SHOWN = 20


def _listed(names: set[str]) -> str:
    shown = sorted(names)[:SHOWN]
    if not shown:
        return "none"
    return ", ".join(shown) + (f", … ({len(names)} in all)" if len(names) > SHOWN else "")


def unknown_entries(tiers: TierMap, nodes: Sequence[Node],
                    run: Callable[[Sequence[str]], str] | None) -> tuple[list[str], list[str]]:
    """(problems: one line per entry naming a partition or QOS Slurm does not have, notes: what could not
    be checked). ``run`` runs a Slurm command (:func:`~fabric_hpc.slurm.usage_source.command_runner`); None:
    the QOS are not checked."""
    problems, notes = [], []
    if tiers.partition:
        have = {p for n in nodes for p in n.partitions}
        if not have:
            notes.append("partitions not checked: Slurm's node answer names none")
        for name in sorted(set(tiers.partition) - have if have else ()):
            problems.append(f"partition:{name}={tiers.partition[name]}: no partition {name!r} in Slurm "
                            f"(partitions: {_listed(have)})")
    if tiers.qos:
        try:
            if run is None:
                raise FabricError("no Slurm command runner")
            qos = {line.strip().lower() for line in run(["sacctmgr", "-nP", "show", "qos", "format=name"])
                   .splitlines() if line.strip()}
        except FabricError as exc:
            notes.append(f"QOS not checked: sacctmgr show qos failed ({exc.message}); QOS live in slurmdbd")
            return problems, notes
        for name in sorted(set(tiers.qos) - qos):
            problems.append(f"qos:{name}={tiers.qos[name]}: no QOS {name!r} in Slurm (QOS: {_listed(qos)})")
    return problems, notes


def tier_map_ok(entries: Sequence[str], client: object) -> str:
    """``fabric agent check``'s row: every entry names a partition/QOS Slurm has (ConfigError naming those
    that do not); ``client`` a :class:`~fabric_hpc.slurm.contract.SlurmClient`."""
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.slurm.usage_source import command_runner

    if not entries:
        return "no tier_map entries"
    problems, notes = unknown_entries(TierMap.parse(entries), client.nodes(),  # type: ignore[attr-defined]
                                      command_runner(client))  # type: ignore[arg-type]
    if problems:
        raise ConfigError("tier_map names what Slurm does not have: " + "; ".join(problems),
                          hint="fix or drop the entry (agent.tier_map / --tier-map): the names as Slurm "
                               "shows them, sinfo -s (partitions, case-sensitive), "
                               "sacctmgr show qos format=name")
    return "; ".join([f"{len(entries)} entries: each names a partition/QOS of Slurm", *notes])
