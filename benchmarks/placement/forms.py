"""Fluid and stepped collective forms against SimGrid, and what one evaluation costs:
``.venv/bin/python -m benchmarks.placement.forms`` (needs Debian's python3-simgrid).

The scenarios are those of tests/placement/test_collective_simgrid.py: seed 13 (the test's set: 4
crossing jobs and 5 random sets of 2-3 concurrent jobs) and seed 29 (8 held-out random sets), ring
all-reduce of 256 MiB back to back, with spread uplinks and with ECMP-hashed routes. Prints, per
fabric and routing, the jobs compared, the mean and max relative error of each form against SimGrid
(the stepped form also with SimGrid's own sharing rule, shares weighted by the inverse path
latency) and the CPU time (``time.process_time``, median over the scenarios) of one fluid evaluation (one
job's ``collective_time`` beside the others' precomputed ``job_load``s) and of one stepped
evaluation (``stepped_times`` of all the scenario's jobs together, ``job_steps`` included).
"""

from __future__ import annotations

import time

import numpy as np

from fabric_hpc.placement.collective import collective_time, job_load
from fabric_hpc.placement.collective_steps import job_steps, stepped_times
from tests.placement.test_collective_simgrid import (FABRICS, SIZE, crossing_jobs, random_jobs,
                                                      simgrid_available, simgrid_times)

SETS = ((13, 6), (29, 8))  # (seed, scenarios): the test's set, then the held-out one


def scenarios(fab, seed: int, trials: int):
    rng = np.random.default_rng(seed)
    for trial in range(trials):
        jobs = crossing_jobs(fab) if trial == 0 and seed == 13 else random_jobs(fab, rng)
        if len(jobs) >= 2:
            yield trial, jobs


def measure(fab, ecmp: bool, sets=SETS) -> dict:
    err_f, err_s, err_w, cost_f, cost_s = [], [], [], [], []
    for seed, trials in sets:
        for trial, jobs in scenarios(fab, seed, trials):
            base = 1000 * trial + (0 if seed == 13 else 100_000 * seed)
            salts = [base + j for j in range(len(jobs))] if ecmp else [None] * len(jobs)
            loads = [job_load(fab, g, SIZE, ecmp=s) for g, s in zip(jobs, salts, strict=True)]
            fluid = []
            for j, g in enumerate(jobs):
                c0 = time.process_time()
                others = loads[:j] + loads[j + 1:]
                fluid.append(collective_time(fab, g, SIZE, algo="ring", background=others, ecmp=salts[j]).seconds)
                cost_f.append(time.process_time() - c0)
            c0 = time.process_time()
            steps = [job_steps(fab, g, SIZE, ecmp=s) for g, s in zip(jobs, salts, strict=True)]
            stepped = stepped_times(fab, steps)
            cost_s.append(time.process_time() - c0)
            weighted = stepped_times(fab, steps, share="latency")
            sim = simgrid_times(fab, jobs, horizon=2.5 * max(fluid), salts=salts if ecmp else None)
            err_f += [abs(f - s) / s for f, s in zip(fluid, sim, strict=True)]
            err_s += [abs(f - s) / s for f, s in zip(stepped, sim, strict=True)]
            err_w += [abs(f - s) / s for f, s in zip(weighted, sim, strict=True)]
    return {"jobs": len(err_f), "fluid": (np.mean(err_f), np.max(err_f)),
            "stepped": (np.mean(err_s), np.max(err_s)), "weighted": (np.mean(err_w), np.max(err_w)),
            "cost_f": np.median(cost_f), "cost_s": np.median(cost_s), "cost_s_max": np.max(cost_s)}


def _pair(x) -> str:
    return f"{x[0]:.1%} / {x[1]:.1%}"


def main() -> str:
    if not simgrid_available():
        return "SimGrid (python3-simgrid) is not installed: nothing measured"
    lines = ["| fabric | routing | set | jobs | fluid mean / max error | stepped mean / max error | stepped, "
             "latency-weighted shares: mean / max | fluid CPU per job evaluation (median) | stepped CPU per "
             "scenario (median / max) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, make in FABRICS.items():
        fab = make()
        for ecmp in (False, True):
            for seed, trials in SETS:
                r = measure(fab, ecmp, [(seed, trials)])
                which = "test" if seed == 13 else "held-out"
                lines.append(f"| {name} | {'ECMP' if ecmp else 'spread'} | {which} | {r['jobs']} | "
                             f"{_pair(r['fluid'])} | {_pair(r['stepped'])} | {_pair(r['weighted'])} | "
                             f"{r['cost_f'] * 1e3:.1f} ms | {r['cost_s'] * 1e3:.0f} / {r['cost_s_max'] * 1e3:.0f} ms |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
