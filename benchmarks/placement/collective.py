"""Modelled collective time per solver: ``.venv/bin/python -m benchmarks.placement.collective [--quick]``.

On replayed busy states (benchmarks/placement/replay.py) of a DGX H100 SuperPOD, GB200 NVL72 racks
and the Lingjun Clos with 2:1 oversubscribed ToRs (contention on: running jobs' traffic counts),
every solver places the same multi-host gangs; the table gives, per fabric and solver, the mean
and p99 of the modelled ring all-reduce time (256 MiB, ``cost.modelled_comm_ms``) and the mean
ratio to the best of the four solvers on each instance (the best placement found, a proven
optimum only where cpsat says ``optimal``), and cpsat's latency at 16,384 GPUs. Prints Markdown;
the run recorded in docs/collective-model.md is the one to compare against.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.placement.replay import replay
from fabric_hpc.placement import SOLVERS, CostWeights, PlacementInfeasible, SolveOptions, place
from fabric_hpc.topology import build, generators, import_lingjun

OPTS = SolveOptions(time_limit_s=1.0, workers=1)
REQUESTS = {"dgx": ["nodes=2,gpus=8", "nodes=4,gpus=8", "nodes=8,gpus=8", "gpus=12", "gpus=24", "gpus=40",
                    "nodes=3,gpus=4", "gpus=100"],
            "nvl72": ["gpus=16", "gpus=64", "gpus=96", "gpus=144", "nodes=8,gpus=4", "nodes=30,gpus=4"]}


def fabrics(quick: bool) -> dict:
    lingjun = import_lingjun("data/topologies/alibaba_lingjun2023_topo.csv", oversubscription=2.0)
    return {"superpod-8su": (build(generators.superpod(sus=2 if quick else 8)), "dgx", CostWeights()),
            "nvl72-28r": (build(generators.nvl72(racks=8 if quick else 28)), "nvl72", CostWeights()),
            "lingjun-2to1 (contention)": (build(lingjun), "dgx", CostWeights(contention=True))}


def run(fab, requests, seeds, weights) -> list[dict]:
    rows = []
    for seed in seeds:
        state = replay(fab, seed)
        for text in requests:
            got = {}
            for solver in SOLVERS:
                t0 = time.perf_counter()
                try:
                    p = place(fab, state, text, solver=solver, options=OPTS, weights=weights)
                except PlacementInfeasible:
                    continue
                got[solver] = (p.breakdown["comm_ms"], time.perf_counter() - t0, p.optimal, len(p.hosts))
            if len(got) == len(SOLVERS) and max(v[3] for v in got.values()) > 1:
                best = min(v[0] for v in got.values())
                rows += [{"seed": seed, "text": text, "solver": s, "comm": v[0], "latency": v[1],
                          "optimal": v[2], "ratio": v[0] / best if best > 0 else 1.0} for s, v in got.items()]
    return rows


def table(name: str, rows: list[dict]) -> list[str]:
    out = []
    for s in SOLVERS:
        r = [x for x in rows if x["solver"] == s]
        if not r:
            continue
        comm = np.array([x["comm"] for x in r])
        out.append(f"| {name} | {s} | {len(r)} | {comm.mean():.2f} | {np.percentile(comm, 99):.2f} | "
                   f"{np.mean([x['ratio'] for x in r]):.2f} | {max(x['ratio'] for x in r):.2f} |")
    tree = {(x["seed"], x["text"]): x["comm"] for x in rows if x["solver"] == "slurm-tree"}
    cp = {(x["seed"], x["text"]): x["comm"] for x in rows if x["solver"] == "cpsat"}
    if tree:
        gain = np.mean([tree[k] / cp[k] for k in cp if cp[k] > 0])
        out.append(f"| {name} | slurm-tree / cpsat (mean of ratios) | {len(cp)} | | | {gain:.2f} | |")
    return out


LATENCY_REQUESTS = ("nodes=2,gpus=8", "nodes=8,gpus=8", "nodes=32,gpus=8", "nodes=128,gpus=8", "gpus=24",
                    "gpus=100", "gpus=300", "nodes=6,gpus=4")


def latency_16k(quick: bool, seeds=(1,), requests=LATENCY_REQUESTS) -> str:
    """cpsat's CPU time (``time.process_time``: what the deterministic budget bounds, independent of
    other processes on the machine) and wall time per request at 16,384 GPUs."""
    fab = build(generators.superpod(sus=8 if quick else 64))
    cpu, wall, rows = [], [], []
    for seed in seeds:
        state = replay(fab, seed)
        for text in requests:
            c0, t0 = time.process_time(), time.perf_counter()
            try:
                p = place(fab, state, text, solver="cpsat", options=OPTS)
            except PlacementInfeasible:
                continue
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - t0)
            rows.append(f"seed {seed} {text}: cpu {cpu[-1]:.3f} s, wall {wall[-1]:.3f} s, "
                        f"comm {p.breakdown['comm_ms']:.3f} ms, cost {p.cost:.3f}")
    cpu, wall = np.array(cpu), np.array(wall)
    return "\n".join(rows + [
        f"cpsat at {len(fab.gpus):,} GPUs: {len(cpu)} requests, CPU p50 {np.percentile(cpu, 50):.2f} s, "
        f"p99 {np.percentile(cpu, 99):.2f} s, max {cpu.max():.2f} s; wall p50 {np.percentile(wall, 50):.2f} s, "
        f"p99 {np.percentile(wall, 99):.2f} s, max {wall.max():.2f} s"])


def main(quick: bool = False) -> str:
    place(build(generators.superpod(sus=1)), replay(build(generators.superpod(sus=1)), 1), "gpus=9")  # imports
    seeds = (1,) if quick else (1, 2)
    lines = ["| fabric | solver | instances | mean comm (ms) | p99 comm (ms) | mean ratio to best | worst ratio |",
             "|---|---|---|---|---|---|---|"]
    for name, (fab, kind, weights) in fabrics(quick).items():
        lines += table(name, run(fab, REQUESTS[kind], seeds, weights))
    lines.append("")
    lines.append(latency_16k(quick))
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--latency", action="store_true", help="only cpsat's latency at 16k GPUs (seeds 1-3)")
    args = ap.parse_args()
    if args.latency:
        place(build(generators.superpod(sus=1)), replay(build(generators.superpod(sus=1)), 1), "gpus=9")
        print(latency_16k(args.quick, seeds=(1, 2, 3)))
    else:
        print(main(args.quick))
