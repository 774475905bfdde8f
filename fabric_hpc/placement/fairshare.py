"""Max-min fair sharing of network resources between concurrent collectives (pure numpy).

Used by :mod:`fabric_hpc.placement.collective` (``collective_time(background=...)``) and the
simulator's contention model (docs/collective-model.md, "Contention").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fabric_hpc.placement.collective import Net
    from fabric_hpc.placement.ecmp import Ports

__all__ = ["fair_rates", "flow_fair_rates", "flow_unit", "sparse_fair"]


def fair_rates(loads: list[np.ndarray], cap: np.ndarray, unit: np.ndarray | None = None) -> np.ndarray:
    """Max-min fair progress rates (collectives per second) of concurrent collectives.

    ``loads[j]`` is job j's bytes per resource (one collective); job j's flows all progress at its
    rate ``x_j`` (a ring moves as fast as its slowest edge). Progressive filling: all unfrozen jobs'
    per-flow bandwidths ``x_j · unit_j`` rise together until a resource is full, which freezes every
    job using it — max-min fair per flow, as the network shares a link (``unit_j``: the bytes of one
    of job j's network flows per collective, :func:`flow_unit`; None: per job)."""
    return _fair(loads, cap, unit)[0]


def flow_unit(load: np.ndarray, space: Net | Ports) -> float:
    """Bytes of one network flow per collective of a ring's ``load``: the least a NIC carries (every
    network flow of a ring carries the same bytes; 1.0 when it has none)."""
    hit = _NIC_SPAN.get(id(space))
    if hit is None or hit[0] is not space:
        nic = np.flatnonzero(space.kind == 1)  # one contiguous block (tx, then rx) in both spaces
        hit = _NIC_SPAN[id(space)] = (space, int(nic[0]) if nic.size else 0, int(nic.max(initial=-1)) + 1)
    seg = load[hit[1]:hit[2]]
    on = seg[seg > 0]
    return float(on.min()) if on.size else 1.0


_NIC_SPAN: dict[int, tuple[Net | Ports, int, int]] = {}


def _fair(loads: list[np.ndarray], cap: np.ndarray,
          unit: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rates, the resource that froze each job, -1 for none) of dense per-job loads
    (:func:`sparse_fair` over their non-zero entries)."""
    if not loads:
        return np.zeros(0), np.zeros(0, np.int64)
    nzs = [np.flatnonzero(ld) for ld in loads]
    job = np.repeat(np.arange(len(loads)), [len(nz) for nz in nzs])
    res = np.concatenate(nzs)
    amount = np.concatenate([ld[nz] for ld, nz in zip(loads, nzs, strict=True)])
    return sparse_fair(job, res, amount, cap, len(loads), unit)


def sparse_fair(job: np.ndarray, res: np.ndarray, amount: np.ndarray, cap: np.ndarray, njobs: int,
                unit: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fair_rates` over an incidence list (job ``job[i]`` puts ``amount[i]`` bytes per
    collective on resource ``res[i]``; an entry per job and resource), so that memory grows with
    the entries, not with jobs × the fabric's resources (a stage boundary of 65,000 pairs on a
    256-SU fabric would need ~100 GiB dense). Returns (rates, the resource that froze each job, -1
    for none; the lowest-numbered where several filled at once)."""
    if not njobs:
        return np.zeros(0), np.zeros(0, np.int64)
    u = np.ones(njobs) if unit is None else np.asarray(unit, np.float64)
    keep = amount > 0
    job, res, amount = job[keep], res[keep], amount[keep]
    rid, r = np.unique(res, return_inverse=True)
    if njobs == 1:  # alone: the most loaded resource decides (what the filling gives)
        if not rid.size:
            return np.array([np.inf]), np.array([-1])
        ratio = np.bincount(r, weights=amount, minlength=len(rid)) / 1e9 / cap[rid]
        k = int(np.argmax(ratio))
        return np.array([1.0 / ratio[k]]), np.array([rid[k]])
    a = amount / (1e9 * u[job])  # fill per-flow bandwidth when ``unit``
    c = cap[rid].astype(np.float64)
    x = np.zeros(njobs)
    by = np.full(njobs, -1, np.int64)
    active = np.ones(njobs, bool)
    left = c.copy()
    none = len(rid)
    while active.any():
        on = active[job]
        demand = np.bincount(r[on], weights=a[on], minlength=len(rid))
        live = demand > 0
        if not live.any():
            x[active] = np.inf
            break
        step = np.min(left[live] / demand[live])
        x[active] += step
        left = left - step * demand
        full = live & (left <= 1e-9 * c)
        hit = on & full[r]
        first = np.full(njobs, none, np.int64)
        np.minimum.at(first, job[hit], r[hit])
        newly = first < none
        by[newly] = rid[first[newly]]
        active &= ~newly
    return x / u, by


def flow_fair_rates(flow: np.ndarray, res: np.ndarray, nflows: int, cap: np.ndarray,
                    weight: np.ndarray | None = None) -> np.ndarray:
    """Max-min fair rate (GB/s) of each of ``nflows`` individual flows: flow ``flow[k]`` crosses
    resource ``res[k]`` (ids into ``cap``, GB/s; a short ``cap`` of the resources in use is
    cheaper than the fabric's whole resource space). Progressive filling, vectorised over the
    incidence: every unfrozen flow's rate rises together until a resource is full, which freezes
    the flows on it (the network's per-flow share; the stepped collective form uses it per ring
    step). A flow on no finite resource gets ``inf``. ``weight`` (per flow): weighted max-min, each
    unfrozen flow's rate rising in proportion to its weight (SimGrid's CM02 weighs a flow by the
    inverse of its route latency); None: equal shares."""
    r = np.asarray(res, np.int64)
    left = np.asarray(cap, np.float64).copy()
    tol = 1e-9 * np.where(np.isfinite(left), left, 0.0)
    rate = np.zeros(nflows)
    free = np.bincount(flow, minlength=nflows) > 0
    rate[~free] = np.inf
    w = np.ones(nflows) if weight is None else np.asarray(weight, np.float64)
    while free.any():
        on = free[flow]
        cnt = np.bincount(r[on], weights=w[flow[on]], minlength=len(left))
        live = np.flatnonzero(cnt)
        room = left[live] / cnt[live]
        first = int(np.argmin(room))
        inc = float(room[first])
        if not np.isfinite(inc):
            rate[free] = np.inf
            break
        rate[free] += inc * w[free]
        left -= inc * cnt
        full = (left <= tol) & (cnt > 0)
        full[live[first]] = True  # the resource that set the increment is full whatever the rounding
        frozen = np.zeros(nflows, bool)
        frozen[flow[on & full[r]]] = True
        free &= ~frozen
    return rate
