"""Domain levels of a fabric as placement sees them, computed once per fabric and cached.

The *chain* is ``["host", <domain levels>...]`` bottom-up: NVLink domain, rack, then the network
levels, with levels that partition the hosts exactly like the level below dropped (on a DGX the
NVLink domain is the host; on an NVL72 the rack is the NVLink domain). Dropped names stay valid
as aliases. ``host_dom[h, j]`` is a dense domain id of host ``h`` at chain level ``j``.

For the cost model each chain level ``j`` also gets a *tier*: the bandwidth and latency of a ring
edge between two hosts that differ at level ``j`` but share level ``j+1`` (same local GPU index,
so rail-matched), probed with ``fab.index.pair``; tier ``-1`` is two GPUs of one host.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import Fabric


@dataclass(frozen=True)
class FabricLevels:
    chain: list[str]  # "host" first
    host_dom: np.ndarray  # int64 [H, len(chain)]
    dom_names: list[list[str]]  # per chain level
    alias: dict[str, int]  # accepted level name -> chain index
    tier_bw: np.ndarray  # GB/s per chain level (index j), plus intra-host at [-1]
    tier_lat: np.ndarray  # µs, same layout
    host_gpus: np.ndarray  # GPUs per host
    first_gpu: np.ndarray  # global index of each host's GPU 0 (-1: none)

    def level(self, name: str) -> int:
        if name not in self.alias:
            raise ConfigError(f"unknown level {name!r}", hint=f"levels of this fabric: {', '.join(self.alias)}")
        return self.alias[name]


_CACHE: weakref.WeakKeyDictionary[Fabric, FabricLevels] = weakref.WeakKeyDictionary()


def fabric_levels(fab: Fabric) -> FabricLevels:
    if fab not in _CACHE:
        _CACHE[fab] = _build(fab)
    return _CACHE[fab]


def _candidates(fab: Fabric) -> list[tuple[str, np.ndarray, list[str]]]:
    nh = len(fab.hosts)
    idx = fab.index
    first = _first_gpu(fab)
    nvl_raw = np.where(first >= 0, idx.gpu_nvl[np.maximum(first, 0)], -1 - np.arange(nh))
    cands: list[tuple[str, np.ndarray, list[str] | None]] = [("nvlink", nvl_raw, None)]
    if fab.rack_of:
        racks = [fab.rack_of.get(h, f"~{h}") for h in fab.hosts]
        cands.append(("rack", np.unique(racks, return_inverse=True)[1], None))
    group_names = list(fab.groups)
    for lv, name in enumerate(fab.levels):
        ids = idx.host_path[:, lv].astype(np.int64)
        if (ids >= 0).any():
            cands.append((name, np.where(ids >= 0, ids, -1 - np.arange(nh)), group_names))
    return cands


def _first_gpu(fab: Fabric) -> np.ndarray:
    first = np.full(len(fab.hosts), -1, np.int64)
    first[fab.index.gpu_host[::-1]] = np.arange(len(fab.gpus))[::-1]
    return first


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def _build(fab: Fabric) -> FabricLevels:
    nh = len(fab.hosts)
    idx = fab.index
    host_gpus = np.bincount(idx.gpu_host, minlength=nh)
    first = _first_gpu(fab)
    chain, cols, names = ["host"], [np.arange(nh)], [list(fab.hosts)]
    alias = {"host": 0}
    for name, raw, labels in _candidates(fab):
        if _same_partition(raw, cols[-1]):
            alias[name] = len(chain) - 1
            continue
        uniq, dense = np.unique(raw, return_inverse=True)
        chain.append(name)
        cols.append(dense)
        names.append([_label(fab, name, int(u), labels) for u in uniq])
        alias[name] = len(chain) - 1
    host_dom = np.stack(cols, axis=1).astype(np.int64)
    bw, lat = _tiers(fab, host_dom, first)
    return FabricLevels(chain, host_dom, names, alias, bw, lat, host_gpus, first)


def _label(fab: Fabric, level: str, raw: int, labels: list[str] | None) -> str:
    if raw < 0:
        return fab.hosts[-1 - raw]
    if level == "nvlink":
        return fab._nvl_names[raw]
    if level == "rack":
        racks = sorted({fab.rack_of.get(h, f"~{h}") for h in fab.hosts})
        return racks[raw]
    return labels[raw] if labels else str(raw)


def _tiers(fab: Fabric, host_dom: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bandwidth, latency) per chain level j (ring edge crossing level j), intra-host at [-1]."""
    nl = host_dom.shape[1]
    bw = np.full(nl + 1, np.nan)
    lat = np.full(nl + 1, np.nan)
    two = np.flatnonzero(np.bincount(fab.index.gpu_host, minlength=len(fab.hosts)) >= 2)
    if two.size:
        h = int(two[0])
        _, b, t = fab.index.pair(first[h], first[h] + 1)
        bw[-1], lat[-1] = float(b), float(t)
    for j in range(nl):
        pair = _probe(host_dom, first, j)
        if pair is not None:
            _, b, t = fab.index.pair(first[pair[0]], first[pair[1]])
            bw[j], lat[j] = float(b), float(t)
    return bw, lat


def _probe(host_dom: np.ndarray, first: np.ndarray, j: int) -> tuple[int, int] | None:
    """Two hosts with GPUs that differ at level j and share level j+1 (any two at the top)."""
    nl = host_dom.shape[1]
    seen: dict[int, tuple[int, int]] = {}
    for h in np.flatnonzero(first >= 0):
        up = int(host_dom[h, j + 1]) if j + 1 < nl else 0
        here = int(host_dom[h, j])
        if up in seen and seen[up][0] != here:
            return seen[up][1], int(h)
        seen.setdefault(up, (here, int(h)))
    return None
