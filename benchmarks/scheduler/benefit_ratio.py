"""Preemption benefit ratio: ``.venv/bin/python -m benchmarks.scheduler.benefit_ratio [--jobs N]
[--ratios 1 3 5] [--held-out 3 4] [--only-held-out] [--no-write]``.

fabric's policy preempts spot gangs for a ``high`` gang only when gang GPUs × its wait without
preemption (from walltime limits) ≥ ratio × the GPU-hours the victims lose
(``preempt_benefit_ratio``, docs/scheduler.md). This replays the contention ablation's workloads
(``benchmarks.scheduler.ablation``: synthetic gangs, contention on, ECMP on the Ethernet Lingjun
fabric) with the Slurm-like baseline and fabric's policy at each ratio, on the three fabrics at
offered loads 0.9 / 1.2 / 1.5, seeds 1 and 2, plus held-out seeds (``--held-out``, default 3 and 4)
on the SuperPOD (``--only-held-out``: those alone), and
reports per replay the mean-JCT reduction against Slurm-like, the ``high`` tier's mean JCT and the
gangs requeued; per fabric and seed set the mean reduction. Writes ``## Preemption benefit ratio``
of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._report import write_section
from benchmarks.scheduler.ablation import LOADS, MAX_DURATION_S, tier_mean_jct, fabrics
from fabric_hpc.scheduler import fabric_policy, slurm_policy
from fabric_hpc.sim import Contention, Simulator, gang_workload, summarize

#: (fabric name contains, seeds): the ablation's seeds on every fabric
SETS = (("NVL72", (1, 2)), ("SuperPOD", (1, 2)), ("Lingjun", (1, 2)))


def _replay(fab, policy, work, ecmp: bool) -> dict:
    res = Simulator(fab, policy, work, slowdown=Contention(fab, contention=True, ecmp=ecmp)).run()
    s = summarize(res)
    done = [r for r in res.records if r.status == "done"]
    return {"jct": s["mean_jct_s"], "high": tier_mean_jct(done, "high"),
            "pre": s["preemptions"], "util": s["gpu_utilisation"], "jain": s["jain_accounts"]}


def run(jobs: int, ratios: list[float], sets=SETS) -> list[dict]:
    rows, fabs = [], fabrics()
    for part, seeds in sets:
        name, (fab, gph, ether) = next((k, v) for k, v in fabs.items() if part in k)
        for load in LOADS:
            for seed in seeds:
                work = gang_workload(jobs=jobs, cluster_gpus=len(fab.gpus), gpus_per_host=gph, load=load,
                                     seed=seed, max_duration_s=MAX_DURATION_S)
                row = {"fabric": name, "load": load, "seed": seed, "slurm": _replay(fab, slurm_policy(), work, ether)}
                for r in ratios:
                    row[r] = _replay(fab, fabric_policy(preempt_benefit_ratio=r), work, ether)
                rows.append(row)
                print(name, load, seed, {k: v for k, v in row.items() if k not in ("fabric",)}, flush=True)
    return rows


def render(rows: list[dict], ratios: list[float], jobs: int) -> str:
    def red(row: dict, r: float) -> float:
        return 1 - row[r]["jct"] / row["slurm"]["jct"]

    head = ("| fabric | load | seed | " + " | ".join(f"ratio {r:g}: JCT reduction / high-tier JCT (h) / requeued"
                                                     for r in ratios) + " |")
    out = [f"Synthetic gangs ({jobs} jobs per replay; the contention ablation's generator, sizes and 6 h "
           "cap), contention on. JCT reduction = 1 − fabric / Slurm-like mean JCT; high-tier JCT = mean "
           "JCT of the `high` jobs; requeued = spot gangs preempted.", "", head,
           "|---|---|---|" + "---|" * len(ratios)]
    for row in rows:
        cells = [f"{red(row, r):+.1%} / {row[r]['high'] / 3600:.2f} / {row[r]['pre']}" for r in ratios]
        out.append(f"| {row['fabric']} | {row['load']} | {row['seed']} | " + " | ".join(cells) + " |")
    out += ["", "| fabric | seeds | " + " | ".join(f"ratio {r:g}: mean JCT reduction (requeued)" for r in ratios) + " |",
            "|---|---|" + "---|" * len(ratios)]
    groups: dict[tuple[str, str], list[dict]] = {}
    held = ", ".join(map(str, sorted({x["seed"] for x in rows if x["seed"] > 2}))) + " (held out)"
    for row in rows:
        seeds = "1–2" if row["seed"] <= 2 else held
        groups.setdefault((row["fabric"], seeds), []).append(row)
    for (name, seeds), rs in groups.items():
        cells = [f"{np.mean([red(x, r) for x in rs]):+.1%} ({sum(x[r]['pre'] for x in rs)})" for r in ratios]
        out.append(f"| {name} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=3000, help="jobs per replay")
    ap.add_argument("--ratios", type=float, nargs="+", default=[1.0, 3.0, 5.0])
    ap.add_argument("--held-out", type=int, nargs="+", default=[3, 4], help="held-out seeds (> 2) on the SuperPOD")
    ap.add_argument("--only-held-out", action="store_true", help="replay the held-out SuperPOD seeds only")
    ap.add_argument("--no-write", action="store_true", help="print, do not write docs/benchmarks.md")
    a = ap.parse_args()
    if min(a.held_out) <= 2:
        ap.error("--held-out seeds must be > 2 (1 and 2 are the ablation's)")
    held = (("SuperPOD", tuple(a.held_out)),)
    sets = held if a.only_held_out else SETS[:2] + held + SETS[2:]
    t0 = time.perf_counter()
    body = render(run(a.jobs, a.ratios, sets), a.ratios, a.jobs)
    body += f"\n\nWhole run: {time.perf_counter() - t0:.0f} s."
    print(body)
    if not a.no_write:
        extra = "" if a.held_out == [3, 4] else " --held-out " + " ".join(map(str, a.held_out))
        extra += " --only-held-out" if a.only_held_out else ""
        write_section("Preemption benefit ratio", body, command="python -m benchmarks.scheduler.benefit_ratio "
                      f"--jobs {a.jobs} --ratios {' '.join(f'{r:g}' for r in a.ratios)}{extra}")


if __name__ == "__main__":
    main()
