"""Import ``ibnetdiscover`` output (the InfiniBand subnet dump of infiniband-diags) as a fabric.

The format (ibnetdiscover(8), "TOPOLOGY FILE FORMAT"): one block per node, opened by
``Switch <ports> "S-<guid>" # "<description>" ...`` or ``Ca <ports> "H-<guid>" # "<description>"``
(``Rt`` for routers), after ``vendid=``/``devid=``/``*guid=`` lines; then one line per cabled port,
``[<port>](<portguid>)? "<S|H|R>-<guid>"[<peer port>](<peer portguid>)? # ...``. ``#`` lines are
comments; ``Chassis``/``Non-Chassis Nodes`` headings (``-g``) are skipped.

What the importer builds: a host per distinct first word of the CA node descriptions (``"dgx01
mlx5_0"`` -> ``dgx01``; Mellanox SHArP "Aggregation Node" CAs inside switches are skipped); leaf
switches are the switches CAs are cabled to, and leaf switches serving exactly the same hosts form
one leaf group (a rail-optimised group of N switches: NIC i on switch i mod N); the other switches'
levels come from a breadth-first search up from the leaves, and the switches above each group, with
those sharing a child group, form its parent group. Switch names are generated (``leaf01``,
``spine01``, ...; the descriptions are often not unique). Uplinks are non-blocking; host contents
come from ``host_type=`` as for topology.conf. See ``docs/topology-sources.md``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import NAME, compress
from fabric_hpc.topology.spec import FabricSpec, HostType

KIND = "ibnetdiscover"
_NODE = re.compile(r'^(Switch|Ca|Rt)\s+(\d+)\s+"([SHR])-([0-9A-Fa-f]{1,16})"\s*(?:#\s*"([^"]*)")?')
_PORT = re.compile(r'^\[(\d+)\](?:\([0-9A-Fa-f]+\))?\s+"([SHR])-([0-9A-Fa-f]{1,16})"\[(\d+)\]')
_SKIP = re.compile(r"^(#|vendid=|devid=|sysimgguid=|switchguid=|caguid=|rtguid=|Chassis\b"
                   r"|[A-Za-z -]+ Nodes:?$)")
#: CAs that are no host: the SHArP aggregation node inside Mellanox/NVIDIA switches.
_NOT_A_HOST = "Aggregation Node"


def looks_like(lines: list[str]) -> bool:
    """Whether one of the first 200 lines opens an ibnetdiscover node block."""
    return any(_NODE.match(line) for line in lines[:200])


@dataclass
class _Node:
    kind: str
    guid: str
    desc: str
    line: int
    peers: set[str] = field(default_factory=set)


def read_nodes(lines: list[str], path: str) -> dict[str, _Node]:
    """Nodes by GUID with their cabled peers (from both ends of every link)."""
    nodes: dict[str, _Node] = {}
    links: list[tuple[str, str, int]] = []
    current: _Node | None = None
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
            links.append((current.guid, f"{m.group(2)}-{int(m.group(3), 16):016x}", number))
        else:
            raise ConfigError(f"{path}:{number}: cannot read {text[:50]!r}"
                              + ("" if current else " before the first Switch/Ca line"),
                              hint="give the output of `ibnetdiscover` (its topology file format, "
                                   "ibnetdiscover(8)), unedited")
    for a, b, number in links:
        if a == b:
            raise ConfigError(f"{path}:{number}: switch {a} is linked to itself",
                              hint="a port cabled back into its own switch: fix or remove that line")
        if b not in nodes:
            raise ConfigError(f"{path}:{number}: link to {b}, a node with no block of its own",
                              hint="give the whole ibnetdiscover output (every node has a block)")
        nodes[a].peers.add(b)
        nodes[b].peers.add(a)
    if not any(n.kind == "Switch" for n in nodes.values()):
        raise ConfigError(f"{path}: no Switch blocks", hint="give the output of ibnetdiscover")
    return nodes


def _hosts(nodes: dict[str, _Node], path: str) -> dict[str, set[str]]:
    """Host name -> the switches its CAs are cabled to."""
    on: dict[str, set[str]] = {}
    for node in nodes.values():
        if node.kind != "Ca" or _NOT_A_HOST in node.desc:
            continue
        host = node.desc.split()[0] if node.desc.split() else ""
        if not NAME.match(host):
            raise ConfigError(f"{path}:{node.line}: CA {node.guid}'s description {node.desc[:50]!r} does not "
                              "start with a host name", hint="set the HCAs' node descriptions to '<host> "
                              "<hca>' (rdma-ndd does) or map the GUIDs with ibnetdiscover --node-name-map")
        switches = {p for p in node.peers if nodes[p].kind == "Switch"}
        if not switches:
            raise ConfigError(f"{path}:{node.line}: host {host!r} (CA {node.guid}) is cabled to no switch",
                              hint="leave hosts without a switch out of the file")
        on.setdefault(host, set()).update(switches)
    if not on:
        raise ConfigError(f"{path}: no CA is cabled to a switch", hint="give the output of ibnetdiscover")
    return on


def _leaf_groups(on: dict[str, set[str]], nodes: dict[str, _Node],
                 path: str) -> list[tuple[list[str], list[str]]]:
    """(switches, hosts) per leaf group: the leaf switches that serve exactly the same hosts."""
    hosts_of: dict[str, set[str]] = defaultdict(set)
    for host, switches in on.items():
        for sw in switches:
            hosts_of[sw].add(host)
    by_hosts: dict[frozenset[str], list[str]] = defaultdict(list)
    for sw in sorted(hosts_of, key=lambda s: nodes[s].line):
        by_hosts[frozenset(hosts_of[sw])].append(sw)
    seen: dict[str, list[str]] = {}
    for hosts, switches in by_hosts.items():
        for host in hosts:
            if host in seen:
                a, b = seen[host][0], switches[0]
                raise ConfigError(f"{path}:{nodes[b].line}: host {host!r} is on leaf switches {a} (line "
                                  f"{nodes[a].line}) and {b}, which serve different hosts",
                                  hint="each host's HCAs go to one leaf switch, or to one set of rail "
                                       "switches shared by the same hosts; check the cabling or HCA names")
            seen[host] = switches
    first = {h: min(nodes[s].line for s in on[h]) for h in on}
    return [(sws, sorted(hosts, key=lambda h: (first[h], h))) for hosts, sws in by_hosts.items()]


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


def import_ibnetdiscover(path: Any, *, host_type: str | HostType | None = None,
                         name: str | None = None) -> FabricSpec:
    """A fabric from ``ibnetdiscover`` output: hosts from the CA descriptions, leaf groups of the
    switches their CAs are cabled to, upper stages by hops from the leaves (see the module's notes)."""
    from fabric_hpc.topology.import_slurm import LEVEL_NAMES, _levels, _Switch, build_spec
    from fabric_hpc.topology.importers import load_csv

    dump = load_csv(path, what="ibnetdiscover file")
    nodes = read_nodes(dump.lines, str(dump))
    on = _hosts(nodes, str(dump))
    leaves = _leaf_groups(on, nodes, str(dump))
    stages = _levels_up([sws for sws, _ in leaves], nodes, str(dump))
    _levels(len(stages) - 1, str(dump))  # more levels than the format holds: refused here
    member: dict[str, str] = {}  # switch GUID -> its group
    stage_of: dict[str, int] = {}
    switches: dict[str, _Switch] = {}
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
            stage_of[group] = k
    return build_spec(switches, str(dump), "ibnetdiscover output", host_type=host_type, name=name)
