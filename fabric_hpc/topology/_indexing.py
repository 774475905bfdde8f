"""Builds the :class:`FabricIndex` arrays of a :class:`Fabric` (one pass over hosts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fabric_hpc.topology.index import FabricIndex

if TYPE_CHECKING:
    from fabric_hpc.topology.model import Fabric


def make_index(fab: Fabric) -> tuple[FabricIndex, list[str], dict[str, int]]:
    from fabric_hpc.topology.model import gpu_numa_of, nics_per_gpu, rail_of

    levels = fab.levels
    group_names = list(fab.groups)
    group_ids = {g: i for i, g in enumerate(group_names)}
    nh, ng = len(fab.hosts), len(fab.gpus)
    gpu_host = np.empty(ng, np.int32)
    gpu_local = np.empty(ng, np.int16)
    gpu_numa = np.empty(ng, np.int16)
    gpu_rail = np.empty(ng, np.int16)
    gpu_nvl = np.empty(ng, np.int32)
    gpu_leaf = np.full(ng, -1, np.int32)
    gpu_nic = np.zeros(ng, np.float32)
    host_path = np.full((nh, max(len(levels), 1)), -1, np.int32)
    host_pcie = np.empty(nh, np.float32)
    nvl_names: list[str] = []
    nvl_ids: dict[str, int] = {}
    nvl_gbps: list[float] = []
    nvl_pair: list[float] = []  # between two GPUs of the domain (a direct mesh: one link's share)
    domain_gbps = {d.name: d.gbps for d in fab.spec.nvlink_domains}
    level_pos = {lv: i for i, lv in enumerate(levels)}
    switch_ids = fab.switch_ids

    g = 0
    for h, host in enumerate(fab.hosts):
        ht = fab.host_type(host)
        host_pcie[h] = ht.pcie_gbps
        name = fab._leaf_group_of.get(host)
        leaf_switches = fab.groups[name].switches if name else ()
        while name is not None:
            host_path[h, level_pos[fab.groups[name].level]] = group_ids[name]
            name = fab.groups[name].parent
        numa = gpu_numa_of(ht)
        shared = fab.nvl_domain_of_host.get(host)
        for i in range(ht.gpus):
            dom = shared or (host if ht.nvlink_gbps > 0 else f"{host}/gpu{i}")
            if dom not in nvl_ids:
                nvl_ids[dom] = len(nvl_names)
                nvl_names.append(dom)
                nvl_gbps.append(domain_gbps[dom] if shared else (ht.nvlink_gbps or ht.pcie_gbps))
                mesh = not shared and ht.nvlink_gbps > 0 and ht.nvswitches == 0 and ht.gpus > 1
                nvl_pair.append(nvl_gbps[-1] / (ht.gpus - 1) if mesh else nvl_gbps[-1])
            rail = rail_of(ht, i)
            gpu_host[g], gpu_local[g], gpu_numa[g], gpu_rail[g] = h, i, numa[i], rail
            gpu_nvl[g] = nvl_ids[dom]
            if leaf_switches and rail >= 0:
                gpu_leaf[g] = switch_ids[leaf_switches[rail % len(leaf_switches)]]
            gpu_nic[g] = ht.nic_gbps * nics_per_gpu(ht)  # a GPU's share of the host's NICs together
            g += 1

    share, latency = _group_shares(fab, group_names)
    index = FabricIndex(levels=levels or ["none"], gpu_host=gpu_host, gpu_local=gpu_local, gpu_numa=gpu_numa,
                        gpu_rail=gpu_rail, gpu_nvl=gpu_nvl, gpu_leaf_switch=gpu_leaf, gpu_nic_gbps=gpu_nic,
                        host_path=host_path, host_pcie_gbps=host_pcie,
                        nvl_gbps=np.asarray(nvl_gbps, np.float32),
                        nvl_pair_gbps=np.asarray(nvl_pair, np.float32),
                        group_share_gbps=share, group_latency_us=latency)
    return index, nvl_names, group_ids


def _group_shares(fab: Fabric, group_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-NIC share of each group's uplink capacity (inf at the top) and switch latency."""
    specs = {g.name: g for g in fab.spec.network.groups} if fab.spec.network else {}
    nics_below: dict[str, int] = {g: 0 for g in group_names}
    for name in group_names:
        grp = fab.groups[name]
        count = sum(fab.host_type(h).nics for h in grp.hosts)
        node = name
        while node is not None:
            nics_below[node] += count
            node = fab.groups[node].parent
    share = np.full(max(len(group_names), 1), np.inf, np.float32)
    latency = np.zeros(max(len(group_names), 1), np.float32)
    idle = fab.idle_switches()  # a leaf switch without NICs carries no traffic up
    for i, name in enumerate(group_names):
        spec = specs[name]
        latency[i] = spec.latency_us
        if spec.uplink_gbps is not None and nics_below[name]:
            share[i] = (spec.switches - idle.get(name, 0)) * spec.uplink_gbps / nics_below[name]
    return share, latency
