"""Contention ablation: ``.venv/bin/python -m benchmarks.scheduler.ablation [--jobs N] [--no-write]
[--json PATH]``.

Scheduling outcomes with the simulator's slowdown = the collective model (sim.contention) with
contention between running jobs *on* and *off* (each job stretched by its placement alone), for
the Slurm-like baseline and the fabric policy, at offered loads 0.9 / 1.2 / 1.5 and seeds 1 and 2,
on GB200 NVL72, a DGX H100 SuperPOD and the Lingjun Clos with its ToR uplinks 2:1 oversubscribed
(an assumption, docs/collective-model.md). Every (fabric, load, seed) replays the same jobs under
all four combinations in one process. Routing: ECMP flow hashing (``Contention(ecmp=True)``) on
the Ethernet (RoCE) Lingjun fabric, perfectly spread uplinks on the InfiniBand fabrics (adaptive
routing); ``--ecmp all`` / ``none`` overrides. "Contended" = jobs whose rate another job's traffic
lowered at some point (contention on), as a share of jobs and of their GPUs (Crux's 36.3 % / 51 %).
Beside them, per (fabric, load, seed): fabric's policy without spot preemption (contention on), and
:func:`fabric_hpc.sim.bounds.jct_lower_bound` of the jobs — the ceiling on any policy's mean-JCT
reduction against Slurm-like. Writes the ``## Contention ablation`` section of docs/benchmarks.md
(``--section`` another).

``--tp K|host`` and ``--pp P`` give the synthetic gangs tensor-parallel groups and pipeline stages
(``GangWorkload.tp``/``pp``: only the jobs whose sizes they divide, docs/scheduler.md); ``host``
= each fabric's GPUs per host (8 on the DGX and Lingjun hosts, 4 on an NVL72 tray). The rows then
say how many jobs carry tp / pp and how many were rejected or left unfinished, and the section
written by default is ``Contention ablation with tp/pp gangs``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks._report import write_section
from fabric_hpc.scheduler import fabric_policy, slurm_policy
from fabric_hpc.sim import Contention, Simulator, gang_workload, summarize
from fabric_hpc.sim.bounds import jct_lower_bound
from fabric_hpc.sim.synthetic import fabric_sizes
from fabric_hpc.topology import build, import_lingjun, open_fabric

ROOT = Path(__file__).resolve().parents[2]
LOADS = (0.9, 1.2, 1.5)
SEEDS = (1, 2)
JAIN_TOL = 0.005  # as benchmarks.scheduler
UTIL_TOL = 0.005
#: Longest job (s): the generator's 2-day tail would dominate the makespan of a few hundred jobs on
#: thousands of GPUs (utilisation then measures the tail, not the schedule).
MAX_DURATION_S = 6 * 3600.0


def fabrics() -> dict[str, tuple[object, int, bool]]:
    """name -> (fabric, GPUs per host, Ethernet: ECMP-hashed by default)."""
    lingjun = build(import_lingjun(ROOT / "data/topologies/alibaba_lingjun2023_topo.csv", oversubscription=2.0))
    return {"GB200 NVL72, 8 racks": (open_fabric("nvl72:racks=8"), 4, False),
            "DGX H100 SuperPOD, 4 SU": (open_fabric("superpod:sus=4"), 8, False),
            "Lingjun Clos, ToRs 2:1": (lingjun, 8, True)}


def run_one(fab, gph: int, jobs: int, load: float, seed: int, ecmp: bool = False, tp: int = 1,
            pp: int = 1) -> dict:
    extra = ({"tp": tp, "pp": pp, "nvlink_hosts": fabric_sizes(fab)["nvlink_hosts"]}
             if tp > 1 or pp > 1 else {})
    work = gang_workload(jobs=jobs, cluster_gpus=len(fab.gpus), gpus_per_host=gph, load=load, seed=seed,
                         max_duration_s=MAX_DURATION_S, **extra)
    bound = jct_lower_bound(work, len(fab.gpus))
    out: dict = {"bound": {"mean_s": bound.mean_s, "ideal_s": bound.ideal_s, "srpt_s": bound.srpt_s}}
    if tp > 1 or pp > 1:
        size = {j.id: j.request.gpus or j.request.nodes * (j.request.gpus_per_node or gph) for j in work}
        total = sum(size.values())
        out["workload"] = {"tp": tp, "pp": pp, "jobs": len(work),
                           "tp_jobs": sum(j.request.tp is not None for j in work),
                           "pp_jobs": sum(j.request.pp is not None for j in work),
                           "tp_gpu_share": sum(size[j.id] for j in work if j.request.tp) / total,
                           "pp_gpu_share": sum(size[j.id] for j in work if j.request.pp) / total}
    runs = [("slurm", slurm_policy, True), ("slurm", slurm_policy, False), ("fabric", fabric_policy, True),
            ("fabric", fabric_policy, False), ("nopre", _without_preemption, True)]
    for pol_name, make, cont in runs:
        t0 = time.perf_counter()
        model = Contention(fab, contention=cont, ecmp=ecmp)
        res = Simulator(fab, make(), work, slowdown=model).run()
        s = summarize(res)
        done = [r for r in res.records if r.status == "done"]
        useful = sum(r.job.gpus * r.job.duration for r in done) / (len(fab.gpus) * max(s["makespan_s"], 1e-9))
        gpus = {j.id: j.request.gpus or j.request.nodes * (j.request.gpus_per_node or gph) for j in work}
        hit = sum(gpus[j] for j in model.contended)
        keep = ("mean_jct_s", "gpu_utilisation", "jain_accounts", "mean_stretch", "finished", "mean_wait_s",
                "timeouts", "preemptions", "rejected", "rejected_reasons", "unfinished")
        out[f"{pol_name}/{'on' if cont else 'off'}"] = {k: s[k] for k in keep} | {
            "wall_s": time.perf_counter() - t0, "ecmp": ecmp, "high_jct_s": tier_mean_jct(done, "high"),
            "useful_utilisation": useful, "contended_jobs": len(model.contended) / len(work),
            "contended_gpus": hit / sum(gpus.values())}
    return out


def _without_preemption():
    """fabric's policy with its spot preemption off: what preemption costs the mean JCT."""
    return fabric_policy(preemption=False)


def tier_mean_jct(done: list, tier: str) -> float:
    jct = [r.end - r.job.submit for r in done if r.job.tier == tier]
    return float(np.mean(jct)) if jct else 0.0


def verdict(r: dict, mode: str) -> dict:
    s, f = r[f"slurm/{mode}"], r[f"fabric/{mode}"]
    red = 1 - f["mean_jct_s"] / s["mean_jct_s"] if s["mean_jct_s"] else 0.0
    cap = 1 - r["bound"]["mean_s"] / s["mean_jct_s"] if s["mean_jct_s"] else 0.0
    n = r.get(f"nopre/{mode}")
    nopre = 1 - n["mean_jct_s"] / s["mean_jct_s"] if n and s["mean_jct_s"] else None
    return {"jct_reduction": red, "max_reduction": cap, "nopre_reduction": nopre,
            "util_delta": f["gpu_utilisation"] - s["gpu_utilisation"],
            "useful_delta": f["useful_utilisation"] - s["useful_utilisation"],
            "jain_delta": f["jain_accounts"] - s["jain_accounts"]}


def _nopre_cells(r: dict, mode: str, v: dict) -> str:
    s, f, n = r[f"slurm/{mode}"], r[f"fabric/{mode}"], r.get(f"nopre/{mode}")
    if n is None:
        return f"— | {s['high_jct_s'] / 3600:.2f} / {f['high_jct_s'] / 3600:.2f} / —"
    return (f"{v['nopre_reduction']:+.1%} | {s['high_jct_s'] / 3600:.2f} / {f['high_jct_s'] / 3600:.2f} / "
            f"{n['high_jct_s'] / 3600:.2f}")


def workload_line(results: dict) -> str:
    """What the tp/pp options did to the gangs, and what never ran (tp/pp runs only)."""
    out = []
    for fab_name, per in results.items():
        w = [r["workload"] for r in per.values() if "workload" in r]
        if not w:
            continue
        rej = sum(r[k]["rejected"] for r in per.values() for k in r if "/" in k)
        unf = sum(r[k]["unfinished"] for r in per.values() for k in r if "/" in k)
        share = [f"{min(x[k] for x in w):.0%}–{max(x[k] for x in w):.0%}"
                 for k in ("tp_gpu_share", "pp_gpu_share")]
        out.append(f"{fab_name}: tp={w[0]['tp']}, pp={w[0]['pp']}: tp on {min(x['tp_jobs'] for x in w)}–"
                   f"{max(x['tp_jobs'] for x in w)} of {w[0]['jobs']} jobs "
                   f"({share[0]} of the GPUs requested), "
                   f"pp on {min(x['pp_jobs'] for x in w)}–{max(x['pp_jobs'] for x in w)} ({share[1]}); "
                   f"rejected {rej}, unfinished {unf} over all its simulations")
    return ("Tensor/pipeline parallelism per fabric (`gang_workload(tp=, pp=)`): " + "; ".join(out) + ".\n\n"
            if out else "")


def _row(fab_name: str, load: str, seed: str, mode: str, r: dict) -> str:
    """One replay's table row: Slurm-like against fabric under contention ``mode``."""
    s, f, v = r[f"slurm/{mode}"], r[f"fabric/{mode}"], verdict(r, mode)
    return (f"| {fab_name} | {load} | {seed} | {mode} | {s['mean_jct_s'] / 3600:.2f} | "
            f"{f['mean_jct_s'] / 3600:.2f} | {v['jct_reduction']:+.1%} | "
            f"{r['bound']['mean_s'] / 3600:.2f} | {v['max_reduction']:+.1%} | "
            f"{_nopre_cells(r, mode, v)} | {f['preemptions']} | "
            f"{s['mean_stretch']:.3f} / {f['mean_stretch']:.3f} | "
            f"{s['gpu_utilisation']:.3f} / {f['gpu_utilisation']:.3f} | "
            f"{s['useful_utilisation']:.3f} / {f['useful_utilisation']:.3f} | "
            f"{s['timeouts']} / {f['timeouts']} | "
            f"{s['jain_accounts']:.3f} / {f['jain_accounts']:.3f} | "
            f"{s['contended_jobs']:.1%} ({s['contended_gpus']:.0%}) / "
            f"{f['contended_jobs']:.1%} ({f['contended_gpus']:.0%}) |")


def render(results: dict, jobs: int) -> str:
    lines = [workload_line(results) + f"Synthetic gangs (`gang_workload`, {jobs} jobs per replay, sized to each fabric's GPUs, durations "
             f"capped at {MAX_DURATION_S / 3600:.0f} h), "
             "default communication profile scaled per job by U(0.5, 1.5) (docs/scheduler.md, \"Slowdown\"). "
             "JCT reduction = 1 − fabric / Slurm-like mean JCT, both under the same slowdown; Δ utilisation and "
             "Δ Jain are fabric − Slurm-like (positive = fabric better). Utilisation = busy GPUs over time "
             "(`summarize`: stretched and timed-out GPU time counts as busy); useful = GPU-seconds of work of the "
             "jobs that finished, at their ideal speed, over GPUs × makespan (work done per GPU-time); timeouts = "
             "jobs ended at their walltime (excluded from JCT and Jain). Bound = a lower bound on the mean JCT "
             "of *any* policy that finishes every job (`fabric_hpc.sim.bounds`: the larger of the mean ideal "
             "duration and SRPT of the jobs' GPU-seconds on one machine of the cluster's GPUs); max reduction = "
             "1 − bound / Slurm-like JCT, the most any policy could gain here. w/o preemption = fabric's policy "
             "with its spot preemption off (contention on only); high-tier JCT = mean JCT of the `high` jobs; "
             "preemptions = gangs fabric requeued.", "",
             "| fabric | load | seed | contention | Slurm-like JCT (h) | fabric JCT (h) | JCT reduction | "
             "bound (h) | max reduction | w/o preemption: JCT reduction | high-tier JCT (h) slurm / fabric / "
             "w/o preemption | preemptions | "
             "stretch slurm / fabric | util slurm / fabric | useful util slurm / fabric | timeouts slurm / fabric | "
             "Jain slurm / fabric | contended jobs (GPUs) slurm / fabric |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for fab_name, per in results.items():
        for key, r in per.items():
            load, seed = key.split("/")
            lines += [_row(fab_name, load, seed, mode, r) for mode in ("on", "off")]
        for mode in ("on", "off"):
            vs = [verdict(r, mode) for r in per.values()]
            summary.append((fab_name, mode, float(np.mean([v["jct_reduction"] for v in vs])),
                            min(v["jct_reduction"] for v in vs), min(v["util_delta"] for v in vs),
                            min(v["useful_delta"] for v in vs), min(v["jain_delta"] for v in vs),
                            float(np.mean([v["max_reduction"] for v in vs])),
                            float(np.mean([v["nopre_reduction"] for v in vs])) if mode == "on" else None))
    lines += ["", "Per fabric over the loads and seeds above (ceiling: the mean of the max reductions, above "
              "which no policy that finishes every job can get):", "",
              "| fabric | contention | mean JCT reduction | worst JCT reduction | worst Δ utilisation | "
              "worst Δ useful utilisation | worst Δ Jain | ceiling | mean JCT reduction w/o preemption |",
              "|---|---|---|---|---|---|---|---|---|"]
    for fab_name, mode, mean, worst, du, dg, dj, cap, nopre in summary:
        lines.append(f"| {fab_name} | {mode} | {mean:+.1%} | {worst:+.1%} | {du:+.3f} | {dg:+.3f} | {dj:+.3f} "
                     f"| {cap:+.1%} | {'—' if nopre is None else f'{nopre:+.1%}'} |")
    for label, col in (("utilisation", 4), ("useful utilisation", 5)):
        met = [row[0] for row in summary if row[1] == "on" and row[2] >= 0.20 and row[col] >= -UTIL_TOL
               and row[6] >= -JAIN_TOL]
        lines += ["", f"Target (contention on: mean JCT ≥ 20 % lower than Slurm-like on ≥ 2 fabrics, {label} "
                  f"and Jain no worse, tolerances {UTIL_TOL} / {JAIN_TOL} on the worst case): met on "
                  f"{len(met)} fabric(s) ({', '.join(met) or 'none'}) → {'met' if len(met) >= 2 else '**missed**'}."]
    capped = [row[0] for row in summary if row[1] == "on" and row[7] < 0.20]
    lines += ["", f"Ceiling below 20 % (no policy that finishes every job can average a 20 % reduction there): "
              f"{', '.join(capped) or 'none'}."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=800, help="jobs per replay")
    ap.add_argument("--no-write", action="store_true", help="print, do not write docs/benchmarks.md")
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    ap.add_argument("--only", help="only the fabrics whose name contains this (e.g. Lingjun)")
    ap.add_argument("--loads", type=float, nargs="+", default=list(LOADS), help="offered loads")
    ap.add_argument("--section", help="docs/benchmarks.md section title (default: Contention ablation, or "
                    "Contention ablation with tp/pp gangs with --tp/--pp)")
    ap.add_argument("--tp", default="1", help="tensor-parallel group size of the gangs it divides: a number, "
                    "or 'host' for each fabric's GPUs per host")
    ap.add_argument("--pp", type=int, default=1, help="pipeline stages of the gangs tp·pp divides")
    ap.add_argument("--ecmp", choices=("ethernet", "all", "none"), default="ethernet",
                    help="ECMP flow hashing on the Ethernet fabric (Lingjun), every fabric, or none")
    a = ap.parse_args()
    if a.tp != "host" and not a.tp.isdigit():
        ap.error("--tp takes a number or 'host'")
    a.section = a.section or ("Contention ablation" if a.tp == "1" and a.pp == 1
                              else "Contention ablation with tp/pp gangs")
    t0 = time.perf_counter()
    results: dict = {}
    for name, (fab, gph, ether) in fabrics().items():
        if a.only and a.only not in name:
            continue
        results[name] = {}
        for load in a.loads:
            for seed in SEEDS:
                ecmp = a.ecmp == "all" or (a.ecmp == "ethernet" and ether)
                tp = gph if a.tp == "host" else int(a.tp)
                results[name][f"{load}/{seed}"] = run_one(fab, gph, a.jobs, load, seed, ecmp, tp, a.pp)
                print(name, load, seed, json.dumps(results[name][f"{load}/{seed}"]), flush=True)
    body = render(results, a.jobs) + f"\n\nWhole run: {time.perf_counter() - t0:.0f} s on the shared machine."
    print(body)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    if not a.no_write:
        flags = (f" --only {a.only}" if a.only else "") + (f" --loads {' '.join(map(str, a.loads))}"
                                                          if list(a.loads) != list(LOADS) else "")
        if a.ecmp != "ethernet":
            flags += f" --ecmp {a.ecmp}"
        if a.tp != "1" or a.pp != 1:
            flags += f" --tp {a.tp} --pp {a.pp}"
        if a.section not in ("Contention ablation", "Contention ablation with tp/pp gangs"):
            flags += f" --section '{a.section}'"
        write_section(a.section, body, command=f"python -m benchmarks.scheduler.ablation --jobs {a.jobs}{flags}")


if __name__ == "__main__":
    main()
