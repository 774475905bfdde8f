"""Running a replay into a results directory, and reading results back.

``DIR/results.json``::

    {"version": 1, "summary": {...metrics...}, "timeline": {"t": [...], "busy": [...], "queue": [...]},
     "jct": [...], "wait_by_tier": {"high": [...], ...}, "jobs": [per-job rows], "trace": "...",
     "trace_file": {"path": "...", "sha256": "..."}, "config": {...}}

``trace`` names the trace (``tiresias:jobs.csv``); ``trace_file`` is the file replayed, its resolved
path and the SHA-256 of its content (null for a synthetic workload; absent from files written before
it was recorded), which ``fabric sim compare`` compares.

``config`` as ``fabric sim run`` writes it: ``policy``, ``fabric``, the policy options given
(``placement``, ``backfill``, ``preemption``, ``preempt_benefit_ratio``) and the options that change
the workload or the model (:data:`fabric_hpc.sim.report.WORKLOAD_KEYS`): ``time_scale`` (1.0 when
not given), ``limit`` (null: every job), ``gpus_per_host`` (the host size trace files were cut into;
null for a synthetic workload, whose reference holds it), ``contention`` and ``ecmp``.

plus ``DIR/state.json`` (the cluster state at the end, the placement state format) and, when asked,
``DIR/topology.html`` (the topology report of the busiest moment); when not asked, a topology.html an
earlier run wrote there is removed (one fabric did not write is left alone). Each file is replaced
atomically, and results.json last, the previous one removed first: a run stopped while writing leaves
no results.json (never new results beside an old report).
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from fabric_hpc.atomic import write_atomic
from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.events import finite_json
from fabric_hpc.sim.engine import SimResult
from fabric_hpc.sim.metrics import job_rows, summarize

RESULTS_VERSION = 1
MAX_POINTS = 4000
#: The files ``fabric sim run`` writes into its results directory (topology.html unless told not to).
RUN_FILES = ("results.json", "state.json", "topology.html")


def _thin(t: list[float], *series: list[float]) -> tuple[list[float], ...]:
    if len(t) <= MAX_POINTS:
        return (list(t), *[list(s) for s in series])
    keep = np.unique(np.linspace(0, len(t) - 1, MAX_POINTS).astype(int))
    return ([t[i] for i in keep], *[[s[i] for i in keep] for s in series])


def results_dict(result: SimResult, *, trace: str = "", config: dict[str, Any] | None = None,
                 with_jobs: bool = True, trace_file: dict[str, str] | None = None) -> dict[str, Any]:
    summary = summarize(result)
    tl = result.timeline
    t, busy, queue = _thin(tl["t"], tl["busy"], tl["queue"])
    # the same jobs as the summary's figures: JCT over jobs that completed their work (not those
    # ended at their walltime), waits over every job that started
    done = [r for r in result.records if r.end is not None and r.first_start is not None and r.status == "done"]
    wait_by_tier: dict[str, list[float]] = {}
    for r in result.records:
        if r.first_start is not None:
            wait_by_tier.setdefault(r.job.tier, []).append(r.first_start - r.job.submit)
    return {"version": RESULTS_VERSION, "summary": summary, "trace": trace, "trace_file": trace_file,
            "config": config or {},
            "timeline": {"t": t, "busy": busy, "queue": queue},
            "jct": sorted(float(r.end - r.job.submit) for r in done),
            "wait_by_tier": wait_by_tier, "jobs": job_rows(result) if with_jobs else []}


def write_results(result: SimResult, out_dir: str | os.PathLike[str], *, trace: str = "",
                  config: dict[str, Any] | None = None, topology_report: bool = False,
                  trace_file: dict[str, str] | None = None) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = results_dict(result, trace=trace, config=config, trace_file=trace_file)
    # strict JSON: a NaN or infinite metric is stored as null, its path listed under "undefined"
    undefined: list[str] = []
    clean = finite_json(data, "", undefined)
    if undefined:
        clean["undefined"] = undefined
    # results.json (what compare reads) last, the previous run's removed first: a run stopped while
    # writing leaves no results.json, never new results beside an old topology report, or old beside new
    _remove(out / "results.json", "previous results file")
    result.state.save(out / "state.json")
    if topology_report:
        from fabric_hpc.topology import write_report

        snap = result.peak_state or result.state
        when = f"busiest moment (t = {result.peak_time / 3600:.2f} h)" if result.peak_state else "end of replay"
        write_report(result.state.fab, out / "topology.html", state=snap,
                     title=f"{result.fabric} under policy {result.policy}: {when}")
    else:
        _drop_stale_report(out / "topology.html")
    write_atomic(out / "results.json", json.dumps(clean, allow_nan=False))
    return data


def _remove(p: Path, what: str) -> None:
    """Unlink ``p`` if it is there (a symlink itself, never its target)."""
    try:
        p.unlink(missing_ok=True)
    except OSError as exc:
        from fabric_hpc.inputs import os_error

        raise os_error(exc, what, p) from None


#: The line every topology report fabric writes carries in its head (fabric_hpc.topology.report).
_REPORT_MARK = b'<meta name="generator" content="fabric-hpc topology report">'


def _drop_stale_report(p: Path) -> None:
    """Remove a topology report an earlier run wrote into a reused results directory (it would show
    another replay beside this one's results); a file fabric did not write is left alone."""
    try:
        if p.is_symlink() or not p.is_file():
            return
        with open(p, "rb") as f:
            head = f.read(4096)
        if _REPORT_MARK in head:
            p.unlink()
    except OSError as exc:
        from fabric_hpc.inputs import os_error

        raise os_error(exc, "stale topology report", p) from None


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    runs: list[str] = []
    if p.is_dir():
        # a directory of runs (`fabric sim demo`'s DIR/slurm, DIR/fabric) is named with them
        runs = sorted(shlex.quote(str(r.parent)) for r in p.glob("*/results.json"))[:8]
        p = p / "results.json"
    if not p.exists():
        raise NotFoundError(f"no simulation results at {p}",
                            hint=f"it holds runs: give them: fabric sim compare {' '.join(runs)}" if runs
                            else "run `fabric sim run --out DIR` first")
    from fabric_hpc.inputs import read_json

    data = read_json(p, what="simulation results file")
    if not isinstance(data, dict) or data.get("version") != RESULTS_VERSION or "summary" not in data:
        raise ConfigError(f"{p}: not a version-{RESULTS_VERSION} simulation results file",
                          hint="give a directory `fabric sim run --out DIR` wrote (its results.json)")
    problem = _shape_problem(data)
    if problem:
        raise ConfigError(f"{p}: {problem}", hint="rerun `fabric sim run --out DIR` (results files are written by it)")
    return data


def _numbers(value: Any, *, limit: float = 1e15) -> bool:
    return isinstance(value, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                           and abs(x) <= limit for x in value)


def _shape_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with the parts of a results file that compare and the report read (None: fine)."""
    from fabric_hpc.sim.report import ROWS

    summary, tl, tiers = data["summary"], data.get("timeline"), data.get("wait_by_tier", {})
    if not isinstance(summary, dict):
        return "summary is not a mapping"
    if not isinstance(summary.get("gpus"), int) or isinstance(summary.get("gpus"), bool) or summary["gpus"] < 1:
        return "summary.gpus is not a positive whole number"
    for key in ("fabric", "policy"):
        if not isinstance(summary.get(key, ""), str):
            return f"summary.{key} is not a name: {str(summary[key])[:40]!r}"
    for key, _, _ in ROWS:
        v = summary.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or abs(v) > 1e15):
            return f"summary.{key} is not a number: {str(v)[:40]!r}"
    if not isinstance(tl, dict) or not all(_numbers(tl.get(k)) for k in ("t", "busy", "queue")) \
            or not len(tl["t"]) == len(tl["busy"]) == len(tl["queue"]):
        return "timeline is not three equally long lists t, busy, queue of numbers"
    tf = data.get("trace_file")
    if tf is not None and not (isinstance(tf, dict)
                               and all(isinstance(tf.get(k), str) for k in ("path", "sha256"))):
        return "trace_file is not a mapping of the trace's path and sha256"
    if not _numbers(data.get("jct", [])):
        return "jct is not a list of numbers"
    if not isinstance(tiers, dict) or not all(isinstance(k, str) and _numbers(v) for k, v in tiers.items()):
        return "wait_by_tier is not a mapping of tiers to lists of numbers"
    return None
