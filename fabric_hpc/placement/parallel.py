"""Parallel layouts of a training job on its GPUs: tensor-parallel groups, pipeline stages,
data-parallel rings and the point-to-point sends between stages (pure, numpy).

In ring order (:func:`~fabric_hpc.placement.netmodel._domains`: the top level's domains first, then
each level's below, the host, the local index) a job's GPUs form ``pp`` consecutive pipeline stages
of equal size, each of consecutive tensor-parallel groups of ``tp`` GPUs (Megatron-LM's default rank
order: tensor innermost, then data, pipeline outermost). docs/collective-model.md, "Tensor-parallel
groups" and "Pipeline stages".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.collective import (CollectiveParams, allreduce_and_load, check_call, effective_cap,
                                             job_load, load_of, ring_flows, steps_and_bytes,
                                             _check_background)
from fabric_hpc.placement.fairshare import flow_unit, sparse_fair
from fabric_hpc.placement.netmodel import NoNetwork, _domains, _paths, resources

if TYPE_CHECKING:
    from fabric_hpc.topology import Fabric

#: One micro-batch's activations, ``b·s·h`` values in bf16 (GPT-3 175B: b = 1, s = 2048, h = 12288;
#: Narayanan et al., SC'21, §3.2): what one tensor-parallel all-reduce carries and what a stage
#: boundary sends (``1/tp`` of it per TP rank, §4.1).
ACTIVATION_BYTES = 1 * 2048 * 12288 * 2


def check_groups(fab: Fabric, gpus, tp: int = 1, pp: int = 1) -> np.ndarray:
    """The sorted GPU indices of a job of ``tp``-GPU tensor-parallel groups in ``pp`` pipeline
    stages, or a ConfigError naming the problem: indices as :func:`check_call` takes them, each
    once, at least one GPU, and ``tp`` and ``pp`` whole numbers ≥ 1 whose product divides them."""
    for name, v in (("tp", tp), ("pp", pp)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{name} must be a whole number ≥ 1, not {v!r}", hint=f"e.g. {name}=2, or 1 for none")
    idx, _ = check_call(fab, gpus, 0, "allreduce")
    if idx.size != np.asarray(gpus).size:
        raise ConfigError("gpus names a GPU more than once", hint="pass each GPU index once")
    if not idx.size:
        raise ConfigError("no GPUs given", hint="pass the job's GPU indices into fab.gpus")
    if idx.size % (tp * pp):
        raise ConfigError(f"{idx.size} GPU(s) do not split into pp={pp} stages of tp={tp} groups",
                          hint=f"pass a multiple of tp·pp = {tp * pp} GPUs")
    return idx


def dp_rings(fab: Fabric, gpus, tp: int = 1, pp: int = 1) -> list[np.ndarray]:
    """The data-parallel rings (two GPUs or more each) of a job on GPU indices ``gpus``: in ring
    order (:func:`_domains`) the GPUs form ``pp`` consecutive pipeline stages of equal size, each of
    consecutive tensor-parallel groups of ``tp``; TP rank ``r`` of a stage reduces with TP rank
    ``r`` of the stage's other groups. ``tp = pp = 1``: one ring over all GPUs (:func:`check_groups`)."""
    stages = _stage_blocks(fab, check_groups(fab, gpus, tp, pp), pp)
    return [ring for st in stages for r in range(tp) if len(ring := st[r::tp]) > 1]


def dp_load(fab: Fabric, gpus, size_bytes: float, tp: int = 1, pp: int = 1) -> np.ndarray:
    """Bytes per resource of one data-parallel all-reduce of a running job (a background load for
    others): :func:`job_load` of one ring over every GPU (``tp = pp = 1``), else the sum of its
    :func:`dp_rings`' loads, each ring carrying ``size_bytes / (tp·pp)`` (as the simulator's
    :func:`dp_allreduce_and_load`)."""
    if tp <= 1 and pp <= 1:
        return job_load(fab, gpus, size_bytes)
    load = np.zeros(resources(fab, None).size)
    for ring in dp_rings(fab, gpus, tp, pp):
        load += job_load(fab, ring, size_bytes / (tp * pp))
    return load


def pipeline_stages(fab: Fabric, gpus, pp: int) -> list[np.ndarray]:
    """The ``pp`` pipeline stages of a job on GPU indices ``gpus``: consecutive blocks of equal size
    in ring order (:func:`_domains`: the top level's domains first, then each level's below, the
    host, the local index). ``pp = 1``: one stage of every GPU (:func:`check_groups`)."""
    return _stage_blocks(fab, check_groups(fab, gpus, 1, pp), pp)


def tp_groups(fab: Fabric, gpus, tp: int, pp: int = 1) -> list[np.ndarray]:
    """The tensor-parallel groups (two GPUs or more each) of a job on GPU indices ``gpus``:
    consecutive ``tp`` GPUs in ring order, inside the job's ``pp`` stages (:func:`check_groups`)."""
    g, _ = _domains(fab, check_groups(fab, gpus, tp, pp))
    return [g[i:i + tp] for i in range(0, len(g), tp)] if tp > 1 else []


def stage_pairs(fab: Fabric, gpus, tp: int, pp: int) -> list[np.ndarray]:
    """The point-to-point pairs between adjacent pipeline stages: the GPU at position ``j`` of stage
    ``s`` sends to the GPU at position ``j`` of stage ``s + 1`` (the same data-parallel replica and
    tensor-parallel rank: Megatron-LM's scatter/gather sends each TP rank's ``1/tp`` of the
    activations to its peer, Narayanan et al., SC'21, §4.1). ``pp = 1``: none."""
    stages = _stage_blocks(fab, check_groups(fab, gpus, tp, pp), pp)
    return [np.sort(np.array([a, b])) for s in range(pp - 1) for a, b in zip(stages[s], stages[s + 1])]


def slowest_alone(fab: Fabric, groups: list[np.ndarray], size_bytes: float,
                  params: CollectiveParams | None = None) -> float:
    """Seconds until the last of ``groups`` (sorted GPU indices, two or more each) has all-reduced
    ``size_bytes`` when all of them run at once and alone on the fabric (:func:`concurrent_rings`;
    a pair's all-reduce of ``B`` sends ``B`` each way, as a stage boundary's forward activations and
    backward gradients do in 1F1B's steady state). No groups: 0; one that cannot run: infinite.

    A group inside one NVLink domain loads only its own GPUs' NVLink ports, which no other group
    uses (the groups are disjoint), so it takes its time alone, the same for every group of its
    size on a domain of the same bandwidths: one ring per such shape, and the fair share only over
    the groups that cross domains."""
    idx = fab.index
    inside: dict[tuple, np.ndarray] = {}
    across = []
    for g in groups:
        d = idx.gpu_nvl[np.asarray(g, np.int64)]
        if d.size and d[0] >= 0 and (d == d[0]).all():
            inside.setdefault((len(g), float(idx.nvl_gbps[d[0]]), float(idx.nvl_pair_gbps[d[0]])), g)
        else:
            across.append(g)
    times: list[tuple[float, float]] = []
    if across:
        ring_dom = resources(fab, None).ring_dom
        pairs = np.array(across, np.int64).reshape(-1, 2) if all(len(g) == 2 for g in across) else None
        if pairs is not None and (ring_dom[pairs[:, 0]] != ring_dom[pairs[:, 1]]).all():
            times = _sends_at_once(fab, pairs, size_bytes, params)
        else:
            times = concurrent_rings(fab, across, size_bytes, params=params)
    if inside or not across:  # also checks the arguments when every group is inside a domain
        times += [concurrent_rings(fab, [g], size_bytes, params=params)[0] for g in inside.values()]
    return max((bw + lat for bw, lat in times), default=0.0)


def _sends_at_once(fab: Fabric, pairs: np.ndarray, size_bytes: float,
                   params: CollectiveParams | None) -> list[tuple[float, float]]:
    """:func:`concurrent_rings` of two-GPU rings whose GPUs are in different ring domains, built in
    one pass (a ring shape per pair would be built and remembered otherwise): each GPU sends
    ``size_bytes`` to the other through its own NIC (one channel: each side brings one NIC), two
    latency steps. A pair with a GPU without a NIC cannot run: an infinite time."""
    _, params = check_call(fab, pairs.ravel(), size_bytes, "allreduce", None, params)
    net = resources(fab, None)
    live = (net.nic_key[pairs[:, 0]] >= 0) & (net.nic_key[pairs[:, 1]] >= 0)
    ok = pairs[live]
    k = len(ok)
    if not k:
        return [(np.inf, 0.0)] * len(pairs)
    flow, res, lat = _paths(fab, net, np.r_[ok[:, 0], ok[:, 1]], np.r_[ok[:, 1], ok[:, 0]])
    xs, _ = sparse_fair(flow % k, res, np.full(len(res), float(size_bytes)), effective_cap(net, params), k,
                        np.full(k, float(size_bytes) if size_bytes > 0 else 1.0))
    steps_lat = np.maximum(lat[:k], lat[k:]) * 1e-6 * 2
    out = iter([(1.0 / x if x > 0 else np.inf, float(la)) for x, la in zip(xs, steps_lat)])
    return [next(out) if up else (np.inf, 0.0) for up in live]


def _stage_blocks(fab: Fabric, gpus: np.ndarray, pp: int) -> list[np.ndarray]:
    g, _ = _domains(fab, gpus)
    stage = len(g) // pp
    return [g[s * stage:(s + 1) * stage] for s in range(pp)]


def concurrent_rings(fab: Fabric, rings: list[np.ndarray], size_bytes: float,
                     background: list[np.ndarray] | None = None,
                     params: CollectiveParams | None = None) -> list[tuple[float, float]]:
    """(bandwidth s, latency s) of each ring all-reduce of ``size_bytes`` on ``rings`` (sorted GPU
    indices, two or more each), all running at once beside ``background`` and sharing max-min
    fairly: one progressive filling over every ring, the shares ``collective_time(ring, algo="ring",
    background=the other rings' job_load + background)`` gives each (max-min fair shares are
    unique), in one pass instead of one per ring. A ring that cannot run (a host without a NIC)
    gets an infinite time and loads nothing."""
    _, params = check_call(fab, [], size_bytes, "allreduce", None, params)
    _check_background(fab, background, None)
    space = resources(fab, None)
    loads, lats, dead = [], [], []
    for ring in rings:
        ring = check_groups(fab, ring)
        if len(ring) < 2:
            raise ConfigError(f"a ring needs two GPUs or more, not {len(ring)}", hint="leave one-GPU rings out")
        g, dom = _domains(fab, ring)
        per_rank, steps = steps_and_bytes("allreduce", "ring", len(ring), int(dom[-1]) + 1,
                                          int(np.bincount(dom).max()), size_bytes)
        try:
            flows = ring_flows(fab, ring, per_rank, params, ordered=(g, dom))
        except NoNetwork:
            loads.append((np.zeros(0, np.int64), np.zeros(0), 1.0))
            lats.append(0.0)
            dead.append(True)
            continue
        loads.append(_sparse(load_of(flows, space.size), space))  # many rings: never rings × resources dense
        lats.append(float(flows.lat_us.max(initial=0.0)) * 1e-6 * steps)
        dead.append(False)
    every = loads + [_sparse(ld, space) for ld in background or []]
    if not loads:
        return []
    job = np.repeat(np.arange(len(every)), [len(nz) for nz, _, _ in every])
    res = np.concatenate([nz for nz, _, _ in every])
    xs, _ = sparse_fair(job, res, np.concatenate([v for _, v, _ in every]), effective_cap(space, params),
                        len(every), np.array([u for _, _, u in every]))
    return [(np.inf, 0.0) if d else (1.0 / x if x > 0 else np.inf, lat)
            for x, lat, d in zip(xs[:len(rings)], lats, dead, strict=True)]


def _sparse(load: np.ndarray, space) -> tuple[np.ndarray, np.ndarray, float]:
    """(resources, bytes on each, flow unit) of a dense load."""
    nz = np.flatnonzero(load)
    return nz, load[nz], flow_unit(load, space)


def dp_allreduce_and_load(fab: Fabric, gpus, size_bytes: float, tp: int = 1, pp: int = 1, *,
                          params: CollectiveParams | None = None, ecmp: int | None = None,
                          ) -> tuple[float, float, np.ndarray]:
    """(bandwidth s, latency s, load) of a job's data-parallel all-reduce alone, for the simulator.

    ``tp = pp = 1``: :func:`allreduce_and_load` (ring or tree, the faster). With tensor-parallel
    groups or pipeline stages the job runs the :func:`dp_rings` at once, each of
    ``size_bytes / (tp·pp)``; their loads add up and the bandwidth part is that sum's bottleneck
    (every ring progressing at one rate, which is when the last of them ends if the links stay busy;
    ``placement.cost.dp_rings_time`` takes the slowest ring's max-min share, no shorter, with that
    ring's own latency, where this adds the largest ring latency). A
    ring that cannot run (a host without a NIC) makes the job's time infinite."""
    if tp <= 1 and pp <= 1:
        t, load = allreduce_and_load(fab, gpus, size_bytes, params=params, ecmp=ecmp)
        return t.bandwidth_s, t.latency_s, load
    _, params = check_call(fab, [], size_bytes, "allreduce", ecmp, params)
    net = resources(fab, ecmp)
    load, lat = np.zeros(net.size), 0.0
    for ring in dp_rings(fab, gpus, tp, pp):
        t, ring_load = allreduce_and_load(fab, ring, size_bytes / (tp * pp), params=params, ecmp=ecmp,
                                          algos=("ring",))
        if not np.isfinite(t.seconds):
            return np.inf, 0.0, np.zeros_like(load)
        load += ring_load
        lat = max(lat, t.latency_s)
    cap = effective_cap(net, params)
    nz = np.flatnonzero(load)
    return float((load[nz] / 1e9 / cap[nz]).max(initial=0.0)), lat, load
