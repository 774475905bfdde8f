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
All-to-all sends ``S/n`` to every other rank (PXN: over NVLink to the GPU of the sender's host on the
destination's rail, then rail-matched; :mod:`~fabric_hpc.placement.alltoall`). Tree all-reduce sends ``2·S`` bytes per
rank over the ring's resources (on the network only ``S`` when it spans two domains: :func:`tree_share`) and ``2·(⌈log2 domains⌉ + GPUs per domain - 1)`` latency steps. NVLink SHARP (``nvls``, one
NVLink domain whose NVSwitches reduce: :mod:`fabric_hpc.placement.nvls`) sends each byte up to the
switch once and receives its sum once, at its own calibrated efficiency, in 2 latency steps
(NVLS-Tree across domains is not modelled). ``algo="auto"`` takes the fastest, as NCCL's tuner
roughly does. Efficiencies (protocol overhead) are calibrated against published
nccl-tests figures in docs/collective-model.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.alltoall import MAX_PAIRS, alltoall_flows  # noqa: F401 (alltoall_flows re-exported)
from fabric_hpc.placement.ecmp import Ports
from fabric_hpc.placement.netmodel import (CollectiveParams, Net, NoNetwork, _domains, _paths,  # noqa: F401
                                          _read_only, fabric_net, fabric_ports, mesh_factor, resources,
                                          switch_hops)
from fabric_hpc.placement.nvls import nvls_bytes
from fabric_hpc.placement.fairshare import _fair, fair_rates, flow_unit  # noqa: F401 (fair_rates re-exported)
from fabric_hpc.placement.ringmemo import Flows, RingShape, ring_memo  # noqa: F401 (Flows re-exported)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fabric_hpc.topology import Fabric

    #: GPU indices into ``fab.gpus`` (a list or an integer array), each at most once
    GpuIndices = Sequence[int] | np.ndarray

KINDS = ("allreduce", "allgather", "reducescatter", "alltoall")


ALGOS = ("auto", "ring", "tree", "nvls")


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
    share = np.where(k > 1, 1.0 if m == 1 else (k - 1) / k, 0.0) * mesh_factor(fab, g, k)
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


# -- rates and times --------------------------------------------------------------------------------
def _alltoall(fab: Fabric, gpus: np.ndarray, size: float, ecmp: int | None) -> Flows:
    if len(gpus) * (len(gpus) - 1) > MAX_PAIRS:
        raise ConfigError(f"an all-to-all over {len(gpus)} GPUs is beyond this model (every ordered pair is a "
                          f"flow: at most {MAX_PAIRS:,} pairs, 4,096 GPUs)",
                          hint="model a smaller group (e.g. one expert-parallel group) or use kind='allgather'")
    return alltoall_flows(fab, gpus, size, ecmp)


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


def tree_share(kind: np.ndarray, m: int) -> np.ndarray:
    """Per resource of ``kind``: the tree all-reduce's bytes there over its ``2·S`` per rank. Over
    two NVLink domains the tree sends half as much on the network as inside a domain (NCCL's
    developer: "with Tree, on 2 nodes, ... we have 2x less traffic on the network than on the
    intra-node connections ... the Tree performance can go up to ~2x the network speed",
    https://github.com/NVIDIA/nccl/issues/946), so there network resources carry ``S``; over more
    domains every resource carries ``2·S`` (https://github.com/NVIDIA/nccl/issues/457)."""
    return np.where((kind != 0) & (m == 2), 0.5, 1.0)


#: The largest collective a call may describe: 1 PiB (``CostWeights.message_mb`` stays below it).
MAX_COLLECTIVE_BYTES = 2**50


def check_call(fab: Fabric, gpus: GpuIndices, size_bytes: float, kind: str, ecmp: int | None = None,
               params: CollectiveParams | None = None, *,
               distinct: bool = False) -> tuple[np.ndarray, CollectiveParams]:
    """The sorted, distinct GPU indices of a collective call and its params, or a ConfigError
    naming the bad argument: indices must be integers of ``fab`` (no wrap-around of -1, no
    truncated floats), the size a number of bytes in 0..:data:`MAX_COLLECTIVE_BYTES`, ``kind`` one
    of :data:`KINDS`. ``distinct``: a GPU given twice is a ConfigError naming it (the public entry
    points: one rank per GPU), else the repeats are merged (stage-to-stage pairs share GPUs)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown collective {kind!r}", hint=f"kinds: {KINDS}")
    if params is not None and not isinstance(params, CollectiveParams):
        raise ConfigError(f"params must be a CollectiveParams, not {type(params).__name__}",
                          hint="pass CollectiveParams(**fields) (or None for the calibrated defaults)")
    if not _size_ok(size_bytes):
        raise ConfigError("collective size must be a number of bytes in 0..2**50 (1 PiB), "
                          f"not {repr(size_bytes)[:40]}",
                          hint="give the message size in bytes, e.g. 2**28 for 256 MiB")
    if ecmp is not None and (isinstance(ecmp, bool) or not isinstance(ecmp, (int, np.integer))):
        raise ConfigError(f"ecmp must be an integer flow-hash salt or None, not {ecmp!r}",
                          hint="pass the job's salt (any int), or None for perfectly spread uplinks")
    arr = np.asarray(gpus)
    if arr.size and (arr.ndim != 1 or arr.dtype.kind not in "iu"):
        raise ConfigError("gpus must be a flat list of GPU indices (integers)",
                          hint="pass fabric GPU indices, e.g. [fab.gpus.index('host/gpu0'), ...]")
    idx = np.unique(arr.astype(np.int64))
    if idx.size and (idx[0] < 0 or idx[-1] >= len(fab.gpus)):
        bad = int(idx[0] if idx[0] < 0 else idx[-1])
        raise ConfigError(f"GPU index {bad} is not a GPU of fabric {fab.name!r} (0..{len(fab.gpus) - 1})",
                          hint="pass indices into fab.gpus")
    if distinct and idx.size != arr.size:
        twice = int(idx[np.bincount(np.searchsorted(idx, arr.astype(np.int64))).argmax()])
        raise ConfigError(f"GPU index {twice} ({fab.gpus[twice]}) is given more than once",
                          hint="list each GPU of the collective once (one rank per GPU)")
    return idx, params or CollectiveParams()


def _size_ok(size: object) -> bool:
    """A number of bytes in 0..MAX_COLLECTIVE_BYTES (a Python int of any size, without overflow)."""
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)):
        return False
    if isinstance(size, (float, np.floating)) and not np.isfinite(size):
        return False
    return 0 <= size <= MAX_COLLECTIVE_BYTES


@dataclass(frozen=True)
class CollectiveTime:
    seconds: float
    algo: str
    busbw_gbps: float  # NCCL's bus bandwidth (algbw · its factor), as nccl-tests prints it
    bottleneck: str  # "nvlink", "nic", "uplink" or "none"
    bandwidth_s: float = 0.0  # the bandwidth part of ``seconds``
    latency_s: float = 0.0  # the latency part (steps × the worst path latency)


def collective_time(fab: Fabric, gpus: GpuIndices, size_bytes: float, *, kind: str = "allreduce",
                    algo: str = "auto", params: CollectiveParams | None = None,
                    background: list[np.ndarray] | None = None, ecmp: int | None = None,
                    nvls: bool = True) -> CollectiveTime:
    """Time of one collective of ``size_bytes`` on GPU indices ``gpus``, alone or beside the
    ``background`` loads of other running collectives (:func:`job_load`, same ``ecmp`` mode),
    sharing max-min fairly. ``ecmp``: the job's flow-hash salt (ECMP routing, module ecmp);
    None: every switch's uplinks shared perfectly. ``algo="auto"`` takes the fastest of ring, tree
    and (with ``nvls``, inside one NVLink domain with SHARP hardware) NVLink SHARP; the simulator
    passes ``nvls=False`` (its choice stays ring or tree, as :func:`allreduce_and_load`)."""
    if algo not in ALGOS:
        raise ConfigError(f"unknown collective algorithm {algo!r}", hint=f"algorithms: {ALGOS}")
    gpus, params = check_call(fab, gpus, size_bytes, kind, ecmp, params, distinct=True)
    if algo in ("tree", "nvls") and kind != "allreduce":
        raise ConfigError(f"{algo!r} is an all-reduce algorithm in this model, not one for {kind!r}",
                          hint="use algo='ring' or 'auto' for this collective")
    if algo == "auto":
        algos = (["ring", "tree", "nvls"] if nvls else ["ring", "tree"]) if kind == "allreduce" else ["ring"]
    else:
        algos = [algo]
    _check_background(fab, background, ecmp)
    n = len(gpus)
    if n <= 1:
        return CollectiveTime(0.0, "none", np.inf, "none")
    net = fabric_net(fab)
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


def _check_background(fab: Fabric, background: list[np.ndarray] | None, ecmp: int | None) -> None:
    size = resources(fab, ecmp).size
    for load in background or []:
        arr = np.asarray(load)
        if arr.shape != (size,) or not np.isfinite(arr).all() or (arr < 0).any():
            mode = "ECMP ports" if ecmp is not None else "spread uplinks"
            raise ConfigError(f"a background load must be job_load's bytes per resource of this fabric ({size} "
                              f"finite values ≥ 0 for {mode}), not an array of shape {arr.shape}",
                              hint="build it with job_load(fab, gpus, size, ecmp=...) in the same ECMP mode")


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
    flows = (_alltoall(fab, gpus, size, ecmp) if kind == "alltoall"
             else ring_flows(fab, gpus, per_rank, params, ecmp=ecmp))
    space = resources(fab, ecmp)
    load = load_of(flows, space.size)
    if algo == "tree":
        load = load * tree_share(space.kind, m)
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


def job_load(fab: Fabric, gpus: GpuIndices, size_bytes: float, *, kind: str = "allreduce",
             params: CollectiveParams | None = None, ecmp: int | None = None) -> np.ndarray:
    """Bytes per resource of one ring collective of a running job (a background load for others;
    ``ecmp`` as in :func:`collective_time`)."""
    gpus, params = check_call(fab, gpus, size_bytes, kind, ecmp, params, distinct=True)
    space = resources(fab, ecmp)
    if len(gpus) <= 1:
        return np.zeros(space.size)
    _, dom = _domains(fab, gpus)
    per_rank, _ = steps_and_bytes(kind, "ring", len(gpus), int(dom[-1]) + 1, 1, size_bytes)
    try:
        flows = (_alltoall(fab, gpus, size_bytes, ecmp) if kind == "alltoall"
                 else ring_flows(fab, gpus, per_rank, params, ecmp=ecmp))
    except NoNetwork:  # a collective that cannot run (a domain without a NIC) loads nothing
        return np.zeros(space.size)
    return load_of(flows, space.size)


def allreduce_and_load(fab: Fabric, gpus: GpuIndices, size_bytes: float, *,
                       params: CollectiveParams | None = None,
                       ecmp: int | None = None, algos: tuple[str, ...] = ("ring", "tree"),
                       ) -> tuple[CollectiveTime, np.ndarray]:
    """``collective_time(kind="allreduce", algo="auto", nvls=False)`` alone and ``job_load`` of the same GPUs,
    building the ring's flows once (both are linear in the bytes; the simulator calls this per job).
    ``algos``: the algorithms "auto" picks from (``("ring",)``: the ring alone)."""
    gpus, params = check_call(fab, gpus, size_bytes, "allreduce", ecmp, params, distinct=True)
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
    best: CollectiveTime | None = None
    for algo in algos:
        per_rank, steps = steps_and_bytes("allreduce", algo, n, m, kmax, size_bytes)
        share = ratio * tree_share(net.kind[nz], m) if algo == "tree" else ratio
        worst = int(np.argmax(share))
        bw = per_rank * float(share[worst])
        lat = float(flows.lat_us.max(initial=0.0)) * 1e-6 * steps
        secs = bw + lat
        where = ("nvlink", "nic", "uplink")[int(net.kind[nz[worst]])]
        busbw = 2.0 * (n - 1) / n * size_bytes / secs / 1e9 if secs > 0 else np.inf
        t = CollectiveTime(float(secs), algo, float(busbw), where, float(bw), float(lat))
        if best is None or t.seconds < best.seconds:
            best = t
    ring_bytes, _ = steps_and_bytes("allreduce", "ring", n, m, kmax, size_bytes)
    return best, unit * ring_bytes  # type: ignore[return-value]
