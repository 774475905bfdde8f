"""The leaf groups of an imported ``ibnetdiscover`` dump (:mod:`~fabric_hpc.topology.import_ib`).

A leaf group is a set of leaf switches whose hosts share them: a rail group (a scalable unit of a
rail-optimised fabric: N leaves, each compute host one port on each, NIC i on switch i) or one leaf of a
fat tree. Leaves are joined only through hosts that look like the compute hosts of their part of the
fabric: a port on each of several leaves, one per leaf (spread), holding half or more of the spread
hosts' ports there (one-port login, storage or CPU nodes on rail leaves count for neither side), and,
for two leaves, the usual port count of the hosts cabled only to them, or, where those leaves' one-port
hosts are of no name form found on a fat tree's leaves (leaves no spread host reaches), more of them
than one-port hosts on each leaf (so storage servers dual-homed to two leaves of a fat tree's nodes join
nothing, unless at least as many as those nodes). The commonest leaf sets are taken first; a host's
leaf set that touches leaves of two groups already formed (a UFM or storage server cabled to two
scalable units) joins neither: each such host is placed in the group holding most of its ports, the
others named in the fabric's description. A set whose new leaves are the most of it or home to its own
hosts only, the others in groups already formed (each SU's hosts with a port on a storage leaf), joins
its new leaves: the others are shared, kept by the group of those holding them that comes first in the
dump, and named in the description.
See ``docs/topology-sources.md``, "ibnetdiscover".
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Protocol

from fabric_hpc.hostlist import compress
from fabric_hpc.topology.ib_rates import name_form, common_count


class _Placed(Protocol):
    line: int


#: (switches, hosts) of each leaf group, in the order of their first switch in the dump
Groups = list[tuple[list[str], list[str]]]
#: a host placed in one group with ports on others: (host, its group's index, {other index: ports})
Spanning = list[tuple[str, int, dict[int, int]]]
#: a shared leaf (switch GUID) and the hosts of other groups with ports on it
Shared = list[tuple[str, list[str]]]


class _Union:
    """Union-find over switch GUIDs."""

    def __init__(self) -> None:
        self.root: dict[str, str] = {}

    def find(self, sw: str) -> str:
        while self.root.setdefault(sw, sw) != sw:
            self.root[sw] = self.root[self.root[sw]]
            sw = self.root[sw]
        return sw

    def join(self, switches: set[str] | frozenset[str]) -> None:
        first, *rest = sorted(switches)
        for sw in rest:
            self.root[self.find(sw)] = self.find(first)


def _spread(on: dict[str, set[str]], ports: dict[str, Counter[str]]) -> dict[str, frozenset[str]]:
    """The hosts with one port on each of several leaves, with their leaf sets."""
    return {h: frozenset(on[h]) for h in on if len(on[h]) > 1 and sum(ports[h].values()) == len(on[h])}


def _compute_set(leaves: frozenset[str], sws: frozenset[str], on: dict[str, set[str]],
                 ports: dict[str, Counter[str]], by_leaf: dict[str, dict[str, int]],
                 plain_forms: set[str]) -> bool:
    """Whether the hosts of the leaf set ``sws`` may be the compute hosts of its ``leaves`` by their port
    count: 3 or more leaves (a rail group; a server is dual-homed, to two), or the usual port count of
    the hosts on them cabled only to ``sws``, or, where none of the other hosts there is of a name form
    (:func:`name_form`) in ``plain_forms`` (the hosts of leaves no spread host reaches: a fat tree's nodes),
    more hosts of that count than the others on each leaf (a 2-rail SU's DGXs among CPU nodes)."""
    if len(leaves) > 2:
        return True
    hosts = {h for sw in leaves for h in by_leaf[sw] if on[h] <= sws}
    if common_count({h: sum(ports[h].values()) for h in hosts}) == len(sws):
        return True
    rails = {h for h in hosts if sum(ports[h].values()) == len(sws)}
    if any(name_form(h) in plain_forms for h in hosts - rails):
        return False
    return all(len(rails) > sum(h not in rails for h in by_leaf[sw]) for sw in leaves)


def _plain_forms(spread: dict[str, frozenset[str]], by_leaf: dict[str, dict[str, int]]) -> set[str]:
    """The name forms of the hosts on leaves that no spread host reaches (a fat tree's leaves)."""
    reached = {sw for sws in spread.values() for sw in sws}
    return {name_form(h) for sw, hosts in by_leaf.items() if sw not in reached for h in hosts}


def _own_leaves(leaves: frozenset[str], sws: frozenset[str], on: dict[str, set[str]],
                by_leaf: dict[str, dict[str, int]]) -> bool:
    """Whether every host on ``leaves`` is cabled to the leaf set ``sws`` only (the leaves are home to
    the set's own hosts, none of another group)."""
    return all(on[h] <= sws for sw in leaves for h in by_leaf[sw])


def _holds_its_leaves(sws: frozenset[str], own: frozenset[str], spread: dict[str, frozenset[str]],
                      by_leaf: dict[str, dict[str, int]]) -> bool:
    """Whether the spread hosts whose leaves lie in ``own`` hold half or more of the ports that spread
    hosts have on the leaves ``sws`` (``by_leaf``: each leaf's hosts and their ports on it): the
    leaves' rail members, not a server on leaves of a rail group of others. One-port hosts (login,
    storage or CPU nodes on rail leaves) are no rail members and count for neither."""
    inside = total = 0
    for sw in sws:
        for h, n in by_leaf[sw].items():
            if h in spread:
                total += n
                inside += n if spread[h] <= own else 0
    return 2 * inside >= total


def leaf_groups(on: dict[str, set[str]], ports: dict[str, Counter[str]],
                nodes: Mapping[str, _Placed]) -> tuple[Groups, Spanning, Shared]:
    """(switches, hosts) per leaf group, the hosts with ports on other groups' leaves and those with
    ports on a shared leaf of another group. ``on``: each host's leaf switches; ``ports``: its cabled
    HCA ports per switch; ``nodes``: switch GUID -> its node (``line``: where it is in the dump). The
    spread hosts' leaf sets, those shared by more hosts first (then those of the usual port count, then
    the larger), each join their leaves into one group where their port count fits
    (:func:`_compute_set`), their hosts hold half or more of the spread hosts' ports on the leaves
    (:func:`_holds_its_leaves`) and the leaves are in no group yet, or the set holds all of the one
    group they are in (hosts on one more rail than others of their group). A set whose new leaves
    (two or more) are the most of it or home to its own hosts only, the others in groups already
    formed, joins only the new ones: the others are shared (a storage leaf each SU's hosts have a port
    on), each kept by the first in the dump of the groups holding it (:func:`_first_keeps_shared`)."""
    line = {sw: nodes[sw].line for sws in on.values() for sw in sws}
    by_leaf: dict[str, dict[str, int]] = defaultdict(dict)
    for host, count in ports.items():
        for sw, n in count.items():
            by_leaf[sw][host] = n
    union = _Union()
    for sw in line:
        union.find(sw)
    grouped: set[str] = set()
    claims: dict[str, set[str]] = defaultdict(set)  # shared leaf -> a leaf of each group whose set holds it
    spread = _spread(on, ports)
    plain = _plain_forms(spread, by_leaf)
    sets = Counter(spread.values())
    usual = common_count({h: sum(n.values()) for h, n in ports.items()})
    for sws in sorted(sets, key=lambda s: (-sets[s], len(s) != usual, -len(s), min(line[sw] for sw in s))):
        touched = {union.find(sw) for sw in sws if sw in grouped}
        leaves = sws
        if touched and (len(touched) > 1 or not _grouped_leaves(union, grouped, touched) <= sws):
            leaves = sws - grouped
            if len(leaves) < 2 or (len(leaves) <= len(sws & grouped)
                                   and not _own_leaves(leaves, sws, on, by_leaf)):
                continue
        if (_compute_set(leaves, sws, on, ports, by_leaf, plain)
                and _holds_its_leaves(leaves, sws, spread, by_leaf)):
            union.join(leaves)
            grouped |= leaves
            for sw in sws - leaves:
                claims[sw] |= {min(leaves), sw}
    return _placed(on, ports, line, _first_keeps_shared(union, line, claims), set(claims))


def _first_keeps_shared(union: _Union, line: dict[str, int], claims: dict[str, set[str]]) -> _Union:
    """``union`` with each shared leaf (``claims``: a leaf of each group whose set holds it, its own
    included) in the one of those groups whose other leaves come first in the dump, not the first to
    take it: which SU keeps a storage leaf does not hang on a port down making its set the smaller."""
    groups: dict[str, set[str]] = defaultdict(set)
    for sw in line:
        groups[union.find(sw)].add(sw)
    last = max(line.values(), default=0) + 1
    start = {key: min((line[sw] for sw in sws if sw not in claims), default=last)
             for key, sws in groups.items()}
    out = _Union()
    anchor: dict[str, str] = {}  # a leaf of each group that stays in it
    for key, sws in groups.items():
        if rest := sws - claims.keys():
            out.join(rest)
            anchor[key] = min(rest)
    for sw in sorted(claims, key=line.__getitem__):
        owner = min({union.find(k) for k in claims[sw]}, key=lambda key: (start[key], key))
        out.join({sw, anchor.setdefault(owner, sw)})
    return out


def _grouped_leaves(union: _Union, grouped: set[str], keys: set[str]) -> set[str]:
    """The grouped leaves of the groups ``keys``."""
    return {sw for sw in grouped if union.find(sw) in keys}


def _placed(on: dict[str, set[str]], ports: dict[str, Counter[str]], line: dict[str, int],
            union: _Union, shared: set[str]) -> tuple[Groups, Spanning, Shared]:
    """The groups of ``union``'s switches (in the dump's order), each host in the one holding most of
    its ports not on ``shared`` leaves (then most of all its ports; a tie: the first); a leaf that only
    hosts placed in other groups reach (a server's third port on a leaf of its own) goes to the first
    one's group, after its own switches, its other hosts' ports there counted on that group. The
    hosts' ports on the ``shared`` leaves of another group are given apart from their other groups'
    (:data:`Shared`)."""
    members: dict[str, list[str]] = defaultdict(list)
    for sw in sorted(line, key=line.__getitem__):
        members[union.find(sw)].append(sw)
    first = {h: min(line[sw] for sw in on[h]) for h in on}
    order = sorted(on, key=lambda h: (first[h], h))
    held = {h: Counter[str]() for h in on}
    own = {h: Counter[str]() for h in on}  # the ports on leaves not shared
    for host in order:
        for sw, n in ports[host].items():
            held[host][union.find(sw)] += n
            own[host][union.find(sw)] += 0 if sw in shared else n
    home = {h: max(held[h], key=lambda k: (own[h][k], held[h][k], -line[members[k][0]])) for h in on}
    homes = set(home.values())
    moved: dict[str, str] = {}
    for key in [k for k in members if k not in homes]:
        moved[key] = home[next(h for h in order if key in held[h])]
        members[moved[key]] += members.pop(key)
    index = {key: k for k, key in enumerate(members)}
    index.update((key, index[to]) for key, to in moved.items())
    hosts: list[list[str]] = [[] for _ in members]
    spanning: Spanning = []
    on_shared: dict[str, list[str]] = defaultdict(list)
    for host in order:
        mine = index[home[host]]
        hosts[mine].append(host)
        others = Counter[int]()
        for sw, n in ports[host].items():
            if (k := index[union.find(sw)]) != mine:
                if sw in shared:
                    on_shared[sw].append(host)
                else:
                    others[k] += n
        if others:
            spanning.append((host, mine, dict(others)))
    groups = [(sws, hosts[index[key]]) for key, sws in members.items()]
    return groups, spanning, [(sw, on_shared[sw]) for sw in sorted(on_shared, key=line.__getitem__)]


def on_shared(shared: Shared, ports: dict[str, Counter[str]]) -> dict[str, Counter[str]]:
    """Each host's ports on the shared leaves of other groups (``ports``: its ports per switch)."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for sw, hosts in shared:
        for host in hosts:
            out[host][sw] = ports[host][sw]
    return out


def spanning_note(spanning: Spanning, names: list[str]) -> str:
    """The description's note on the hosts cabled to leaves of several leaf groups (``names``: the leaf
    groups' names by index)."""
    hosts = [h for h, _, _ in spanning]
    shown = "; ".join(f"{h} in {names[home]} (" + ", ".join(
        f"{n} port{'' if n == 1 else 's'} on {names[k]}" for k, n in sorted(others.items())) + ")"
        for h, home, others in spanning[:5])
    return (f"{len(hosts)} host{'' if len(hosts) == 1 else 's'} ({compress(hosts[:5])}"
            f"{', ...' if len(hosts) > 5 else ''}) cabled to leaves of several leaf groups (a UFM, storage "
            "or management server, say) join none: each sits in the group holding most of its ports, all "
            "its NICs on that group's switches (NIC i on switch i), its ports on other groups' leaves "
            "modelled there: " + shown
            + ("; ..." if len(spanning) > 5 else ""))


def shared_note(shared: Shared, names: dict[str, str], desc: dict[str, str]) -> str:
    """The description's note on the shared leaves (``names``: each switch's name in the model,
    ``desc``: its description in the dump)."""
    shown = "; ".join(f"{names[sw]} {desc[sw][:40]!r} ({len(hosts)} host{'' if len(hosts) == 1 else 's'}"
                      f": {compress(hosts[:5])}{', ...' if len(hosts) > 5 else ''})"
                      for sw, hosts in shared[:5])
    return (f"{len(shared)} leaf switch{'' if len(shared) == 1 else 'es'} shared by the hosts of several "
            "leaf groups (a storage leaf every scalable unit has a port on, say): each goes to the one of "
            "those groups whose other leaves come first in the dump, the other groups' hosts modelled with "
            "their ports there on their own group's switches (NIC i on switch i): " + shown
            + ("; ..." if len(shared) > 5 else ""))


def off_leaves(groups: Groups, on: dict[str, set[str]], nics: dict[str, int],
               default: int) -> list[tuple[str, list[str]]]:
    """The hosts with a port on a switch of their leaf group that the model gives none of their NICs
    (NIC i on the group's switch i mod its switches; ``nics``: each host's modelled NICs, else
    ``default``), with those switches: a one-port node on a rail group's second leaf, say."""
    out = []
    for sws, hosts in groups:
        for host in hosts:
            modelled = set(sws[:nics.get(host, default)])
            if off := [sw for sw in sws if sw in on[host] and sw not in modelled]:
                out.append((host, off))
    return out


def off_note(off: list[tuple[str, list[str]]], names: dict[str, str], desc: dict[str, str]) -> str:
    """The description's note on :func:`off_leaves`' hosts (``names``: each switch's name in the model,
    ``desc``: its description in the dump)."""
    by_leaves: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for host, sws in off:
        by_leaves[tuple(sws)].append(host)
    shown = "; ".join(f"{compress(hosts)} (" + ", ".join(f"{names[sw]} {desc[sw][:40]!r}" for sw in sws[:4])
                      + (", ..." if len(sws) > 4 else "") + ")" for sws, hosts in list(by_leaves.items())[:5])
    return (f"{len(off)} host{'' if len(off) == 1 else 's'} with a port on a switch of their leaf group "
            "that the model gives none of their NICs (NIC i goes on the group's switch i: a one-port login "
            "or CPU node on a rail leaf, or the nodes of a fat-tree leaf taken into a 2-rail group by hosts "
            "cabled to it and another, say) modelled on the group's first switches: " + shown
            + ("; ..." if len(by_leaves) > 5 else ""))
