"""Placement benchmark: ``.venv/bin/python -m benchmarks.placement [--quick] [--no-write]``.

Replays jobs onto DGX H100 SuperPODs and GB200 NVL72 racks (70–85 % busy), places gangs of
8–1,024 GPUs with every solver on the same states, and writes the ``## Placement`` section of
docs/benchmarks.md plus docs/placement_latency.png. All solvers run in one process, one after the
other, on the same states, so ratios are comparable even on a shared machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time

import numpy as np

from benchmarks.placement.replay import replay
from fabric_hpc.placement import SOLVERS, PlacementInfeasible, SolveOptions, fragmentation, place
from fabric_hpc.placement.explain import domain_capacity
from fabric_hpc.placement.problem import Problem
from fabric_hpc.placement.request import parse_request
from fabric_hpc.topology import build, generators

GANGS = (8, 16, 32, 64, 128, 256, 512, 1024)
OPTS = SolveOptions(time_limit_s=1.0, workers=1)


def gang_request(fab, size: int) -> str:
    per = int(max(len(fab.host_gpus(h)) for h in fab.hosts[:1]))
    return f"nodes={max(size // per, 1)},gpus={min(per, size)}"


def pristine_left(free: np.ndarray, prob: Problem, level: str) -> int:
    """Entirely free domains of ``level`` (what the next large gang needs)."""
    lv = prob.levels
    j = lv.level(level)
    fr = np.bincount(prob.fab.index.gpu_host, weights=free, minlength=len(lv.host_gpus))
    tot = np.bincount(lv.host_dom[:, j], weights=lv.host_gpus)
    got = np.bincount(lv.host_dom[:, j], weights=fr, minlength=len(tot))
    return int(((tot == got) & (tot > 0)).sum())


def run_states(name: str, fab, seeds, gangs, solvers=SOLVERS, level="leaf", totals=()) -> list[dict]:
    rows = []
    for seed in seeds:
        state = replay(fab, seed)
        jobs = [(s, gang_request(fab, s)) for s in gangs] + [(t, f"gpus={t}") for t in totals]
        for size, text in jobs:
            if size > state.free.sum():
                continue
            for solver in solvers:
                t0 = time.perf_counter()
                try:
                    p = place(fab, state, text, solver=solver, options=OPTS)
                except PlacementInfeasible:
                    rows.append({"fabric": name, "seed": seed, "size": size, "solver": solver, "ok": False,
                                 "latency": time.perf_counter() - t0})
                    continue
                lat = time.perf_counter() - t0
                free = state.free.copy()
                free[[fab.gpu_pos[g] for g in p.gpus]] = False
                prob = Problem(fab, state, parse_request(text))
                caps = np.sort(domain_capacity(prob, prob.levels.level(level)))[::-1]
                bound = int(np.searchsorted(np.cumsum(caps), prob.units)) + 1
                rows.append({"fabric": name, "seed": seed, "size": size, "solver": solver, "ok": True,
                             "latency": lat, "cost": p.cost, "domains": p.domains.get(level, 1),
                             "multi": len(p.hosts) > 1, "frag": fragmentation(free, prob),
                             "pristine": pristine_left(free, prob, level), "text": text, "bound": bound,
                             "optimal": p.optimal, "util": state.utilisation()})
    return rows


def summarise(rows: list[dict], solvers=SOLVERS) -> list[tuple]:
    out = []
    for s in solvers:
        r = [x for x in rows if x["solver"] == s]
        ok = [x for x in r if x["ok"]]
        multi = [x["domains"] for x in ok if x["multi"]]
        lat = np.array([x["latency"] for x in r]) * 1000
        out.append((s, len(ok), len(r) - len(ok), f"{np.percentile(lat, 50):.1f}", f"{np.percentile(lat, 99):.1f}",
                    f"{np.mean([x['cost'] for x in ok]):.2f}" if ok else "-",
                    f"{np.mean(multi):.2f}" if multi else "-",
                    f"{np.mean([x['frag'] for x in ok]):.4f}" if ok else "-",
                    f"{np.mean([x['pristine'] for x in ok]):.2f}" if ok else "-"))
    return out


def common_cost(rows: list[dict], solvers=SOLVERS) -> dict[str, float]:
    """Mean cost and domains on the instances every solver placed (a like-for-like comparison)."""
    keys = {}
    for x in rows:
        keys.setdefault((x["fabric"], x["seed"], x.get("text", x["size"])), {})[x["solver"]] = x
    both = [v for v in keys.values() if all(s in v and v[s]["ok"] for s in solvers)]
    out = {s: (np.mean([v[s]["cost"] for v in both]),
               np.mean([v[s]["domains"] for v in both if v[s]["multi"]] or [np.nan]), len(both)) for s in solvers}
    out["bound"] = (np.nan, np.mean([v["cpsat"]["bound"] for v in both if v["cpsat"]["multi"]] or [np.nan]), len(both))
    return out


def scaling(sus_list, seeds=(1,)) -> list[tuple]:
    out = []
    for sus in sus_list:
        fab = build(generators.superpod(sus=sus))
        rows = run_states(f"superpod-{sus}su", fab, seeds, [g for g in GANGS if g <= len(fab.gpus) // 4],
                          solvers=("cpsat", "greedy", "slurm-tree"))
        for s in ("cpsat", "greedy", "slurm-tree"):
            lat = np.array([x["latency"] for x in rows if x["solver"] == s]) * 1000
            out.append((len(fab.gpus), s, len(lat), float(np.percentile(lat, 50)), float(np.percentile(lat, 99)),
                        float(lat.max())))
    return out


def optimality_gap(seeds) -> list[tuple]:
    """cpsat with the 1 s default vs cpsat run to proven optimality, on 64-host instances."""
    fab = build(generators.superpod(sus=2))
    out = []
    for seed in seeds:
        state = replay(fab, seed)
        for text in ("nodes=4,gpus=8", "nodes=8,gpus=8", "nodes=6,gpus=4", "gpus=20", "gpus=44", "gpus=100",
                     "nodes=4,gpus=4,slices=2,slice_level=leaf", "nodes=3,gpus=2,numa_local",
                     "nodes=12,gpus=2,switches=2", "nodes=16,gpus=8,slices=4,slice_level=leaf",
                     "nodes=6,gpus=4,rail_aligned"):
            try:
                fast = place(fab, state, text, options=OPTS)
                best = place(fab, state, text, options=SolveOptions(time_limit_s=60.0))
            except PlacementInfeasible:
                continue
            others = []
            for solver in ("greedy", "slurm-tree"):
                try:
                    others.append(place(fab, state, text, solver=solver).cost)
                except PlacementInfeasible:
                    others.append(float("nan"))
            out.append((seed, text, fast.cost, best.cost, bool(best.optimal), (fast.cost - best.cost) / best.cost,
                        *[(c - best.cost) / best.cost for c in others]))
    return out


def main(quick: bool = False, write: bool = True) -> str:
    from benchmarks.placement.report import render_section, write_section

    warm = build(generators.superpod(sus=1))  # import OR-Tools and JIT paths once, outside the timings
    place(warm, replay(warm, 0), "nodes=2,gpus=8")
    t0 = time.time()
    seeds = (1,) if quick else tuple(range(1, 9))
    pods = {"superpod-8su (2,048 GPUs)": (build(generators.superpod(sus=2 if quick else 8)), "leaf"),
            "nvl72-28r (2,016 GPUs)": (build(generators.nvl72(racks=8 if quick else 28)), "nvlink")}
    if not quick:
        pods["superpod-64su (16,384 GPUs)"] = (build(generators.superpod(sus=64)), "leaf")
    quality = {}
    for name, (fab, level) in pods.items():
        rows = run_states(name, fab, seeds if "64su" not in name else seeds[:3], GANGS, level=level,
                          totals=(8, 24))
        quality[name] = (rows, fab, level)
        print(name, "done", f"{time.time() - t0:.0f}s", flush=True)
    scale = scaling((1, 2, 4) if quick else (1, 2, 4, 8, 16, 32, 64), seeds=(1,) if quick else (1, 2, 3))
    print("scaling done", f"{time.time() - t0:.0f}s", flush=True)
    gaps = optimality_gap(seeds[:4])
    print("gap done", f"{time.time() - t0:.0f}s", flush=True)
    meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs), "
                       f"{platform.python_implementation()} {platform.python_version()}",
            "command": ".venv/bin/python -m benchmarks.placement" + (" --quick" if quick else ""),
            "wall_s": time.time() - t0}
    text = render_section(meta, quality, scale, gaps, summarise, common_cost)
    if write:
        write_section(text, scale)
    print(text)
    return text


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    main(quick=args.quick, write=not args.no_write)
