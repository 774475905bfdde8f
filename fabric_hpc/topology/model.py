"""The fabric model: a networkx graph of hosts, GPUs, NVSwitches, sockets, NICs and switches,
built from a :class:`~fabric_hpc.topology.spec.FabricSpec`, with a :class:`FabricIndex` for
O(1) distance queries.

Vertex ids are strings: ``<host>`` (kind host), ``<host>/gpu<i>``, ``<host>/numa<s>``,
``<host>/nic<i>``, ``<host>/nvsw<k>``, ``<domain>/nvsw<k>`` and ``nvl:<domain>`` (kind
nvldomain), and switch names (kind switch, attribute ``level``). Every edge carries ``kind``
(contains, pcie, nvlink, network), ``bandwidth_gbps`` (GB/s) and ``latency_us``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import networkx as nx
import numpy as np

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.topology.index import Distance, FabricIndex
from fabric_hpc.topology.spec import FabricSpec, HostType
from fabric_hpc.topology.spec_check import check_spec, switch_names

KINDS = ("host", "gpu", "nvswitch", "nvldomain", "socket", "nic", "switch")


@dataclass(frozen=True)
class GpuInfo:
    id: str
    host: str
    index: int
    model: str
    memory_gb: float
    numa: int
    rail: int
    nvlink_domain: str | None  # None: a PCIe-only GPU, in no NVLink domain


@dataclass(frozen=True)
class Group:
    name: str
    level: str
    switches: tuple[str, ...]
    parent: str | None
    hosts: tuple[str, ...] = field(default=())


def gpu_numa_of(ht: HostType) -> list[int]:
    if ht.gpu_numa is not None:
        return list(ht.gpu_numa)
    return [i * ht.sockets // ht.gpus for i in range(ht.gpus)] if ht.gpus else []


def rail_of(ht: HostType, gpu: int) -> int:
    """The NIC (rail) a GPU's traffic is modelled on; with more NICs than GPUs, the first of its
    share of them (:func:`nics_per_gpu`)."""
    return gpu * ht.nics // ht.gpus if ht.nics and ht.gpus else -1


def nics_per_gpu(ht: HostType) -> float:
    """How many NICs' bandwidth a GPU's rail NIC stands for: ``nics / gpus`` where a host has more
    NICs than GPUs (AWS p5: 32 for 8 GPUs, 4 each; NCCL spreads a GPU's channels over its nearest
    NICs), else 1 (GPUs share a NIC)."""
    return max(ht.nics / ht.gpus, 1.0) if ht.nics and ht.gpus else 1.0


class Fabric:
    """A built fabric: ``graph`` (networkx), ``index`` (coordinates) and the source ``spec``."""

    def __init__(self, spec: FabricSpec, *, source: str = "<fabric>") -> None:
        if not isinstance(spec, FabricSpec):
            raise ConfigError(f"Fabric() takes a FabricSpec, got {type(spec).__name__}",
                              hint="open_fabric('superpod:sus=4' or a YAML path), or build(spec or mapping)")
        self.spec = spec
        self.host_type_of = check_spec(spec, source=source)
        self.hosts: list[str] = list(self.host_type_of)
        self.host_pos = {h: i for i, h in enumerate(self.hosts)}
        self.rack_of = {h: e.rack for e in spec.hosts for h in _expand(e.names) if e.rack}
        self.nvl_domain_of_host = {h: d.name for d in spec.nvlink_domains for h in _expand(d.hosts)}
        self.groups: dict[str, Group] = self._groups()
        self.graph = nx.Graph(name=spec.name)
        self.gpus: list[str] = []
        self._build()
        self.gpu_pos = {g: i for i, g in enumerate(self.gpus)}
        self.index = self._make_index()

    # -- queries ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def levels(self) -> list[str]:
        return list(self.spec.network.levels) if self.spec.network else []

    def host_type(self, host: str) -> HostType:
        return self.spec.host_types[self.host_type_of[self._host(host)]]

    def host_gpus(self, host: str) -> list[str]:
        return [f"{host}/gpu{i}" for i in range(self.host_type(host).gpus)]

    def gpu(self, gpu: str | int) -> GpuInfo:
        gid = self._gpu(gpu)
        attrs = self.graph.nodes[self.gpus[gid]]
        return GpuInfo(self.gpus[gid], attrs["host"], attrs["index"], attrs["model"], attrs["memory_gb"],
                       attrs["numa"], attrs["rail"], attrs["nvlink_domain"])

    def nvlink_domain_of(self, host: str) -> str | None:
        """A host's NVLink domain: its shared one (``nvlink_domains``), the host itself when its GPUs
        have NVLink (``nvlink_gbps`` > 0), else None: a PCIe-only host (or one without GPUs) is in no
        NVLink domain (docs/topology.md, "NVLink domains")."""
        host = self._host(host)
        shared = self.nvl_domain_of_host.get(host)
        if shared is not None:
            return shared
        ht = self.host_type(host)
        return host if ht.nvlink_gbps > 0 and ht.gpus > 0 else None

    def domains(self, host: str) -> list[tuple[str, str]]:
        """The domain hierarchy of a host, bottom up: NVLink domain (none for a PCIe-only host), rack,
        then network groups."""
        host = self._host(host)
        nvl = self.nvlink_domain_of(host)
        out = [("nvlink", nvl)] if nvl is not None else []
        if host in self.rack_of:
            out.append(("rack", self.rack_of[host]))
        name = self._leaf_group_of.get(host)
        while name is not None:
            out.append((self.groups[name].level, name))
            name = self.groups[name].parent
        return out

    def distance(self, a: str | int, b: str | int) -> Distance:
        """Hops, bottleneck bandwidth (GB/s) and latency between two GPUs, in O(1)."""
        return self.index.distance(self._gpu(a), self._gpu(b))

    def rollup(self, free: np.ndarray | Iterable[bool]) -> dict[str, dict[str, int]]:
        """Free GPUs per host, NVLink domain (PCIe-only GPUs are in none) and network group, from a
        free mask over GPUs."""
        if not isinstance(free, (np.ndarray, Iterable)):
            raise ConfigError(f"rollup takes a free mask over the fabric's GPUs, got {type(free).__name__}",
                              hint=f"a sequence of {len(self.gpus)} booleans, one per GPU in fab.gpus order")
        mask = np.asarray(list(free) if not isinstance(free, np.ndarray) else free)
        if mask.shape != (len(self.gpus),):
            raise ConfigError(f"rollup: the free mask has shape {mask.shape}, "
                              f"the fabric has {len(self.gpus)} GPUs",
                              hint="one boolean per GPU, in fab.gpus order (e.g. ClusterState.owner == -1)")
        raw = self.index.rollup(mask)
        real = self._nvl_real()
        out = {"host": dict(zip(self.hosts, raw["host"].tolist(), strict=True)),
               "nvlink": {n: c for n, c in zip(self._nvl_names, raw["nvlink"].tolist(), strict=True)
                          if n in real}}
        for level in self.levels:
            counts = raw[level]
            out[level] = {g: int(counts[self._group_ids[g]]) for g in self.groups
                          if self.groups[g].level == level}
        return out

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, int] = {k: 0 for k in KINDS}
        for _, kind in self.graph.nodes(data="kind"):
            kinds[kind] += 1
        models: dict[str, int] = {}
        for h in self.hosts:
            ht = self.host_type(h)
            if ht.gpus:  # a host without GPUs (gpu_model: none) adds no model
                models[ht.gpu_model] = models.get(ht.gpu_model, 0) + ht.gpus
        return {"name": self.name, "hosts": len(self.hosts), "gpus": len(self.gpus),
                "gpu_models": models, "levels": self.levels,
                "groups_per_level": {lv: sum(g.level == lv for g in self.groups.values()) for lv in self.levels},
                "nvlink_domains": len(self._nvl_real()),
                "pcie_only_hosts": sum(self.host_type(h).gpus > 0 and self.nvlink_domain_of(h) is None
                                       for h in self.hosts),
                "vertices": kinds,
                "edges": self.graph.number_of_edges()}

    def _nvl_real(self) -> set[str]:
        """The names of the fabric's NVLink domains (:meth:`nvlink_domain_of` of every host)."""
        return {d for d in map(self.nvlink_domain_of, self.hosts) if d is not None}

    # -- construction ----------------------------------------------------------------------
    def _host(self, host: str) -> str:
        if host not in self.host_pos:
            raise NotFoundError(f"no host {host!r} in fabric {self.name!r}",
                                hint=f"hosts are {self.hosts[0]} … {self.hosts[-1]}")
        return host

    def _gpu(self, gpu: str | int) -> int:
        if isinstance(gpu, (int, np.integer)):
            if not 0 <= gpu < len(self.gpus):
                raise NotFoundError(f"GPU index {gpu} out of range 0..{len(self.gpus) - 1}")
            return int(gpu)
        if gpu not in self.gpu_pos:
            raise NotFoundError(f"no GPU {gpu!r} in fabric {self.name!r}", hint="GPU ids look like <host>/gpu<i>")
        return self.gpu_pos[gpu]

    def _groups(self) -> dict[str, Group]:
        net = self.spec.network
        if net is None:
            self._leaf_group_of: dict[str, str] = {}
            return {}
        parent = {c: g.name for g in net.groups for c in g.children}
        groups = {g.name: Group(g.name, g.level, tuple(switch_names(g.name, g.switches)), parent.get(g.name),
                                tuple(_expand(g.hosts)) if g.hosts else ()) for g in net.groups}
        self._leaf_group_of = {h: g.name for g in groups.values() for h in g.hosts}
        return groups

    def _build(self) -> None:
        nodes: list[tuple[str, dict[str, Any]]] = []
        edges: list[tuple[str, str, dict[str, Any]]] = []
        for host in self.hosts:
            self._build_host(host, nodes, edges)
        for dom in self.spec.nvlink_domains:
            nodes.append((f"nvl:{dom.name}", {"kind": "nvldomain", "hosts": len(_expand(dom.hosts))}))
            per_link = dom.gbps / dom.nvswitches
            for k in range(dom.nvswitches):
                sw = f"{dom.name}/nvsw{k}"
                nodes.append((sw, {"kind": "nvswitch", "domain": dom.name}))
                edges.append((f"nvl:{dom.name}", sw, _edge("contains", float("inf"), 0.0)))
                for host in _expand(dom.hosts):
                    for gpu in self.host_gpus(host):
                        edges.append((gpu, sw, _edge("nvlink", per_link, 0.25)))
        self._build_network(nodes, edges)
        self.graph.add_nodes_from(nodes)
        self.graph.add_edges_from(edges)

    def _build_host(self, host: str, nodes: list, edges: list) -> None:
        ht = self.host_type(host)
        numa = gpu_numa_of(ht)
        domain = self.nvlink_domain_of(host)
        nodes.append((host, {"kind": "host", "type": self.host_type_of[host], "rack": self.rack_of.get(host),
                             "features": list(ht.features)}))
        for s in range(ht.sockets):
            sock = f"{host}/numa{s}"
            nodes.append((sock, {"kind": "socket", "host": host, "index": s, "cores": ht.cores_per_socket}))
            edges.append((host, sock, _edge("contains", float("inf"), 0.0)))
            if s:
                edges.append((f"{host}/numa0", sock, _edge("pcie", ht.pcie_gbps, 1.0)))
        for i in range(ht.gpus):
            gpu = f"{host}/gpu{i}"
            self.gpus.append(gpu)
            nodes.append((gpu, {"kind": "gpu", "host": host, "index": i, "model": ht.gpu_model,
                                "memory_gb": ht.gpu_memory_gb, "numa": numa[i], "rail": rail_of(ht, i),
                                "nvlink_domain": domain}))
            edges.append((gpu, f"{host}/numa{numa[i]}", _edge("pcie", ht.pcie_gbps, 1.0)))
            for k in range(ht.nvswitches):
                edges.append((gpu, f"{host}/nvsw{k}", _edge("nvlink", ht.nvlink_gbps / ht.nvswitches, 0.25)))
        if ht.nvlink_gbps > 0 and ht.nvswitches == 0 and host not in self.nvl_domain_of_host:
            for i in range(ht.gpus):  # direct NVLink mesh between the host's GPUs
                for j in range(i + 1, ht.gpus):
                    edges.append((f"{host}/gpu{i}", f"{host}/gpu{j}",
                                  _edge("nvlink", ht.nvlink_gbps / max(ht.gpus - 1, 1), 0.25)))
        for k in range(ht.nvswitches):
            nodes.append((f"{host}/nvsw{k}", {"kind": "nvswitch", "host": host, "domain": host}))
        for n in range(ht.nics):
            nic = f"{host}/nic{n}"
            gpus_on_rail = [i for i in range(ht.gpus) if rail_of(ht, i) == n]
            sock = numa[gpus_on_rail[0]] if gpus_on_rail else 0
            nodes.append((nic, {"kind": "nic", "host": host, "index": n, "rail": n, "numa": sock,
                                "gbps": ht.nic_gbps}))
            edges.append((nic, f"{host}/numa{sock}", _edge("pcie", ht.pcie_gbps, 1.0)))
            for i in gpus_on_rail:
                edges.append((f"{host}/gpu{i}", nic, _edge("pcie", ht.pcie_gbps, 0.5)))

    def _build_network(self, nodes: list, edges: list) -> None:
        net = self.spec.network
        if net is None:
            return
        specs = {g.name: g for g in net.groups}
        for g in self.groups.values():
            spec = specs[g.name]
            for k, sw in enumerate(g.switches):
                nodes.append((sw, {"kind": "switch", "level": g.level, "group": g.name, "index": k,
                                   "latency_us": spec.latency_us}))
            for host in g.hosts:
                ht = self.host_type(host)
                for n in range(ht.nics):
                    edges.append((f"{host}/nic{n}", g.switches[n % len(g.switches)],
                                  _edge("network", ht.nic_gbps, spec.latency_us)))
            if g.parent is not None:
                up = self.groups[g.parent].switches
                per_link = (spec.uplink_gbps or 0.0) / len(up)
                for sw in g.switches:
                    for psw in up:
                        edges.append((sw, psw, _edge("network", per_link, spec.latency_us)))

    def _make_index(self) -> FabricIndex:
        from fabric_hpc.topology._indexing import make_index

        index, self._nvl_names, self._group_ids = make_index(self)
        return index

    def idle_switches(self) -> dict[str, int]:
        """Per leaf group, how many of its switches no NIC is cabled to (NIC n goes to switch n mod
        switches, so a group with more switches than its hosts have NICs leaves the last ones idle)."""
        idle = {}
        for g in self.groups.values():
            if g.hosts:
                used = min(len(g.switches), max(self.host_type(h).nics for h in g.hosts))
                if used < len(g.switches):
                    idle[g.name] = len(g.switches) - used
        return idle

    @cached_property
    def switch_ids(self) -> dict[str, int]:
        return {sw: i for i, sw in enumerate(s for g in self.groups.values() for s in g.switches)}


def _edge(kind: str, gbps: float, latency_us: float) -> dict[str, Any]:
    return {"kind": kind, "bandwidth_gbps": gbps, "latency_us": latency_us}


def _expand(expr: str) -> list[str]:
    from fabric_hpc.hostlist import expand

    return expand(expr)
