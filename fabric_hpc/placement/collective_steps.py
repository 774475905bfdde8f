"""Stepped collective form: concurrent ring collectives as step-synchronised flows (pure numpy).

The fluid form of :mod:`fabric_hpc.placement.collective` gives each job one progress rate and its
time-averaged max-min share of every resource. A real ring is not fluid: each of its ``2(n-1)``
(all-reduce) or ``n-1`` (all-gather / reduce-scatter) steps sends one chunk on every ring edge, and
the next step starts only when the slowest edge of this one has delivered (NCCL's ring waits for
its neighbour's chunk). So a ring's flows that are not its bottleneck burst and then idle, and
another job sharing a link with such a flow is slowed while the burst lasts, more or less than the
average says (docs/collective-model.md, "Two forms").

This module simulates that: every job repeats its step — the flows of :func:`ring_flows` for one
step's bytes, each starting after its own path latency — and every flow in flight gets its
per-flow max-min fair rate over all jobs' flows in flight (:func:`fairshare.flow_fair_rates`,
recomputed at every flow start and finish: a fluid network within the step, as SimGrid's CM02
model; ``share="latency"`` weighs each flow's share by the inverse of its path latency, CM02's own
rule, which only matters where two flows of different latency share one link). A job's step ends
when its last flow has delivered; its next step starts then. A job's collective time is its
number of steps × its mean step time over the simulated window (every job at least ``min_steps``
steps; one step when the job is alone, all its steps being the same).

Cost: 13–78 ms of CPU for 2–4 concurrent jobs (docs/benchmarks.md, "Collective
model: fluid and stepped forms against SimGrid"); the fluid form stays the one the simulator and
the placer call (one fair-share solve per evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.collective import (CollectiveParams, CollectiveTime, NoNetwork, _domains, check_call,
                                             effective_cap, resources, ring_flows, steps_and_bytes)
from fabric_hpc.placement.fairshare import flow_fair_rates

if TYPE_CHECKING:
    from fabric_hpc.placement.collective import GpuIndices
    from fabric_hpc.topology import Fabric

__all__ = ["JobSteps", "job_steps", "stepped_times", "stepped_collective_time"]

RING_KINDS = ("allreduce", "allgather", "reducescatter")
SHARES = ("flow", "latency")
#: Events simulated at most per call (a guard: 2-4 jobs of the SimGrid set need a few hundred).
MAX_EVENTS = 200_000
#: Ring steps each job runs back to back at most (``min_steps``; more never changes the steady state).
MAX_STEPS = 10_000


@dataclass(frozen=True)
class JobSteps:
    """One job's ring step: ``steps`` per collective; flow ``flow[k]`` crosses resource ``res[k]``;
    flow f carries ``size[f]`` bytes per step and starts ``lat_s[f]`` after the step begins.
    ``steps == 0``: nothing to send (one GPU); ``runs is False``: no network path (a domain
    without a NIC), the collective cannot run."""

    steps: int
    flow: np.ndarray
    res: np.ndarray
    size: np.ndarray
    lat_s: np.ndarray
    ecmp: bool
    runs: bool = True

    @property
    def nflows(self) -> int:
        return len(self.size)


def _empty(ecmp: bool, runs: bool) -> JobSteps:
    z = np.zeros(0, np.int64)
    return JobSteps(0, z, z, np.zeros(0), np.zeros(0), ecmp, runs)


def job_steps(fab: Fabric, gpus: GpuIndices, size_bytes: float, *, kind: str = "allreduce",
              params: CollectiveParams | None = None, ecmp: int | None = None) -> JobSteps:
    """The ring step of a collective of ``size_bytes`` on GPU indices ``gpus`` (``kind`` and
    ``size_bytes`` as :func:`collective.collective_time`; ``ecmp``: the job's flow-hash salt)."""
    if kind not in RING_KINDS:
        raise ConfigError(f"the stepped form models ring collectives, not {kind!r}",
                          hint=f"kinds: {RING_KINDS}; use collective.collective_time for all-to-all")
    gpus, params = check_call(fab, gpus, size_bytes, kind, ecmp, params, distinct=True)
    n = len(gpus)
    if n <= 1:
        return _empty(ecmp is not None, True)
    g, dom = _domains(fab, gpus)
    m, kmax = int(dom[-1]) + 1, int(np.bincount(dom).max())
    per_rank, steps = steps_and_bytes(kind, "ring", n, m, kmax, size_bytes)
    try:
        fl = ring_flows(fab, gpus, per_rank / steps, params, ordered=(g, dom), ecmp=ecmp)
    except NoNetwork:
        return _empty(ecmp is not None, False)
    return JobSteps(steps, fl.flow, fl.res, fl.size, fl.lat_us * 1e-6, ecmp is not None)


def stepped_times(fab: Fabric, jobs: Sequence[JobSteps], *, params: CollectiveParams | None = None,
                  min_steps: int = 8, share: str = "flow") -> np.ndarray:
    """Seconds per collective of each of ``jobs`` running back to back together (0 for a job with
    nothing to send, ``inf`` for one that cannot run). All jobs must be in the same routing mode
    (all with ECMP salts or none). ``share``: ``"flow"``, equal max-min shares per flow (the
    model's rule); ``"latency"``, shares weighted by the inverse of each flow's path latency, as
    SimGrid's CM02 model shares a link (docs/collective-model.md, "Two forms")."""
    params = params or CollectiveParams()
    if share not in SHARES:
        raise ConfigError(f"unknown share rule {share!r}", hint=f"one of {SHARES}")
    if isinstance(min_steps, bool) or not isinstance(min_steps, (int, np.integer)) or not 1 <= min_steps <= MAX_STEPS:
        raise ConfigError(f"min_steps must be a whole number of ring steps in 1..{MAX_STEPS}, not {min_steps!r}",
                          hint="the default 8 is enough for the jobs to reach their steady state")
    modes = {j.ecmp for j in jobs}
    if len(modes) > 1:
        raise ConfigError("stepped_times: some jobs are ECMP-hashed and some not",
                          hint="give every job an ECMP salt, or none")
    out = np.array([0.0 if j.runs else np.inf for j in jobs])
    live = [i for i, j in enumerate(jobs) if j.runs and j.steps > 0]
    if not live:
        return out
    cap = effective_cap(resources(fab, 0 if True in modes else None), params)
    sel = [jobs[i] for i in live]
    off = np.r_[0, np.cumsum([j.nflows for j in sel])]
    flow = np.concatenate([j.flow + off[i] for i, j in enumerate(sel)])
    res = np.concatenate([j.res for j in sel])
    size = np.concatenate([j.size for j in sel])
    lat = np.concatenate([j.lat_s for j in sel])
    owner = np.repeat(np.arange(len(sel)), [j.nflows for j in sel])
    ids, res = np.unique(res, return_inverse=True)  # the resources in use, numbered 0..
    weight = 1.0 / np.maximum(lat, 1e-9) if share == "latency" else None
    step = _simulate(flow, res, size, lat, owner, cap[ids] * 1e9, min_steps if len(sel) > 1 else 1, weight)
    out[live] = step * np.array([j.steps for j in sel])
    return out


def _simulate(flow: np.ndarray, res: np.ndarray, size: np.ndarray, lat: np.ndarray, owner: np.ndarray,
              cap: np.ndarray, min_steps: int, weight: np.ndarray | None) -> np.ndarray:
    """Mean step time of each job (``owner`` of each flow) over a window where every job has made at
    least ``min_steps`` steps; all jobs start their first step at time 0. ``cap`` in bytes/s."""
    nf, nj = len(size), int(owner.max()) + 1
    now = 0.0
    start = lat.copy()  # when each flow begins to move bytes in its job's current step
    rem = size.astype(np.float64).copy()
    done = rem <= 0
    count = np.zeros(nj, np.int64)
    end = np.zeros(nj)
    for _ in range(MAX_EVENTS):
        moving = ~done & (start <= now)
        t_next, fin = np.inf, np.zeros(nf, bool)
        if moving.any():
            inc = moving[flow]
            rate = flow_fair_rates(flow[inc], res[inc], nf, cap, weight)
            with np.errstate(divide="ignore"):
                t_fin = np.where(moving, now + rem / np.where(moving, rate, 1.0), np.inf)
            t_next = float(t_fin.min())
        waiting = ~done & (start > now)
        if waiting.any():
            t_next = min(t_next, float(start[waiting].min()))
        if moving.any():
            fin = moving & (t_fin <= t_next * (1 + 1e-12))
            rem = np.where(moving, rem - rate * (t_next - now), rem)
            rem[fin] = 0.0
            done |= fin
        now = t_next
        ended = np.bincount(owner, weights=~done, minlength=nj) == 0
        if ended.any():
            count[ended] += 1
            end[ended] = now
            again = ended[owner]
            rem[again], done[again], start[again] = size[again], size[again] <= 0, now + lat[again]
            if count.min() >= min_steps:
                break
    return end / np.maximum(count, 1)


def stepped_collective_time(fab: Fabric, gpus: GpuIndices, size_bytes: float, *, kind: str = "allreduce",
                            params: CollectiveParams | None = None, background: Sequence[JobSteps] = (),
                            ecmp: int | None = None, min_steps: int = 8, share: str = "flow") -> CollectiveTime:
    """Time of one ring collective on ``gpus`` in the stepped form, beside the ``background`` jobs'
    rings (:func:`job_steps`, same routing mode) running back to back (``min_steps``, ``share``: as
    :func:`stepped_times`). ``bottleneck`` is the resource kind the job's own step loads most (as
    the fluid form alone)."""
    params = params or CollectiveParams()
    me = job_steps(fab, gpus, size_bytes, kind=kind, params=params, ecmp=ecmp)
    if me.steps == 0:
        return (CollectiveTime(0.0, "none", np.inf, "none") if me.runs
                else CollectiveTime(np.inf, "ring", 0.0, "nic", np.inf, 0.0))
    if size_bytes == 0:  # nothing to send: each step is its latency (as the fluid form)
        lat = float(me.lat_s.max()) * me.steps
        return CollectiveTime(lat, "ring", 0.0, "none", 0.0, lat)
    secs = float(stepped_times(fab, [me, *background], params=params, min_steps=min_steps, share=share)[0])
    space = resources(fab, ecmp)
    load = np.bincount(me.res, weights=me.size[me.flow], minlength=space.size)
    nz = np.flatnonzero(load)
    worst = nz[int(np.argmax(load[nz] / effective_cap(space, params)[nz]))] if nz.size else -1
    n = len(np.unique(np.asarray(gpus)))
    lat = float(me.lat_s.max()) * me.steps
    factor = 2.0 * (n - 1) / n if kind == "allreduce" else (n - 1) / n
    busbw = factor * size_bytes / secs / 1e9 if secs > 0 else np.inf
    where = ("nvlink", "nic", "uplink")[int(space.kind[worst])] if worst >= 0 else "none"  # size 0: latency only
    return CollectiveTime(secs, "ring", float(busbw), where, secs - lat, lat)
