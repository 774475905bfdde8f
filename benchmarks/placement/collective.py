"""Modelled collective time per solver: ``.venv/bin/python -m benchmarks.placement.collective [--quick]``.

On replayed busy states (benchmarks/placement/replay.py) of a DGX H100 SuperPOD, GB200 NVL72 racks
and the Lingjun Clos with 2:1 oversubscribed ToRs (contention on: running jobs' traffic counts; also
on 92 %-busy held-out states, with the same mix and with gangs larger than one ToR),
every solver places the same multi-host gangs; the table gives, per fabric and solver, the mean
and p99 of the modelled ring all-reduce time (256 MiB, ``cost.modelled_comm_ms``) and the mean
ratio to the best of the four solvers on each instance (the best placement found, a proven
optimum only where cpsat says ``optimal``), what limits each solver's rings, and cpsat's CPU and
wall time at 16,384 GPUs (``--latency``: only that, on 3 states). Prints Markdown;
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
            "nvl72": ["gpus=16", "gpus=64", "gpus=96", "gpus=144", "nodes=8,gpus=4", "nodes=30,gpus=4"],
            # gangs larger than one Lingjun ToR (8 hosts × 8 GPUs): every placement spans ToRs
            "cross-tor": ["nodes=12,gpus=8", "nodes=16,gpus=8", "nodes=32,gpus=8", "gpus=96", "gpus=200",
                          "gpus=300"]}
#: replay's default occupancy (78 %) and its fill level with no job ended (held-out busy states)
DEFAULT, BUSY = 0.78, 0.95


def fabrics(quick: bool) -> dict:
    """name -> (fabric, request mix, weights, replay target occupancy)."""
    lingjun = build(import_lingjun("data/topologies/alibaba_lingjun2023_topo.csv", oversubscription=2.0))
    contention = CostWeights(contention=True)
    return {"superpod-8su": (build(generators.superpod(sus=2 if quick else 8)), "dgx", CostWeights(), DEFAULT),
            "nvl72-28r": (build(generators.nvl72(racks=8 if quick else 28)), "nvl72", CostWeights(), DEFAULT),
            "lingjun-2to1 (contention)": (lingjun, "dgx", contention, DEFAULT),
            "lingjun-2to1 busy (contention)": (lingjun, "dgx", contention, BUSY),
            "lingjun-2to1 busy, cross-ToR gangs (contention)": (lingjun, "cross-tor", contention, BUSY)}


def _bottleneck(fab, state, text: str, weights, p) -> str:
    """What limits the placement's modelled ring (nvlink | nic | uplink), beside the running jobs."""
    from fabric_hpc.placement.collective import collective_time
    from fabric_hpc.placement.problem import Problem
    from fabric_hpc.placement.request import parse_request

    prob = Problem(fab, state, parse_request(text), weights)
    gpus = np.array([fab.gpu_pos[g] for g in p.gpus])
    return collective_time(fab, gpus, weights.message_mb * 2**20, kind="allreduce", algo="ring",
                           background=prob.background()).bottleneck


def run(fab, requests, seeds, weights, target: float = DEFAULT) -> list[dict]:
    rows = []
    for seed in seeds:
        state = replay(fab, seed, target=target)
        for text in requests:
            got = {}
            for solver in SOLVERS:
                t0 = time.perf_counter()
                try:
                    p = place(fab, state, text, solver=solver, options=OPTS, weights=weights)
                except PlacementInfeasible:
                    continue
                got[solver] = (p.breakdown["comm_ms"], time.perf_counter() - t0, p.optimal, len(p.hosts),
                               _bottleneck(fab, state, text, weights, p), p.domains)
            if len(got) == len(SOLVERS) and max(v[3] for v in got.values()) > 1:
                best = min(v[0] for v in got.values())
                rows += [{"seed": seed, "text": text, "solver": s, "comm": v[0], "latency": v[1],
                          "optimal": v[2], "ratio": v[0] / best if best > 0 else 1.0, "bottleneck": v[4],
                          "domains": v[5], "util": state.utilisation()} for s, v in got.items()]
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


def bottlenecks(name: str, rows: list[dict]) -> str:
    """Per solver: what limits its rings, and the mean level-1 domains (ToRs, leaves) spanned."""
    parts = []
    for s in ("cpsat", "slurm-tree"):
        r = [x for x in rows if x["solver"] == s]
        if r:
            kinds = {k: sum(x["bottleneck"] == k for x in r) for k in sorted({x["bottleneck"] for x in r})}
            first = [next(iter(list(x["domains"].values())[1:]), 1) for x in r]
            parts.append(f"{s}: bottleneck {kinds}, mean level-1 domains {np.mean(first):.2f}")
    util = np.mean([x["util"] for x in rows]) if rows else float("nan")
    return f"- {name} (states {util:.0%} busy): " + "; ".join(parts)


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
    notes = []
    for name, (fab, kind, weights, target) in fabrics(quick).items():
        rows = run(fab, REQUESTS[kind], seeds, weights, target)
        lines += table(name, rows)
        notes.append(bottlenecks(name, rows))
    lines += [""] + notes + [""]
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
