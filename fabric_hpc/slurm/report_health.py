"""Measures of ``fabric slurm report``: domains a job spans against the fewest it could span, the
modelled collective cost of a running job (the placement cost model), and cluster health.

* **Domains spanned / lower bound** (per domain level of the placement chain, e.g. ``leaf``,
  ``spine``): a job on ``N`` hosts with at most ``g`` GPUs on one host needs at least the ``k``
  largest domains whose hosts with ``g`` or more GPUs add up to ``N`` (an empty cluster's bound).
  A multi-host gang is *spread* when it spans more domains than that at some level.
* **Stranded GPUs** (fragmentation): free GPUs on hosts where no waiting gang could put a rank — a
  gang of ``N`` × ``g`` can use a host with ``g`` free GPUs when at least ``N`` such hosts exist.
* **Idle while gangs wait**: free GPUs (up) while at least one gang waits.

A *waiting* gang is a pending job asking for GPUs that is not held, not waiting for a dependency
and not waiting for a begin time of its own (a fabric job's BeginTime is the agent's deferral, so
it counts).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fabric_hpc.errors import FabricError
from fabric_hpc.placement.levels import fabric_levels
from fabric_hpc.placement.state import FREE, ClusterState
from fabric_hpc.topology import Fabric

def domain_bounds(fab: Fabric, gpus: np.ndarray) -> tuple[dict[str, int], dict[str, int]]:
    """(domains spanned per chain level, the fewest possible per level above the host)."""
    lv = fabric_levels(fab)
    hosts, per_host = np.unique(fab.index.gpu_host[gpus], return_counts=True)
    spans = {name: int(np.unique(lv.host_dom[hosts, j]).size) for j, name in enumerate(lv.chain)}
    g = int(per_host.max(initial=0))
    fits = (lv.host_gpus >= g).astype(np.int64)
    bounds = {}
    for j in range(1, len(lv.chain)):
        cap = np.sort(np.bincount(lv.host_dom[:, j], weights=fits).astype(np.int64))[::-1]
        k = int(np.searchsorted(np.cumsum(cap), len(hosts))) + 1
        bounds[lv.chain[j]] = min(k, spans[lv.chain[j]])
    return spans, bounds


def modelled_cost(fab: Fabric, state: ClusterState, job: str, gpus: list[int]) -> dict[str, float] | None:
    """The placement cost model's total and ring all-reduce time of the job's GPUs, judged on the
    cluster without the job (as when it was placed). None when the model cannot judge it."""
    from fabric_hpc.placement import parse_request
    from fabric_hpc.placement.cost import evaluate
    from fabric_hpc.placement.problem import Problem

    sel = np.sort(np.array(gpus, np.int64))
    _, per_host = np.unique(fab.index.gpu_host[sel], return_counts=True)
    uniform = bool((per_host == per_host[0]).all())
    text = f"nodes={per_host.size},gpus_per_node={per_host[0]}" if uniform else f"gpus={sel.size}"
    try:
        other = state.copy()
        other.release(job)
        total, breakdown, _ = evaluate(Problem(fab, other, parse_request(text, source=f"job {job}")), sel)
    except FabricError:
        return None
    return {"total": round(total, 4), "comm_ms": round(breakdown["comm_ms"], 4)}


def waiting(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pending gangs waiting for GPUs: not held, not waiting on a dependency (``blocked``, read from
    the job's priority and dependency text too, since Slurm resets the reason after every update), and
    not deferred by their own ``--begin``."""
    return [p for p in pending if p["gpus_per_node"] > 0 and not p["blocked"]
            and (p["fabric"] or p["slurm_reason"] != "BeginTime")]


def health(fab: Fabric, state: ClusterState, running: list[dict[str, Any]],
           pending: list[dict[str, Any]]) -> dict[str, Any]:
    free = state.owner == FREE
    host_free = np.bincount(fab.index.gpu_host, weights=free, minlength=len(fab.hosts)).astype(np.int64)
    gangs = waiting(pending)
    usable = np.zeros(len(fab.hosts), bool)
    for p in gangs:
        ok = host_free >= p["gpus_per_node"]
        if int(ok.sum()) >= p["nodes"]:
            usable |= ok
    free_total = int(free.sum())
    stranded = int(host_free[~usable].sum()) if gangs else 0
    multi = [r for r in running if len(r["hosts"]) > 1 and r["gpus"]]
    spread = sum(1 for r in multi if r["spread"])
    return {"free_gpus": free_total, "waiting_gangs": len(gangs),
            "waiting_gpus": sum(p["nodes"] * p["gpus_per_node"] for p in gangs),
            "stranded_gpus": stranded, "stranded_share": round(stranded / free_total, 4) if free_total else 0.0,
            "multi_host_gangs": len(multi), "spread_gangs": spread,
            "spread_share": round(spread / len(multi), 4) if multi else 0.0,
            "idle_while_waiting": free_total if gangs else 0}
