"""Import ``ibnetdiscover`` output (the InfiniBand subnet dump of infiniband-diags) as a fabric.

The format (ibnetdiscover(8), "TOPOLOGY FILE FORMAT"): one block per node, opened by
``Switch <ports> "S-<guid>" # "<description>" ...`` or ``Ca <ports> "H-<guid>" # "<description>"``
(``Rt`` for routers), after ``vendid=``/``devid=``/``*guid=`` lines; then one line per cabled port,
``[<port>](<portguid>)? "<S|H|R>-<guid>"[<peer port>](<peer portguid>)? # ...``. ``#`` lines are
comments; ``Chassis``/``Non-Chassis Nodes`` headings (``-g``) are skipped.

What the importer builds: a host per distinct first word of the CA node descriptions (``"dgx01
mlx5_0"`` -> ``dgx01``; a ``--node-name-map`` file's name by GUID first; Mellanox SHArP "Aggregation
Node" CAs inside switches are skipped; CAs still described by the firmware default ``"MT4129
ConnectX7   Mellanox Technologies"`` or as ``localhost`` are left out and counted in the description);
leaf switches are the switches CAs are cabled to, and leaf switches joined by the compute hosts cabled to
several of them form one leaf group (a rail-optimised group of N switches: NIC i on switch i mod N; a
server on leaves of several groups joins none, :mod:`~fabric_hpc.topology.ib_groups`); the other
switches' levels come from a breadth-first search up from the leaves, and the switches above each group, with
those sharing a child group, form its parent group. Switch names are generated (``leaf01``,
``spine01``, ...; the descriptions are often not unique). Each group's uplink is the sum of the link
rates (``4xNDR``: :mod:`~fabric_hpc.topology.ib_rates`) of its cables to the level above, shared by its
switches (``assume_nonblocking``, or a dump without rates: non-blocking); a host's NIC rate is its
ports' where they agree. Host contents come from ``host_type=`` as for topology.conf; without one, the
default type's ``nics`` is the number of cabled HCA ports most hosts have, a rail group's compute host
with ports down keeps its group's count (:func:`~fabric_hpc.topology.ib_rates.rail_counts`) so that NIC
i stays on the group's switch i (named in the description), and hosts with another number get a type
``<type>-<n>nic`` of their own (an explicit ``host_type`` keeps its ``nics``, with a note when most hosts
differ). See ``docs/topology-sources.md``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import NAME, compress
from fabric_hpc.topology.ib_groups import (leaf_groups, off_leaves, off_note, on_shared, shared_note,
                                           spanning_note)
from fabric_hpc.topology.ib_rates import (Cable, cables_of, common_count, group_uplinks, nic_rates,
                                          rail_counts, rate_of, shown)
from fabric_hpc.topology.import_slurm import _Switch
from fabric_hpc.topology.spec import MAX_NICS, FabricSpec, HostType

KIND = "ibnetdiscover"
_NODE = re.compile(r'^(Switch|Ca|Rt)\s+(\d+)\s+"([SHR])-([0-9A-Fa-f]{1,16})"\s*(?:#\s*"([^"]*)")?')
#: a cabled port; ``-g`` adds ``[ext N]`` (a chassis' external port number) after either port number
_PORT = re.compile(r'^\[(\d+)\](?:\[ext \d+\])?(?:\([0-9A-Fa-f]+\))?\s+"([SHR])-([0-9A-Fa-f]{1,16})"'
                   r'\[(\d+)\]')
_SKIP = re.compile(r"^(#|vendid=|devid=|sysimgguid=|switchguid=|caguid=|rtguid=|Chassis\b"
                   r"|[A-Za-z -]+ Nodes:?$)")
#: CAs that are no host: the SHArP aggregation node inside Mellanox/NVIDIA switches.
_NOT_A_HOST = "Aggregation Node"
#: CA descriptions that name no host: the firmware's default before rdma-ndd writes "<host> <hca>"
#: ("MT4129 ConnectX7   Mellanox Technologies", "MT25408 ConnectX Mellanox Technologies") and a host
#: whose name was never set ("localhost mlx5_0").
_NO_HOST = re.compile(r"^(MT\d+\s|.*\bMellanox Technologies$|localhost(\.localdomain)?(\s|$))")
_MAP_LINE = re.compile(r'^(0[xX][0-9A-Fa-f]{1,16})\s+(?:"([^"]*)"|([^"#]*?))\s*(#.*)?$')
_NAME_FIX = ("give each host its own name (rdma-ndd then sets its HCAs' descriptions to '<host> <hca>'), "
             "or name the CAs by GUID with --node-name-map FILE (lines: 0x<node GUID> \"<host> <hca>\")")


def looks_like(lines: list[str]) -> bool:
    """Whether one of the first 200 lines opens an ibnetdiscover node block."""
    return any(_NODE.match(line) for line in lines[:200])


#: ibnetdiscover's other outputs: the ports report (``-p``), the node lists (``-l``, ``-H``, ``-S``, ``-R``)
_OTHER_FORMS = ((re.compile(r"^(SW|CA|RT)\s+\d+\s+\d+\s+0x[0-9A-Fa-f]+\s"), "-p (--ports)"),
                (re.compile(r"^(Switch|Ca|Router)\s*: 0x[0-9A-Fa-f]+ ports \d+"),
                 "-l/-H/-S/-R (a node list)"))


def refuse_other_forms(lines: list[str], path: str) -> None:
    """A clear error for ibnetdiscover output of another form than the topology file."""
    for number, line in enumerate(lines[:200], start=1):
        for pattern, option in _OTHER_FORMS:
            if pattern.match(line):
                raise ConfigError(f"{path}:{number}: this is the output of ibnetdiscover {option}, which "
                                  "has no node blocks", hint="give the output of plain `ibnetdiscover` "
                                  "(its topology file: ibnetdiscover > fabric.ibnet)")


@dataclass
class _Node:
    kind: str
    guid: str
    desc: str
    line: int
    peers: set[str] = field(default_factory=set)
    #: port -> (peer, peer port, link rate in Gb/s or None), from this node's own port lines
    ports: dict[int, tuple[str, int, float | None]] = field(default_factory=dict)


def read_nodes(lines: list[str], path: str) -> dict[str, _Node]:
    """Nodes by GUID with their cabled peers (from both ends of every link)."""
    nodes: dict[str, _Node] = {}
    links: list[tuple[str, str, int, int, int, float | None]] = []
    current: _Node | None = None
    port_line: dict[tuple[str, int], int] = {}  # (node, port) -> the line listing it
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or _SKIP.match(text):
            continue
        if m := _NODE.match(text):
            guid = int(m.group(4), 16)
            key = f"{m.group(3)}-{guid:016x}"
            if key in nodes:
                raise ConfigError(f"{path}:{number}: node {m.group(3)}-{m.group(4)} is listed twice (first "
                                  f"on line {nodes[key].line})", hint="give one ibnetdiscover run's output")
            current = nodes[key] = _Node(m.group(1), key, (m.group(5) or "").strip(), number)
        elif (m := _PORT.match(text)) and current is not None:
            if (first := port_line.setdefault((current.guid, int(m.group(1))), number)) != number:
                raise ConfigError(f"{path}:{number}: port {m.group(1)} of {current.kind} {current.guid} is "
                                  f"listed twice in its block (first on line {first})",
                                  hint="give one ibnetdiscover run's output, unedited (each port once)")
            links.append((current.guid, f"{m.group(2)}-{int(m.group(3), 16):016x}", number, int(m.group(1)),
                          int(m.group(4)), rate_of(text.partition("#")[2])))
        else:
            raise ConfigError(f"{path}:{number}: cannot read {text[:50]!r}"
                              + ("" if current else " before the first Switch/Ca line"),
                              hint="give the output of `ibnetdiscover` (its topology file format, "
                                   "ibnetdiscover(8)), unedited")
    for a, b, number, port, peer_port, gbps in links:
        if a == b:
            raise ConfigError(f"{path}:{number}: switch {a} is linked to itself",
                              hint="a port cabled back into its own switch: fix or remove that line")
        if b not in nodes:
            raise ConfigError(f"{path}:{number}: link to {b}, a node with no block of its own",
                              hint="give the whole ibnetdiscover output (every node has a block)")
        nodes[a].peers.add(b)
        nodes[b].peers.add(a)
        nodes[a].ports[port] = (b, peer_port, gbps)
    if not any(n.kind == "Switch" for n in nodes.values()):
        seen = f"only {len(nodes)} CA{'' if len(nodes) == 1 else 's'}" if nodes else "no node block"
        raise ConfigError(f"{path}: no Switch blocks ({seen}): ibnetdiscover reached no switch",
                          hint="run ibnetdiscover on a host whose HCA port is Active (ibstat) and cabled "
                               "to the fabric's switches, and give that output")
    return nodes


def read_node_name_map(path: Any) -> dict[str, str]:
    """Node GUID (``H-``/``S-`` less, 16 hex digits) -> name, from a file in ibnetdiscover's
    ``--node-name-map`` format: ``0x<GUID> "<name>"`` per line, ``#`` comments."""
    from fabric_hpc.topology.importers import load_csv

    names: dict[str, tuple[str, int]] = {}
    table = load_csv(path, what="node name map", missing_hint="give a file of lines 0x<node GUID> "
                     "\"<host> <hca>\" (ibnetdiscover's --node-name-map format)")
    for number, raw in enumerate(table.lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        m = _MAP_LINE.match(text)
        if not m:
            raise ConfigError(f"{table}:{number}: cannot read {text[:50]!r}", hint="a node name map has "
                              "lines 0x<node GUID> \"<name>\" (ibnetdiscover(8), --node-name-map)")
        guid, name = f"{int(m.group(1), 16):016x}", (m.group(2) if m.group(2) is not None else m.group(3))
        if not name.strip():
            raise ConfigError(f"{table}:{number}: empty name for GUID {m.group(1)}",
                              hint="give the host name, e.g. 0x... \"dgx01 mlx5_0\"")
        if guid in names:
            raise ConfigError(f"{table}:{number}: GUID {m.group(1)} is mapped twice (first on line "
                              f"{names[guid][1]})", hint="keep one line per GUID")
        names[guid] = (name.strip(), number)
    return {guid: name for guid, (name, _) in names.items()}


def _hosts(nodes: dict[str, _Node],
           path: str) -> tuple[dict[str, set[str]], list[_Node], dict[str, list[str]]]:
    """Host name -> the switches its CAs are cabled to; the CAs whose description names no host
    (left out); host name -> its CAs. SHArP aggregation nodes are neither."""
    on: dict[str, set[str]] = {}
    cas: dict[str, list[str]] = {}
    unnamed: list[_Node] = []
    described: dict[str, _Node] = {}
    for node in nodes.values():
        if node.kind != "Ca" or _NOT_A_HOST in node.desc:
            continue
        if not node.desc.split() or _NO_HOST.match(node.desc):
            unnamed.append(node)
            continue
        host = node.desc.split()[0]
        if not NAME.match(host):
            raise ConfigError(f"{path}:{node.line}: CA {node.guid}'s description {node.desc[:50]!r} does not "
                              "start with a host name", hint=_NAME_FIX)
        if (twin := described.setdefault(node.desc, node)) is not node:
            raise ConfigError(f"{path}:{node.line}: CAs {twin.guid} (line {twin.line}) and {node.guid} are "
                              f"both described {node.desc[:50]!r}: two machines of one host name",
                              hint=_NAME_FIX)
        switches = {p for p in node.peers if nodes[p].kind == "Switch"}
        if not switches:
            raise ConfigError(f"{path}:{node.line}: host {host!r} (CA {node.guid}) is cabled to no switch",
                              hint="leave hosts without a switch out of the file")
        on.setdefault(host, set()).update(switches)
        cas.setdefault(host, []).append(node.guid)
    if not on and unnamed:
        raise ConfigError(f"{path}: no CA names a host: {len(unnamed)} CAs described by model or "
                          f"'localhost' {_described(unnamed)}", hint=_NAME_FIX)
    if not on:
        raise ConfigError(f"{path}: no CA is cabled to a switch", hint="give the output of ibnetdiscover")
    return on, unnamed, cas


def _described(unnamed: list[_Node]) -> str:
    """'(24 'MT4129 ConnectX7 Mellanox Technologies', 1 'localhost HCA-1', ...)': the commonest first."""
    counts = Counter(" ".join(n.desc.split()) or "(empty)" for n in unnamed)
    shown = ", ".join(f"{k} {d[:50]!r}" for d, k in counts.most_common(3))
    return f"({shown}{', ...' if len(counts) > 3 else ''})"


def _ports_on(cas: dict[str, list[str]], nodes: dict[str, _Node]) -> dict[str, Counter[str]]:
    """Each host's cabled HCA ports per switch (a switch its CAs are linked to: at least 1)."""
    out: dict[str, Counter[str]] = {}
    for host, guids in cas.items():
        count = out[host] = Counter()
        for guid in guids:
            node = nodes[guid]
            mine = Counter(p for p, _, _ in node.ports.values() if nodes[p].kind == "Switch")
            count.update(mine)
            count.update(p for p in node.peers if nodes[p].kind == "Switch" and p not in mine)
    return out


def _levels_up(groups: list[list[str]], nodes: dict[str, _Node], path: str) -> list[list[list[str]]]:
    """Switch groups per level from the leaves up. A switch's level is its hop distance from the leaf
    switches; every switch link must join adjacent levels."""
    level = {sw: 0 for sws in groups for sw in sws}
    frontier = list(level)
    while frontier:  # breadth-first from the leaves over switch links
        nxt = []
        for sw in frontier:
            for p in sorted(nodes[sw].peers):
                if nodes[p].kind == "Switch" and p not in level:
                    level[p] = level[sw] + 1
                    nxt.append(p)
        frontier = nxt
    for sw, lv in level.items():
        for p in nodes[sw].peers:
            if nodes[p].kind == "Switch" and level[p] == lv:
                raise ConfigError(f"{path}:{nodes[sw].line}: switches {sw} and {p} are linked but both "
                                  f"{lv} hops from the leaf switches: a loop across one level",
                                  hint="the fabric format models switch stages (a tree of groups): a CA "
                                       "cabled to a spine (a storage or management node) makes it a leaf, "
                                       "leave that CA's block and port line out; lateral or ring links are "
                                       "not modelled, leave them out")
    return _stages(groups, level, nodes)


def _stages(leaves: list[list[str]], level: dict[str, int], nodes: dict[str, _Node]) -> list[list[list[str]]]:
    """Switch groups per level from the leaves up: the switches one level above a group, merged with
    those above any group they share a switch with, form its parent group."""
    stages = [leaves]
    while True:
        tops: list[list[str]] = []
        owner: dict[str, int] = {}
        for sws in stages[-1]:
            ups = sorted({p for s in sws for p in nodes[s].peers
                          if nodes[p].kind == "Switch" and level[p] == level[s] + 1},
                         key=lambda s: nodes[s].line)
            hit = sorted({owner[u] for u in ups if u in owner})
            merged = [u for i in hit for u in tops[i]] + [u for u in ups if u not in owner]
            for i in hit:
                tops[i] = []
            if merged:
                tops.append(merged)
                owner.update(dict.fromkeys(merged, len(tops) - 1))
        live = [t for t in tops if t]
        if not live:
            return stages
        stages.append(live)


def import_ibnetdiscover(path: Any, *, host_type: str | HostType | None = None, name: str | None = None,
                         node_name_map: Any = None, assume_nonblocking: bool = False) -> FabricSpec:
    """A fabric from ``ibnetdiscover`` output: hosts from the CA descriptions (or ``node_name_map``, a
    file in ibnetdiscover's ``--node-name-map`` format, by GUID), leaf groups of the switches their CAs
    are cabled to, upper stages by hops from the leaves, each group's uplinks the link rates of its
    cables up and each host's NIC rate its ports' (``assume_nonblocking``: uplinks non-blocking, as
    before link rates were read; see the module's notes)."""
    return read_ibnetdiscover(path, host_type=host_type, name=name, node_name_map=node_name_map,
                              assume_nonblocking=assume_nonblocking)[0]


def read_ibnetdiscover(path: Any, *, host_type: str | HostType | None = None, name: str | None = None,
                       node_name_map: Any = None, assume_nonblocking: bool = False,
                       count_nics: bool = True) -> tuple[FabricSpec, dict[str, float]]:
    """(:func:`import_ibnetdiscover`'s fabric, the uplink of each switch (GB/s) of the groups whose
    uplinks come from the cables' link rates: none with ``assume_nonblocking``). ``count_nics=False``
    (``assemble --network``, which keeps the discovered hosts' contents): the hosts' NICs are not
    counted from the dump, the host type keeps its ``nics``."""
    from fabric_hpc.topology.import_slurm import build_spec, host_type_of
    from fabric_hpc.topology.importers import load_csv

    names = read_node_name_map(node_name_map) if node_name_map is not None else {}
    dump = load_csv(path, what="ibnetdiscover file",
                    missing_hint="save the fabric with `ibnetdiscover > FILE` on a host of it, and give FILE")
    nodes = read_nodes(dump.lines, str(dump))
    for node in nodes.values():
        node.desc = names.get(node.guid[2:], node.desc)
    on, unnamed, cas = _hosts(nodes, str(dump))
    per_switch = _ports_on(cas, nodes)
    leaves, spanning, shared = leaf_groups(on, per_switch, nodes)
    stages = _levels_up([sws for sws, _ in leaves], nodes, str(dump))
    switches, members = _switch_groups(stages, leaves, nodes, str(dump))
    notes = [f"CAs naming no host left out: {len(unnamed)} {_described(unnamed)}"] if unnamed else []
    tname, ht = host_type_of(host_type)
    cables = cables_of({k: n.ports for k, n in nodes.items()})
    nics, unsure, ports = nic_rates(cas, cables, {k for k, n in nodes.items() if n.kind == "Switch"})
    counts, missing = (rail_counts(leaves, on, ports, on_shared(shared, per_switch))
                       if host_type is None and count_nics else ({}, {}))
    if wide := sorted(h for h in counts if ports[h] > MAX_NICS):
        also = f" ({len(wide)} such hosts)" if wide[1:] else ""
        raise ConfigError(f"{dump}: host {wide[0]!r} has {ports[wide[0]]} cabled HCA ports, more than the "
                          f"{MAX_NICS} NICs a host type holds{also}",
                          hint="check that its CAs' descriptions name one host each (or name them with "
                               "--node-name-map FILE), or give --host-type")
    notes += _nic_notes(nics, unsure, ports if host_type is not None else {}, tname, ht)
    if counts:
        notes.append(_counted_nics(counts, ports, tname))
    if missing:
        notes.append(_missing_ports(missing, members, nodes))
    if off := off_leaves(leaves, on, counts, ht.nics):
        notes.append(off_note(off, _switch_names(members), {sw: n.desc for sw, n in nodes.items()}))
    if spanning:
        notes.append(spanning_note(spanning, list(members)[:len(leaves)]))
    if shared:
        notes.append(shared_note(shared, _switch_names(members), {sw: nodes[sw].desc for sw, _ in shared}))
    uplinks: dict[str, float] = {}
    if assume_nonblocking:
        notes.append("uplinks assumed non-blocking (--assume-nonblocking): link rates of switch cables "
                     "not used")
    elif not any(c.gbps is not None for c in cables):
        notes.append("no port line gives a link rate (4xNDR, ...): uplinks assumed non-blocking")
    else:
        uplinks, more = _cable_uplinks(members, stages, nodes, cables)
        notes += more
    spec = build_spec(switches, str(dump), "ibnetdiscover output", host_type=host_type, name=name,
                      notes=notes, uplinks=uplinks, nic_gbps={h: g / 8 for h, g in nics.items()},
                      nic_count=counts)
    return spec, uplinks


def _switch_groups(stages: list[list[list[str]]], leaves: list[tuple[list[str], list[str]]],
                   nodes: dict[str, _Node], path: str) -> tuple[dict[str, _Switch], dict[str, list[str]]]:
    """The fabric's switch groups (``leaf01``, ``spine01``, ...) of the stages, and each one's
    switch GUIDs."""
    from fabric_hpc.topology.import_slurm import LEVEL_NAMES, _levels

    _levels(len(stages) - 1, path)  # more levels than the format holds: refused here
    member: dict[str, str] = {}  # switch GUID -> its group
    stage_of: dict[str, int] = {}
    switches: dict[str, _Switch] = {}
    members: dict[str, list[str]] = {}
    for k, stage in enumerate(stages):
        base = LEVEL_NAMES[k] if k < len(LEVEL_NAMES) else f"level{k}"
        width = max(2, len(str(len(stage))))
        for i, sws in enumerate(stage, start=1):
            group = f"{base}{i:0{width}d}"
            sw = switches[group] = _Switch(group, nodes[sws[0]].line, count=len(sws))
            if k == 0:
                sw.nodes = leaves[i - 1][1]
            else:
                below = {member[c] for s in sws for c in nodes[s].peers
                         if c in member and stage_of[member[c]] == k - 1}
                sw.children = sorted(below, key=lambda c: switches[c].line)
            member.update(dict.fromkeys(sws, group))
            members[group] = sws
            stage_of[group] = k
    return switches, members


def _cable_uplinks(members: dict[str, list[str]], stages: list[list[list[str]]], nodes: dict[str, _Node],
                   cables: list[Cable]) -> tuple[dict[str, float], list[str]]:
    """Each switch's uplink (GB/s: its group's cables up / its switches) and the description's notes:
    the rates assumed, the oversubscription of each leaf group (its CAs' cables : its uplinks)."""
    stage = {sw: k for k, st in enumerate(stages) for sws in st for sw in sws}
    found = group_uplinks(members, stage, cables)
    uplinks = {g: total / 8 / len(members[g]) for g, total in found.total.items()}
    leaves = {sw: g for g, sws in members.items() if stage[sws[0]] == 0 for sw in sws}
    down: dict[str, float] = {}
    for c in cables:
        for sw, ca in ((c.a, c.b), (c.b, c.a)):
            if sw in leaves and nodes[ca].kind == "Ca" and _NOT_A_HOST not in nodes[ca].desc:
                rate = c.gbps if c.gbps is not None else found.assumed_gbps or 0.0
                down[leaves[sw]] = down.get(leaves[sw], 0.0) + rate
    ratios = [f"{g} {shown(down.get(g, 0.0))}:{shown(found.total[g])} Gb/s "
              f"({down.get(g, 0.0) / found.total[g]:.3g}:1)" for g in dict.fromkeys(leaves.values())
              if g in found.total]
    notes = found.notes()
    if ratios:
        notes.append("leaf oversubscription (host ports : uplinks): " + ", ".join(ratios[:8])
                     + (f", ... ({len(ratios)} leaf groups)" if len(ratios) > 8 else ""))
    if short := found.short(members):
        notes.append(f"{len(short)} switch{'' if len(short) == 1 else 'es'} with fewer uplink cables than "
                     "another of their group (a cable down?): " + ", ".join(
                         f"{nodes[sw].desc[:40]!r} {n} of {most}" for sw, n, most in short[:3])
                     + (", ..." if len(short) > 3 else ""))
    return uplinks, notes


def _nic_notes(nics: dict[str, float], unsure: list[str], ports: dict[str, int], tname: str,
               ht: HostType) -> list[str]:
    """What the description says of the hosts' NICs: the rates read, the hosts whose ports disagree;
    with ``ports`` (each host's cabled HCA ports, given with an explicit --host-type), a host type whose
    ``nics`` is not the number most hosts have."""
    notes = []
    if nics:
        rates = Counter(nics.values())
        notes.append("NIC rates from the CA port lines: " + ", ".join(
            f"{k} host{'' if k == 1 else 's'} {shown(g)} Gb/s" for g, k in rates.most_common(4)))
    if unsure:
        notes.append(f"{len(unsure)} host{'' if len(unsure) == 1 else 's'} ({compress(unsure[:5])}"
                     f"{', ...' if len(unsure) > 5 else ''}) with ports of different or no rates "
                     f"keep{'s' if len(unsure) == 1 else ''} "
                     f"{tname}'s nic_gbps {ht.nic_gbps:g}")
    if ports and (common := common_count(ports)) != ht.nics:
        notes.append(f"host type {tname} has {ht.nics} NICs, most hosts here have {common} cabled HCA "
                     f"port{'' if common == 1 else 's'}: give a --host-type with nics: {common} for their "
                     "real bandwidth")
    return notes


def _counted_nics(counts: dict[str, int], ports: dict[str, int], tname: str) -> str:
    """The note on ``nics`` taken from the dump (``counts``: each host's, as modelled; ``ports``: its
    cabled HCA ports): how many hosts have the common count cabled, the others' host types
    (``<type>-<n>nic``), and apart from those the hosts modelled with more NICs than ports (a rail
    group's compute hosts with ports down, named in the next note)."""
    common = common_count(counts)
    padded = {h for h in counts if counts[h] != ports[h]}
    cabled = sum(counts[h] == common for h in counts if h not in padded)
    text = (f"nics {common} from the dump: the cabled HCA ports of "
            + ("every host" if cabled == len(counts) else f"{cabled} of {len(counts)} hosts"))
    kept = sum(counts[h] == common for h in padded)
    text += f" and {kept} with fewer ports kept at {common} (ports down, below)" if kept else ""
    other = Counter(n for n in counts.values() if n != common)
    if not other:
        return text
    groups = []
    for n in sorted(other, reverse=True):
        hosts = sorted(h for h, k in counts.items() if k == n)
        low = sum(h in padded for h in hosts)
        groups.append(f"{len(hosts)} host{'' if len(hosts) == 1 else 's'} ({compress(hosts[:5])}"
                      f"{', ...' if len(hosts) > 5 else ''}) {n} NIC{'' if n == 1 else 's'}"
                      + (f" ({low} of them with fewer ports: ports down, below)" if low else ""))
    return (text + f"; hosts with another count get a host type of their own ({tname}-<n>nic): "
            + ", ".join(groups) + "; --host-type sets every host's contents, nics included")


def _missing_ports(missing: dict[str, list[str]], members: dict[str, list[str]],
                   nodes: dict[str, _Node]) -> str:
    """The note on hosts modelled with a NIC on a leaf switch where the dump shows no port of theirs."""
    name = _switch_names(members)
    hosts = sorted(missing)
    shown_hosts = ", ".join(f"{h} (no port on " + ", ".join(f"{name[sw]} {nodes[sw].desc[:40]!r}"
                                                            for sw in missing[h][:4])
                            + (", ..." if len(missing[h]) > 4 else "") + ")" for h in hosts[:5])
    return (f"{len(hosts)} host{'' if len(hosts) == 1 else 's'} with no port on a leaf switch of their rail "
            "group where the others have one (a port down or not cabled when the dump was taken) keep"
            f"{'s' if len(hosts) == 1 else ''} the NICs of their group: the model puts NIC i on the "
            "group's switch i (GPU i on NIC i), so each NIC stays on its own leaf, and counts the missing "
            "ports as up, at the host's rate (bandwidth it lacks now): " + shown_hosts
            + (", ..." if len(hosts) > 5 else ""))


def _switch_names(members: dict[str, list[str]]) -> dict[str, str]:
    """Each switch's name in the model (``leaf02-3``: group leaf02's 4th switch) by GUID."""
    return {sw: f"{group}-{i}" if len(sws) > 1 else group for group, sws in members.items()
            for i, sw in enumerate(sws)}
