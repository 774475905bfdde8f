"""Link rates of an ``ibnetdiscover`` dump: what each cable carries, each group's uplinks, each host's NIC.

ibnetdiscover ends every port line with the link's active width and speed (rdma-core
``infiniband-diags/ibnetdiscover.c``, ``out_switch_port``/``out_ca_port``: ``dump_linkwidth_compat``
then ``dump_linkspeed_compat``/``dump_linkspeedext_compat``), e.g. ``4xNDR``; widths ``1x 2x 4x 8x
12x``, speeds ``SDR DDR QDR FDR10 FDR EDR HDR NDR`` (``XDR`` in later releases); ``??``/``???`` when
the port reports none. A rate here is the link's DATA rate (Gb/s, after line coding), width x the
lane's data rate of :data:`LANE_GBPS`: 4xEDR 100, 4xHDR 200, 4xNDR 400, 4xXDR 800 Gb/s as NVIDIA
rates its switches and adapters; 4xQDR 32 (40 signalling, 8b/10b). See ``docs/topology-sources.md``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fabric_hpc.topology.spec import HostType

#: Data rate of one lane (Gb/s): signalling rate x coding efficiency. SDR/DDR/QDR use 8b/10b (2.5, 5,
#: 10 Gbaud), FDR10 and FDR 64b/66b (10.3125, 14.0625), EDR 25 (25.78125 signalling), HDR 50 (53.125),
#: NDR 100 (106.25), XDR 200 (212.5): NVIDIA's 100/200/400/800 Gb/s for 4x EDR/HDR/NDR/XDR.
LANE_GBPS: dict[str, float] = {"SDR": 2.0, "DDR": 4.0, "QDR": 8.0, "FDR10": 10.0, "FDR": 14.0625 * 64 / 66,
                               "EDR": 25.0, "HDR": 50.0, "NDR": 100.0, "XDR": 200.0}
#: Link widths ibnetdiscover prints (lanes).
WIDTHS = (1, 2, 4, 8, 12)
#: ``4xNDR`` as the last word of the port line's comment before ``-f``'s `` s= w= v=`` and the Xsigo
#: `` slot N``/`` (scp)`` suffixes; the description (quoted) comes before it.
_RATE = re.compile(r"\s(?:(\d+)x|\?\?)([A-Z][A-Z0-9]*|\?\?\?)(?=\s|$)")


def rate_of(comment: str) -> float | None:
    """The data rate (Gb/s) of a port line's comment (the text after its ``#``), None when it has
    none or ``??``/``???`` (the port reported no active width or speed)."""
    tail = comment.rsplit('"', 1)[-1]  # after the peer's description: `` lid 4 4xQDR``
    m = _RATE.search(" " + tail)
    if not m or m.group(1) is None or int(m.group(1)) not in WIDTHS:
        return None
    lane = LANE_GBPS.get(m.group(2))
    return None if lane is None else int(m.group(1)) * lane


def shown(gbps: float) -> str:
    """``400``, ``54.5`` (Gb/s, for messages)."""
    return f"{gbps:,.0f}" if abs(gbps - round(gbps)) < 0.05 else f"{gbps:,.1f}"


@dataclass(frozen=True)
class Cable:
    """One cable: both ends (node GUID key, port) sorted, and its rate (Gb/s; None: unknown)."""

    a: str
    port_a: int
    b: str
    port_b: int
    gbps: float | None


def cables_of(ports: dict[str, dict[int, tuple[str, int, float | None]]]) -> list[Cable]:
    """Each cable once from the port lines of both its ends (``ports``: node -> port -> (peer, peer
    port, rate)); where both ends give a rate, the lower one."""
    seen: dict[tuple[str, int, str, int], float | None] = {}
    for node, lines in ports.items():
        for port, (peer, peer_port, gbps) in lines.items():
            key = min((node, port, peer, peer_port), (peer, peer_port, node, port))
            other = seen.get(key)
            seen[key] = other if gbps is None else gbps if other is None else min(gbps, other)
    return [Cable(*key, gbps) for key, gbps in seen.items()]


@dataclass
class Uplinks:
    """Each group's total uplink (Gb/s) to its parent group, from its cables; what was assumed."""

    total: dict[str, float]
    cables: dict[str, int]
    unrated: int = 0
    assumed_gbps: float | None = None
    #: uplink cables of each switch
    per_switch: Counter[str] = field(default_factory=Counter)

    def short(self, groups: dict[str, list[str]]) -> list[tuple[str, int, int]]:
        """(switch, its uplink cables, the most of a switch of its group) for each switch with fewer
        uplink cables than another of its group: a cable down or unplugged when the dump was taken."""
        out = []
        for name, sws in groups.items():
            most = max(self.per_switch[s] for s in sws)
            out += [(s, self.per_switch[s], most) for s in sws if name in self.total
                    and self.per_switch[s] < most]
        return out

    def notes(self) -> list[str]:
        """What the fabric's description says of the rates assumed."""
        if not self.unrated:
            return []
        return [f"{self.unrated} switch cable{'' if self.unrated == 1 else 's'} without a link rate "
                f"(none, ?? or unknown width/speed) counted at {shown(self.assumed_gbps or 0)} Gb/s, "
                "the lowest rate of the dump"]


def group_uplinks(groups: dict[str, list[str]], stage: dict[str, int], cables: list[Cable]) -> Uplinks:
    """Total uplink per group (``groups``: name -> switch keys; ``stage``: switch key -> its level):
    the rates of its switches' cables to switches one level up. A cable without a rate counts at
    the lowest rate of the dump (some cable must have one)."""
    group_of = {sw: name for name, sws in groups.items() for sw in sws}
    low = min(c.gbps for c in cables if c.gbps is not None)
    out = Uplinks({}, Counter(), assumed_gbps=low)
    for c in cables:
        if c.a not in stage or c.b not in stage or abs(stage[c.a] - stage[c.b]) != 1:
            continue
        below = c.a if stage[c.a] < stage[c.b] else c.b
        name = group_of[below]
        out.total[name] = out.total.get(name, 0.0) + (low if c.gbps is None else c.gbps)
        out.cables[name] += 1
        out.per_switch[below] += 1
        out.unrated += c.gbps is None
    return out


def nic_rates(host_cas: dict[str, list[str]], cables: list[Cable],
              switches: set[str]) -> tuple[dict[str, float], list[str], dict[str, int]]:
    """Each host's NIC rate (Gb/s) where all its CA ports cabled to switches agree; the hosts whose
    ports disagree or give none; each host's number of ports cabled to switches."""
    per_ca: dict[str, list[float | None]] = {}
    for c in cables:
        for ca, other in ((c.a, c.b), (c.b, c.a)):
            if other in switches:
                per_ca.setdefault(ca, []).append(c.gbps)
    rates: dict[str, float] = {}
    unsure: list[str] = []
    ports = {host: sum(len(per_ca.get(ca, ())) for ca in cas) for host, cas in host_cas.items()}
    for host, cas in host_cas.items():
        seen = {r for ca in cas for r in per_ca.get(ca, [None])}
        known = [r for r in seen if r is not None]
        if len(seen) == 1 and known:
            rates[host] = known[0]
        else:
            unsure.append(host)
    return rates, unsure, ports


def common_count(ports: dict[str, int]) -> int:
    """The number of cabled HCA ports most hosts have (a tie: the larger, as a port down makes fewer)."""
    counts = Counter(ports.values())
    return max(counts, key=lambda n: (counts[n], n))


def name_form(host: str) -> str:
    """A host name with its digits left out (``su1-dgx07`` -> ``su#-dgx#``): one kind of machine."""
    return re.sub(r"\d+", "#", host.lower())


def is_rail_group(hosts: list[str], on: dict[str, set[str]], ports: dict[str, int]) -> bool:
    """Whether a leaf group is rail-optimised: its hosts mostly have more than 1 cabled port (their
    usual count, :func:`common_count`), and most spread them one port per switch over its leaves. An
    ordinary fat tree's leaves joined by a dual-homed server (its hosts of 1 port) are none."""
    usual = common_count({h: ports[h] for h in hosts})
    spread = sum(ports[h] > 1 and len(on[h]) == ports[h] for h in hosts)
    return usual > 1 and 2 * spread > len(hosts)


def rail_counts(groups: list[tuple[list[str], list[str]]], on: dict[str, set[str]], ports: dict[str, int],
                shared: dict[str, Counter[str]] | None = None) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Each host's modelled ``nics`` and the leaf switches (of its group, in its order) the model gives
    a NIC of it that the dump shows no port on. ``groups``: (switches, hosts) of each leaf group; ``on``:
    each host's switches; ``ports``: its cabled HCA ports; ``shared``: its ports on each shared leaf of
    another group (a storage leaf of a converged fabric), left out here. A host's ``nics`` are its
    ports, except in a rail group (:func:`is_rail_group`) for one of its compute hosts with ports down:
    fewer ports than the group's usual count N, all on its first N switches, and more than half of N or
    a name of the form of the hosts that have N (digits aside). The model puts NIC i on the group's
    switch i (mod its switches; :func:`~fabric_hpc.topology.model.rail_of`: GPU i on NIC i where
    ``nics`` = ``gpus``), so such a host keeps N (and its shared ports): GPU i stays on the leaf of GPU i
    of the others, the missing ports counted as up. Other hosts of fewer ports (a UFM server on 2 of 4
    rails) keep theirs: their real bandwidth."""
    counts = {h: ports[h] for _, hosts in groups for h in hosts}
    apart = shared or {}
    mine = {h: on[h] - apart.get(h, Counter()).keys() for h in counts}
    own = {h: ports[h] - sum(apart.get(h, Counter()).values()) for h in counts}
    missing: dict[str, list[str]] = {}
    for sws, hosts in groups:
        if not is_rail_group(hosts, mine, own):
            continue
        usual = common_count({h: own[h] for h in hosts})
        forms = {name_form(h) for h in hosts if own[h] == usual}
        rails = set(sws[:usual])
        for host in hosts:
            if (own[host] < usual and mine[host] <= rails
                    and (2 * own[host] > usual or name_form(host) in forms)):
                counts[host] = ports[host] + usual - own[host]
                if lack := [sw for sw in sws[:usual] if sw not in on[host]]:
                    missing[host] = lack
    return counts, missing


def host_types(tname: str, ht: HostType, hosts: list[str], nic_gbps: dict[str, float],
               nic_count: dict[str, int]) -> tuple[dict[str, HostType], dict[str, str]]:
    """(host types by name, each host's type). ``ht`` gets the NIC rate (GB/s) of ``nic_gbps`` where
    all hosts agree on one, else one type ``<tname>-<Gb/s>g`` per rate (hosts without one keep
    ``ht``'s). With ``nic_count`` (each host's cabled HCA ports: no ``--host-type`` was given),
    ``ht``'s ``nics`` is the count most hosts have and the others get types ``...-<n>nic`` of their own."""
    rates = {nic_gbps[h] for h in hosts if h in nic_gbps}
    by_rate = len(rates) > 1 or bool(rates and any(h not in nic_gbps for h in hosts))
    if nic_count:
        ht = ht.model_copy(update={"nics": common_count(nic_count)})
    made: dict[tuple[int, float | None], str] = {}
    type_of: dict[str, str] = {}
    for host in hosts:
        key = (nic_count.get(host, ht.nics), nic_gbps.get(host))
        if key not in made:
            made[key] = (tname + (f"-{shown(key[1] * 8).replace(',', '')}g" if by_rate and key[1] else "")
                         + (f"-{key[0]}nic" if key[0] != ht.nics else ""))
        type_of[host] = made[key]
    order = sorted(made, key=lambda k: (k[0] != ht.nics, -k[0], k[1] is None, k[1] or 0.0))
    types = {made[k]: ht.model_copy(update={"nics": k[0], "nic_gbps": ht.nic_gbps if k[1] is None else k[1]})
             for k in order}
    return types, type_of
