"""Metrics of a replay (all times in seconds).

* JCT: end − submit, over jobs that completed their work (status ``done``); jobs ended at their
  walltime (``timeout``, also after preemptions) are excluded and counted as ``timeouts`` with the
  GPU-hours they used; queueing delay: first start − submit, over every job that started.
* ``jobs``: the jobs replayed (= finished + timeouts + unfinished + rejected); ``skipped`` and
  ``skipped_by`` (reason → rows): the trace's rows its reader skipped (``Trace.skipped_by``: CPU-only,
  never scheduled, never ran, ...), so a trace's rows = jobs + skipped.
* jobs that can never fit the fabric (more GPUs per host than any host has, more such hosts than
  exist) are ``rejected`` at arrival with a reason (``rejected_reasons``); ``note`` says in words
  what the figures cover.
* bounded slowdown: ``max(1, JCT / max(ideal, τ))`` with ideal the job's unstretched run time (its
  trace duration) and τ = 10 s (Feitelson et al., "Theory and Practice in Parallel Job Scheduling",
  JSSPP'97).
* GPU utilisation: time-weighted busy GPUs / GPUs between the first submit of a job that was not
  rejected (a rejected job's arrival does not open the window) and the last end; undefined (NaN)
  when that window is empty (no such job ended, or every one ended at the instant it arrived).
* fragmentation: time-averaged fraction of GPUs that are free but on hosts with fewer free GPUs
  than the smallest per-host demand of any waiting job, over the time jobs wait within the
  utilisation's window (0 when none waits); sampled whenever GPUs are taken or freed or the waiting
  jobs change.
* domains spanned: mean number of domains of the lowest multi-host level (NVLink domain on an
  NVL72, leaf on a DGX SuperPOD: ``domain_level``) and of hosts touched
  by multi-host gangs (at their first start).
* Jain's index across accounts of ``1 / mean slowdown`` (slowdown = JCT / ideal run time), the
  fairness of the service each account got: 1 = every account slowed down equally.
* a figure over no jobs (JCT, slowdown, stretch and Jain's index when no job completed, waits when
  none started, the makespan when none ended) is NaN: ``null`` in JSON and results.json, its key
  listed under ``undefined``; "–" in tables. Never a 0 (or 1) that reads as a measured value.
* preemptions and GPU-hours lost to them (work since the last checkpoint; the restore after the
  requeue is paid in the job's next run segment, so it shows in its JCT, not here).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fabric_hpc.errors import ConfigError
from fabric_hpc.sim.engine import SimResult

TAU = 10.0


def jain(values: list[float]) -> float:
    x = np.asarray(values, float)
    if x.size == 0 or not np.any(x):
        return 1.0
    return float(x.sum() ** 2 / (x.size * (x * x).sum()))


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else math.nan


def _mean(x: Any) -> float:
    """The mean, NaN (undefined: null in JSON, listed under ``undefined``) for no values."""
    return float(np.mean(x)) if len(x) else math.nan


def network_level(result: SimResult) -> str:
    """The lowest multi-host domain level (NVLink domain on an NVL72, leaf on a SuperPOD)."""
    from fabric_hpc.placement.levels import fabric_levels

    chain = fabric_levels(result.state.fab).chain
    return chain[1] if len(chain) > 1 else "host"


def _ideal(r: Any) -> float:
    """The job's unstretched run time: its trace duration (else the time it ran)."""
    return float(r.job.duration if r.job.duration is not None else max(r.run_time, 0.0))


def _utilisation(result: SimResult, ended: list) -> tuple[float | None, float | None, float]:
    """(the first start that counts, the last job end, busy-GPU utilisation between them): up to the last
    job end, not the last wake-up or rejection, from the first job not rejected (a rejected first job's
    arrival is no start); over no time (no job ended, or every one within the instant it arrived) it is
    undefined (NaN), not 0."""
    tl = result.timeline
    last_end = max((r.end for r in ended), default=None)
    first = min((r.job.submit for r in result.records if r.status != "rejected"), default=None)
    util = (_time_weighted(tl["t"], tl["busy"], since=first, until=last_end) / max(result.gpus, 1)
            if first is not None and last_end is not None and last_end > first else math.nan)
    return first, last_end, util


def summarize(result: SimResult) -> dict[str, Any]:
    if not isinstance(result, SimResult):
        raise ConfigError(f"summarize takes a simulator result, not {type(result).__name__}",
                          hint="summarize(Simulator(fab, policy, jobs).run())")
    ended = [r for r in result.records if r.end is not None and r.first_start is not None]
    recs = [r for r in ended if r.status == "done"]  # JCT and slowdown: jobs that completed their work
    killed = [r for r in ended if r.status != "done"]  # ended at the walltime (also after preemptions)
    started = [r for r in result.records if r.first_start is not None]
    submit = np.array([r.job.submit for r in recs])
    end = np.array([r.end for r in recs])
    jct = end - submit
    wait = np.array([r.first_start - r.job.submit for r in started])
    ideal = np.array([max(_ideal(r), TAU) for r in recs])
    bsld = np.maximum(1.0, jct / ideal)
    slow = np.maximum(jct, TAU) / ideal
    level = network_level(result)
    multi = [r for r in recs if r.hosts > 1]
    by_acct: dict[str, list[float]] = {}
    for r, s in zip(recs, slow, strict=True):
        by_acct.setdefault(r.job.account, []).append(float(s))
    tiers: dict[str, list[float]] = {}
    for r, w in zip(started, wait, strict=True):
        tiers.setdefault(r.job.tier, []).append(float(w))
    rejected = [r for r in result.records if r.status == "rejected"]
    tl = result.timeline
    first, last_end, util = _utilisation(result, ended)
    return {
        "policy": result.policy, "fabric": result.fabric, "gpus": result.gpus, "jobs": len(result.records),
        "finished": len(recs), "timeouts": len(killed),
        "timeout_gpu_hours": float(sum((r.gpus or r.job.gpus) * r.run_time for r in killed) / 3600.0),
        "rejected": len(rejected), "rejected_reasons": _reasons(rejected),
        "unfinished": sum(r.end is None and r.status != "rejected" for r in result.records),
        # rows of the trace file its reader skipped (not in ``jobs``): submitted = jobs + skipped
        "skipped": sum(result.skipped_by.values()), "skipped_by": dict(result.skipped_by),
        "mean_jct_s": _mean(jct), "p50_jct_s": _pct(jct, 50), "p99_jct_s": _pct(jct, 99),
        "mean_wait_s": _mean(wait), "p50_wait_s": _pct(wait, 50),
        "p99_wait_s": _pct(wait, 99), "max_wait_s": _pct(wait, 100),
        "mean_bounded_slowdown": _mean(bsld),
        "gpu_utilisation": util,
        "fragmentation": _fragmentation(tl, since=first, until=last_end),
        "multi_host_gangs": len(multi),
        # undefined without multi-host gangs: None (null in JSON, "–" in reports), not a 0 that reads as a value
        "mean_domains_spanned": float(np.mean([r.domains.get(level, 1) for r in multi])) if multi else None,
        "domain_level": level,
        "mean_hosts_spanned": float(np.mean([r.hosts for r in multi])) if multi else None,
        "mean_stretch": _mean([r.stretch for r in recs]),
        "jain_accounts": jain([1.0 / float(np.mean(v)) for v in by_acct.values()]) if by_acct else math.nan,
        "preemptions": int(sum(r.preemptions for r in result.records)),
        "gpu_hours_lost": float(sum(r.gpu_hours_lost for r in result.records)),
        "backfilled": int(sum(r.backfilled for r in recs)),
        "mean_wait_by_tier_s": {k: float(np.mean(v)) for k, v in sorted(tiers.items())},
        "makespan_s": (float(max(r.end for r in ended) - min(r.job.submit for r in ended)) if ended
                       else math.nan),
        "note": _note(len(result.records), len(recs), len(killed), rejected),
        "sim_wall_s": result.stats.get("wall_s"), "events": result.stats.get("events"),
        "steps": result.stats.get("steps"),
    }


def _reasons(rejected: list[Any]) -> dict[str, int]:
    """Why jobs were rejected (the five most common reasons, with counts)."""
    counts: dict[str, int] = {}
    for r in rejected:
        key = r.reason or "cannot fit the fabric"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:5])


def _note(total: int, done: int, killed: int, rejected: list[Any]) -> str:
    """What the JCT/slowdown figures cover, in words (shown with the summary)."""
    parts = [f"JCT and slowdown over the {done} of {total} job{'' if total == 1 else 's'} that completed"]
    if killed:
        its, s = ("its", "") if killed == 1 else ("their", "s")
        parts.append(f"{killed} ended at {its} walltime (timeout{s}, reported on {its} own)")
    if rejected:
        one = len(rejected) == 1
        parts.append(f"{len(rejected)} can never fit this fabric and {'is' if one else 'are'} counted as "
                     "rejected (--strict refuses such a trace)")
    return "; ".join(parts)


def _time_weighted(t: list[float], v: list[float], *, since: float | None = None,
                   until: float | None = None) -> float:
    """Mean of the step function ``v`` (value ``v[i]`` from ``t[i]`` to ``t[i+1]``) from ``since``
    (default: ``t[0]``) to ``until`` (default: the last time)."""
    if len(t) < 2:
        return float(v[0]) if v else 0.0
    ta, va = np.asarray(t, float), np.asarray(v, float)
    start = ta[0] if since is None else min(max(since, ta[0]), ta[-1])
    end = ta[-1] if until is None else min(max(until, start), ta[-1])
    dt = np.diff(np.clip(ta, start, end))
    return float((va[:-1] * dt).sum() / max(end - start, 1e-9))


def _fragmentation(tl: dict[str, list[float]], *, since: float | None, until: float | None) -> float:
    """Time-average of the fragmentation samples (``frag`` at ``frag_t``: a step function, sampled
    wherever it may change while jobs wait) over the time some job waited (``queue`` > 0) within the
    utilisation window ``since``..``until``; 0.0 when no job waited."""
    t, queue = np.asarray(tl["t"], float), np.asarray(tl["queue"], float)
    if len(t) < 2 or not tl["frag"]:
        return 0.0
    start = t[0] if since is None else min(max(since, t[0]), t[-1])
    end = t[-1] if until is None else min(max(until, start), t[-1])
    dt = np.diff(np.clip(t, start, end)) * (queue[:-1] > 0)
    at = np.searchsorted(np.asarray(tl["frag_t"], float), t[:-1], side="right") - 1
    value = np.where(at >= 0, np.asarray(tl["frag"], float)[np.maximum(at, 0)], 0.0)
    waited = dt.sum()
    return float((value * dt).sum() / waited) if waited > 0 else 0.0


def job_rows(result: SimResult) -> list[dict[str, Any]]:
    """Per-job outcome rows (for results.json)."""
    return [{"id": r.job.id, "account": r.job.account, "tier": r.job.tier, "gpus": r.gpus or r.job.gpus,
             "submit": r.job.submit, "start": r.first_start, "end": r.end, "status": r.status,
             "hosts": r.hosts, "domains": r.domains, "stretch": round(r.stretch, 4),
             "preemptions": r.preemptions, "gpu_hours_lost": round(r.gpu_hours_lost, 4),
             "backfilled": r.backfilled, **_parallel(r.job.request),
             **({"reason": r.reason} if r.reason else {})} for r in result.records]


def _parallel(request: Any) -> dict[str, int]:
    """A job row's ``tp`` and ``pp`` (tensor-parallel group size, pipeline stages) where the request sets them."""
    return {k: v for k in ("tp", "pp") if (v := getattr(request, k)) is not None}
