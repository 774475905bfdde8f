"""The placement calls of a replay, recorded once and timed alone on any version of the code.

``python -m benchmarks.scheduler.placement_calls record SEED:LOAD JOBS OUT.npz`` replays ``JOBS``
synthetic gangs on ``superpod:sus=8`` (fabric policy, greedy placer, as ``--sweep``) and records
every greedy ``place``, every reservation-search ``fit`` (``greedy_gpus``) and every ``may_fit`` of
the placer's memo key: the kind, the free-GPU mask and the request.

``python benchmarks/scheduler/placement_calls.py time OUT.npz [ROUNDS]`` (with ``PYTHONPATH`` at
the version to time) makes the same calls on probe states with those free GPUs, ``ROUNDS`` times
(default 3), and prints per kind the calls, the best round's CPU seconds, µs per call and a digest
of the answers (equal digests: the same placements, fits and checks).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

import numpy as np

from fabric_hpc.placement import ClusterState, PlacementInfeasible, place
from fabric_hpc.placement import greedy as greedy_mod
from fabric_hpc.placement.levels import fabric_levels
from fabric_hpc.placement.problem import Problem
from fabric_hpc.placement.request import Request
from fabric_hpc.topology import open_fabric

FABRIC = "superpod:sus=8"
KINDS = ("place", "fit", "may_fit")


def record(run: str, jobs: int, out: str) -> None:
    from fabric_hpc.scheduler import fabric_policy
    from fabric_hpc.scheduler import placer as placer_mod
    from fabric_hpc.sim import Simulator, gang_workload

    calls: list[tuple[str, np.ndarray, str]] = []
    plain_place, plain_fit, plain_may_fit = placer_mod.place, greedy_mod.greedy_gpus, placer_mod.may_fit

    def place_rec(fab, state, request, **kw):
        calls.append(("place", np.packbits(state.free), request.model_dump_json()))
        return plain_place(fab, state, request, **kw)

    def fit_rec(p):
        calls.append(("fit", np.packbits(p.state.free), p.request.model_dump_json()))
        return plain_fit(p)

    def may_fit_rec(request, free, *args):
        calls.append(("may_fit", np.packbits(free), request.model_dump_json()))
        return plain_may_fit(request, free, *args)

    placer_mod.place, greedy_mod.greedy_gpus, placer_mod.may_fit = place_rec, fit_rec, may_fit_rec
    try:
        seed, load = run.split(":")
        fab = open_fabric(FABRIC)
        work = gang_workload(jobs=jobs, cluster_gpus=len(fab.gpus), load=float(load), seed=int(seed))
        Simulator(fab, fabric_policy(placement="greedy"), work).run()
    finally:
        placer_mod.place, greedy_mod.greedy_gpus, placer_mod.may_fit = plain_place, plain_fit, plain_may_fit
    np.savez_compressed(out, kinds=np.array([c[0] for c in calls]), masks=np.stack([c[1] for c in calls]),
                        requests=np.array([c[2] for c in calls]))
    print(json.dumps({k: sum(c[0] == k for c in calls) for k in KINDS}))


def _answer(kind: str, fab, free: np.ndarray, state: ClusterState, request: Request):
    if kind == "place":
        try:
            return place(fab, state, request, solver="greedy").gpus
        except PlacementInfeasible:
            return None
    if kind == "fit":
        got = greedy_mod.greedy_gpus(Problem(fab, state, request))
        return None if got is None else tuple(got.tolist())
    from fabric_hpc.scheduler.placer import may_fit

    lv = fabric_levels(fab)
    return may_fit(request, free, fab.index.gpu_host, lv.host_gpus, lv)


def timed(path: str, rounds: int) -> dict[str, dict[str, float | int | str]]:
    fab = open_fabric(FABRIC)
    data = np.load(path, allow_pickle=False)
    requests: dict[str, Request] = {}
    work: dict[str, list] = {k: [] for k in KINDS}
    for kind, packed, text in zip(data["kinds"].tolist(), data["masks"], data["requests"].tolist(), strict=True):
        request = requests.get(text) or requests.setdefault(text, Request.model_validate_json(text))
        free = np.unpackbits(packed)[: len(fab.gpus)].astype(bool)
        work[kind].append((free, ClusterState.from_free_mask(fab, free), request))
    out: dict[str, dict[str, float | int | str]] = {}
    for kind, items in work.items():
        best, answers = float("inf"), []
        for _ in range(rounds):
            c0 = time.process_time()
            answers = [_answer(kind, fab, free, state, request) for free, state, request in items]
            best = min(best, time.process_time() - c0)
        out[kind] = {"calls": len(items), "best_cpu_s": round(best, 3),
                     "us_per_call": round(best / max(len(items), 1) * 1e6, 1),
                     "digest": hashlib.sha256(repr(answers).encode()).hexdigest()[:16]}
    return out


def main() -> None:
    if len(sys.argv) >= 5 and sys.argv[1] == "record":
        record(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) >= 3 and sys.argv[1] == "time":
        print(json.dumps(timed(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3)))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
