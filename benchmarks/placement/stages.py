"""Pipeline stages against brute force: ``.venv/bin/python -m benchmarks.placement.stages [--seeds N]``.

On 30 %-busy random states (``tests.placement.conftest.random_state``, seeds 0..N-1) of a 2-SU
SuperPOD with 2 DGX H100 per SU, every ``pp`` request of :data:`REQUESTS` is placed by each solver
and by brute force over every host choice (the reference optimum of the cost model). Prints, per
request and solver: instances placed, how many are above the optimum, the mean and largest cost
ratio to it, and the median wall time. The fabric is small so that brute force is exact.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from fabric_hpc.placement import PlacementInfeasible, place
from fabric_hpc.placement.problem import Problem
from fabric_hpc.placement.request import parse_request
from fabric_hpc.topology import build, generators
from tests.placement.brute import brute_force
from tests.placement.conftest import random_state

REQUESTS = ("gpus=16,pp=2", "gpus=24,pp=2", "gpus=18,pp=3", "gpus=12,pp=2", "gpus=20,pp=4",
            "gpus=16,tp=4,pp=2", "nodes=3,gpus=4,pp=2")
SOLVERS = ("cpsat", "greedy", "slurm-tree", "slurm-block")


def run(seeds: int) -> dict:
    fab = build(generators.superpod(sus=2, hosts_per_su=2))
    out: dict = {}
    for text in REQUESTS:
        rows = {s: {"ratios": [], "wall": []} for s in SOLVERS}
        for seed in range(seeds):
            state = random_state(fab, seed, busy=0.3)
            optimum = brute_force(Problem(fab, state, parse_request(text)))
            if optimum is None:
                continue
            for solver in SOLVERS:
                t0 = time.perf_counter()
                try:
                    cost = place(fab, state, text, solver=solver).cost
                except PlacementInfeasible:
                    continue
                rows[solver]["wall"].append(time.perf_counter() - t0)
                rows[solver]["ratios"].append(cost / optimum if optimum > 0 else 1.0)
        out[text] = {s: _summary(r) for s, r in rows.items()}
    return out


def _summary(r: dict) -> dict:
    x = np.array(r["ratios"])
    return {"placed": len(x), "above_optimum": int((x > 1 + 1e-9).sum()),
            "mean_ratio": round(float(x.mean()), 3) if len(x) else None,
            "max_ratio": round(float(x.max()), 3) if len(x) else None,
            "p50_wall_ms": round(1000 * float(np.median(r["wall"])), 1) if r["wall"] else None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=25)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    res = run(args.seeds)
    if args.json:
        print(json.dumps(res))
        return
    print("| request | solver | placed | above optimum | mean / max cost ratio | p50 wall (ms) |")
    print("|---|---|---|---|---|---|")
    for text, per in res.items():
        for solver, s in per.items():
            print(f"| `{text}` | {solver} | {s['placed']} | {s['above_optimum']} | "
                  f"{s['mean_ratio']} / {s['max_ratio']} | {s['p50_wall_ms']} |")


if __name__ == "__main__":
    main()
