"""Import Slurm's own ``topology.conf`` for ``topology/tree`` as a fabric (:class:`FabricSpec`).

What Slurm 25.11 reads (``src/plugins/topology/tree/switch_record.c``, ``src/common/parse_config.c``):
one ``SwitchName=<name>`` per line with ``Nodes=<hostlist>`` (a leaf switch) or ``Switches=<hostlist
of switch names>`` (never both), and ``LinkSpeed=<uint32>`` (arbitrary units, unused by Slurm). Keys
are case-insensitive, a value may be quoted (``"..."``), ``#`` starts a comment (``\\#`` is a ``#``),
a trailing ``\\`` continues a line. A switch's level is 0 for a leaf and 1 + its highest child above.

The file says nothing about what is in a host: every host gets one host type (``host_type=``,
default :data:`DEFAULT_HOST_TYPE`); every switch becomes a group of one switch; uplinks are
non-blocking (a leaf's = its hosts' NIC bandwidth, above that the sum of the children's). Where
the tree is uneven (a leaf under the core beside spines) pass-through groups ``<child>-up<level>``
(latency 0, the child's uplink) fill the missing levels; several top switches go under a virtual
``root``. All of this is listed in ``docs/topology-sources.md``. :func:`build_spec` does this for
any switch tree (``import_ib`` gives it groups of several switches).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError
from fabric_hpc import hostlist
from fabric_hpc.hostlist import MAX_NAMES, NAME, compress, expand
from fabric_hpc.topology.spec import MAX_SWITCH_NAME, FabricSpec, HostType

KIND = "topology-conf"
YAML_KIND = "topology-yaml"
#: The keys Slurm's topology/tree reads (parse_config matches them case-insensitively).
KEYS = {"switchname": "SwitchName", "nodes": "Nodes", "switches": "Switches", "linkspeed": "LinkSpeed"}
#: The fabric format has at most 8 levels; one may go to a virtual root.
MAX_LEVELS = 8
LEVEL_NAMES = ("leaf", "spine", "core")
#: The host type assumed when none is given (the same DGX H100 the generators use).
DEFAULT_HOST_TYPE = "dgx-h100"
#: parse_config.c's key=value: key [[:alnum:]_.]+, an optional operator, a quoted or bare value.
_PAIR = re.compile(r'\s*([A-Za-z0-9_.]+)\s*([-*+/]?)=\s*(?:"([^"]*)"|([^\s"]\S*))(?=\s|$)')
_FIRST_KEY = re.compile(r"^\s*(switchname|blockname|blocksizes)\s*=", re.IGNORECASE)


def looks_like(lines: list[str]) -> str | None:
    """``topology-conf`` when the first line with content is a topology.conf line (``SwitchName=``,
    ``BlockName=``), ``topology-yaml`` when it opens Slurm's topology.yaml (``- topology:``), else None."""
    for _, line in logical_lines(lines):
        if _FIRST_KEY.match(line):
            return KIND
        return YAML_KIND if re.match(r"\s*(---\s*$|-\s+topology\s*:)", line) else None
    return None


@dataclass
class _Switch:
    name: str
    line: int
    nodes: list[str] | None = None
    children: list[str] = field(default_factory=list)
    count: int = 1  # switches of the group (ibnetdiscover's rail groups); topology.conf: 1


_COMMENT = re.compile(r"(?<!\\)((?:\\\\)*)#.*")  # a '#' after an even run of '\' (none included)
_ESCAPE = re.compile(r"\\(.)")


def logical_lines(lines: list[str]) -> Iterator[tuple[int, str]]:
    """(first line number, text) without comments, continuations joined, escapes resolved."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(lines, start=1):
        text = raw.rstrip("\r\n")
        if "#" in text:
            text = _COMMENT.sub(r"\1", text)
        if not pending:
            start = number
        body = text.rstrip()
        if (len(body) - len(body.rstrip("\\"))) % 2:  # an odd run of '\' at the end: continued
            pending.append(body[:-1])
            continue
        whole = "".join(pending) + text
        pending = []
        if whole.strip():
            yield start, _ESCAPE.sub(r"\1", whole) if "\\" in whole else whole
    whole = "".join(pending)
    if whole.strip():
        yield start, _ESCAPE.sub(r"\1", whole)


def _pairs(path: str, number: int, text: str) -> list[tuple[str, str]]:
    """The line's (canonical key, value) pairs; anything else is a ConfigError naming it."""
    pairs, pos = [], 0
    while text[pos:].strip():
        m = _PAIR.match(text, pos)
        if not m:
            shown = text[pos:].strip()[:40]
            raise ConfigError(f"{path}:{number}: cannot read {shown!r}: topology.conf lines are "
                              "KEY=VALUE pairs",
                              hint="e.g. SwitchName=s1 Nodes=n[1-4]; quote a value holding spaces")
        key, op, value = m.group(1), m.group(2), m.group(3) if m.group(3) is not None else m.group(4)
        canon = KEYS.get(key.lower())
        if canon is None or op or (canon == "SwitchName") != (not pairs):
            raise ConfigError(f"{path}:{number}: {_bad_key(key + op, canon, not pairs)}",
                              hint="topology/tree lines are SwitchName=NAME with Nodes=HOSTLIST or "
                                   "Switches=NAMES and an optional LinkSpeed=N")
        if any(k == canon for k, _ in pairs):
            raise ConfigError(f"{path}:{number}: {canon} given twice on one line", hint="give each key once")
        pairs.append((canon, value))
        pos = m.end()
    return pairs


def _bad_key(key: str, canon: str | None, first: bool) -> str:
    if key.lower() in ("blockname", "blocksizes"):
        return (f"{key} is a topology/block line: this importer reads topology/tree files "
                "(SwitchName=); a block file has no switch tree")
    if canon == "SwitchName":
        return "SwitchName given twice on one line: one switch per line"
    if canon and first:
        return f"a line starts with {key}=, not SwitchName=: each line describes one switch"
    if canon:
        return f"operator {key}= is not for topology.conf: write {canon}=VALUE"
    return f"unknown key {key!r} (topology/tree keys: {', '.join(KEYS.values())})"


def read_switches(lines: list[str], path: str) -> dict[str, _Switch]:
    """The file's switches by name, each with its hosts or child switch names, checked line by line."""
    switches: dict[str, _Switch] = {}
    listed: dict[str, int] = {}
    for number, text in logical_lines(lines):
        pairs = dict(_pairs(path, number, text))
        speed = pairs.get("LinkSpeed", "0")
        if not _uint32(speed):
            raise ConfigError(f"{path}:{number}: LinkSpeed={speed[:30]!r} is not a whole number below 2^32",
                              hint="write LinkSpeed=N or leave it out (Slurm does not use it)")
        _add(switches, path, number, pairs["SwitchName"], pairs.get("Nodes"), pairs.get("Switches"),
             ("Nodes=", "Switches="), listed)
    if not switches:
        raise ConfigError(f"{path}: no SwitchName= lines",
                          hint="a topology/tree file has one line per switch")
    return switches


def _uint32(value: str) -> bool:
    """Whether Slurm's s_p_handle_uint32 (parse_value.c) takes ``value``: strtoul base 0 (``0x1F``,
    ``017``, ``100``) with an optional ``k``/``K`` (× 1024), up to 2^32 - 1, or UNLIMITED/INFINITE."""
    if value.upper() in ("UNLIMITED", "INFINITE"):
        return True
    m = re.fullmatch(r"(0[xX][0-9a-fA-F]{1,16}|0[0-7]{0,22}|[1-9][0-9]{0,19})([kK]?)", value)
    return bool(m) and int(m.group(1), 0 if m.group(1)[:2].lower() == "0x" else
                           8 if m.group(1).startswith("0") else 10) * (1024 if m.group(2) else 1) < 1 << 32


def _add(switches: dict[str, _Switch], path: str, number: int, name: str, nodes: str | None,
         children: str | None, keys: tuple[str, str], listed: dict[str, int]) -> None:
    """Add one switch (``nodes``, ``children``: host-list expressions) after checking it. ``listed``:
    the names the switches so far list under each key, counted before expanding: past MAX_NAMES hosts
    (or child switches) in all the file is refused before this line's list is made."""
    if not NAME.match(name) or len(name) > MAX_SWITCH_NAME:
        raise ConfigError(f"{path}:{number}: switch name {name[:70]!r} is not a valid name (letters, "
                          f"digits, '_', '.', '-', at most {MAX_SWITCH_NAME} characters)",
                          hint="rename that switch")
    if name in switches:
        raise ConfigError(f"{path}:{number}: switch {name!r} is already defined on line "
                          f"{switches[name].line}",
                          hint="define each switch once (Slurm stops on this too)")
    if nodes is not None and children is not None:
        raise ConfigError(f"{path}:{number}: switch {name!r} has both {keys[0]} and {keys[1]}",
                          hint="a switch holds hosts (a leaf) or child switches, not both: split it")
    if len(switches) >= MAX_NAMES:
        raise ConfigError(f"{path}:{number}: more than {MAX_NAMES:,} switches; a fabric models at most "
                          f"{MAX_NAMES:,} hosts", hint="split the cluster into several imports")
    sw = switches[name] = _Switch(name, number)
    try:
        total = {key: listed.get(key, 0) + (hostlist.count(expr) if expr is not None else 0)
                 for key, expr in zip(keys, (nodes, children))}
        if max(total.values()) <= MAX_NAMES:
            if nodes is not None:
                sw.nodes = expand(nodes, repeats=False)
            if children is not None:
                sw.children = expand(children, repeats=False)
    except ConfigError as exc:
        raise ConfigError(f"{path}:{number}: switch {name!r}: {exc.message}",
                          hint=exc.hint or "write Slurm's hostlist syntax: n[1-4,7],gpu01") from None
    if over := [key for key in keys if total[key] > MAX_NAMES]:
        what = "hosts" if over[0] == keys[0] else "child switches"
        raise ConfigError(f"{path}:{number}: switch {name!r}: the switches up to this line list "
                          f"{total[over[0]]:,} {what} ({over[0]}); a fabric models at most {MAX_NAMES:,}",
                          hint="split the cluster into several imports")
    listed.update(total)
    if bad := next((h for h in sw.nodes or () if not NAME.match(h)), None):
        raise ConfigError(f"{path}:{number}: switch {name!r}: host name {bad[:70]!r} is not a valid host "
                          "name (ASCII letters, digits, '_', '.', '-')",
                          hint="rename that host (a Slurm NodeName)")


def read_yaml_switches(text: str, path: str) -> dict[str, _Switch]:
    """The switches of the tree topology of a Slurm ``topology.yaml`` (25.05+): the only tree, or
    the ``cluster_default: true`` one of several."""
    from fabric_hpc.inputs import load_yaml
    from fabric_hpc.topology.io import _Lines

    data, root = load_yaml(text, path)
    lines = _Lines(root).lines
    entries = data if isinstance(data, list) else []
    trees = [i for i, e in enumerate(entries) if isinstance(e, dict) and "tree" in e]
    if len(trees) > 1:
        trees = [i for i in trees if entries[i].get("cluster_default") is True][:1] or trees
    if len(trees) != 1:
        names = ", ".join(str(entries[i].get("topology")) for i in trees)
        found = "no tree topology" if not trees else f"several tree topologies: {names}"
        raise ConfigError(f"{path}: {found}",
                          hint="topology.yaml is a list of '- topology: NAME' entries; the importer reads "
                               "the one with 'tree: {switches: [...]}' (or cluster_default one of several)")
    tree = entries[trees[0]]["tree"]
    items = tree.get("switches") if isinstance(tree, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path}:{lines.get((trees[0], 'tree'), 1)}: tree has no 'switches:' list",
                          hint="tree: {switches: [{switch: s1, nodes: 'n[1-4]'}, ...]}")
    switches: dict[str, _Switch] = {}
    listed: dict[str, int] = {}
    for j, item in enumerate(items):
        number = lines.get((trees[0], "tree", "switches", j), 1)
        keys = {"switch", "nodes", "children"}
        bad = sorted(map(str, set(item) - keys)) if isinstance(item, dict) else ["?"]
        if bad or not all(isinstance(item.get(k, ""), str) for k in ("switch", "nodes", "children")) \
                or "switch" not in item:
            raise ConfigError(f"{path}:{number}: switch entry {j + 1}: "
                              + (f"unknown key {bad[0]!r}" if bad else
                                 "switch, nodes and children must be strings"),
                              hint="each switch is {switch: NAME, nodes: HOSTLIST} or {switch: NAME, "
                                   "children: SWITCHES}")
        _add(switches, path, number, item["switch"], item.get("nodes"), item.get("children"),
             ("nodes:", "children:"), listed)
    return switches


def _parents(switches: dict[str, _Switch], path: str) -> dict[str, str]:
    """Child switch -> its parent; a host on two leaves, an unknown, self or shared child is refused."""
    leaf_of: dict[str, str] = {}
    parent: dict[str, str] = {}
    for sw in switches.values():
        for host in sw.nodes or ():
            if host in leaf_of:
                raise ConfigError(f"{path}:{sw.line}: host {host!r} is on leaf switch {leaf_of[host]!r} "
                                  f"(line {switches[leaf_of[host]].line}) and on {sw.name!r}",
                                  hint="list each host under one leaf switch (Nodes=) only")
            leaf_of[host] = sw.name
        for child in sw.children:
            if child == sw.name:
                raise ConfigError(f"{path}:{sw.line}: switch {child!r} lists itself in Switches=",
                                  hint="a switch's Switches= names the switches below it")
            if child not in switches:
                raise ConfigError(f"{path}:{sw.line}: switch {sw.name!r} lists unknown switch {child!r}",
                                  hint=f"define {child!r} on a SwitchName= line, or remove it from Switches=")
            if child in parent:
                raise ConfigError(f"{path}:{sw.line}: switch {child!r} is under {parent[child]!r} (line "
                                  f"{switches[parent[child]].line}) and under {sw.name!r}: not a tree",
                                  hint="give each switch one parent (topology/tree models a tree)")
            parent[child] = sw.name
    return parent


def _drop_empty(switches: dict[str, _Switch], parent: dict[str, str]) -> list[str]:
    """Remove switches with neither hosts nor children (Slurm keeps them as empty leaves; the fabric
    format has no empty switch), then parents left empty by that; return their names."""
    dropped: list[str] = []
    todo = [s.name for s in switches.values() if not s.nodes and not s.children]
    while todo:
        name = todo.pop()
        dropped.append(name)
        del switches[name]
        up = parent.pop(name, None)
        if up is not None:
            switches[up].children.remove(name)
            if not switches[up].children:
                todo.append(up)
    return dropped


def _heights(switches: dict[str, _Switch], parent: dict[str, str], path: str) -> dict[str, int]:
    """Each switch's level (leaf 0, else 1 + its highest child), from the roots down; switches no
    root reaches are in a loop."""
    height: dict[str, int] = {}
    roots = [n for n in switches if n not in parent]
    stack: list[tuple[str, bool]] = [(r, False) for r in roots]
    while stack:
        name, done = stack.pop()
        kids = switches[name].children
        if done:
            height[name] = 1 + max(height[c] for c in kids) if kids else 0
        else:
            stack.append((name, True))
            stack.extend((c, False) for c in kids)
    unreached = [n for n in switches if n not in height]
    if unreached:  # every switch has a parent: walking up from any of them ends in the loop
        walk, name = [unreached[0]], parent[unreached[0]]
        while name not in walk:
            walk.append(name)
            name = parent[name]
        loop = sorted(walk[walk.index(name):], key=lambda n: switches[n].line)
        raise ConfigError(f"{path}:{switches[loop[0]].line}: switches {', '.join(loop[:6])} form a loop "
                          "(each is under another of them): not a tree",
                          hint="topology/tree needs a tree: remove one Switches= link of the loop")
    return height


def _levels(top: int, path: str) -> list[str]:
    if top + 1 > MAX_LEVELS:
        raise ConfigError(f"{path}: the switch tree has {top + 1} levels; the fabric format models at most "
                          f"{MAX_LEVELS}",
                          hint="merge levels of the tree (a fabric level is one switch stage)")
    return [LEVEL_NAMES[i] if i < len(LEVEL_NAMES) else f"level{i}" for i in range(top + 1)]


def _groups(switches: dict[str, _Switch], parent: dict[str, str], height: dict[str, int],
            host_gbps: dict[str, float], path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Fabric groups of the switches, pass-through groups where a child sits more than one level
    below its parent, a virtual root over several top switches; uplinks non-blocking."""
    roots = [n for n in switches if n not in parent]
    top = max(height.values()) + (1 if len(roots) > 1 else 0)
    levels = _levels(top, path)
    up: dict[str, float] = {}
    for name in sorted(switches, key=lambda n: height[n]):
        sw = switches[name]
        up[name] = sum(host_gbps[h] for h in sw.nodes or ()) + sum(up[c] for c in sw.children)
    groups: dict[str, dict[str, Any]] = {}
    top_name = _free_name("root", switches) if len(roots) > 1 else None

    def linked(child: str, level: int) -> str:
        """The group that stands for ``child`` one level below ``level`` (a pass-through chain)."""
        name = child
        for lv in range(height[child] + 1, level):
            via = f"{child}-up{lv}"
            if via in switches or via in groups:
                raise ConfigError(f"{path}:{switches[child].line}: the pass-through switch above {child!r} "
                                  f"would be named {via!r}, the name of another switch", hint="rename one")
            groups[via] = {"name": via, "level": levels[lv], "switches": 1, "children": [name],
                           "uplink_gbps": up[child], "latency_us": 0.0}
            name = via
        return name

    for name in sorted(switches, key=lambda n: height[n]):
        sw = switches[name]
        g: dict[str, Any] = {"name": name, "level": levels[height[name]], "switches": sw.count}
        if sw.nodes is not None:
            g["hosts"] = compress(sw.nodes)
        else:
            g["children"] = [linked(c, height[name]) for c in sw.children]
        if name in parent or top_name:
            g["uplink_gbps"] = up[name] / sw.count  # each switch's
        groups[name] = g
    if top_name:
        groups[top_name] = {"name": top_name, "level": levels[top], "switches": 1,
                            "children": [linked(r, top) for r in roots]}
    order = {lv: i for i, lv in enumerate(levels)}
    return sorted(groups.values(), key=lambda g: order[g["level"]]), levels


def _free_name(base: str, taken: dict[str, _Switch]) -> str:
    name, n = base, 1
    while name in taken:
        name, n = f"{base}{n}", n + 1
    return name


def builtin_host_types() -> dict[str, HostType]:
    """The host types ``host_type=`` names: the generators' DGX H100 and GB200 tray, the Lingjun
    importer's HGX H800."""
    from fabric_hpc.topology.generators import DGX_H100, GB200_TRAY
    from fabric_hpc.topology.importers import LINGJUN_HOST

    return {"dgx-h100": DGX_H100, "gb200-tray": GB200_TRAY, "hgx-h800": LINGJUN_HOST}


def host_type_of(ref: str | HostType | None) -> tuple[str, HostType]:
    """(name, host type) of ``ref``: a built-in name (:func:`builtin_host_types`), a YAML file of one
    host type's fields, or a fabric YAML file with one host type (``FILE:TYPE`` picks one of several)."""
    from fabric_hpc.inputs import load_yaml, read_text
    from fabric_hpc.validation import parse_model

    if isinstance(ref, HostType):
        return "host", ref
    ref = ref or DEFAULT_HOST_TYPE
    builtin = builtin_host_types()
    if ref in builtin:
        return ref, builtin[ref]
    file, _, pick = ref.rpartition(":") if ":" in ref and not Path(ref).exists() else (ref, "", "")
    if not Path(file).is_file():
        raise ConfigError(f"host type {ref!r} is neither a built-in type nor a YAML file",
                          hint=f"built-in: {', '.join(builtin)}; or a YAML file of a host type's fields "
                               "(gpus, gpu_model, ..., as under host_types: in a fabric file)")
    data, _ = load_yaml(read_text(file, what="host type file", limit=1 << 20), file)
    if isinstance(data, dict) and "host_types" in data:
        types = data["host_types"] if isinstance(data["host_types"], dict) else {}
        if pick not in types and (pick or len(types) != 1):
            raise ConfigError(f"{file}: {'no host type ' + repr(pick) if pick else 'several host types'}; "
                              f"its host types: {', '.join(map(str, types)) or 'none'}",
                              hint=f"--host-type {file}:TYPE")
        pick = pick if pick in types else next(iter(types))
        data = types[pick]
    name = pick or re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(file).stem).strip("-") or "host"
    return name if NAME.match(name) else "host", parse_model(
        HostType, data, source=file, hint="give the host type's fields as under host_types: in a fabric "
                                          "file (docs/topology.md)")


def import_topology_conf(path: Any, *, host_type: str | HostType | None = None,
                         name: str | None = None) -> FabricSpec:
    """A fabric from Slurm's topology.conf (topology/tree) or the tree of its topology.yaml (told
    apart by content): its hosts (all of one host type), its leaf switches as leaf groups, its switch
    tree as the network (see the module's notes)."""
    from fabric_hpc.topology.importers import load_csv

    conf = load_csv(path, what="topology.conf")
    if looks_like(conf.lines) == YAML_KIND:
        switches, source = read_yaml_switches("".join(conf.lines), str(conf)), "Slurm topology.yaml"
    else:
        switches, source = read_switches(conf.lines, str(conf)), "Slurm topology.conf"
    return build_spec(switches, str(conf), source, host_type=host_type, name=name)


def build_spec(switches: dict[str, _Switch], path: str, source: str, *, host_type: str | HostType | None,
               name: str | None, notes: list[str] | None = None, uplinks: dict[str, float] | None = None,
               nic_gbps: dict[str, float] | None = None,
               nic_count: dict[str, int] | None = None) -> FabricSpec:
    """The fabric of a switch tree read from ``path`` (``source`` says what it is), checked: one
    parent per switch, no loop, each host on one leaf; empty switches left out. ``notes`` (what the
    importer left out) end the fabric's description. ``uplinks``: each switch's uplink (GB/s) of the
    groups whose cables are known (the others non-blocking); ``nic_gbps``: hosts' NIC rates (GB/s)
    that differ from the host type's (one host type per rate); ``nic_count``: hosts' cabled NIC ports
    (the host type's ``nics`` becomes the count most hosts have, the others get types of their own)."""
    from fabric_hpc.topology.ib_rates import host_types
    from fabric_hpc.topology.importers import _finish

    tname, ht = host_type_of(host_type)
    if ht.nics < 1:
        raise ConfigError(f"host type {tname!r} has no NIC; hosts on a switch need at least one",
                          hint="give a host type with nics >= 1")
    hosts = [h for sw in switches.values() for h in sw.nodes or ()]
    if len(hosts) > MAX_NAMES:
        raise ConfigError(f"{path}: {len(hosts):,} hosts under its leaf switches; a fabric models at most "
                          f"{MAX_NAMES:,}", hint="split the cluster into several imports")
    parent = _parents(switches, path)
    dropped = _drop_empty(switches, parent)
    if not switches:
        raise ConfigError(f"{path}: no switch has hosts", hint="a leaf switch lists its hosts with Nodes=")
    height = _heights(switches, parent, path)
    types, type_of = host_types(tname, ht, hosts, nic_gbps or {}, nic_count or {})
    bandwidth = {h: types[t].nics * types[t].nic_gbps for h, t in type_of.items()}
    groups, levels = _groups(switches, parent, height, bandwidth, path)
    for g in groups:
        if uplinks and g["name"] in uplinks and "uplink_gbps" in g:
            g["uplink_gbps"] = uplinks[g["name"]]
    from fabric_hpc.topology.report import plural

    count = sum(s.count for s in switches.values())
    description = (f"Imported from {source} {Path(path).name}: {plural(len(hosts), 'host')}, {count:,} "
                   f"switch{'' if count == 1 else 'es'}. Host contents ASSUMED (host type {tname}); uplinks "
                   + ("from the cables' link rates" if uplinks else "assumed non-blocking")
                   + " (see docs/topology-sources.md)")
    if dropped:
        description += f"; empty switches left out: {', '.join(dropped[:10])}"
    description += "".join(f"; {note}" for note in notes or ())
    return _finish({"fabric": 1, "name": name or Path(path).stem, "description": description,
                    "host_types": {t: h.model_dump() for t, h in types.items()},
                    "hosts": [{"names": compress([h for h in hosts if type_of[h] == t]), "type": t}
                              for t in types],
                    "network": {"levels": levels, "groups": groups}}, path)
