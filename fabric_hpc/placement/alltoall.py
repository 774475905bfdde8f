"""All-to-all flows of the collective model (docs/collective-model.md, "Time").

Every rank sends ``S/n`` to every other rank. Inside an NVLink domain the bytes go over NVLink;
between domains they travel rail-matched as NCCL's PXN sends them: a GPU hands the bytes for a rank
on another rail over NVLink to the GPU of its own host on that rail, whose NIC sends them (the
sender's own NIC when it is on that rail or its host has no GPU there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fabric_hpc.placement.netmodel import Net, NoNetwork, _domains, _paths, fabric_net, mesh_factor
from fabric_hpc.placement.ringmemo import Flows

if TYPE_CHECKING:
    from fabric_hpc.topology import Fabric

#: Ordered pairs (n·(n-1) flows of a few resources each) above which an all-to-all is refused:
#: 4,096 GPUs are ~17 M pairs, ~1.5 GB of flow arrays.
MAX_PAIRS = 4096 * 4095


def alltoall_flows(fab: Fabric, gpus: np.ndarray, per_rank_bytes: float, ecmp: int | None = None) -> Flows:
    """Flows of an all-to-all where every rank sends ``per_rank_bytes / n`` to every other rank."""
    net = fabric_net(fab)
    g, dom = _domains(fab, np.asarray(gpus, np.int64))
    n = len(g)
    m = int(dom[-1]) + 1 if n else 0
    k = np.bincount(dom, minlength=m)
    chunk = per_rank_bytes / max(n, 1)
    on = k[dom] > 1
    size_nvl = chunk * (k[dom] - 1).astype(np.float64) * mesh_factor(fab, g, k[dom])
    flows, res, size, lat = [], [], [], []
    if m >= 2:
        has = net.nic_key[g] >= 0
        nic_count = np.bincount(dom[has], minlength=m)
        if (nic_count == 0).any():
            raise NoNetwork("a placement's NVLink domain has no NIC to reach the others")
        a, b = np.meshgrid(np.flatnonzero(has), np.flatnonzero(has), indexing="ij")
        a, b = a.ravel(), b.ravel()
        cross = dom[a] != dom[b]
        a, b = a[cross], b[cross]
        proxy = _pxn_proxy(fab, net, g, has, a, b)
        # a source without a NIC of its own sends through a peer's NIC; count its bytes there too
        bytes_ab = chunk * (k[dom[a]] / nic_count[dom[a]])
        np.add.at(size_nvl, a, np.where(proxy != a, bytes_ab, 0.0))  # the NVLink hop to the proxy
        f, r, la = _paths(fab, net, g[proxy], g[b], None if ecmp is None else (ecmp, np.zeros(len(a), np.int64)))
        flows.append(f)
        res.append(r)
        size.append(bytes_ab)
        lat.append(la)
    nf = int(on.sum())
    flows = [np.arange(nf)] + [f + nf for f in flows]
    res = [net.nvl[g[on]], *res]
    size = [size_nvl[on], *size]
    lat = [np.full(nf, fab.index.nvlink_latency_us), *lat]
    return Flows(np.concatenate(flows), np.concatenate(res), np.concatenate(size), np.concatenate(lat))


def _pxn_proxy(fab: Fabric, net: Net, g: np.ndarray, has: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Position (in ``g``) of the GPU whose NIC sends a's bytes to b: a itself when its NIC is on
    b's rail, else the first GPU of a's host on b's rail (NCCL's PXN moves data over NVLink inside a
    node), else a itself. GPUs sharing a NIC share its rail, so they never hop to each other."""
    rail = np.clip(net.rail[g], -1, 63)
    host = fab.index.gpu_host[g]
    pos = np.flatnonzero(has)
    key = host[pos] * 64 + np.maximum(rail[pos], 0)
    order = np.argsort(key, kind="stable")
    srt = key[order]
    want = host[a] * 64 + np.maximum(rail[b], 0)
    i = np.minimum(np.searchsorted(srt, want), max(len(srt) - 1, 0))
    found = (srt[i] == want) & (rail[b] >= 0)
    own = (rail[a] == rail[b]) & (rail[a] >= 0)
    return np.where(own | ~found, a, pos[order[i]])
