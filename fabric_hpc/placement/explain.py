"""Why a request cannot be placed: cheap necessary conditions checked before any solver runs.

Each check names the binding constraint and what is closest, e.g. "needs 64 GPUs in one nvlink
domain; the largest free block is 48 in r003; at least 3 jobs would have to end".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fabric_hpc.placement.contract import PlacementInfeasible
from fabric_hpc.placement.levels import domain_sums

if TYPE_CHECKING:
    from fabric_hpc.placement.problem import Problem


def unit_name(p: Problem) -> str:
    return f"hosts with {p.gpn} free GPUs" if p.nodes_mode else "GPUs"


def domain_capacity(p: Problem, level: int) -> np.ndarray:
    return domain_sums(p.levels, level, p.cap)


def blocking_jobs(p: Problem, deficit_gpus: int, hosts: np.ndarray | None = None) -> int:
    """At least how many running jobs would have to end to free ``deficit_gpus`` eligible GPUs."""
    owner = p.state.owner
    gpu_ok = p.host_ok[p.fab.index.gpu_host]
    if hosts is not None:
        gpu_ok &= np.isin(p.fab.index.gpu_host, hosts)
    held = owner[gpu_ok & (owner >= 0)]
    if deficit_gpus <= 0 or held.size == 0:
        return 0
    sizes = np.sort(np.bincount(held))[::-1]
    k = int(np.searchsorted(np.cumsum(sizes), deficit_gpus)) + 1
    return min(k, int((sizes > 0).sum()))


def _fail(p: Problem, message: str, hint: str | None = None, **facts: Any) -> PlacementInfeasible:
    facts.setdefault("unit", unit_name(p))
    return PlacementInfeasible(message, explanation={"request": p.request.describe(), **facts}, hint=hint)


def diagnose(p: Problem) -> None:
    """Raise :class:`PlacementInfeasible` when a necessary condition fails; else return."""
    r, lv = p.request, p.levels
    need = p.units
    gpus_needed = need * (p.gpn or 1)
    eligible_gpus = p.eligible_gpus()
    if eligible_gpus < gpus_needed or (p.nodes_mode and p.eligible_hosts_with(p.gpn) < need):
        hosts = int(p.host_ok.sum())
        if r.gpu_model or r.features or r.include or r.exclude:
            types = p.fab.spec.host_types.values()
            where = " matching the request's model/features/include/exclude"
            hint = ("relax gpu_model, features, include or exclude (GPU models here: "
                    f"{', '.join(sorted({t.gpu_model for t in types}))}; features: "
                    f"{', '.join(sorted({f for t in types for f in t.features})) or 'none'})")
        elif p.nodes_mode:  # the whole fabric is too small: only a smaller request can fit
            where, hint = "", f"ask for at most {p.eligible_hosts_with(p.gpn)} nodes with {p.gpn} GPUs each"
        else:
            where, hint = "", f"ask for at most {eligible_gpus} GPUs"
        raise _fail(p, f"the fabric has only {eligible_gpus} GPUs on {hosts} hosts{where}; "
                    f"{r.describe()} cannot ever fit", hint, constraint="eligibility", needed=need,
                    largest=eligible_gpus)
    if r.rail_aligned and p.gpn < p.free_mat.shape[1] and not p.patterns:
        raise _fail(p, "rail_aligned: no set of local GPU indices is free on any host", constraint="rail_aligned",
                    needed=need, largest=0)
    total = int(p.cap.sum())
    if total < need:
        deficit = (need - total) * (p.gpn or 1)
        jobs = blocking_jobs(p, deficit)
        raise _fail(p, f"needs {need} {unit_name(p)}; only {total} are free"
                    + (f"; at least {jobs} running job(s) would have to end" if jobs else ""),
                    "wait for jobs to end, or ask for fewer GPUs", constraint="capacity", needed=need,
                    largest=total, blocking_jobs=jobs)
    for level, limit, what, name in ((p.within, 1, "within", r.within),
                                     (p.max_level, r.max_domains, "max_domains", r.max_domains_level)):
        if level is not None:
            _check_domains(p, level, int(limit), what, need, _display(name))
    if p.slice_level is not None:
        caps = domain_capacity(p, p.slice_level)
        fit = int((caps // p.slice_size).sum())
        if fit < r.slices:
            raise _fail(p, f"needs {r.slices} slices of {p.slice_size} {unit_name(p)}, each in one "
                        f"{_display(r.slice_level)}; only {fit} such slices are free", constraint="slices",
                        needed=int(r.slices), largest=fit, level=lv.chain[p.slice_level])


def _display(level: str | None) -> str:
    return {"nvlink": "NVLink domain", "rack": "rack", "host": "host"}.get(level or "", f"{level} group")


def _check_domains(p: Problem, level: int, limit: int, what: str, need: int, name: str) -> None:
    lv = p.levels
    caps = domain_capacity(p, level)
    order = np.argsort(-caps, kind="stable")
    best = int(caps[order[:limit]].sum())
    if best >= need:
        return
    top = int(order[0])
    where = lv.dom_names[level][top]
    members = np.flatnonzero(lv.host_dom[:, level] == top)
    jobs = blocking_jobs(p, (need - int(caps[top])) * (p.gpn or 1), members) if limit == 1 else 0
    scope = f"one {name}" if limit == 1 else f"at most {limit} of {name}s"
    msg = (f"needs {need} {unit_name(p)} in {scope}; the largest free block is {int(caps[top])} in {where}"
           if limit == 1 else f"needs {need} {unit_name(p)} in {scope}; the best {limit} hold {best}")
    if jobs:
        msg += f"; at least {jobs} job(s) there would have to end first"
    raise _fail(p, msg, f"wait, or relax {what}", constraint=what, needed=need, largest=best if limit > 1
                else int(caps[top]), where=where, level=lv.chain[level], blocking_jobs=jobs)
