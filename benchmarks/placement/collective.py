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

``--mix tppp``: the same fabrics and busy states with Megatron-shaped tensor- and pipeline-parallel
gangs instead (``TPPP_REQUESTS``: GPUs = tp·pp·dp, ``tp=8`` on 8-GPU DGX/H800 hosts, ``tp=4`` on
NVL72 trays or wider in-rack groups, ``pp`` 2/4/8). ``comm_ms`` is then the step's communication
of the step model: the data-parallel all-reduce of the ``tp·pp`` concurrent rings, the TP groups'
all-reduces and the stage-to-stage sends, in the data-parallel all-reduce's ms (docs/placement.md,
"Tensor- and pipeline-parallel requests"; the run recorded in docs/benchmarks.md predates that and
has the data-parallel part alone); the table
adds the ratio to slurm-tree, each solver's placement wall time (p50/p99, every instance it
was asked) and what it could not place, and no 16k latency run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

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
#: Tensor/pipeline-parallel gangs (``--mix tppp``), Megatron-shaped: GPUs = tp · pp · dp.
TPPP_REQUESTS = {
    # DGX H100 / Lingjun H800 hosts of 8 GPUs: tp=8 fills a host (the NVLink domain); tp=4 half of one
    "dgx": ["nodes=4,gpus=8,tp=8,pp=2", "nodes=6,gpus=8,tp=8,pp=2", "nodes=8,gpus=8,tp=8,pp=2",
            "nodes=8,gpus=8,tp=8,pp=4", "nodes=16,gpus=8,tp=8,pp=8", "gpus=32,tp=4,pp=2", "gpus=48,tp=4,pp=4",
            "gpus=96,tp=8,pp=4"],
    # GB200 NVL72: 4-GPU trays, the rack is the NVLink domain (tp may span trays, up to 72)
    "nvl72": ["nodes=8,gpus=4,tp=4,pp=2", "nodes=16,gpus=4,tp=4,pp=4", "nodes=30,gpus=4,tp=4,pp=2",
              "gpus=64,tp=16,pp=2", "gpus=96,tp=8,pp=2", "gpus=128,tp=8,pp=4", "gpus=144,tp=36,pp=2"],
    # larger than one Lingjun ToR (64 GPUs)
    "cross-tor": ["nodes=12,gpus=8,tp=8,pp=2", "nodes=16,gpus=8,tp=8,pp=4", "nodes=32,gpus=8,tp=8,pp=4",
                  "nodes=32,gpus=8,tp=8,pp=8", "gpus=192,tp=8,pp=8", "gpus=200,tp=4,pp=2",
                  "gpus=288,tp=4,pp=8"]}
MIXES = {"plain": REQUESTS, "tppp": TPPP_REQUESTS}
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
    if prob.tp > 1 or prob.pp > 1:
        return _dp_bottleneck(fab, gpus, weights.message_mb * 2**20, prob.tp, prob.pp, prob.background())
    return collective_time(fab, gpus, weights.message_mb * 2**20, kind="allreduce", algo="ring",
                           background=prob.background()).bottleneck


def _dp_bottleneck(fab, gpus: np.ndarray, size: float, tp: int, pp: int, background) -> str:
    """What limits the slowest of a tp/pp job's data-parallel rings (``cost.dp_rings_time``): that
    ring's max-min share beside the job's other rings and the running jobs; "none" if no ring
    (dp = 1: nothing to all-reduce across GPUs)."""
    from fabric_hpc.placement.collective import collective_time, job_load
    from fabric_hpc.placement.parallel import concurrent_rings, dp_rings

    rings = dp_rings(fab, np.unique(gpus), tp, pp)
    if not rings:
        return "none"
    share = size / (tp * pp)
    times = concurrent_rings(fab, rings, share, background)
    slow = int(np.argmax([sum(t) for t in times]))
    others = [job_load(fab, r, share) for i, r in enumerate(rings) if i != slow]
    return collective_time(fab, rings[slow], share, kind="allreduce", algo="ring",
                           background=others + list(background or [])).bottleneck


def run(fab, requests, seeds, weights, target: float = DEFAULT, misses: list | None = None) -> list[dict]:
    """Rows of the multi-host instances every solver placed; ``misses`` (if given) collects
    (seed, request, solver, wall s, reason) of every placement that failed, and
    (seed, request, "*", times, "single-host") of instances every solver put on one host."""
    rows = []
    for seed in seeds:
        state = replay(fab, seed, target=target)
        for text in requests:
            got, wall = {}, {}
            for solver in SOLVERS:
                t0 = time.perf_counter()
                try:
                    p = place(fab, state, text, solver=solver, options=OPTS, weights=weights)
                except PlacementInfeasible as e:
                    wall[solver] = time.perf_counter() - t0
                    if misses is not None:
                        misses.append({"seed": seed, "text": text, "solver": solver, "latency": wall[solver],
                                       "why": str(e).splitlines()[0][:160], "util": state.utilisation()})
                    continue
                got[solver] = (p.breakdown["comm_ms"], time.perf_counter() - t0, p.optimal, len(p.hosts),
                               _bottleneck(fab, state, text, weights, p), p.domains)
            if len(got) == len(SOLVERS) and max(v[3] for v in got.values()) > 1:
                best = min(v[0] for v in got.values())
                tree = got["slurm-tree"][0]
                rows += [{"seed": seed, "text": text, "solver": s, "comm": v[0], "latency": v[1],
                          "optimal": v[2], "ratio": v[0] / best if best > 0 else 1.0, "bottleneck": v[4],
                          "tree_ratio": v[0] / tree if tree > 0 else 1.0,
                          "domains": v[5], "util": state.utilisation()} for s, v in got.items()]
            elif len(got) == len(SOLVERS) and misses is not None:
                misses.append({"seed": seed, "text": text, "solver": "*", "why": "single-host",
                               "latency": {s: v[1] for s, v in got.items()}, "util": state.utilisation()})
            if misses is not None and len(got) < len(SOLVERS):  # the placed ones' wall time still counts
                misses += [{"seed": seed, "text": text, "solver": s, "latency": v[1], "comm": v[0],
                            "why": "placed (others did not)", "util": state.utilisation()}
                           for s, v in got.items()]
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


def table_tppp(name: str, rows: list[dict], misses: list[dict]) -> list[str]:
    """Per solver on the instances every solver placed on several hosts: mean / p99 comm, the mean
    ratio to slurm-tree and to the best of the four, how often it is the best; wall time of every
    placement it was asked for (placed, infeasible or single-host alike) and how many it failed."""
    out = []
    for s in SOLVERS:
        r = [x for x in rows if x["solver"] == s]
        lat = [x["latency"] for x in r]
        lat += [m["latency"] for m in misses if m["solver"] == s]
        lat += [m["latency"][s] for m in misses if m["solver"] == "*" and s in m["latency"]]
        failed = sum(m["solver"] == s and m.get("comm") is None for m in misses)
        lat_ms = np.array(lat) * 1000 if lat else np.array([np.nan])
        if not r:
            out.append(f"| {name} | {s} | 0 | | | | | | | {np.percentile(lat_ms, 50):.0f} | "
                       f"{np.percentile(lat_ms, 99):.0f} | {failed} |")
            continue
        comm = np.array([x["comm"] for x in r])
        at_best = sum(x["ratio"] <= 1 + 1e-9 for x in r)
        out.append(f"| {name} | {s} | {len(r)} | {comm.mean():.3f} | {np.percentile(comm, 99):.3f} | "
                   f"{np.mean([x['tree_ratio'] for x in r]):.2f} | {np.mean([x['ratio'] for x in r]):.2f} | "
                   f"{max(x['ratio'] for x in r):.2f} | {at_best}/{len(r)} | "
                   f"{np.percentile(lat_ms, 50):.0f} | "
                   f"{np.percentile(lat_ms, 99):.0f} | {failed} |")
    tree = {(x["seed"], x["text"]): x["comm"] for x in rows if x["solver"] == "slurm-tree"}
    for s in ("cpsat", "greedy"):
        own = {(x["seed"], x["text"]): x["comm"] for x in rows if x["solver"] == s}
        gain = [tree[k] / own[k] for k in own if own[k] > 0]
        if gain:
            out.append(f"| {name} | slurm-tree / {s} (mean of ratios) | {len(gain)} | | | "
                       f"{np.mean(gain):.2f} | | | "
                       f"{s} faster on {sum(g > 1 + 1e-9 for g in gain)}, slower on "
                       f"{sum(g < 1 - 1e-9 for g in gain)} | | | |")
    return out


def left_out(name: str, misses: list[dict]) -> str:
    """The instances not in the table: every solver on one host, or some solver could not place."""
    single = sorted({f"{m['text']} (seed {m['seed']})" for m in misses if m["solver"] == "*"})
    failed: dict[str, list[str]] = {}
    for m in misses:
        if m["solver"] not in ("*",) and m.get("comm") is None:
            failed.setdefault(f"{m['text']} (seed {m['seed']})", []).append(m["solver"])
    parts = []
    if single:
        parts.append("single-host for every solver: " + ", ".join(single))
    if failed:
        parts.append("not placed: " + "; ".join(f"{k} by {', '.join(v)}" for k, v in failed.items()))
    return f"- {name}: " + ("; ".join(parts) if parts else "none left out")


def main_tppp(quick: bool = False, dump: str | None = None) -> str:
    """``--mix tppp``: the tp/pp request mix on the same fabrics and busy states."""
    import json

    warm = build(generators.superpod(sus=1))
    place(warm, replay(warm, 1), "gpus=9")  # imports, outside the timings
    t0 = time.perf_counter()
    seeds = (1,) if quick else (1, 2)
    lines = ["| fabric | solver | instances | mean comm (ms) | p99 comm (ms) | mean ratio to slurm-tree | "
             "mean ratio to best | worst ratio to best | at best | wall p50 (ms) | wall p99 (ms) | "
             "not placed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes, gaps, raw = [], [], {}
    for name, (fab, kind, weights, target) in fabrics(quick).items():
        misses: list[dict] = []
        rows = run(fab, TPPP_REQUESTS[kind], seeds, weights, target, misses=misses)
        lines += table_tppp(name, rows, misses)
        notes.append(bottlenecks(name, rows))
        gaps.append(left_out(name, misses))
        raw[name] = {"rows": rows, "misses": misses}
        print(name, "done", f"{time.perf_counter() - t0:.0f} s", flush=True)
    if dump:
        Path(dump).write_text(json.dumps(raw, indent=1,
                                         default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    return "\n".join(lines + ["", "Bottlenecks (slowest data-parallel ring):"] + notes
                     + ["", "Left out of the table:"] + gaps
                     + ["", f"Whole run: {time.perf_counter() - t0:.0f} s."])


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
    ap.add_argument("--mix", choices=tuple(MIXES), default="plain",
                    help="request mix: plain data-parallel gangs, or tp/pp (Megatron-shaped) gangs")
    ap.add_argument("--json", help="--mix tppp: also write every instance's numbers here")
    args = ap.parse_args()
    if args.mix == "tppp":
        print(main_tppp(args.quick, args.json))
    elif args.latency:
        place(build(generators.superpod(sus=1)), replay(build(generators.superpod(sus=1)), 1), "gpus=9")
        print(latency_16k(args.quick, seeds=(1, 2, 3)))
    else:
        print(main(args.quick))
