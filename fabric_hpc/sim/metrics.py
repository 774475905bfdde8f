"""Metrics of a replay (all times in seconds).

* JCT: end − submit; queueing delay: first start − submit; both over finished jobs.
* bounded slowdown: ``max(1, JCT / max(run, τ))`` with run the job's time on GPUs and τ = 10 s
  (Feitelson et al., "Theory and Practice in Parallel Job Scheduling", JSSPP'97).
* GPU utilisation: time-weighted busy GPUs / GPUs between the first submit and the last end.
* fragmentation: time-averaged fraction of GPUs that are free but on hosts with fewer free GPUs
  than the smallest per-host demand of any waiting job (sampled while jobs wait).
* domains spanned: mean number of domains of the lowest multi-host level (NVLink domain on an
  NVL72, leaf on a DGX SuperPOD: ``domain_level``) and of hosts touched
  by multi-host gangs (at their first start).
* Jain's index across accounts of ``1 / mean slowdown`` (slowdown = JCT / ideal run time), the
  fairness of the service each account got: 1 = every account slowed down equally.
* preemptions and GPU-hours lost to them (work since the last checkpoint + restore).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fabric_hpc.sim.engine import SimResult

TAU = 10.0


def jain(values: list[float]) -> float:
    x = np.asarray(values, float)
    if x.size == 0 or not np.any(x):
        return 1.0
    return float(x.sum() ** 2 / (x.size * (x * x).sum()))


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else 0.0


def network_level(result: SimResult) -> str:
    """The lowest multi-host domain level (NVLink domain on an NVL72, leaf on a SuperPOD)."""
    from fabric_hpc.placement.levels import fabric_levels

    chain = fabric_levels(result.state.fab).chain
    return chain[1] if len(chain) > 1 else "host"


def summarize(result: SimResult) -> dict[str, Any]:
    recs = [r for r in result.records if r.end is not None and r.first_start is not None]
    submit = np.array([r.job.submit for r in recs])
    end = np.array([r.end for r in recs])
    start = np.array([r.first_start for r in recs])
    jct, wait = end - submit, start - submit
    run = np.array([max(r.run_time, 0.0) for r in recs])
    bsld = np.maximum(1.0, jct / np.maximum(run, TAU))
    ideal = np.array([max(r.job.duration or r.run_time, TAU) for r in recs])
    slow = np.maximum(jct, TAU) / ideal
    level = network_level(result)
    multi = [r for r in recs if r.hosts > 1]
    by_acct: dict[str, list[float]] = {}
    for r, s in zip(recs, slow, strict=True):
        by_acct.setdefault(r.job.account, []).append(float(s))
    tiers: dict[str, list[float]] = {}
    for r, w in zip(recs, wait, strict=True):
        tiers.setdefault(r.job.tier, []).append(float(w))
    tl = result.timeline
    util = _time_weighted(tl["t"], tl["busy"]) / max(result.gpus, 1)
    return {
        "policy": result.policy, "fabric": result.fabric, "gpus": result.gpus, "jobs": len(result.records),
        "finished": len(recs), "timeouts": sum(r.status == "timeout" for r in recs),
        "rejected": sum(r.status == "rejected" for r in result.records),
        "unfinished": sum(r.end is None and r.status != "rejected" for r in result.records),
        "mean_jct_s": float(jct.mean()) if jct.size else 0.0, "p50_jct_s": _pct(jct, 50), "p99_jct_s": _pct(jct, 99),
        "mean_wait_s": float(wait.mean()) if wait.size else 0.0, "p50_wait_s": _pct(wait, 50),
        "p99_wait_s": _pct(wait, 99), "max_wait_s": float(wait.max()) if wait.size else 0.0,
        "mean_bounded_slowdown": float(bsld.mean()) if bsld.size else 0.0,
        "gpu_utilisation": util,
        "fragmentation": float(np.mean(tl["frag"])) if tl["frag"] else 0.0,
        "multi_host_gangs": len(multi),
        "mean_domains_spanned": float(np.mean([r.domains.get(level, 1) for r in multi])) if multi else 0.0,
        "domain_level": level,
        "mean_hosts_spanned": float(np.mean([r.hosts for r in multi])) if multi else 0.0,
        "mean_stretch": float(np.mean([r.stretch for r in recs])) if recs else 1.0,
        "jain_accounts": jain([1.0 / float(np.mean(v)) for v in by_acct.values()]),
        "preemptions": int(sum(r.preemptions for r in result.records)),
        "gpu_hours_lost": float(sum(r.gpu_hours_lost for r in result.records)),
        "backfilled": int(sum(r.backfilled for r in recs)),
        "mean_wait_by_tier_s": {k: float(np.mean(v)) for k, v in sorted(tiers.items())},
        "makespan_s": float(end.max() - submit.min()) if recs else 0.0,
        "sim_wall_s": result.stats.get("wall_s"), "events": result.stats.get("events"),
        "steps": result.stats.get("steps"),
    }


def _time_weighted(t: list[float], v: list[float]) -> float:
    if len(t) < 2:
        return float(v[0]) if v else 0.0
    ta, va = np.asarray(t, float), np.asarray(v, float)
    dt = np.diff(ta)
    return float((va[:-1] * dt).sum() / max(ta[-1] - ta[0], 1e-9))


def job_rows(result: SimResult) -> list[dict[str, Any]]:
    """Per-job outcome rows (for results.json)."""
    return [{"id": r.job.id, "account": r.job.account, "tier": r.job.tier, "gpus": r.job.gpus,
             "submit": r.job.submit, "start": r.first_start, "end": r.end, "status": r.status,
             "hosts": r.hosts, "domains": r.domains, "stretch": round(r.stretch, 4),
             "preemptions": r.preemptions, "gpu_hours_lost": round(r.gpu_hours_lost, 4),
             "backfilled": r.backfilled} for r in result.records]
