"""ECMP routing for the collective model: each flow takes ONE uplink port, chosen by a hash.

The collective model's switch resources (``collective.Net``: a leaf switch's uplinks / downlinks,
a higher group's uplinks / downlinks) are bundles of equal-cost links. Perfect spreading treats a
bundle as one pipe; real Ethernet fabrics (RoCE, e.g. Alibaba's Lingjun) hash every flow's 5-tuple
onto one next hop per switch (ECMP), so two flows — of two jobs, or two channels of one job — can
land on the same link while others stay idle (Crux, SIGCOMM'24, §2.2; Alibaba HPN, SIGCOMM'24).

Here every finite switch resource is split into *ports* of the fabric's NIC speed (the fastest
NIC: 400 Gb/s on the shipped fabrics; a port count is ``round(capacity / port speed)``, at least
1). A leaf switch's ports are grouped by next hop: ``hops`` parent switches × ``per`` parallel
links, the graph's switch-to-parent-switch edges (``Fabric.graph``). A flow's port at each level is
a deterministic hash (splitmix64) of (source GPU, destination GPU, job salt, channel, level,
direction) — the stand-in for a QP's UDP source port. Flows that go up and come down through the
same parent switch (meeting one level above the leaves) come down from the parent switch they went
up to. Above the first level a group's ports are pooled (the shipped Lingjun fabric has one switch
per group there; on a multi-switch aggregation group the parent switch of a higher hop is not
tracked — an approximation).

Pure numpy; :class:`Ports` is built once per fabric (``collective.fabric_ports``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fabric_hpc.placement.collective import Net
    from fabric_hpc.topology import Fabric

_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Ports:
    """The collective model's resources plus every switch resource's ports (ids ``>= len(base)``)."""

    cap: np.ndarray  # [R + P] line rate (GB/s): the Net's resources, then the ports
    kind: np.ndarray  # [R + P] as Net.kind; ports are 2 (switch)
    base: np.ndarray  # [R] first port of each split switch resource (-1: not split)
    hops: np.ndarray  # [R] next-hop switches its ports lead to (parent switches of a leaf; 1 above)
    per: np.ndarray  # [R] parallel ports per next hop

    @property
    def size(self) -> int:
        return len(self.cap)


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser of uint64 values (wrapping arithmetic)."""
    x = np.asarray(x, np.uint64)
    with np.errstate(over="ignore"):
        x = x + _GOLD
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def flow_keys(src: np.ndarray, dst: np.ndarray, salt: int, channel: np.ndarray) -> np.ndarray:
    """One hash per flow of (source GPU, destination GPU, job salt, channel)."""
    k = mix((np.asarray(src, np.uint64) << np.uint64(32)) ^ np.asarray(dst, np.uint64))
    k = mix(k ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF))
    return mix(k ^ np.asarray(channel, np.uint64))


def build_ports(fab: Fabric, net: Net) -> Ports:
    """Split every finite switch resource of ``net`` into ports of the fabric's NIC speed."""
    port = max((fab.host_type(h).nic_gbps for h in fab.hosts if fab.host_type(h).nics), default=0.0)
    r = net.size
    base = np.full(r, -1, np.int64)
    hops = np.ones(r, np.int64)
    per = np.ones(r, np.int64)
    # a leaf switch's next hops: the switches of its group's parent group (one graph edge each)
    parents = np.ones(max(len(fab.switch_ids), 1), np.int64)
    for grp in fab.groups.values():
        if grp.parent is not None:
            for sw in grp.switches:
                parents[fab.switch_ids[sw]] = len(fab.groups[grp.parent].switches)
    sw = fab.index.gpu_leaf_switch.astype(np.int64)
    on = sw >= 0
    for col in (net.up[:, 0], net.down[:, 0]):
        hops[col[on]] = parents[sw[on]]
    cand = np.unique(np.r_[net.up[on].ravel(), net.down[on].ravel()])
    cand = cand[(cand >= 0) & np.isfinite(net.cap[np.maximum(cand, 0)])]
    caps = [np.asarray(net.cap, np.float64)]
    nxt = r
    for rid in cand.tolist() if port > 0 else []:
        per[rid] = max(1, int(round(net.cap[rid] / hops[rid] / port)))
        n = int(hops[rid] * per[rid])
        if n > 1:
            base[rid] = nxt
            nxt += n
            caps.append(np.full(n, net.cap[rid] / n))
    cap = np.concatenate(caps)
    kind = np.r_[net.kind, np.full(len(cap) - r, 2, np.int8)].astype(np.int8)
    return Ports(cap, kind, base, hops, per)


def route(ports: Ports, up: np.ndarray, down: np.ndarray, level: np.ndarray, key: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """Replace each flow's switch resources ``up`` / ``down`` ([F, L], -1 none) by one hashed port
    of each (resources that are not split stay). ``level``: levels each flow climbs."""
    up, down = up.copy(), down.copy()
    hop0 = None
    for lv in range(up.shape[1]):
        for arr, d in ((up, 0), (down, 1)):
            r = arr[:, lv]
            split = (r >= 0) & (ports.base[np.maximum(r, 0)] >= 0)
            if not split.any():
                continue
            rr = r[split]
            h = mix(key[split] ^ mix(np.uint64(2 * lv + d + 1)))
            nh, pr = ports.hops[rr].astype(np.uint64), ports.per[rr].astype(np.uint64)
            hop = (h % nh).astype(np.int64)
            if lv == 0 and d == 0:
                hop0 = np.full(len(r), -1, np.int64)
                hop0[split] = hop
            elif lv == 0 and hop0 is not None:  # up to a parent switch and straight down from it
                same = (level[split] == 1) & (hop0[split] >= 0)
                hop = np.where(same, hop0[split], hop)
            q = ((h // nh) % pr).astype(np.int64)
            arr[split, lv] = ports.base[rr] + hop * ports.per[rr] + q
    return up, down


def port_of(ports: Ports, rid: int) -> tuple[int, int, int] | None:
    """(split resource, next hop, parallel index) of port ``rid``; None for an unsplit resource."""
    if rid < len(ports.base):
        return None
    order = np.argsort(ports.base)
    b = ports.base[order]
    i = int(np.searchsorted(b, rid, side="right")) - 1
    owner = int(order[i])
    off = rid - int(ports.base[owner])
    return owner, off // int(ports.per[owner]), off % int(ports.per[owner])
