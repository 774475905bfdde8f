"""CP-SAT's running-jobs term, measured: ``.venv/bin/python -m benchmarks.placement.background [--quick]``.

On random busy states with ``CostWeights(contention=True)`` (a DGX H100 SuperPOD, the Lingjun Clos
with 2:1 oversubscribed ToRs, GB200 NVL72 racks; states from :func:`benchmarks.placement.replay.replay`
and from random gangs over random hosts, whose rings cross the leaves' uplinks), every multi-host
request is placed by greedy and by cpsat with and without the background term of its model
(``cpsat_comm.BACKGROUND_TERM``). Prints, per fabric, the mean modelled collective time beside the
running jobs (the exact cost model, ``comm_ms``) of each, how often cpsat's own answer (before the
portfolio's comparison) and its final answer changed, and cpsat's CPU time. Deterministic: one
worker, a work limit.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.placement.replay import replay
from fabric_hpc.placement import ClusterState, CostWeights, PlacementInfeasible, SolveOptions, place
from fabric_hpc.placement import cpsat_comm
from fabric_hpc.topology import build, generators, import_lingjun

OPTS = SolveOptions(time_limit_s=1.0, workers=1)
WEIGHTS = CostWeights(contention=True)
DGX = ["nodes=2,gpus=8", "nodes=4,gpus=8", "gpus=12", "gpus=24", "gpus=40", "nodes=3,gpus=4", "gpus=100"]
NVL = ["gpus=16", "gpus=64", "gpus=96", "gpus=144", "nodes=8,gpus=4", "nodes=30,gpus=4"]


def random_gangs(fab, seed: int, busy: float = 0.7) -> ClusterState:
    """Running gangs of 1-4 random hosts each (any leaf), most of their free GPUs, up to ``busy``."""
    rng = np.random.default_rng(seed)
    state = ClusterState(fab)
    hosts = list(fab.hosts)
    for job in range(4 * len(hosts)):
        if 1 - state.free.mean() >= busy:
            break
        picked = rng.choice(len(hosts), size=int(rng.integers(1, 5)), replace=False)
        gpus = [g for i in picked for g in fab.host_gpus(hosts[i])
                if state.free[fab.gpu_pos[g]] and rng.random() < 0.8]
        if gpus:
            state.allocate(f"job-{job}", gpus)
    return state


def fabrics(quick: bool) -> dict:
    lingjun = build(import_lingjun("data/topologies/alibaba_lingjun2023_topo.csv", oversubscription=2.0))
    return {"superpod-4su": (build(generators.superpod(sus=2 if quick else 4)), DGX),
            "lingjun-2to1": (lingjun, DGX),
            "nvl72-8r": (build(generators.nvl72(racks=4 if quick else 8)), NVL)}


def _one(fab, state, text: str, solver: str, term: bool):
    cpsat_comm.BACKGROUND_TERM = term
    c0 = time.process_time()
    try:
        p = place(fab, state, text, solver=solver, options=OPTS, weights=WEIGHTS)
    except PlacementInfeasible:
        return None
    finally:
        cpsat_comm.BACKGROUND_TERM = True
    return p, time.process_time() - c0


def run(fab, requests: list[str], seeds) -> list[dict]:
    rows = []
    for seed in seeds:
        for kind, state in (("replay", replay(fab, seed)), ("random", random_gangs(fab, seed))):
            for text in requests:
                got = {"greedy": _one(fab, state, text, "greedy", True),
                       "before": _one(fab, state, text, "cpsat", False),
                       "after": _one(fab, state, text, "cpsat", True)}
                if any(v is None for v in got.values()) or max(len(v[0].hosts) for v in got.values()) < 2:
                    continue
                row = {"seed": seed, "state": kind, "text": text}
                for k, (p, cpu) in got.items():
                    row[k] = p.breakdown["comm_ms"]
                    row[k + "_cpu"] = cpu
                    row[k + "_optimal"] = bool(p.optimal)
                    row[k + "_gpus"] = tuple(sorted(p.gpus))
                    row[k + "_own"] = p.notes == () or "cheaper on the exact cost" not in " ".join(p.notes)
                rows.append(row)
    return rows


def table(rows_by: dict[str, list[dict]]) -> str:
    out = ["| fabric | instances | greedy mean ms | cpsat before mean ms | cpsat after mean ms "
           "| after/before | after better / worse | own answer kept before → after | proven before → after "
           "| cpsat CPU p99 before → after (s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rows in rows_by.items():
        if not rows:
            continue
        g, b, a = (np.array([r[k] for r in rows]) for k in ("greedy", "before", "after"))
        better, worse = int((a < b - 1e-9).sum()), int((a > b + 1e-9).sum())
        own = [sum(r[k + "_own"] for r in rows) for k in ("before", "after")]
        prov = [sum(r[k + "_optimal"] for r in rows) for k in ("before", "after")]
        cpu = [np.percentile([r[k + "_cpu"] for r in rows], 99) for k in ("before", "after")]
        out.append(f"| {name} | {len(rows)} | {g.mean():.3f} | {b.mean():.3f} | {a.mean():.3f} | "
                   f"{a.mean() / b.mean():.3f} | {better} / {worse} | {own[0]} → {own[1]} "
                   f"| {prov[0]} → {prov[1]} | {cpu[0]:.2f} → {cpu[1]:.2f} |")
    return "\n".join(out)


def main(quick: bool = False) -> str:
    seeds = (1,) if quick else (1, 2, 3)
    return table({name: run(fab, reqs, seeds) for name, (fab, reqs) in fabrics(quick).items()})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    print(main(ap.parse_args().quick))
