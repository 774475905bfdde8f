"""Domain levels of a fabric as placement sees them, computed once per fabric and cached.

The *chain* is ``["host", <domain levels>...]`` bottom-up: NVLink domain, rack, then the network
levels, with levels that partition the hosts exactly like the level below dropped (on a DGX the
NVLink domain is the host; on an NVL72 the rack is the NVLink domain). Dropped names stay valid
as aliases. ``host_dom[h, j]`` is a dense domain id of host ``h`` at chain level ``j``.

For the cost model each chain level ``j`` also gets a *tier*: the bandwidth and latency of a ring
edge between two hosts that differ at level ``j`` but share level ``j+1`` (same local GPU index,
so rail-matched), probed with ``fab.index.pair``; tier ``-1`` is two GPUs of one host.

Two sums the placers take on every problem have fast forms here: :func:`free_per_host` (free GPUs
per host; on a fabric whose GPU ``i`` is local GPU ``i % g`` of host ``i // g`` with ``g`` of 1, 2,
4 or 8, one popcount per host of the free mask seen as ``g``-byte words) and :func:`domain_sums`
(a per-host array summed per domain of a chain level; where the hosts of every domain are
consecutive, ``np.add.reduceat`` over the domain boundaries). Both give the integers the plain
``np.bincount`` forms give.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import Fabric
from fabric_hpc.validation import did_you_mean


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
    #: GPUs per host when GPU i is local GPU i % g of host i // g on every host (else 0)
    dense_gpus: int = 0
    #: per chain level: where each domain's hosts start when every domain's hosts are consecutive
    #: and in domain order (``np.add.reduceat`` boundaries), else None
    dom_starts: tuple[np.ndarray | None, ...] = ()

    def level(self, name: str) -> int:
        if name not in self.alias:
            raise ConfigError(f"unknown level {name!r}{did_you_mean(name, list(self.alias))}",
                              hint=f"levels of this fabric: {', '.join(self.alias)}")
        return self.alias[name]


_CACHE: weakref.WeakKeyDictionary[Fabric, FabricLevels] = weakref.WeakKeyDictionary()


def fabric_levels(fab: Fabric) -> FabricLevels:
    hit = _CACHE.get(fab)  # one lookup on the hot path
    if hit is None:
        hit = _CACHE[fab] = _build(fab)
    return hit


def _candidates(fab: Fabric) -> list[tuple[str, np.ndarray, list[str]]]:
    nh = len(fab.hosts)
    idx = fab.index
    first = _first_gpu(fab)
    nvl_of_first = idx.gpu_nvl[np.maximum(first, 0)] if idx.gpu_nvl.size else np.full(nh, -1)
    nvl_raw = np.where(first >= 0, nvl_of_first, -1 - np.arange(nh))
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
    net = fab.spec.network
    if net is not None and "leaf" not in alias and net.levels[0] in alias:
        # Slurm's --switches counts the lowest switches, whatever a fabric calls them: the default
        # max_domains_level ("leaf", switches=K) then works on a fat-tree's "edge" level too
        alias["leaf"] = alias[net.levels[0]]
    host_dom = np.stack(cols, axis=1).astype(np.int64)
    bw, lat = _tiers(fab, host_dom, first)
    starts = tuple(run_starts(host_dom[:, j]) for j in range(host_dom.shape[1]))
    return FabricLevels(chain, host_dom, names, alias, bw, lat, host_gpus, first, _dense(fab, host_gpus), starts)


def _dense(fab: Fabric, host_gpus: np.ndarray) -> int:
    """g when GPU i is local GPU i % g of host i // g (every host has g GPUs), else 0."""
    idx, n = fab.index, len(fab.gpus)
    g = int(host_gpus.max(initial=0))
    if g == 0 or len(fab.hosts) * g != n:
        return 0
    seq = np.arange(n)
    return g if np.array_equal(idx.gpu_host, seq // g) and np.array_equal(idx.gpu_local, seq % g) else 0


def run_starts(dom: np.ndarray) -> np.ndarray | None:
    """Where each id's run starts when the ids run 0, 0, 1, 1, 1, 2, … (every id from 0 up, each in
    one consecutive run, in order), else None: the boundaries ``np.add.reduceat`` sums by."""
    if dom.size == 0:
        return None
    step = np.diff(dom)
    if dom[0] != 0 or ((step != 0) & (step != 1)).any():
        return None
    out = np.flatnonzero(np.concatenate(([True], step != 0)))
    out.setflags(write=False)
    return out


_WORDS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_POPCOUNT = getattr(np, "bitwise_count", None)  # numpy ≥ 2.0


def free_per_host(lv: FabricLevels, gpu_host: np.ndarray, free: np.ndarray) -> np.ndarray:
    """``np.bincount(gpu_host, weights=free, minlength=H)`` as int64: how many GPUs of each host
    are set in the bool mask ``free`` over the fabric's GPUs."""
    g = lv.dense_gpus
    if g and free.dtype == np.bool_:
        word = _WORDS.get(g)
        if word is not None and _POPCOUNT is not None:  # each True byte is one set bit: a popcount per host
            return _POPCOUNT(np.ascontiguousarray(free).view(word)).astype(np.int64)
        return free.reshape(-1, g).sum(axis=1, dtype=np.int64)
    return np.bincount(gpu_host, weights=free, minlength=lv.host_gpus.size).astype(np.int64)


def domain_sums(lv: FabricLevels, level: int, per_host: np.ndarray) -> np.ndarray:
    """``np.bincount(host_dom[:, level], weights=per_host, minlength=domains)`` as int64, for an
    integer or bool ``per_host`` (one value per host)."""
    starts = lv.dom_starts[level] if level < len(lv.dom_starts) else None
    if starts is not None:
        return np.add.reduceat(per_host.astype(np.int64, copy=False), starts)
    return np.bincount(lv.host_dom[:, level], weights=per_host,
                       minlength=len(lv.dom_names[level])).astype(np.int64)


def largest_domain_gpus(lv: FabricLevels, level: int) -> int:
    """The most GPUs any one domain of chain level ``level`` has."""
    return int(domain_sums(lv, level, lv.host_gpus).max(initial=0))


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
