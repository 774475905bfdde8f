"""SimGrid simulation of ring collectives on a fabric graph (run in a subprocess: one Engine per process).

``python -m tests.placement.simgrid_flows < scenario.json > result.json``

Input: ``{"spec": <FabricSpec JSON>, "jobs": [[gpu index, ...], ...], "size": bytes, "params": {...},
"ecmp": [salt per job] or null}``. With ``ecmp`` every network flow (one per job, channel and ring
edge, with endpoints of its own) takes the switch ports the model's ECMP hash picked
(``collective.switch_hops``): each graph edge between two switches becomes ``per`` parallel links of
``1/per`` of its bandwidth, and the flow is routed over the picked parent switch and parallel link.
Every job runs ring all-reduces back to back. The ring schedule (which GPU sends to which, per
channel) is NCCL's, taken from :mod:`fabric_hpc.placement.collective`; everything else is SimGrid's:
each step is a set of concurrent communications, routed hop by hop over the fabric's networkx
graph (GPU → NIC over PCIe → leaf switch → an ECMP-chosen parent switch ... → NIC → GPU, one SimGrid
link per edge and direction, with the edge's bandwidth and latency), shared by SimGrid's max-min
solver (CM02, no TCP window, no cross traffic), with all jobs' flows in flight together.
Output: per job the mean time of the all-reduces that finished before the first job stopped.
"""

from __future__ import annotations

import json
import sys
import zlib

import numpy as np

sys.path.append("/usr/lib/python3/dist-packages")  # Debian's python3-simgrid

from fabric_hpc.placement.collective import (CollectiveParams, _channel_edges, _domains,  # noqa: E402
                                             fabric_net, fabric_ports, switch_hops)
from fabric_hpc.placement.ecmp import port_of  # noqa: E402
from fabric_hpc.topology import build  # noqa: E402
from fabric_hpc.topology.spec import FabricSpec  # noqa: E402


class Zone:
    """One SimGrid zone with full routing, and its actors, on SimGrid 3.32 (Debian 12's python3-simgrid)
    and 4.0 (Debian 13's: ``create_full_zone``, ``create_host`` and ``create_link`` refuse, their
    ``add_*`` successors take hosts, not netpoints, in ``add_route``; ``Comm.wait_all`` is gone, to
    ``ActivitySet``; ``Actor.create`` is deprecated for ``Engine.add_actor``)."""

    def __init__(self, sg, engine, name: str) -> None:
        self.sg, self.engine, self.new = sg, engine, hasattr(sg.NetZone, "add_netzone_full")
        self.zone = (engine.netzone_root.add_netzone_full(name) if self.new
                     else sg.NetZone.create_full_zone(name))

    def host(self, name: str, speed: float):
        host = self.zone.add_host(name, speed) if self.new else self.zone.create_host(name, speed)
        host.seal()
        return host

    def link(self, name: str, bandwidth: float, latency_s: float):
        lk = self.zone.add_link(name, bandwidth) if self.new else self.zone.create_link(name, bandwidth)
        lk.set_latency(latency_s)
        lk.seal()
        return lk

    def route(self, src, dst, links: list) -> None:
        hops = [self.sg.LinkInRoute(lk) for lk in links]
        if self.new:
            self.zone.add_route(src, dst, hops, False)
        else:
            self.zone.add_route(src.netpoint, dst.netpoint, None, None, hops, False)

    def seal(self) -> None:
        self.zone.seal()

    def actor(self, name: str, host, code, *args) -> None:
        if self.new:
            self.engine.add_actor(name, host, code, *args)
        else:
            self.sg.Actor.create(name, host, code, *args)

    def wait_all(self, comms: list) -> None:
        if self.new:
            self.sg.ActivitySet(comms).wait_all()
        else:
            self.sg.Comm.wait_all(comms)


class Routes:
    """Hop-by-hop routes over ``fab.graph`` (no aggregation: every edge is its own link)."""

    def __init__(self, fab, params: CollectiveParams, zone: Zone) -> None:
        self.fab, self.g, self.params, self.zone = fab, fab.graph, params, zone
        self.links: dict[tuple[str, str], object] = {}
        self.hosts: dict[int, object] = {}
        self.done: set[tuple[int, int]] = set()

    def link(self, a: str, b: str, gbps: float, lat_us: float, eff: float):
        key = (a, b)
        if key not in self.links:
            self.links[key] = self.zone.link(f"{a}>{b}", gbps * eff * 1e9, lat_us * 1e-6)
        return self.links[key]

    def host(self, gpu: int):
        if gpu not in self.hosts:
            self.hosts[gpu] = self.zone.host(f"g{gpu}", 1e9)
        return self.hosts[gpu]

    def endpoint(self, name: str):
        if name not in self.hosts:
            self.hosts[name] = self.zone.host(name, 1e9)
        return self.hosts[name]

    def route_ecmp(self, a: int, b: int, tag: str, level: int, up: np.ndarray, down: np.ndarray):
        """A network flow over the hashed ports: its own endpoints (source, destination hosts)."""
        src, dst = self.endpoint(f"s{a}.{tag}"), self.endpoint(f"d{b}.{tag}")
        fab, g = self.fab, self.g
        ga, gb = fab.gpus[a], fab.gpus[b]
        na, nb = self._nic(ga), self._nic(gb)
        sa, sb = self._leaf(na), self._leaf(nb)
        links = [self._hop(ga, na), self._hop(na, sa)]
        groups, ports = fab.groups, fabric_ports(fab)
        cur = sa
        for lv in range(level):  # up: the picked parent switch and parallel link at each level
            parents = groups[groups[g.nodes[cur]["group"]].parent].switches
            j, q, per = self._port(ports, int(up[lv]))
            assert lv == 0 or len(parents) == 1, "pooled ports above the leaves: one switch per group only"
            nxt = parents[j] if lv == 0 else parents[0]
            links.append(self._port_link(cur, nxt, q, per))
            cur = nxt
        chain = [g.nodes[sb]["group"]]
        while groups[chain[-1]].parent is not None:
            chain.append(groups[chain[-1]].parent)
        for lv in range(level - 1, -1, -1):  # down from the peak switch to the destination's leaf
            child = sb if lv == 0 else groups[chain[lv]].switches[0]
            j, q, per = self._port(ports, int(down[lv]))
            if lv == 0 and level > 1:
                cur = groups[chain[1]].switches[j]
            assert lv != 0 or groups[chain[1]].switches[j] == cur, "down from the switch the flow went up to"
            links.append(self._port_link(cur, child, q, per))
            cur = child
        links += [self._hop(sb, nb), self._hop(nb, gb)]
        self.zone.route(src, dst, links)
        return src, dst

    @staticmethod
    def _port(ports, rid: int) -> tuple[int, int, int]:
        """(next hop, parallel link, parallel links per next hop) of a resource the flow crosses."""
        po = port_of(ports, rid)
        if po is None:
            return 0, 0, 1
        return po[1], po[2], int(ports.per[po[0]])

    def _port_link(self, a: str, b: str, q: int, per: int):
        key = (a, b, q)
        if key not in self.links:
            d = self.g.edges[a, b]
            bandwidth = d["bandwidth_gbps"] / per * self.params.net_eff * 1e9
            self.links[key] = self.zone.link(f"{a}>{b}#{q}", bandwidth, d["latency_us"] * 1e-6)
        return self.links[key]

    def route(self, a: int, b: int) -> None:
        if (a, b) in self.done:
            return
        self.done.add((a, b))
        fab = self.fab
        ga, gb = fab.gpus[a], fab.gpus[b]
        if fab.index.gpu_nvl[a] == fab.index.gpu_nvl[b]:
            links = [self._nvl(ga, "tx"), self._nvl(gb, "rx")]
        else:
            links = self._net(ga, gb)
        self.zone.route(self.host(a), self.host(b), links)

    def _nvl(self, gpu: str, way: str):
        """A GPU's NVLink port, one direction: its NVLink edges' bandwidth (both directions) / 2."""
        edges = [d for _, _, d in self.g.edges(gpu, data=True) if d["kind"] == "nvlink"]
        gbps = sum(d["bandwidth_gbps"] for d in edges) / 2
        return self.link(f"{gpu}:nvl", way, gbps, edges[0]["latency_us"], self.params.nvlink_eff)

    def _hop(self, a: str, b: str):
        d = self.g.edges[a, b]
        return self.link(a, b, d["bandwidth_gbps"], d["latency_us"], self.params.net_eff)

    def _nic(self, gpu: str) -> str:
        return next(n for n in self.g.neighbors(gpu) if self.g.nodes[n]["kind"] == "nic")

    def _leaf(self, nic: str) -> str:
        return next(n for n in self.g.neighbors(nic) if self.g.nodes[n]["kind"] == "switch")

    def _net(self, ga: str, gb: str) -> list:
        na, nb = self._nic(ga), self._nic(gb)
        sa, sb = self._leaf(na), self._leaf(nb)
        up, mid = [sa], []
        groups = self.fab.groups
        chain_b = [self.g.nodes[sb]["group"]]
        while groups[chain_b[-1]].parent is not None:
            chain_b.append(groups[chain_b[-1]].parent)
        if sa != sb:
            grp = self.g.nodes[sa]["group"]
            h = zlib.crc32(f"{ga}>{gb}".encode())
            # climb until a group that is an ancestor of the destination's leaf group (strictly
            # above it when both switches are in the same group): one ECMP-chosen switch per level
            while True:
                grp = groups[grp].parent
                up.append(groups[grp].switches[h % len(groups[grp].switches)])
                if grp in chain_b:
                    break
            for lvl in range(chain_b.index(grp) - 1, 0, -1):  # down through intermediate groups
                sws = groups[chain_b[lvl]].switches
                mid.append(sws[(h >> 8) % len(sws)])
            path = [ga, na, *up, *mid, sb, nb, gb]
        else:
            path = [ga, na, sa, nb, gb]
        return [self._hop(x, y) for x, y in zip(path[:-1], path[1:], strict=True)]


def schedule(fab, gpus: np.ndarray, size: float, params: CollectiveParams, salt: int | None = None):
    """(steps, per-step [(src, dst, bytes, network flow or None)]) of one ring all-reduce; a network
    flow is (channel, levels climbed, up ports, down ports) when ``salt`` asks for ECMP."""
    g, dom = _domains(fab, gpus)
    n, m = len(g), int(dom[-1]) + 1
    steps = 2 * (n - 1)
    per_step = 2.0 * (n - 1) / n * size / steps
    edges = []
    for d in range(m):
        members = g[dom == d]
        if len(members) > 1:
            share = 1.0 if m == 1 else (len(members) - 1) / len(members)
            for i, a in enumerate(members):
                edges.append((int(a), int(members[(i + 1) % len(members)]), per_step * share, None))
    if m >= 2:
        net = fabric_net(fab)
        src, dst = _channel_edges(net, g, dom, m, params)
        chans = len(src) // m
        chan = np.tile(np.arange(chans), m)
        if salt is None:
            edges += [(int(a), int(b), per_step / chans, None) for a, b in zip(src, dst, strict=True)]
        else:
            level, up, down = switch_hops(fab, net, src, dst, (salt, chan))
            edges += [(int(src[i]), int(dst[i]), per_step / chans, (int(chan[i]), int(level[i]), up[i], down[i]))
                      for i in range(len(src))]
    return steps, edges


def run(scenario: dict) -> dict:
    import simgrid as sg

    e = sg.Engine(["simgrid_flows", "--cfg=network/model:CM02", "--cfg=network/TCP-gamma:0",
                   "--cfg=network/crosstraffic:0", "--log=root.thres:critical"])
    fab = build(FabricSpec.model_validate_json(scenario["spec"]))
    params = CollectiveParams(**scenario.get("params", {}))
    zone = Zone(sg, e, "fabric")
    routes = Routes(fab, params, zone)
    jobs = []
    salts = scenario.get("ecmp") or [None] * len(scenario["jobs"])
    for j, (gpus, salt) in enumerate(zip(scenario["jobs"], salts, strict=True)):
        steps, edges = schedule(fab, np.asarray(sorted(gpus), np.int64), scenario["size"], params, salt)
        pairs = []
        for i, (a, b, x, nf) in enumerate(edges):
            if nf is None:
                routes.route(a, b)
                pairs.append((routes.hosts[a], routes.hosts[b], x))
            else:
                pairs.append((*routes.route_ecmp(a, b, f"{j}.{i}", nf[1], nf[2], nf[3]), x))
        jobs.append((steps, pairs))
    zone.seal()
    horizon = scenario["horizon_s"]
    record: list[list[tuple[float, float]]] = [[] for _ in jobs]

    def job_actor(j: int) -> None:
        steps, edges = jobs[j]
        while sg.Engine.clock < horizon:
            t0 = sg.Engine.clock
            for _ in range(steps):
                zone.wait_all([sg.Comm.sendto_async(a, b, max(int(x), 1)) for a, b, x in edges])
            record[j].append((t0, sg.Engine.clock))

    for j, (_, edges) in enumerate(jobs):
        zone.actor(f"job{j}", edges[0][0], job_actor, j)
    e.run()
    stop = min(r[-1][1] for r in record)
    out = []
    for r in record:
        valid = [b - a for a, b in r if b <= stop + 1e-12] or [r[0][1] - r[0][0]]
        out.append(float(np.mean(valid)))
    return {"seconds": out, "iterations": [len(r) for r in record]}


def two_flows(extra_latency_s: float) -> dict:
    """How CM02 shares one link (100 MB/s, 1 µs) between two 100 MB transfers whose routes differ
    only in latency: the second crosses one more link of ``extra_latency_s`` (and huge bandwidth).
    Returns each transfer's duration (s)."""
    import simgrid as sg

    e = sg.Engine(["two_flows", "--cfg=network/model:CM02", "--cfg=network/TCP-gamma:0",
                   "--cfg=network/crosstraffic:0", "--log=root.thres:critical"])
    zone = Zone(sg, e, "two")
    hosts = {n: zone.host(n, 1e9) for n in "abcd"}
    link = zone.link
    shared, near, far = link("shared", 100e6, 1e-6), link("near", 1e12, 1e-6), link("far", 1e12, extra_latency_s)
    for (a, b), other in ((("a", "c"), near), (("b", "d"), far)):
        zone.route(hosts[a], hosts[b], [shared, other])
    zone.seal()
    out: dict[str, float] = {}

    def send(name: str, a: str, b: str) -> None:
        sg.Comm.sendto(hosts[a], hosts[b], 100_000_000)
        out[name] = sg.Engine.clock

    zone.actor("near", hosts["a"], send, "near", "a", "c")
    zone.actor("far", hosts["b"], send, "far", "b", "d")
    e.run()
    return out


if __name__ == "__main__":
    scenario = json.load(sys.stdin)
    json.dump(two_flows(scenario["two_flows"]) if "two_flows" in scenario else run(scenario), sys.stdout)
