"""O(1) distance queries over a fabric: hierarchical coordinates, not all-pairs shortest paths.

Every GPU gets integer coordinates (host, NVLink domain, socket, rail, leaf switch) and every host
a path of group ids, one per network level. Two GPUs meet at the lowest level where their paths
agree; bandwidth and hop count follow from that level alone. All queries take scalars or numpy
arrays of GPU ids (vectorised), so placement can score thousands of pairs at once.

Model (documented in docs/topology.md):
- same NVLink domain: 1 hop (NVSwitch), bandwidth = the domain's per-GPU NVLink bandwidth, or in a
  host whose GPUs are linked directly (no NVSwitch) the direct link's: NVLink / (GPUs - 1);
- same host, no shared NVLink: PCIe through the CPU (1 hop same socket, 2 across sockets);
- same leaf switch (same rail): 1 switch hop, bandwidth = min of the two NICs;
- otherwise up to the lowest common level L (1-based): 2L+1 switch hops (leaf-spine-leaf = 3),
  bandwidth = min(NICs, per-GPU uplink share of every group crossed below L).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOP_NVLINK = 1


@dataclass(frozen=True)
class Distance:
    hops: int
    bandwidth_gbps: float
    latency_us: float
    level: str  # "self", "nvlink", "host", or the network level where the paths meet


@dataclass(eq=False)
class FabricIndex:
    """Numpy coordinates of every GPU and host (indices follow ``Fabric.gpus``/``Fabric.hosts``)."""

    levels: list[str]  # network levels, bottom to top
    gpu_host: np.ndarray  # int32 [G]
    gpu_local: np.ndarray  # int16 [G] index inside the host
    gpu_numa: np.ndarray  # int16 [G]
    gpu_rail: np.ndarray  # int16 [G] NIC index used by the GPU (-1: none)
    gpu_nvl: np.ndarray  # int32 [G] NVLink domain id (unique per GPU when it has no NVLink)
    gpu_leaf_switch: np.ndarray  # int32 [G] global id of the leaf switch its NIC reaches (-1)
    gpu_nic_gbps: np.ndarray  # float32 [G]
    host_path: np.ndarray  # int32 [H, L] group id per level (-1 if no network)
    host_pcie_gbps: np.ndarray  # float32 [H]
    nvl_gbps: np.ndarray  # float32 [D]
    group_share_gbps: np.ndarray  # float32 [groups]: per-GPU bandwidth leaving the group upward
    group_latency_us: np.ndarray  # float32 [groups]
    nvlink_latency_us: float = 0.5
    pcie_latency_us: float = 1.0
    #: float32 [D]: NVLink bandwidth between two GPUs of the domain: ``nvl_gbps`` through NVSwitches,
    #: one GPU's share to each peer in a direct mesh (``nvl_gbps / (GPUs - 1)``); default nvl_gbps
    nvl_pair_gbps: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.nvl_pair_gbps is None:
            self.nvl_pair_gbps = self.nvl_gbps

    @property
    def num_gpus(self) -> int:
        return int(self.gpu_host.shape[0])

    def meet_level(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Index of the lowest network level where hosts of GPUs a and b share a group (or L)."""
        pa, pb = self.host_path[self.gpu_host[a]], self.host_path[self.gpu_host[b]]
        same = pa == pb
        # first level where the paths agree; they agree from there upwards (tree)
        level = np.where(same.any(axis=-1), np.argmax(same, axis=-1), len(self.levels))
        return level

    def pair(self, a: np.ndarray | int, b: np.ndarray | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hops, bandwidth GB/s, latency µs) between GPUs a and b; vectorised."""
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        a, b = np.broadcast_arrays(a, b)
        hops = np.zeros(a.shape, dtype=np.int32)
        bw = np.full(a.shape, np.inf, dtype=np.float64)
        lat = np.zeros(a.shape, dtype=np.float64)

        same_nvl = (self.gpu_nvl[a] == self.gpu_nvl[b]) & (a != b)
        same_host = (self.gpu_host[a] == self.gpu_host[b]) & ~same_nvl & (a != b)
        net = (self.gpu_host[a] != self.gpu_host[b]) & ~same_nvl

        hops[same_nvl] = HOP_NVLINK
        bw[same_nvl] = self.nvl_pair_gbps[self.gpu_nvl[a[same_nvl]]]
        lat[same_nvl] = self.nvlink_latency_us

        cross_socket = self.gpu_numa[a] != self.gpu_numa[b]
        hops[same_host] = np.where(cross_socket[same_host], 2, 1)
        bw[same_host] = self.host_pcie_gbps[self.gpu_host[a[same_host]]]
        lat[same_host] = self.pcie_latency_us * hops[same_host]

        if net.any():
            self._network_pairs(a[net], b[net], hops, bw, lat, net)
        return hops, bw, lat

    def _network_pairs(self, a, b, hops, bw, lat, mask) -> None:
        nlev = len(self.levels)
        level = self.meet_level(a, b)
        same_switch = (self.gpu_leaf_switch[a] == self.gpu_leaf_switch[b]) & (self.gpu_leaf_switch[a] >= 0)
        # cross-rail inside one leaf group goes up one level
        level = np.where((level == 0) & ~same_switch, 1, level)
        h = np.where(same_switch, 1, 2 * np.minimum(level, nlev) + 1)
        b_nic = np.minimum(self.gpu_nic_gbps[a], self.gpu_nic_gbps[b]).astype(np.float64)
        pa, pb = self.host_path[self.gpu_host[a]], self.host_path[self.gpu_host[b]]
        share = b_nic.copy()
        latency = np.zeros(a.shape, dtype=np.float64)
        for lv in range(nlev):
            crossing = lv < level  # groups below the meeting level are left through their uplinks
            ga, gb = pa[:, lv], pb[:, lv]
            share = np.where(crossing, np.minimum(share, np.minimum(self.group_share_gbps[ga],
                                                                     self.group_share_gbps[gb])), share)
            latency += np.where(crossing, self.group_latency_us[ga] + self.group_latency_us[gb], 0.0)
        top = np.clip(level, 0, nlev - 1)
        latency += self.group_latency_us[pa[np.arange(len(a)), top]]
        hops[mask] = h
        bw[mask] = share
        lat[mask] = latency + 2 * self.pcie_latency_us

    def distance(self, a: int, b: int) -> Distance:
        hops, bw, lat = self.pair(a, b)
        if a == b:
            level = "self"
        elif self.gpu_nvl[a] == self.gpu_nvl[b]:
            level = "nvlink"
        elif self.gpu_host[a] == self.gpu_host[b]:
            level = "host"
        else:
            lv = int(self.meet_level(np.array([a]), np.array([b]))[0])
            same_switch = self.gpu_leaf_switch[a] == self.gpu_leaf_switch[b]
            lv = max(lv, 0 if same_switch else 1)
            level = self.levels[min(lv, len(self.levels) - 1)] if lv < len(self.levels) else "disconnected"
        # float32 tables: rounded to what they hold (3.8 µs, not 3.8000000715255737)
        return Distance(int(hops), round(float(bw), 3), round(float(lat), 4), level)

    def rollup(self, free: np.ndarray) -> dict[str, np.ndarray]:
        """Free-GPU counts per host, NVLink domain and network group, from a bool mask [G]."""
        free = np.asarray(free, dtype=bool)
        w = free.astype(np.int64)
        per_host = np.bincount(self.gpu_host, weights=w, minlength=self.host_path.shape[0]).astype(np.int64)
        out = {"host": per_host,
               "nvlink": np.bincount(self.gpu_nvl, weights=w, minlength=len(self.nvl_gbps)).astype(np.int64)}
        ngroups = len(self.group_share_gbps)
        for lv, name in enumerate(self.levels):
            ids = self.host_path[:, lv]
            ok = ids >= 0
            out[name] = np.bincount(ids[ok], weights=per_host[ok], minlength=ngroups).astype(np.int64)
        return out
