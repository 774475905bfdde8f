"""Collective-time model: how long an NCCL-style collective takes on a placement (pure, numpy).

A collective is a set of *flows* over the fabric's *resources* (docs/collective-model.md):

- ``nvl``: a GPU's NVLink/NVSwitch port, one direction (``nvlink_gbps / 2``: NVIDIA quotes NVLink
  bandwidth as both directions together; the network's NIC figures are one direction);
- ``nic_tx`` / ``nic_rx``: each NIC (rail) of each host;
- ``up`` / ``down``: a leaf switch's uplinks (``uplink_gbps`` of its group, per switch) and, above the
  leaves, a whole group's uplinks (``switches × uplink_gbps``; ECMP / adaptive routing spreads flows).

A ring over the NVLink domains the GPUs touch (hosts on a DGX, racks on an NVL72; in topology order)
has ``C`` channels; channel ``c`` leaves each domain through one of the domain's NICs (the channels
spread over the NICs the placement's GPUs bring — a host contributing one GPU gives the whole ring
one NIC) and enters the next domain on the same rail when it has it (NCCL's rail-matched rings),
else it crosses rails through the switch above. Every flow of a ring carries the same share of the
per-rank bytes ``2(n-1)/n·S`` (all-reduce) or ``(n-1)/n·S`` (all-gather / reduce-scatter), so the
bandwidth term is ``max_r bytes_r / cap_r`` and, with other jobs on shared resources, each job's
flows get their max-min fair share (:func:`fair_rates`: progressive filling, one rate per job).
All-to-all sends ``S/n`` to every other rank (PXN: over NVLink to the GPU on the destination's
rail, then rail-matched). Tree all-reduce has the ring's bottleneck bandwidth for ``2·S`` bytes per
rank and ``2·(⌈log2 domains⌉ + GPUs per domain - 1)`` latency steps. NVLink SHARP (``nvls``, one
NVLink domain whose NVSwitches reduce: :mod:`fabric_hpc.placement.nvls`) sends each byte up to the
switch once and receives its sum once, at its own calibrated efficiency, in 2 latency steps
(NVLS-Tree across domains is not modelled). ``algo="auto"`` takes the fastest, as NCCL's tuner
roughly does. Efficiencies (protocol overhead) are calibrated against published
nccl-tests figures in docs/collective-model.md.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.ecmp import Ports, build_ports, flow_keys, route
from fabric_hpc.placement.nvls import nvls_bytes
from fabric_hpc.placement.fairshare import _fair, fair_rates, flow_unit  # noqa: F401 (fair_rates re-exported)
from fabric_hpc.placement.ringmemo import Flows, RingShape, ring_memo  # noqa: F401 (Flows re-exported)
from fabric_hpc.validation import StrictModel

if TYPE_CHECKING:
    from fabric_hpc.topology import Fabric

KINDS = ("allreduce", "allgather", "reducescatter", "alltoall")


class NoNetwork(ValueError):
    """Internal: some NVLink domain of the placement has no NIC (the collective cannot run)."""
ALGOS = ("auto", "ring", "tree", "nvls")


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
    nvl_cap = np.where(idx.gpu_nvl >= 0, idx.nvl_gbps[idx.gpu_nvl].astype(np.float64) / 2, 0.0)
    caps.append(nvl_cap)
    nvl = np.arange(ng)
    nics = np.array([fab.host_type(h).nics for h in fab.hosts], np.int64)
    off = np.r_[0, np.cumsum(nics)]
    rail = idx.gpu_rail.astype(np.int64)
    nic_key = np.where(rail >= 0, off[idx.gpu_host] + rail, -1)
    nic_gbps = np.repeat([fab.host_type(h).nic_gbps for h in fab.hosts], nics).astype(np.float64)
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
    return Net(cap, kind, nvl, nic_tx, nic_rx, nic_key, rail, up, down)


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
    nvl = idx.gpu_nvl[g]
    change = np.r_[True, nvl[1:] != nvl[:-1]]
    return g, np.cumsum(change) - 1


def ring_flows(fab: Fabric, gpus: np.ndarray, per_rank_bytes: float, params: CollectiveParams,
               ordered: tuple[np.ndarray, np.ndarray] | None = None, ecmp: int | None = None) -> Flows:
    """Flows of a ring pass where every rank sends ``per_rank_bytes`` in total (``ordered``:
    :func:`_domains` of ``gpus`` when the caller has it; ``ecmp``: the job's flow-hash salt, None
    for perfectly spread uplinks). The ring's shape is remembered per fabric
    (:mod:`~fabric_hpc.placement.ringmemo`): ``flow``, ``res`` and ``lat_us`` are read-only."""
    gpus = np.asarray(gpus, np.int64)
    key = ("ring", gpus.tobytes(), params.max_channels, ecmp)
    return ring_memo(fab).get(key, lambda: ring_shape(fab, gpus, params, ordered, ecmp)).flows(per_rank_bytes)


def ring_shape(fab: Fabric, gpus: np.ndarray, params: CollectiveParams,
               ordered: tuple[np.ndarray, np.ndarray] | None = None, ecmp: int | None = None) -> RingShape:
    """The :class:`RingShape` of :func:`ring_flows` computed (no memo)."""
    net = fabric_net(fab)
    g, dom = ordered if ordered is not None else _domains(fab, np.asarray(gpus, np.int64))
    m = int(dom[-1]) + 1 if len(g) else 0
    flows, res, lat = [], [], []
    # NVLink: inside a domain of k GPUs each GPU sends (k-1)/k of its bytes over NVLink (all when m == 1)
    k = np.bincount(dom, minlength=m)[dom]
    share = np.where(k > 1, 1.0 if m == 1 else (k - 1) / k, 0.0)
    on = share > 0
    nf = int(on.sum())
    flows.append(np.arange(nf))
    res.append(net.nvl[g[on]])
    lat.append(np.full(nf, fab.index.nvlink_latency_us))
    edges, chans = -1, 0
    if m >= 2:
        src, dst = _channel_edges(net, g, dom, m, params)
        edges, chans = len(src), len(src) // m
        f, r, la = _paths(fab, net, src, dst, None if ecmp is None else (ecmp, np.tile(np.arange(chans), m)))
        flows.append(f + nf)
        res.append(r)
        lat.append(la)
    out = _read_only(np.concatenate(flows), np.concatenate(res), np.concatenate(lat), share[on])
    return RingShape(*out, edges, chans)


def _channel_edges(net: Net, g: np.ndarray, dom: np.ndarray, m: int,
                   params: CollectiveParams) -> tuple[np.ndarray, np.ndarray]:
    """Inter-domain ring edges, C channels × m domains: (source GPU, destination GPU). C is the
    fewest NICs a domain brings (at most ``max_channels``): NCCL aligns every rank on the smallest
    channel count any rank's graph search found (src/init.cc, AllGather3: ``nChannels =
    std::min(...)`` over the ranks), so a domain with more NICs leaves the extra ones idle. Channel
    c leaves domain d from its c-th NIC and enters the next domain on the same rail when that
    domain has a NIC there, else on the first of its NICs no other channel enters: every channel
    has its own NIC on each side (NCCL's per-node search gives each channel its own NIC), so no
    NIC receives two channels where the rails of two domains differ."""
    key = net.nic_key[g]
    has = key >= 0
    width = int(key.max(initial=0)) + 1
    _, first = np.unique(dom[has] * width + key[has], return_index=True)  # one GPU per (domain, NIC)
    reps = g[np.flatnonzero(has)[first]]
    rdom = dom[np.flatnonzero(has)[first]]
    per = np.bincount(rdom, minlength=m)
    if (per == 0).any():
        raise NoNetwork("a placement's NVLink domain has no NIC to reach the others")
    chans = int(min(per.min(), params.max_channels))
    start = np.r_[0, np.cumsum(per)[:-1]]
    d = np.repeat(np.arange(m), chans)
    cc = np.tile(np.arange(chans), m)
    src = reps[start[d] + cc % per[d]]
    nxt = (d + 1) % m
    dst = reps[start[nxt] + cc % per[nxt]]
    # rail matching: channel c enters the next domain on the source's rail when it has that rail
    # (the q-th NIC of a rail in one domain pairs with the (q mod count)-th of the next)
    rk = rdom * 64 + np.clip(net.rail[reps], 0, 63)
    order = np.argsort(rk, kind="stable")
    srt = rk[order]
    first_of = np.searchsorted(srt, srt)
    q = np.empty(len(rk), np.int64)
    q[order] = np.arange(len(rk)) - first_of  # rank of each NIC among its domain's NICs on its rail
    sidx = start[d] + cc % per[d]  # position of each channel's source among reps
    want = nxt * 64 + np.clip(net.rail[src], 0, 63)
    lo = np.searchsorted(srt, want, side="left")
    cnt = np.searchsorted(srt, want, side="right") - lo
    pick = order[np.minimum(lo + q[sidx] % np.maximum(cnt, 1), len(srt) - 1)]
    pos = _distinct_entries(d, pick - start[nxt], cnt > 0, per[nxt], m, chans)
    return src, reps[start[nxt] + pos]


def _distinct_entries(d: np.ndarray, pos: np.ndarray, matched: np.ndarray, per_next: np.ndarray, m: int,
                      chans: int) -> np.ndarray:
    """Entry NIC (position among the next domain's NICs) of every channel: its rail-matched one
    when no earlier channel of the block took it, else the r-th NIC no matched channel enters
    (r: its rank among the block's other channels). Blocks (one per source domain d) are the
    ``chans`` consecutive edges entering one domain; ``chans ≤ per_next``, so every block fits."""
    width = int(per_next.max(initial=1))
    claim = d * width + np.where(matched, pos, 0)
    _, first = np.unique(np.where(matched, claim, -1 - np.arange(len(d))), return_index=True)
    keep = np.zeros(len(d), bool)
    keep[first] = True
    matched = matched & keep
    if matched.all():
        return pos
    used = np.zeros((m, width), bool)
    used[d[matched], pos[matched]] = True
    free = ~used & (np.arange(width)[None, :] < per_next.reshape(m, chans)[:, :1])
    free_rank = np.cumsum(free, axis=1) - 1
    unm = ~matched
    rank = np.cumsum(unm.reshape(m, chans), axis=1).ravel() - 1
    e = np.flatnonzero(unm)
    out = pos.copy()
    out[e] = np.argmax((free_rank[d[e]] == rank[e][:, None]) & free[d[e]], axis=1)
    return out


def alltoall_flows(fab: Fabric, gpus: np.ndarray, per_rank_bytes: float, ecmp: int | None = None) -> Flows:
    """All-to-all: every rank sends ``per_rank_bytes / n`` to every other rank. Between domains the
    bytes travel rail-matched (PXN): a GPU hands the bytes for a rank on another rail over NVLink
    to the GPU of its own domain on that rail, whose NIC sends them (its own NIC when the domain has
    no GPU on that rail)."""
    net = fabric_net(fab)
    g, dom = _domains(fab, np.asarray(gpus, np.int64))
    n = len(g)
    m = int(dom[-1]) + 1 if n else 0
    k = np.bincount(dom, minlength=m)
    chunk = per_rank_bytes / max(n, 1)
    on = k[dom] > 1
    size_nvl = chunk * (k[dom] - 1).astype(np.float64)
    flows, res, size, lat = [], [], [], []
    if m >= 2:
        has = net.nic_key[g] >= 0
        a, b = np.meshgrid(np.flatnonzero(has), np.flatnonzero(has), indexing="ij")
        a, b = a.ravel(), b.ravel()
        cross = dom[a] != dom[b]
        a, b = a[cross], b[cross]
        proxy = _pxn_proxy(net, g, dom, has, a, b)
        # a source without a NIC of its own sends through a peer's NIC; count its bytes there too
        nic_count = np.bincount(dom[has], minlength=m)
        bytes_ab = chunk * (k[dom[a]] / np.maximum(nic_count[dom[a]], 1))
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


def _pxn_proxy(net: Net, g: np.ndarray, dom: np.ndarray, has: np.ndarray, a: np.ndarray,
               b: np.ndarray) -> np.ndarray:
    """Position (in ``g``) of the GPU whose NIC sends a's bytes to b: the first GPU of a's domain on
    b's rail when there is one (NCCL's PXN), else a itself."""
    pos = np.flatnonzero(has)
    key = dom[pos] * 64 + np.clip(net.rail[g[pos]], 0, 63)
    order = np.argsort(key, kind="stable")
    srt = key[order]
    want = dom[a] * 64 + np.clip(net.rail[g[b]], 0, 63)
    i = np.minimum(np.searchsorted(srt, want), max(len(srt) - 1, 0))
    found = (srt[i] == want) & (net.rail[g[b]] >= 0)
    return np.where(found, pos[order[i]], a)


# -- rates and times --------------------------------------------------------------------------------
def effective_cap(net: Net | Ports, params: CollectiveParams) -> np.ndarray:
    """Capacity NCCL reaches on each resource (GB/s): line rate × calibrated efficiency (read-only)."""
    key = (id(net), params.nvlink_eff, params.net_eff)
    hit = _CAPS.get(key)
    if hit is None or hit[0] is not net:
        cap = net.cap * np.where(net.kind == 0, params.nvlink_eff, params.net_eff)
        cap.setflags(write=False)
        hit = _CAPS[key] = (net, cap)
    return hit[1]


_CAPS: dict[tuple, tuple[Net | Ports, np.ndarray]] = {}


def load_of(flows: Flows, nres: int) -> np.ndarray:
    """Bytes each resource carries for one collective."""
    return np.bincount(flows.res, weights=flows.size[flows.flow], minlength=nres)


def steps_and_bytes(kind: str, algo: str, n: int, m: int, kmax: int, size: float) -> tuple[float, int]:
    """(bytes each rank sends, latency steps) of collective ``kind`` with ``algo`` over n ranks in m
    domains of at most kmax GPUs; ``size`` is the buffer (all-reduce), the gathered output
    (all-gather / reduce-scatter) or each rank's send buffer (all-to-all)."""
    if kind == "allreduce":
        if algo == "tree":
            return 2.0 * size, 2 * (int(np.ceil(np.log2(max(m, 1)))) + kmax - 1)
        return 2.0 * (n - 1) / n * size, 2 * (n - 1)
    if kind in ("allgather", "reducescatter"):
        return (n - 1) / n * size, n - 1
    return (n - 1) / n * size, n - 1  # all-to-all: n-1 pieces of size/n


@dataclass(frozen=True)
class CollectiveTime:
    seconds: float
    algo: str
    busbw_gbps: float  # NCCL's bus bandwidth (algbw · its factor), as nccl-tests prints it
    bottleneck: str  # "nvlink", "nic", "uplink" or "none"
    bandwidth_s: float = 0.0  # the bandwidth part of ``seconds``
    latency_s: float = 0.0  # the latency part (steps × the worst path latency)


def collective_time(fab: Fabric, gpus, size_bytes: float, *, kind: str = "allreduce", algo: str = "auto",
                    params: CollectiveParams | None = None, background: list[np.ndarray] | None = None,
                    ecmp: int | None = None, nvls: bool = True) -> CollectiveTime:
    """Time of one collective of ``size_bytes`` on GPU indices ``gpus``, alone or beside the
    ``background`` loads of other running collectives (:func:`job_load`, same ``ecmp`` mode),
    sharing max-min fairly. ``ecmp``: the job's flow-hash salt (ECMP routing, module ecmp);
    None: every switch's uplinks shared perfectly. ``algo="auto"`` takes the fastest of ring, tree
    and (with ``nvls``, inside one NVLink domain with SHARP hardware) NVLink SHARP; the simulator
    passes ``nvls=False`` (its choice stays ring or tree, as :func:`allreduce_and_load`)."""
    params = params or CollectiveParams()
    if kind not in KINDS or algo not in ALGOS:
        raise ConfigError(f"unknown collective {kind!r}/{algo!r}",
                          hint=f"kinds: {KINDS}; algorithms: {ALGOS}")
    gpus = np.unique(np.asarray(gpus, np.int64))
    n = len(gpus)
    if n <= 1:
        return CollectiveTime(0.0, "none", np.inf, "none")
    net = fabric_net(fab)
    if algo == "auto":
        algos = (["ring", "tree", "nvls"] if nvls else ["ring", "tree"]) if kind == "allreduce" else ["ring"]
    elif algo == "nvls" and kind != "allreduce":
        raise ConfigError(f"NVLink SHARP (nvls) is an all-reduce algorithm, not one for {kind!r}",
                          hint="use algo='ring' or 'auto' for this collective")
    else:
        algos = [algo]
    best: CollectiveTime | None = None
    for a in algos:
        try:
            t = _one(fab, net, gpus, size_bytes, kind, a, params, background, ecmp)
        except NoNetwork:  # hosts without a network adapter: no collective across them
            return CollectiveTime(np.inf, a, 0.0, "nic", np.inf, 0.0)
        if t is None:  # NVLS where it cannot run
            if algo == "nvls":
                raise ConfigError("NVLink SHARP (nvls) needs one NVLink domain whose NVSwitches reduce "
                                  "(H100/H200/H800/B200/GB200 class); NVLS-Tree across domains is not modelled",
                                  hint="use algo='auto', 'ring' or 'tree'")
            continue
        if best is None or t.seconds < best.seconds:
            best = t
    return best  # type: ignore[return-value]


def _one(fab: Fabric, net: Net, gpus: np.ndarray, size: float, kind: str, algo: str, params: CollectiveParams,
         background: list[np.ndarray] | None, ecmp: int | None = None) -> CollectiveTime | None:
    _, dom = _domains(fab, gpus)
    n, m = len(gpus), int(dom[-1]) + 1
    kmax = int(np.bincount(dom).max())
    if algo == "nvls":
        per_rank, steps = nvls_bytes(fab, gpus, size, m, params), 2  # up to the switch, back down
        if per_rank is None:
            return None
    else:
        per_rank, steps = steps_and_bytes(kind, algo, n, m, kmax, size)
    flows = (alltoall_flows(fab, gpus, size, ecmp) if kind == "alltoall"
             else ring_flows(fab, gpus, per_rank, params, ecmp=ecmp))
    space = resources(fab, ecmp)
    load = load_of(flows, space.size)
    cap = effective_cap(space, params)
    every = [load, *(background or [])]
    xs, by = _fair(every, cap, np.array([flow_unit(ld, space) for ld in every]))
    x = xs[0]
    bw_time = 1.0 / x if x > 0 else np.inf
    lat = float(flows.lat_us.max(initial=0.0)) * 1e-6 * steps
    secs = bw_time + lat
    where = ("nvlink", "nic", "uplink")[int(space.kind[by[0]])] if by[0] >= 0 else "none"
    factor = {"allreduce": 2.0 * (n - 1) / n}.get(kind, (n - 1) / n)
    busbw = factor * size / secs / 1e9 if secs > 0 else np.inf
    return CollectiveTime(float(secs), algo, float(busbw), where, float(bw_time), float(lat))


def job_load(fab: Fabric, gpus, size_bytes: float, *, kind: str = "allreduce",
             params: CollectiveParams | None = None, ecmp: int | None = None) -> np.ndarray:
    """Bytes per resource of one ring collective of a running job (a background load for others;
    ``ecmp`` as in :func:`collective_time`)."""
    params = params or CollectiveParams()
    gpus = np.unique(np.asarray(gpus, np.int64))
    space = resources(fab, ecmp)
    if len(gpus) <= 1:
        return np.zeros(space.size)
    _, dom = _domains(fab, gpus)
    per_rank, _ = steps_and_bytes(kind, "ring", len(gpus), int(dom[-1]) + 1, 1, size_bytes)
    flows = (alltoall_flows(fab, gpus, size_bytes, ecmp) if kind == "alltoall"
             else ring_flows(fab, gpus, per_rank, params, ecmp=ecmp))
    return load_of(flows, space.size)


def allreduce_and_load(fab: Fabric, gpus, size_bytes: float, *, params: CollectiveParams | None = None,
                       ecmp: int | None = None) -> tuple[CollectiveTime, np.ndarray]:
    """``collective_time(kind="allreduce", algo="auto", nvls=False)`` alone and ``job_load`` of the same GPUs,
    building the ring's flows once (both are linear in the bytes; the simulator calls this per job)."""
    params = params or CollectiveParams()
    gpus = np.unique(np.asarray(gpus, np.int64))
    net = resources(fab, ecmp)
    n = len(gpus)
    if n <= 1:
        return CollectiveTime(0.0, "none", np.inf, "none"), np.zeros(net.size)
    g, dom = _domains(fab, gpus)
    m, kmax = int(dom[-1]) + 1, int(np.bincount(dom).max())
    try:
        flows = ring_flows(fab, gpus, 1.0, params, ordered=(g, dom), ecmp=ecmp)
    except NoNetwork:
        return CollectiveTime(np.inf, "ring", 0.0, "nic", np.inf, 0.0), np.zeros(net.size)
    unit = load_of(flows, net.size)
    cap = effective_cap(net, params)
    nz = np.flatnonzero(unit)
    ratio = unit[nz] / 1e9 / cap[nz]
    worst = int(np.argmax(ratio))
    best: CollectiveTime | None = None
    for algo in ("ring", "tree"):
        per_rank, steps = steps_and_bytes("allreduce", algo, n, m, kmax, size_bytes)
        bw = per_rank * float(ratio[worst])
        lat = float(flows.lat_us.max(initial=0.0)) * 1e-6 * steps
        secs = bw + lat
        where = ("nvlink", "nic", "uplink")[int(net.kind[nz[worst]])]
        busbw = 2.0 * (n - 1) / n * size_bytes / secs / 1e9 if secs > 0 else np.inf
        t = CollectiveTime(float(secs), algo, float(busbw), where, float(bw), float(lat))
        if best is None or t.seconds < best.seconds:
            best = t
    ring_bytes, _ = steps_and_bytes("allreduce", "ring", n, m, kmax, size_bytes)
    return best, unit * ring_bytes  # type: ignore[return-value]
