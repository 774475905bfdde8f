"""A training step's communication: one model for the placement cost and the simulator.

A job with tensor-parallel groups (``tp``) or pipeline stages (``pp``) communicates in three ways
per step: its data-parallel all-reduce (``tp·pp`` rings, :func:`~fabric_hpc.placement.parallel.dp_rings`),
its TP groups' all-reduces of activations, and the point-to-point sends between adjacent stages.
Their shares ``s_tp``, ``s_pp`` and ``s_dp = 1 - s_tp - s_pp`` of the communication time are those
of the step where they were measured (MegaScale: TP inside NVLink domains, stage boundaries across
the network; :data:`EXPOSED_PERCENT`), and each part is stretched by its own ratio::

    comm(P) = s_dp · t_dp(P) / t_dp(compact) + s_tp · r_tp(P) + s_pp · e(P) / e_ref

- ``t_dp``: the data-parallel all-reduce on the placement ``P``; ``compact``: the job's GPU count
  as the first GPUs of the empty fabric in topology order;
- ``r_tp``: every TP group all-reducing one micro-batch's activations (:data:`TP_BYTES`) at once,
  alone on the fabric, over the same on the compact placement (:func:`group_times`);
- ``e``: every stage-to-stage pair exchanging ``TP_BYTES / tp`` each way at once, alone
  (:func:`group_times`); ``e_ref``: one such pair between two NVLink domains, each GPU through its
  own NIC (:func:`send_reference`), the send the published shares saw.

With contention, the TP groups and sends that leave an NVLink domain (:func:`network_parts`) share
the network max-min fairly with other jobs' traffic and take longer by their bandwidth time there ×
(slow-down − 1): the simulator makes each a fair-share entity beside the data-parallel rings, the
placement cost passes the running jobs' loads to :func:`group_times` (docs/collective-model.md,
"TP all-reduces and stage sends between jobs").

The simulator (:mod:`fabric_hpc.sim.contention`) turns ``comm`` into a job's stretch; the placement
cost (:func:`fabric_hpc.placement.cost.step_parts`) takes ``comm`` in the data-parallel
all-reduce's milliseconds, so both rank placements of a job alike (docs/scheduler.md, "Tensor- and
pipeline-parallel jobs"; docs/placement.md, "Cost model").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fabric_hpc.placement.collective import (CollectiveParams, NoNetwork, _domains, effective_cap, resources,
                                             ring_flows, steps_and_bytes)
from fabric_hpc.placement.fairshare import flow_unit, sparse_fair
from fabric_hpc.placement.netmodel import _paths, fabric_net
from fabric_hpc.placement.parallel import ACTIVATION_BYTES, slowest_alone, stage_pairs, tp_groups

if TYPE_CHECKING:
    from fabric_hpc.topology import Fabric

#: Step time saved by overlapping each dimension's communication in MegaScale's ablation (Jiang
#: et al., NSDI'24, arXiv:2402.15627, Table 3: 175B model, TP = 8, PP = 8, 256 GPUs; MFU 53.3 ->
#: 55.5 % with TP overlap, -> 58.0 % with PP overlap, -> 59.5 % with DP overlap, so the step took
#: 1 - 53.3/55.5 = 3.96 %, 4.31 % and 2.52 % less): the exposed communication of each dimension,
#: in percent of the step. A tp / pp job's default shares of its communication time are these
#: weights over the dimensions it has (:func:`default_shares`).
EXPOSED_PERCENT = {"tp": 3.96, "pp": 4.31, "dp": 2.52}
#: One tensor-parallel all-reduce (:data:`~fabric_hpc.placement.parallel.ACTIVATION_BYTES`); a
#: stage boundary sends ``1/tp`` of it per TP rank. Only ratios of times are used, so the size
#: matters only through the latency's share.
TP_BYTES = ACTIVATION_BYTES
#: A part whose time is this many times its reference or more (or cannot run) counts as this.
MAX_COMM_RATIO = 100.0


def default_shares(tp: bool, pp: bool) -> tuple[float, float]:
    """(``s_tp``, ``s_pp``) of a job with tensor-parallel groups (``tp``) and/or pipeline stages
    (``pp``): :data:`EXPOSED_PERCENT` over the dimensions it has (data-parallel always); (0, 0)
    for a job with neither."""
    w = {"dp": EXPOSED_PERCENT["dp"], "tp": EXPOSED_PERCENT["tp"] * tp, "pp": EXPOSED_PERCENT["pp"] * pp}
    total = sum(w.values())
    return w["tp"] / total, w["pp"] / total


def ratio(t: float, ideal: float) -> float:
    """``t / ideal`` capped at :data:`MAX_COMM_RATIO` (a part that cannot run: the cap); 1.0 when
    the ideal takes no time."""
    if ideal <= 0:
        return 1.0
    return min(t / ideal, MAX_COMM_RATIO) if math.isfinite(t) else MAX_COMM_RATIO


def group_term(s_tp: float, s_pp: float, r_tp: float, r_pp: float) -> float:
    """The TP and send parts of ``comm(P)``: ``s_tp · r_tp + s_pp · r_pp``."""
    return s_tp * r_tp + s_pp * r_pp


def step_comm(s_tp: float, s_pp: float, dp_ratio: float, groups: float) -> float:
    """``comm(P)``: the data-parallel part ``(1 - s_tp - s_pp) · dp_ratio`` plus :func:`group_term`."""
    return (1.0 - s_tp - s_pp) * dp_ratio + groups


def group_times(fab: Fabric, gpus: np.ndarray, tp: int, pp: int, params: CollectiveParams | None = None,
                background: list[np.ndarray] | None = None) -> tuple[float, float]:
    """(seconds of the TP groups' all-reduce of :data:`TP_BYTES`, seconds of the stage-to-stage
    sends of ``TP_BYTES / tp`` each way), each with every group or pair at once and alone on the
    fabric (:func:`~fabric_hpc.placement.parallel.slowest_alone`; spread uplinks); 0.0 for a
    dimension the job lacks, infinite where a part cannot run (a host without a NIC).

    ``background`` (running jobs' loads, as ``collective_time`` takes them): each part's network
    traffic (:func:`network_parts`) shares the fabric max-min fairly with them, and its time grows
    by ``1/x - 1/x_alone`` (its pass rate beside them and alone): the time alone plus its bandwidth
    part there × (slow-down − 1), the simulator's rule (:mod:`fabric_hpc.sim.contention`)."""
    tp_t = slowest_alone(fab, tp_groups(fab, gpus, tp, pp), TP_BYTES, params) if tp > 1 else 0.0
    pp_t = slowest_alone(fab, stage_pairs(fab, gpus, tp, pp), TP_BYTES / tp, params) if pp > 1 else 0.0
    if background and math.isfinite(tp_t + pp_t):
        extra = {"tp": 0.0, "pp": 0.0}
        for part in network_parts(fab, np.asarray(gpus, np.int64), tp, pp, params):
            extra[part.kind] += _extra_beside(fab, part, background, params or CollectiveParams())
        tp_t, pp_t = tp_t + extra["tp"], pp_t + extra["pp"]
    return tp_t, pp_t


def _extra_beside(fab: Fabric, part: NetPart, background: list[np.ndarray], params: CollectiveParams) -> float:
    """Seconds a part's pass takes longer beside ``background`` than alone: one max-min filling
    over the part and the background jobs (sparse: their non-zero entries only)."""
    space = resources(fab, None)
    cap = effective_cap(space, params)
    job, res, amount, units = _background_incidence(fab, background)
    n = len(units)
    xs, _ = sparse_fair(np.r_[np.zeros(len(part.res), np.int64), job + 1], np.r_[part.res, res],
                        np.r_[part.load, amount], cap, n + 1, np.r_[part.unit, units])
    alone = part.bandwidth_s(cap)
    return max(1.0 / xs[0] - alone, 0.0) if xs[0] > 0 else math.inf


def _background_incidence(fab: Fabric, background: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """(job, resource, bytes) entries and flow units of dense background loads, remembered for the
    last list seen (a problem's background is one list, asked once per evaluated placement)."""
    hit = _BACKGROUND.get("last")
    if hit is not None and hit[0] is background:
        return hit[1]
    space = resources(fab, None)
    nzs = [np.flatnonzero(ld) for ld in background]
    out = (np.repeat(np.arange(len(nzs)), [len(nz) for nz in nzs]), np.concatenate(nzs),
           np.concatenate([ld[nz] for ld, nz in zip(background, nzs, strict=True)]),
           np.array([flow_unit(ld, space) for ld in background]))
    _BACKGROUND["last"] = (background, out)
    return out


_BACKGROUND: dict[str, tuple[list[np.ndarray], tuple[np.ndarray, ...]]] = {}


def send_reference(fab: Fabric, tp: int, params: CollectiveParams | None = None) -> float:
    """``e_ref``: a stage boundary's send as the published shares saw it, between two NVLink
    domains, each GPU through its own NIC (the first GPU with a NIC and the first of another
    domain, alone). On a fabric with one domain or no NICs, the same send between two hosts of its
    first GPU host's type (:func:`_pair_fabric`): it was 0.0 there (ratios of 1), so a placement's
    sends cost the share's constant, 8× what they cost on one host of a SuperPOD (gpus=8,pp=2)."""
    net = resources(fab, None)  # the NICs and ring domains (spread uplinks)
    has = np.flatnonzero(net.nic_key >= 0)
    other = has[net.ring_dom[has] != net.ring_dom[has[0]]] if has.size else has
    if not other.size:
        pair = _pair_fabric(fab)
        return 0.0 if pair is None else send_reference(pair, tp, params)
    return slowest_alone(fab, [np.array([has[0], other[0]])], TP_BYTES / tp, params)


#: a NIC for the stand-in pair where the host type has none: 400 Gb/s, as the generators' hosts
_STAND_IN_NIC_GBPS = 50.0


def _pair_fabric(fab: Fabric) -> Fabric | None:
    """Two hosts of ``fab``'s first GPU host's type (a NIC of :data:`_STAND_IN_NIC_GBPS` where it has
    none) under one switch per NIC: where ``e_ref`` is measured on a fabric with one NVLink domain.
    None: no host with GPUs."""
    from fabric_hpc.topology import build

    first = next((h for h in fab.hosts if fab.host_type(h).gpus), None)
    if first is None:
        return None
    ht = fab.host_type(first)
    if not ht.nics or ht.nic_gbps <= 0:
        ht = ht.model_copy(update={"nics": 1, "nic_gbps": _STAND_IN_NIC_GBPS})
    return build({"fabric": 1, "name": "e-ref-pair", "host_types": {"t": ht.model_dump()},
                  "hosts": [{"names": "p[1-2]", "type": "t"}],
                  "network": {"levels": ["leaf"], "groups": [
                      {"name": "leaf", "level": "leaf", "switches": ht.nics, "hosts": "p[1-2]"}]}})


def reference_times(fab: Fabric, n: int, tp: int, pp: int,
                    params: CollectiveParams | None = None) -> tuple[float, float, float]:
    """A job shape's constants: (seconds of the TP groups' all-reduce on the compact placement,
    ``e_ref`` (:func:`send_reference`; 0.0 without stages), the compact placement's sends over
    ``e_ref`` (:func:`ratio`)); the compact placement is the first ``n`` GPUs of the fabric."""
    tp_i, pp_i = group_times(fab, np.arange(n), tp, pp, params)
    ref = send_reference(fab, tp, params) if pp > 1 else 0.0
    return tp_i, ref, ratio(pp_i, ref)


def tp_floor(fab: Fabric, hosts: np.ndarray, tp: int, params: CollectiveParams | None = None) -> float:
    """The least time :func:`group_times` gives the TP groups of ``tp`` GPUs on any placement on
    ``hosts`` (host indices) that keeps every group inside one NVLink domain (the placer's hard
    constraint): :func:`~fabric_hpc.placement.parallel.slowest_alone` times such groups by their
    domain's shape (GPUs, NVLink and pair bandwidth), one group per shape, so this is one group on
    the fastest shape among the hosts' domains with room for one. Infinite when a host has a GPU
    outside every NVLink domain or no domain has room (nothing is bounded then)."""
    idx = fab.index
    gpus = np.flatnonzero(np.isin(idx.gpu_host, hosts))
    dom = idx.gpu_nvl[gpus]
    if tp <= 1 or not gpus.size or (dom < 0).any():
        return 0.0 if tp <= 1 else math.inf
    size = np.bincount(idx.gpu_nvl[idx.gpu_nvl >= 0])
    shapes: dict[tuple, np.ndarray] = {}
    for d in np.unique(dom).tolist():
        if size[d] >= tp:
            shapes.setdefault((float(idx.nvl_gbps[d]), float(idx.nvl_pair_gbps[d])),
                              np.flatnonzero(idx.gpu_nvl == d)[:tp])
    return min((slowest_alone(fab, [g], TP_BYTES, params) for g in shapes.values()), default=math.inf)


@dataclass(frozen=True)
class NetPart:
    """The network traffic of one part of a job's step (``kind``: ``"tp"``, the TP groups that cross
    NVLink domains; ``"pp"``, the stage-to-stage sends that do), every group or pair at once: bytes
    ``load[i]`` on resource ``res[i]`` (sorted, unique; ids of ``resources(fab, ecmp)``) per pass,
    ``unit`` the bytes of one of its flows (the per-flow fair share,
    :func:`~fabric_hpc.placement.fairshare.sparse_fair`). What the fair share between concurrent
    jobs sees of the part (docs/collective-model.md, "Contention")."""

    kind: str
    res: np.ndarray
    load: np.ndarray
    unit: float

    def bandwidth_s(self, cap: np.ndarray) -> float:
        """Seconds of one pass alone at the bottleneck of ``res`` (``cap``: effective GB/s by id)."""
        return float((self.load / 1e9 / cap[self.res]).max(initial=0.0))


def network_parts(fab: Fabric, gpus: np.ndarray, tp: int, pp: int, params: CollectiveParams | None = None,
                  ecmp: int | None = None) -> list[NetPart]:
    """The network traffic of the TP all-reduces and the stage sends of a job on GPU indices ``gpus``
    (sorted, unique; :func:`group_times`' groups and pairs, the same bytes), only of the groups and
    pairs that leave an NVLink domain (the others load their own GPUs' NVLink ports alone) and that
    can run (a GPU without a NIC sends nothing). ``ecmp``: the job's flow-hash salt (each flow takes
    hashed ports), None for spread uplinks. Sparse: memory grows with the flows, not the fabric."""
    params = params or CollectiveParams()
    out = []
    if tp > 1:
        part = _tp_part(fab, tp_groups(fab, gpus, tp, pp), params, ecmp)
        if part is not None:
            out.append(part)
    if pp > 1:
        part = _send_part(fab, stage_pairs(fab, gpus, tp, pp), TP_BYTES / tp, ecmp)
        if part is not None:
            out.append(part)
    return out


def _tp_part(fab: Fabric, groups: list[np.ndarray], params: CollectiveParams,
             ecmp: int | None) -> NetPart | None:
    nvl, kind = fab.index.gpu_nvl, resources(fab, ecmp).kind
    res, amount, unit = [], [], math.inf
    for g in groups:
        d = nvl[g]
        if d[0] >= 0 and (d == d[0]).all():
            continue
        ordered = _domains(fab, g)
        dom = ordered[1]
        per_rank, _ = steps_and_bytes("allreduce", "ring", len(g), int(dom[-1]) + 1,
                                      int(np.bincount(dom).max()), TP_BYTES)
        try:
            fl = ring_flows(fab, g, per_rank, params, ordered=ordered, ecmp=ecmp)
        except NoNetwork:
            continue
        res.append(fl.res)
        amount.append(fl.size[fl.flow])
        nic = kind[fl.res] == 1
        if nic.any():
            unit = min(unit, float(fl.size[fl.flow[nic]].min()))
    return _part("tp", fab, res, amount, unit, ecmp)


def _send_part(fab: Fabric, pairs: list[np.ndarray], size: float, ecmp: int | None) -> NetPart | None:
    if not pairs:
        return None
    net = fabric_net(fab)
    p = np.array(pairs, np.int64).reshape(-1, 2)
    p = p[(net.ring_dom[p[:, 0]] != net.ring_dom[p[:, 1]]) & (net.nic_key[p] >= 0).all(axis=1)]
    if not len(p):
        return None
    src, dst = np.r_[p[:, 0], p[:, 1]], np.r_[p[:, 1], p[:, 0]]
    _, res, _ = _paths(fab, net, src, dst, None if ecmp is None else (ecmp, np.zeros(len(src), np.int64)))
    return _part("pp", fab, [res], [np.full(len(res), float(size))], float(size), ecmp)


def _part(kind: str, fab: Fabric, res: list[np.ndarray], amount: list[np.ndarray], unit: float,
          ecmp: int | None) -> NetPart | None:
    """The :class:`NetPart` of the entries (resource, bytes), kept to the resources of the network."""
    if not res:
        return None
    r, a = np.concatenate(res), np.concatenate(amount)
    space = resources(fab, ecmp)
    keep = space.kind[r] != 0
    ids, inv = np.unique(r[keep], return_inverse=True)
    if not ids.size:
        return None
    load = np.bincount(inv, weights=a[keep], minlength=len(ids))
    ids.setflags(write=False)
    load.setflags(write=False)
    return NetPart(kind, ids, load, unit if math.isfinite(unit) and unit > 0 else 1.0)
