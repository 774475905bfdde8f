"""The leaf groups of an imported ``ibnetdiscover`` dump (:mod:`~fabric_hpc.topology.import_ib`).

A leaf group is a set of leaf switches whose hosts share them: a rail group (a scalable unit of a
rail-optimised fabric: N leaves, each compute host one port on each, NIC i on switch i) or one leaf of a
fat tree. Leaves are joined only through hosts that look like the compute hosts of their part of the
fabric: a port on each of several leaves, one per leaf (spread), and the usual port count of the hosts
cabled there (so a storage server dual-homed to two leaves of one-port hosts joins nothing). The
commonest leaf sets are taken first, and a host's leaf set that touches leaves of two groups already
formed (a UFM or storage server cabled to two scalable units) joins neither: each such host is placed
in the group holding most of its ports, the others named in the fabric's description. See
``docs/topology-sources.md``, "ibnetdiscover".
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Protocol

from fabric_hpc.hostlist import compress
from fabric_hpc.topology.ib_rates import common_count


class _Placed(Protocol):
    line: int


#: (switches, hosts) of each leaf group, in the order of their first switch in the dump
Groups = list[tuple[list[str], list[str]]]
#: a host placed in one group with ports on others: (host, its group's index, {other index: ports})
Spanning = list[tuple[str, int, dict[int, int]]]


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


def _holds_its_leaves(sws: frozenset[str], spread: dict[str, frozenset[str]],
                      by_leaf: dict[str, dict[str, int]]) -> bool:
    """Whether the spread hosts whose leaves lie in ``sws`` hold half or more of the host ports on
    them (``by_leaf``: each leaf's hosts and their ports on it): the leaves' compute hosts, not a server
    dual-homed to leaves of other hosts."""
    seen = {h for sw in sws for h in by_leaf[sw]}
    total = sum(by_leaf[sw][h] for sw in sws for h in by_leaf[sw])
    inside = sum(len(spread[h]) for h in seen if h in spread and spread[h] <= sws)
    return 2 * inside >= total


def leaf_groups(on: dict[str, set[str]], ports: dict[str, Counter[str]],
                nodes: Mapping[str, _Placed]) -> tuple[Groups, Spanning]:
    """(switches, hosts) per leaf group and the hosts with ports on other groups' leaves. ``on``: each
    host's leaf switches; ``ports``: its cabled HCA ports per switch; ``nodes``: switch GUID -> its
    node (``line``: where it is in the dump). The spread hosts' leaf sets, those shared by more hosts
    first (then those of the usual port count, then the larger), each join their leaves into one group
    where their hosts hold half or more of the leaves' host ports (:func:`_holds_its_leaves`) and the
    leaves are in no group yet, or the set holds all of the one group they are in (hosts on one more
    rail than others of their group)."""
    line = {sw: nodes[sw].line for sws in on.values() for sw in sws}
    by_leaf: dict[str, dict[str, int]] = defaultdict(dict)
    for host, count in ports.items():
        for sw, n in count.items():
            by_leaf[sw][host] = n
    union = _Union()
    for sw in line:
        union.find(sw)
    grouped: set[str] = set()
    spread = _spread(on, ports)
    sets = Counter(spread.values())
    usual = common_count({h: sum(n.values()) for h, n in ports.items()})
    for sws in sorted(sets, key=lambda s: (-sets[s], len(s) != usual, -len(s), min(line[sw] for sw in s))):
        touched = {union.find(sw) for sw in sws if sw in grouped}
        if ((not touched or (len(touched) == 1 and _grouped_leaves(union, grouped, touched) <= sws))
                and _holds_its_leaves(sws, spread, by_leaf)):
            union.join(sws)
            grouped |= sws
    return _placed(on, ports, line, union)


def _grouped_leaves(union: _Union, grouped: set[str], keys: set[str]) -> set[str]:
    """The grouped leaves of the groups ``keys``."""
    return {sw for sw in grouped if union.find(sw) in keys}


def _placed(on: dict[str, set[str]], ports: dict[str, Counter[str]], line: dict[str, int],
            union: _Union) -> tuple[Groups, Spanning]:
    """The groups of ``union``'s switches (in the dump's order), each host in the one holding most of
    its ports (a tie: the first); a leaf that only hosts placed in other groups reach (a server's third
    port on a leaf of its own) goes to the first one's group, after its own switches."""
    members: dict[str, list[str]] = defaultdict(list)
    for sw in sorted(line, key=line.__getitem__):
        members[union.find(sw)].append(sw)
    first = {h: min(line[sw] for sw in on[h]) for h in on}
    order = sorted(on, key=lambda h: (first[h], h))
    held = {h: Counter[str]() for h in on}
    for host in order:
        for sw, n in ports[host].items():
            held[host][union.find(sw)] += n
    home = {h: max(held[h], key=lambda k: (held[h][k], -line[members[k][0]])) for h in on}
    for key in [k for k in members if k not in set(home.values())]:
        host = next(h for h in order if key in held[h])
        members[home[host]] += members.pop(key)
    index = {key: k for k, key in enumerate(members)}
    hosts: list[list[str]] = [[] for _ in members]
    spanning: Spanning = []
    for host in order:
        hosts[index[home[host]]].append(host)
        others = Counter[int]()
        for key, n in held[host].items():
            if key in index and index[key] != index[home[host]]:
                others[index[key]] += n
        if others:
            spanning.append((host, index[home[host]], dict(others)))
    return [(sws, hosts[index[key]]) for key, sws in members.items()], spanning


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
