"""A job's slowdown on a placement: the simulator's model, shared with the scheduler.

The simulator (:mod:`fabric_hpc.sim.contention`) stretches a running job's remaining work by::

    stretch = ((1 - f) + f · comm(placement)) / ((1 - f) + f · comm(compact))     (≥ 1)

with ``f`` the job's ``comm_fraction`` and ``comm`` the step's communication over the compact
placement's (:mod:`fabric_hpc.placement.step`). The communication profile, the compact reference
and the stretch formula live here so that the scheduler can price a placement with the same model
without importing the simulator (which imports the scheduler): a gang held for a compact placement
counts the run time it would lose on the placement it would otherwise get when it weighs a
preemption (docs/scheduler.md, "Topology-aware admission"). :func:`stretch_alone` is the stretch
the simulator gives a job alone on the fabric (contention off, spread uplinks).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.collective import CollectiveParams, collective_time
from fabric_hpc.placement.parallel import dp_allreduce_and_load
from fabric_hpc.placement.step import default_shares, group_term, group_times, reference_times, step_comm
from fabric_hpc.placement.step import ratio as _ratio

#: Default share of step time in exposed collectives: communication is 20 % to over 50 % of
#: iteration time in distributed training (arXiv:2512.24750, docs/scheduler.md); the low half.
DEFAULT_COMM_FRACTION = 0.30
#: Default bytes all-reduced per step (the placement cost's modelled collective, docs/placement.md).
DEFAULT_COMM_BYTES = 256 * 2**20
#: The times of a job without TP groups or pipeline stages (see :func:`groups_and_norm`).
NO_GROUPS = (0.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class CommProfile:
    """What share of a job's step is communication, how many bytes a step all-reduces, and which
    shares of the communication are tensor-parallel all-reduces and pipeline point-to-point sends
    (as measured with the sends across the network); the data-parallel all-reduce has the rest."""

    fraction: float = DEFAULT_COMM_FRACTION
    bytes: float = DEFAULT_COMM_BYTES
    tp_share: float = 0.0
    pp_share: float = 0.0

    @classmethod
    def of(cls, job) -> CommProfile:
        """The job's profile from ``meta`` (``comm_fraction``, ``comm_bytes``, ``comm_tp_share``,
        ``comm_pp_share``), else the defaults (the shares: only for a request with ``tp`` / ``pp``)."""
        meta = job.meta or {}
        tp, pp = (job.request.tp or 1) > 1, (job.request.pp or 1) > 1
        keys = ("comm_fraction", "comm_bytes", "comm_tp_share", "comm_pp_share")
        dflt = (DEFAULT_COMM_FRACTION, DEFAULT_COMM_BYTES, *default_shares(tp, pp))
        try:
            f, b, st, sp = (float(meta.get(k, d)) for k, d in zip(keys, dflt, strict=True))
        except (TypeError, ValueError):
            f = b = st = sp = math.nan
        if not (0.0 <= f <= 1.0 and 0 < b < math.inf and 0.0 <= st and 0.0 <= sp and st + sp <= 1.0
                and (tp or st == 0) and (pp or sp == 0)):
            given = ", ".join(f"{k}={meta.get(k)!r}" for k in keys if k in meta)
            raise ConfigError(f"job {job.id}: communication profile out of range ({given or 'defaults'})",
                              hint="comm_fraction in 0..1, comm_bytes > 0; comm_tp_share / comm_pp_share ≥ 0 "
                                   "with a sum ≤ 1, and only for a request with tp / pp")
        return cls(f, b, st, sp)


def ideal_time(fab, n: int, size: float, tp: int, pp: int, params: CollectiveParams) -> float:
    """The data-parallel collective on ``n`` GPUs placed compactly (the first ``n`` in topology
    order), alone: ``t_ideal``."""
    if tp > 1 or pp > 1:
        bw, lat, _ = dp_allreduce_and_load(fab, np.arange(n), size, tp, pp, params=params)
        return bw + lat
    return collective_time(fab, np.arange(n), size, params=params, nvls=False).seconds


def groups_and_norm(prof: CommProfile, times: tuple[float, ...]) -> tuple[float, float]:
    """A tp/pp job's communication terms alone from its group times (``Contention._group_times``):
    the TP and send parts of its communication at its placement, and its step at the compact
    placement, both in units of the step where the shares were measured (the sends crossing the
    network). 1.0 (no division) for a job without sends or whose compact sends already cross the
    network."""
    tp_t, tp_i, pp_t, ref, compact = times
    r_tp, r_pp = _ratio(tp_t, tp_i), _ratio(pp_t, ref)
    groups = group_term(prof.tp_share, prof.pp_share, r_tp, r_pp)
    if not prof.pp_share or compact == 1.0:
        return groups, 1.0
    return groups, (1.0 - prof.fraction) + prof.fraction * (1.0 - prof.pp_share + prof.pp_share * compact)


def stretch_of(prof: CommProfile, ideal: float, t: float, groups: float, norm: float) -> float:
    """The stretch of a job whose data-parallel collective takes ``t`` s (``ideal`` s compactly,
    alone) and whose TP / send terms are ``groups`` (:func:`groups_and_norm`, with ``norm``)."""
    if ideal <= 0:
        if not groups:
            return 1.0
        dp = 1.0  # every data-parallel ring has one GPU: nothing to all-reduce
    else:
        dp = _ratio(t, ideal)
    comm = step_comm(prof.tp_share, prof.pp_share, dp, groups)
    return max(1.0, ((1.0 - prof.fraction) + prof.fraction * comm) / norm)


def stretch_alone(fab, job, gpus: Iterable[int | str], params: CollectiveParams | None = None) -> float:
    """The stretch the simulator gives ``job`` on ``gpus`` (indices or names) alone on the fabric
    (``Contention(fab, contention=False)``; uplinks spread, no ECMP): 1.0 on its compact placement."""
    params = params or CollectiveParams()
    pos = fab.gpu_pos
    g = np.unique(np.fromiter((x if isinstance(x, (int, np.integer)) else pos[x] for x in gpus), np.int64))
    prof, tp, pp = CommProfile.of(job), job.request.tp or 1, job.request.pp or 1
    if len(g) <= 1 or prof.fraction == 0:
        return 1.0
    bw, lat, _ = dp_allreduce_and_load(fab, g, prof.bytes, tp, pp, params=params)
    times = NO_GROUPS
    if tp > 1 or pp > 1:
        tp_i, ref, compact = reference_times(fab, len(g), tp, pp, params)
        tp_t, pp_t = group_times(fab, g, tp, pp, params)
        times = (tp_t, tp_i, pp_t, ref, compact)
    groups, norm = groups_and_norm(prof, times)
    return stretch_of(prof, ideal_time(fab, len(g), prof.bytes, tp, pp, params), bw + lat, groups, norm)


def stretch_loss(fab, job, gpus: tuple[str, ...], memo=None) -> float:
    """How much slower ``job`` runs on ``gpus`` than on its compact reference (the first GPUs of
    the fabric), alone: ``stretch(gpus) - stretch(compact)`` (:func:`stretch_alone`), never negative.
    ``memo`` (a :class:`~fabric_hpc.scheduler.caches.Memo`, optional) remembers both stretches."""
    prof, req = CommProfile.of(job), job.request
    shape = (prof, req.tp or 1, req.pp or 1)
    out = []
    for key, where in (((shape, gpus), gpus), ((shape, len(gpus)), range(len(gpus)))):
        hit = memo.get(key) if memo is not None else None
        if hit is None:
            hit = stretch_alone(fab, job, where)
            if memo is not None:
                memo.put(key, hit)
        out.append(hit)
    return max(0.0, out[0] - out[1])
