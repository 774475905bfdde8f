"""Slurm's ``topology.yaml`` (Slurm 25.05+) for a fabric: tree, block and flat topologies
(:func:`topology_yaml`), and the names slurmctld would not read back as strings from it
(:func:`yaml_retyped_names`). topology.conf and the other Slurm files: :mod:`fabric_hpc.topology.export`."""

from __future__ import annotations

import re

from fabric_hpc.errors import ConfigError, one_line
from fabric_hpc.hostlist import compress
from fabric_hpc.topology.export import (_size_counts, _switches, block_members, block_sizes,
                                        outside_blocks_note)
from fabric_hpc.topology.model import Fabric

#: How slurmctld retypes a scalar of topology.yaml. Its YAML serializer makes every scalar a string
#: whatever the quoting or tag (serializer_yaml.c _on_parse_scalar); DATA_PARSE_FROM_STR
#: (src/interfaces/data_parser.h) then runs data_convert_tree(DATA_TYPE_NONE) over the whole tree, which
#: (src/common/data.c data_convert_type) tries null, integer, float, integer again and bool in turn.
_SLURM_NULL = re.compile(r"(|~.*|null)", re.I | re.S)
#: glibc's sscanf("%lf%c") also takes a dangling exponent ('1e', '1e+') and '0x' (tested on 25.11).
_SLURM_INT = re.compile(r"[0-9]+|0x[0-9a-f]*|\s*[+-]?[0-9]+", re.I)
_SLURM_FLOAT = re.compile(r"[+-]?(inf|infinity|nan|[0-9]+\.?[0-9]*(e[+-]?[0-9]*)?"
                          r"|0x[0-9a-f]*\.?[0-9a-f]*(p[+-]?[0-9]*)?)", re.I)
_SLURM_BOOL = re.compile(r"y|yes|t|true|on|n|no|f|false|off", re.I)


def slurm_yaml_retypes(value: str) -> str | None:
    """What slurmctld's topology.yaml reading makes of the string ``value`` when not a string
    (``'null'``, ``'an integer'``, ``'a number'``, ``'a boolean'``), else None. No quoting or
    ``!!str`` tag keeps ``'01'`` a string: Slurm 25.11 reads it as 1 (see ``_SLURM_NULL``)."""
    for pattern, what in ((_SLURM_NULL, "null"), (_SLURM_INT, "an integer"), (_SLURM_FLOAT, "a number"),
                          (_SLURM_BOOL, "a boolean")):
        if pattern.fullmatch(value):
            return what
    return None


def _yaml_scalars(fabric: Fabric) -> list[tuple[str, str]]:
    """(what, value) of each name and node/child list topology_yaml writes as a string."""
    out: list[tuple[str, str]] = []
    if fabric.groups:
        for name, kind, members in _switches(fabric):
            out += [(f"switch (group) {name!r}", name), (f"{kind.lower()} of switch {name!r}", members)]
    if fabric.spec.nvlink_domains or fabric.groups:
        for name, hosts in block_members(fabric):
            out += [(f"block {name!r}", name), (f"nodes of block {name!r}", compress(hosts))]
    return out


def yaml_retyped_names(fabric: Fabric) -> list[str]:
    """The names (and node lists) of this fabric that slurmctld would not read back as strings from
    topology.yaml, in words (``switch (group) '01' would be read as an integer``); [] when none."""
    seen, out = set(), []
    for what, value in _yaml_scalars(fabric):
        retyped = slurm_yaml_retypes(value)
        if retyped and what not in seen:
            seen.add(what)
            out.append(f"{what} would be read as {retyped}")
    return out


def _refuse_retyped_names(fabric: Fabric) -> None:
    bad = yaml_retyped_names(fabric)
    if bad:
        shown = "; ".join(bad[:6]) + (f"; and {len(bad) - 6} more" if len(bad) > 6 else "")
        raise ConfigError(
            f"topology.yaml of fabric {fabric.name!r}: {shown}. Slurm (25.05+) reads every value of "
            "topology.yaml that looks like a number, boolean or null as one, whatever the quoting, so "
            "slurmctld would rename or lose these switches and nodes, or not start at all",
            hint="export --format topology-tree (or topology-block) instead: topology.conf keeps such "
                 "names (`fabric slurm install` with install.topology_format = \"auto\" does so), or "
                 "rename the groups/hosts to start with a letter (e.g. leaf01, gpu07)")


def topology_yaml(fabric: Fabric, *, default: str = "tree", block_size: int | None = None) -> str:
    """``topology.yaml`` (Slurm >= 25.05): topologies ``tree``, ``block`` (what the fabric has) and ``flat``.

    ``default`` is the ``cluster_default`` one; a partition picks another with ``Topology=<name>``
    in slurm.conf (e.g. ``PartitionName=gang Nodes=ALL Topology=block``). Blocks of unequal sizes
    need a base block size (``block_size``): without one, a file whose default is not ``block``
    leaves the block topology out and says so in a comment line (the tree and flat ones are
    still right); with the default ``block`` it is a ConfigError, as for topology.conf.
    """
    import yaml

    _refuse_retyped_names(fabric)
    entries: list[dict[str, object]] = []
    if fabric.groups:
        switches = [{"switch": name, ("nodes" if kind == "Nodes" else "children"): members}
                    for name, kind, members in _switches(fabric)]
        entries.append({"topology": "tree", "tree": {"switches": switches}})
    has_blocks = bool(fabric.spec.nvlink_domains or fabric.groups)
    note = outside_blocks_note(fabric) if has_blocks else ""
    left_out = ""
    if has_blocks:
        blocks = block_members(fabric)
        counts = [n for n in (len(h) for _, h in blocks) if n > 0]
        if block_size is None and default != "block" and counts and min(counts) != max(counts):
            left_out = (f"# block: left out: blocks of unequal sizes ({_size_counts(counts)} hosts) need a "
                        f"base block size; export with --block-size N (N <= {min(counts)}) to write it\n")
        else:
            sizes = block_sizes([len(h) for _, h in blocks], block_size)
            entries.append({"topology": "block", "block": {
                "block_sizes": sizes, "blocks": [{"block": n, "nodes": compress(h)} for n, h in blocks]}})
    entries.append({"topology": "flat", "flat": True})
    names = [e["topology"] for e in entries]
    if default not in names:
        raise ConfigError(f"fabric {fabric.name!r} has no {default!r} topology to make the default",
                          hint=f"choose one of {', '.join(map(str, names))}")
    for entry in entries:
        entry_items = list(entry.items())
        entry.clear()
        entry.update([entry_items[0], ("cluster_default", entry_items[0][1] == default), *entry_items[1:]])
    head = (f"# topology.yaml (Slurm >= 25.05) for fabric {one_line(fabric.name)} (generated by fabric-hpc)\n"
            + left_out)
    if note and not left_out:
        head += f"# block: {note}\n"
    return head + yaml.safe_dump(entries, sort_keys=False, default_flow_style=False)
