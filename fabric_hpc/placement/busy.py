"""Where the running jobs' traffic is, for the solvers (``CostWeights.contention`` on).

The cost model sees the running jobs' background traffic (:meth:`Problem.background`), but the
greedy fill chooses domains by capacity alone. :func:`host_busy` condenses the background into one
number per host: the most time any network resource on its way out (its NICs, its switch groups'
uplinks and downlinks at every level) spends on the running jobs' collectives, ``Σ bytes / capacity``.
:func:`avoiding_caps` turns it into a few capacity vectors that leave the busiest hosts out, for
greedy to fill as extra candidates where the running jobs' traffic slows its plain fill
(:func:`slowed`); the full cost model picks among them, so a candidate is only kept where its
modelled collective (beside the running jobs) is faster, or as fast and cheaper.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np

from fabric_hpc.placement.cost import evaluate
from fabric_hpc.placement.netmodel import fabric_net

if TYPE_CHECKING:
    from fabric_hpc.placement.contract import Placement
    from fabric_hpc.placement.problem import Problem

#: At most this many extra greedy candidates (busiest-host thresholds) per problem.
MAX_AVOIDING = 4


def host_busy(p: Problem) -> np.ndarray | None:
    """Per host: seconds of the running jobs' collectives on the busiest network resource the host
    reaches the fabric through (NICs, uplinks and downlinks of every level); None when ``contention``
    is off or no multi-GPU job is running."""
    background = p.background()
    if not background:
        return None
    net = fabric_net(p.fab)
    load = np.sum(background, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        util = np.where(np.isfinite(net.cap) & (net.cap > 0), load / (net.cap * 1e9), 0.0)
    util = np.r_[util, 0.0]  # index -1 (no such resource) reads 0
    res = np.concatenate([net.nic_tx[:, None], net.nic_rx[:, None], net.up, net.down], axis=1)
    per_gpu = util[res].max(axis=1)
    out = np.zeros(len(p.fab.hosts))
    np.maximum.at(out, p.fab.index.gpu_host, per_gpu)
    return out


def avoiding_caps(p: Problem) -> list[np.ndarray]:
    """Capacity vectors (``p.cap`` with some hosts set to 0) that leave out the hosts whose
    :func:`host_busy` is at least a threshold: every busy host first, then only the busiest, at up
    to :data:`MAX_AVOIDING` thresholds spread over the busy hosts' distinct levels; only those with
    enough capacity left for the request. Empty without contention or background traffic."""
    busy = host_busy(p)
    if busy is None:
        return []
    cap = p.cap
    levels = np.unique(busy[(cap > 0) & (busy > 0)])
    if not len(levels):
        return []
    spread = np.linspace(0, len(levels) - 1, min(MAX_AVOIDING, len(levels)))
    picks = np.unique(spread.round().astype(np.int64))
    out = []
    for t in levels[picks].tolist():
        kept = np.where(busy >= t, 0, cap)
        if int(kept.sum()) >= p.units and not any(np.array_equal(kept, c) for c in out):
            out.append(kept)
    return out


def slowed(p: Problem, placed: Placement) -> bool:
    """Whether the running jobs' traffic makes ``placed``'s modelled collective (``comm_ms``) slower
    than it is alone on the fabric (False without contention)."""
    if not p.background():
        return False
    alone = copy.copy(p)  # the same arrays, without the background (evaluate reads only these)
    alone.weights = p.weights.model_copy(update={"contention": False})
    alone._background = None
    gpus = np.array(sorted(p.fab.gpu_pos[g] for g in placed.gpus), np.int64)
    return placed.breakdown["comm_ms"] > evaluate(alone, gpus)[1]["comm_ms"]
