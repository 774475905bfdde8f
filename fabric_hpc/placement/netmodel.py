"""The collective model's resources and paths (docs/collective-model.md, "Resources"): each GPU's
NVLink port, each NIC (send and receive), each switch group's uplinks and downlinks, built once per
fabric; the path of a flow over them; GPUs grouped by NVLink domain in ring order. Pure numpy; the
model itself (rings, all-to-all, rates, times) is :mod:`fabric_hpc.placement.collective`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from fabric_hpc.placement.ecmp import Ports, build_ports, flow_keys, route
from fabric_hpc.placement.ringmemo import ring_memo
from fabric_hpc.topology.model import nics_per_gpu
from fabric_hpc.validation import StrictModel

if TYPE_CHECKING:
    from fabric_hpc.topology import Fabric


class NoNetwork(ValueError):
    """Internal: some NVLink domain of the placement has no NIC (the collective cannot run)."""


class CollectiveParams(StrictModel):
    """Calibrated constants (sources in docs/collective-model.md)."""

    #: Share of the NVLink line rate NCCL reaches (370 of 450 GB/s on H100: nccl-tests#212).
    nvlink_eff: float = Field(default=0.82, gt=0, le=1)
    #: Share of a NIC's line rate (46-48 of 50 GB/s for NDR 400G: nccl-tests#290).
    net_eff: float = Field(default=0.94, gt=0, le=1)
    #: NVLink SHARP all-reduce: the share of one direction of a GPU's NVLink that its all-reduce
    #: bytes reach (algbw ≈ 275 of 450 GB/s on 8 H100: nccl-tests#212, nccl#1455).
    nvls_eff_nvlink4: float = Field(default=0.61, gt=0, le=1)
    #: The same on NVLink5 (GB200 NVL72 rack, 72 GPUs: busbw 841 GB/s, coreweave/nccl-tests#43).
    nvls_eff_nvlink5: float = Field(default=0.47, gt=0, le=1)
    #: NCCL's default ceiling on channels (rings) per communicator.
    max_channels: int = Field(default=32, ge=1)


@dataclass(frozen=True)
class Net:
    """Resources of one fabric: capacity (GB/s, line rate) and each GPU's resource ids."""

    cap: np.ndarray  # [R]
    kind: np.ndarray  # [R] 0 NVLink port, 1 NIC, 2 switch uplink/downlink
    nvl: np.ndarray  # [G] NVLink port of each GPU
    nic_tx: np.ndarray  # [G] NIC (tx) each GPU uses (-1: none)
    nic_rx: np.ndarray  # [G]
    nic_key: np.ndarray  # [G] global NIC number (-1: none)
    rail: np.ndarray  # [G] NIC index inside the host (-1: none)
    up: np.ndarray  # [G, L] uplink resource per network level below the meeting level (-1: none)
    down: np.ndarray  # [G, L]
    #: [G] the domain a ring groups each GPU in: its NVLink domain, or its host for a host without
    #: NVLink (PCIe-only: its GPUs reach each other over PCIe, whose rate their ``nvl`` port has)
    ring_dom: np.ndarray

    @property
    def size(self) -> int:
        return len(self.cap)


_NETS: weakref.WeakKeyDictionary[Fabric, Net] = weakref.WeakKeyDictionary()


def fabric_net(fab: Fabric) -> Net:
    """The resources of ``fab`` (built once per fabric)."""
    net = _NETS.get(fab)
    if net is None:
        net = _NETS[fab] = _build_net(fab)
    return net


_PORTS: weakref.WeakKeyDictionary[Fabric, Ports] = weakref.WeakKeyDictionary()


def fabric_ports(fab: Fabric) -> Ports:
    """The resources of ``fab`` with its switch uplinks split into ECMP ports (built once)."""
    ports = _PORTS.get(fab)
    if ports is None:
        ports = _PORTS[fab] = build_ports(fab, fabric_net(fab))
    return ports


def resources(fab: Fabric, ecmp: int | None) -> Net | Ports:
    """The resource space of a collective: ECMP ports when a flow-hash salt is given, else the Net."""
    return fabric_net(fab) if ecmp is None else fabric_ports(fab)


def _build_net(fab: Fabric) -> Net:
    idx = fab.index
    ng = len(fab.gpus)
    caps: list[np.ndarray] = []
    # NVLink figures are both directions together, PCIe's one direction (a PCIe-only GPU's port)
    pcie_only = np.array([fab.host_type(h).nvlink_gbps <= 0 and h not in fab.nvl_domain_of_host
                          for h in fab.hosts], bool)[idx.gpu_host]
    nvl_cap = np.where(idx.gpu_nvl >= 0, idx.nvl_gbps[idx.gpu_nvl].astype(np.float64) / np.where(pcie_only, 1, 2), 0.0)
    caps.append(nvl_cap)
    nvl = np.arange(ng)
    nics = np.array([fab.host_type(h).nics for h in fab.hosts], np.int64)
    off = np.r_[0, np.cumsum(nics)]
    rail = idx.gpu_rail.astype(np.int64)
    nic_key = np.where(rail >= 0, off[idx.gpu_host] + rail, -1)
    # a rail NIC stands for its GPU's share of the host's NICs where there are more NICs than GPUs
    nic_gbps = np.repeat([fab.host_type(h).nic_gbps * nics_per_gpu(fab.host_type(h)) for h in fab.hosts],
                         nics).astype(np.float64)
    base = ng
    nic_tx = np.where(nic_key >= 0, base + nic_key, -1)
    nic_rx = np.where(nic_key >= 0, base + off[-1] + nic_key, -1)
    caps += [nic_gbps, nic_gbps]
    base += 2 * int(off[-1])
    nl = idx.host_path.shape[1]
    up = np.full((ng, nl), -1, np.int64)
    down = np.full((ng, nl), -1, np.int64)
    specs = {g.name: g for g in fab.spec.network.groups} if fab.spec.network else {}
    groups = list(fab.groups)
    # leaf level: one resource per switch (a NIC reaches one switch)
    sw_cap = np.zeros(max(len(fab.switch_ids), 1))
    for g in groups:
        for s in fab.groups[g].switches:
            sw_cap[fab.switch_ids[s]] = specs[g].uplink_gbps or np.inf
    leaf = idx.gpu_leaf_switch.astype(np.int64)
    up[:, 0] = np.where(leaf >= 0, base + leaf, -1)
    down[:, 0] = np.where(leaf >= 0, base + len(sw_cap) + leaf, -1)
    caps += [sw_cap, sw_cap]
    base += 2 * len(sw_cap)
    # higher levels: one resource per group (its switches' uplinks together)
    g_cap = np.array([(specs[g].uplink_gbps or np.inf) * specs[g].switches for g in groups] or [np.inf])
    path = idx.host_path[idx.gpu_host].astype(np.int64)  # [G, L]
    for lv in range(1, nl):
        up[:, lv] = np.where(path[:, lv] >= 0, base + path[:, lv], -1)
        down[:, lv] = np.where(path[:, lv] >= 0, base + len(g_cap) + path[:, lv], -1)
    caps += [g_cap, g_cap]
    cap = np.concatenate(caps)
    kind = np.full(len(cap), 2, np.int8)
    kind[:ng] = 0
    kind[ng:ng + 2 * int(off[-1])] = 1
    return Net(cap, kind, nvl, nic_tx, nic_rx, nic_key, rail, up, down, _ring_domains(fab, pcie_only))


def _ring_domains(fab: Fabric, pcie_only: np.ndarray) -> np.ndarray:
    """:attr:`Net.ring_dom`: ``gpu_nvl``, except that the GPUs of a PCIe-only host (each its own
    NVLink domain in the index) share the id of the host's first GPU."""
    idx = fab.index
    first = np.full(len(fab.hosts), np.iinfo(np.int64).max)
    np.minimum.at(first, idx.gpu_host, idx.gpu_nvl.astype(np.int64))
    return np.where(pcie_only, first[idx.gpu_host], idx.gpu_nvl).astype(np.int64)


# -- flows -----------------------------------------------------------------------------------------
def switch_hops(fab: Fabric, net: Net, src: np.ndarray, dst: np.ndarray, ecmp: tuple[int, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(levels climbed, up, down) of network flows src[i] -> dst[i]: ``up[i, lv]`` / ``down[i, lv]``
    the switch resource (or, with ``ecmp``, the hashed port) crossed at level lv, -1 none."""
    idx = fab.index
    level = idx.meet_level(src, dst)
    same_sw = (idx.gpu_leaf_switch[src] == idx.gpu_leaf_switch[dst]) & (idx.gpu_leaf_switch[src] >= 0)
    level = np.where(same_sw, 0, np.maximum(level, 1))
    use = np.arange(net.up.shape[1])[None, :] < level[:, None]
    up, down = np.where(use, net.up[src], -1), np.where(use, net.down[dst], -1)
    if ecmp is not None:
        up, down = route(fabric_ports(fab), up, down, level, flow_keys(src, dst, ecmp[0], ecmp[1]))
    return level, up, down


def _paths(fab: Fabric, net: Net, src: np.ndarray, dst: np.ndarray,
           ecmp: tuple[int, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flow index, resource) pairs and latency (µs) of network flows src[i] -> dst[i] (GPU indices).
    ``ecmp``: (job salt, channel of each flow): each switch hop takes one hashed port (ecmp.route)."""
    _, up, down = switch_hops(fab, net, src, dst, ecmp)
    res = np.concatenate([net.nic_tx[src][:, None], net.nic_rx[dst][:, None], up, down], axis=1)
    flow = np.repeat(np.arange(len(src)), res.shape[1])
    res = res.ravel()
    ok = res >= 0
    _, _, lat = fab.index.pair(src, dst)
    return flow[ok], res[ok], lat


def _domains(fab: Fabric, gpus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GPUs in ring order (domains in topology order, local index inside) and each one's domain rank
    (remembered per fabric, :mod:`~fabric_hpc.placement.ringmemo`; the arrays are read-only)."""
    gpus = np.asarray(gpus)
    return ring_memo(fab).get(("domains", gpus.dtype.str, gpus.tobytes()),
                              lambda: _read_only(*_domains_plain(fab, gpus)))


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _domains_plain(fab: Fabric, gpus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_domains` computed (no memo)."""
    from fabric_hpc.placement.levels import fabric_levels

    idx = fab.index
    lv = fabric_levels(fab)
    host = idx.gpu_host[gpus]
    keys = [idx.gpu_local[gpus], host, *[lv.host_dom[host, j] for j in range(lv.host_dom.shape[1])][::-1]]
    order = np.lexsort((keys[0], keys[1], *keys[2:][::-1]))  # top level first, then host, local index
    g = gpus[order]
    nvl = fabric_net(fab).ring_dom[g]
    change = np.r_[True, nvl[1:] != nvl[:-1]]
    return g, np.cumsum(change) - 1


def mesh_factor(fab: Fabric, g: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per GPU: its NVLink port's capacity over what a collective among ``k`` GPUs of its domain can
    use (1 on an NVSwitch). In a direct NVLink mesh (no NVSwitch) a GPU reaches each peer over its
    own links only, ``nvlink / (G-1)``, so ``k`` GPUs of a ``G``-GPU mesh use ``(k-1)/(G-1)`` of it:
    the factor is ``(G-1)/(k-1)`` (2 of 4 A100s: 3x slower than all 4)."""
    idx = fab.index
    d = idx.gpu_nvl[g]
    full = idx.nvl_gbps[d].astype(np.float64)
    pair = idx.nvl_pair_gbps[d].astype(np.float64)
    usable = np.minimum(full, pair * np.maximum(k - 1, 1))
    return np.where((d >= 0) & (usable > 0), full / np.where(usable > 0, usable, 1.0), 1.0)
