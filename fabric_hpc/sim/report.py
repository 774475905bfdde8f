"""The HTML comparison report: a metrics table and matplotlib plots, policies side by side.

Plots (PNG, embedded as data URIs so the page is one self-contained file): GPU utilisation and
queue length over time, the JCT CDF (log scale: jobs of 0 s are counted in the fractions but not
drawn; a run with only those draws no curve), and mean waiting time per tier. Optionally links the topology
report of each policy's final state.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from fabric_hpc.atomic import write_atomic
from fabric_hpc.topology.report_static import mpl_text, user_text_drawing

ROWS = [("mean_jct_s", "mean JCT (h)", 1 / 3600), ("p50_jct_s", "p50 JCT (h)", 1 / 3600),
        ("p99_jct_s", "p99 JCT (h)", 1 / 3600), ("mean_wait_s", "mean queueing delay (h)", 1 / 3600),
        ("p99_wait_s", "p99 queueing delay (h)", 1 / 3600), ("mean_bounded_slowdown", "mean bounded slowdown", 1),
        ("gpu_utilisation", "GPU utilisation", 1), ("fragmentation", "fragmentation (free GPUs unusable)", 1),
        ("mean_domains_spanned", "mean domains spanned (multi-host gangs)", 1),
        ("mean_hosts_spanned", "mean hosts spanned (multi-host gangs)", 1),
        ("mean_stretch", "mean communication stretch", 1), ("jain_accounts", "Jain's index across accounts", 1),
        ("preemptions", "preemptions", 1), ("gpu_hours_lost", "GPU-hours lost to preemption", 1),
        ("backfilled", "jobs backfilled", 1), ("timeouts", "jobs ended at walltime", 1),
        ("finished", "jobs finished", 1), ("rejected", "jobs rejected (can never fit)", 1),
        ("jobs", "jobs replayed", 1), ("skipped", "trace rows skipped (not replayed)", 1),
        ("sim_wall_s", "simulation wall time (s)", 1)]


def comparison_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """[metric, value per policy...] with values formatted."""
    out = []
    for key, label, scale in ROWS:
        vals = []
        for r in results:
            v = r["summary"].get(key)
            undefined = v is None or (isinstance(v, float) and not math.isfinite(v))  # NaN: over no jobs
            vals.append("–" if undefined else f"{v * scale:.3f}" if isinstance(v, float) else str(v))
        out.append([label, *vals])
    return out


def comparison_metrics(results: list[dict[str, Any]]) -> dict[str, list[float | int | None]]:
    """The compared metrics as numbers for machines (``--json``): ``{summary key: [value per run]}``,
    in the summary's own units (seconds, fractions, counts); ``None`` where a run has no value."""
    return {key: [r["summary"].get(key) for r in results] for key, _, _ in ROWS}


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plots(results: list[dict[str, Any]], names: list[str]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    with user_text_drawing():  # run names: no LaTeX, no glyph warnings
        return _plots(results, [mpl_text(n) for n in names])


def _plots(results: list[dict[str, Any]], names: list[str]) -> dict[str, str]:
    """The three pictures; ``names`` are already safe for matplotlib (:func:`mpl_text`)."""
    import matplotlib.pyplot as plt

    out = {}
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    for r, n in zip(results, names, strict=True):
        t = np.asarray(r["timeline"]["t"], float) / 3600
        a1.step(t, np.asarray(r["timeline"]["busy"], float) / r["summary"]["gpus"], where="post", label=n, lw=1)
        a2.step(t, r["timeline"]["queue"], where="post", label=n, lw=1)
    a1.set_ylabel("GPU utilisation"), a2.set_ylabel("jobs waiting"), a2.set_xlabel("time (h)")
    a1.legend(loc="lower right"), a1.grid(alpha=.3), a2.grid(alpha=.3)
    out["timeline"] = _png(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for r, n in zip(results, names, strict=True):
        jct = np.sort(np.asarray(r["jct"], float)) / 3600
        frac, shown = np.arange(1, jct.size + 1) / max(jct.size, 1), jct > 0  # log scale: no 0 s point
        if shown.any():  # 0-second jobs still count in the fractions of the longer ones
            ax.plot(jct[shown], frac[shown], label=n)
    ax.set_xscale("log"), ax.set_xlabel("job completion time (h, log)"), ax.set_ylabel("fraction of jobs")
    if ax.lines:  # no run completed a job: no curve, no legend (matplotlib would warn)
        ax.legend()
    ax.grid(alpha=.3)
    out["cdf"] = _png(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    tiers = sorted({t for r in results for t in r["wait_by_tier"]})
    width = 0.8 / max(len(results), 1)
    for i, (r, n) in enumerate(zip(results, names, strict=True)):
        vals = [np.mean(r["wait_by_tier"].get(t, [0])) / 3600 for t in tiers]
        ax.bar(np.arange(len(tiers)) + i * width, vals, width, label=n)
    ax.set_xticks(np.arange(len(tiers)) + width * (len(results) - 1) / 2, [mpl_text(t) for t in tiers])
    ax.set_ylabel("mean queueing delay (h)"), ax.legend(), ax.grid(alpha=.3, axis="y")
    out["tiers"] = _png(fig)
    return out


def trace_digest(r: dict[str, Any]) -> str | None:
    """The SHA-256 of the trace file a run replayed (None: a synthetic workload, or a results file
    written before it was recorded)."""
    tf = r.get("trace_file")
    return tf.get("sha256") if isinstance(tf, dict) and isinstance(tf.get("sha256"), str) else None


def _trace_seen(results: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(what tells the runs' traces apart, how to show each): the kind and content hash of the file
    when every run recorded one (two clusters' ``jobs.csv`` differ; a copy of one file does not),
    else the trace's name, as results files written before the hash was recorded are compared."""
    names = [str(r.get("trace")) for r in results]
    digests = [trace_digest(r) for r in results]
    if None in digests:
        return names, names
    shown = [f"{n} ({r['trace_file'].get('path', '?')}, sha256 {d[:12]}…)"
             for n, r, d in zip(names, results, digests)]
    return [f"{n.partition(':')[0]}:{d}" for n, d in zip(names, digests)], shown


def run_fabric(r: dict[str, Any]) -> str:
    """The fabric a run replayed on (its config, else its summary)."""
    return str((r.get("config") or {}).get("fabric") or r["summary"].get("fabric", "?"))


#: ``config`` keys of results.json that change the workload or the model (not the policy): the
#: option of ``fabric sim run`` that sets each. A run written before a key was recorded shows "?".
WORKLOAD_KEYS = {"time_scale": "--time-scale", "limit": "--limit", "gpus_per_host": "--gpus-per-host",
                 "contention": "--contention/--no-contention", "ecmp": "--ecmp",
                 "procs_per_gpu": "--procs-per-gpu", "queue_tiers": "--swf-queue-tier",
                 "gpus_per_node": "--gpus-per-node"}


def _config_value(r: dict[str, Any], key: str) -> str:
    config = r.get("config") if isinstance(r.get("config"), dict) else {}
    if key not in config:
        return "?"
    if config[key] is None:
        return "all jobs" if key == "limit" else "default"
    return str(config[key])


def comparison_warnings(results: list[dict[str, Any]], names: list[str]) -> list[str]:
    """A side-by-side means something only over the same jobs on the same cluster: what differs."""
    out = []
    traces, shown = _trace_seen(results)
    fabrics = [run_fabric(r) for r in results]
    for what, seen, say in (("trace", traces, shown), ("fabric", fabrics, fabrics)):
        if len(set(seen)) > 1:
            out.append(f"the runs replayed different {what}s: "
                       + ", ".join(f"{n}: {v}" for n, v in zip(names, say)))
    for key, flag in WORKLOAD_KEYS.items():
        seen = [_config_value(r, key) for r in results]
        if len(set(seen)) > 1:
            out.append(f"the runs used different {flag} ({key}: " + ", ".join(
                f"{n}: {v}" for n, v in zip(names, seen)) + "): their figures are not of the same workload")
    for key, what in (("rejected", "rejected"), ("finished", "finished")):
        counts = [r["summary"].get(key) for r in results]
        if len({x for x in counts if x is not None}) > 1:
            out.append(f"the runs {what} different numbers of jobs (" + ", ".join(
                f"{n}: {'?' if x is None else x}" for n, x in zip(names, counts)) + "): their JCT, waits and "
                "slowdowns cover different jobs")
    return out


def _setup_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """The rows that say what each run replayed: trace, fabric, GPUs, and the workload options recorded."""
    rows = [["trace", *(str(r.get("trace", "")) for r in results)],
            ["fabric", *(run_fabric(r) for r in results)],
            ["GPUs", *(str(r["summary"]["gpus"]) for r in results)]]
    return rows + [[flag, *(_config_value(r, key) for r in results)] for key, flag in WORKLOAD_KEYS.items()
                   if any(_config_value(r, key) != "?" for r in results)]


def _intro(results: list[dict[str, Any]], warnings: list[str]) -> str:
    same = len(set(_trace_seen(results)[0])) == 1
    traces = sorted({str(r.get("trace", "")) for r in results}) if same else []
    fabrics = sorted({(run_fabric(r), r["summary"]["gpus"]) for r in results})
    work = f"Workload: {html.escape(traces[0])}." if len(traces) == 1 else "Workloads differ (table)."
    fab = (f"Fabric: {html.escape(fabrics[0][0])} ({fabrics[0][1]} GPUs)." if len(fabrics) == 1
           else "Fabrics differ (table).")
    warn = "".join(f"<li>warning: {html.escape(w)}</li>" for w in warnings)
    return (f'<ul class="warn">{warn}</ul>' if warn else "") + f"<p>{work} {fab} Metric definitions: docs/scheduler.md.</p>"


def write_html(results: list[dict[str, Any]], out_html: str | os.PathLike[str], *, names: list[str] | None = None,
               title: str = "Scheduler comparison", links: dict[str, str] | None = None,
               warnings: list[str] | None = None) -> Path:
    """The page: what each run replayed, the warnings (default: :func:`comparison_warnings`), the
    metrics table and the plots, and ``links`` (label → URL) to each run's topology report."""
    names = names or [r["summary"]["policy"] for r in results]
    warnings = comparison_warnings(results, names) if warnings is None else warnings
    imgs = plots(results, names)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in _setup_rows(results) + comparison_rows(results))
    link_html = "".join(f'<li><a href="{html.escape(u)}">{html.escape(k)}</a></li>' for k, u in (links or {}).items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}td:first-child{{text-align:left}}
.warn{{color:#8a4b00;background:#fff4e5;border:1px solid #ffb74d;padding:6px 10px 6px 2em}}</style></head>
<body><h1>{html.escape(title)}</h1>{_intro(results, warnings)}
<table><tr><th>metric</th>{head}</tr>{body}</table>
<h2>Utilisation and queue over time</h2><img src="{imgs['timeline']}">
<h2>Job completion time CDF</h2><img src="{imgs['cdf']}">
<h2>Waiting time per tier</h2><img src="{imgs['tiers']}">
{'<h2>Final cluster state</h2><ul>' + link_html + '</ul>' if link_html else ''}
</body></html>"""
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(out, page)
