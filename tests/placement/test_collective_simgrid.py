"""Both forms of the collective model against SimGrid (a real flow-level simulator) on three fabrics.

The fluid form (``collective.collective_time(background=loads)``: one rate per job, time-averaged
max-min shares; what the simulator and the placer use) and the stepped form
(``collective_steps.stepped_times``: every ring step's flows with per-flow max-min shares and a
barrier per step) are both compared with SimGrid on the same scenarios.

Random placements of 2-3 concurrent jobs (ring all-reduce, 256 MiB, back to back) on the DGX
H100 SuperPOD, the GB200 NVL72 fabric and the Lingjun Clos with 2:1 ToR oversubscription; the jobs
draw their hosts from a small pool so that they share NICs' switches and uplinks. SimGrid routes
every flow hop by hop over the fabric graph (ECMP-chosen parents) and shares links max-min with all
jobs' flows in flight; the fast model aggregates uplinks and shares them by progressive filling.

With ECMP (``ecmp=salt``) both sides use the same hashed routes: the model picks one port of each
switch's uplinks per flow (fabric_hpc.placement.ecmp), and SimGrid routes that flow over the same
parent switch and parallel link of the graph's edge (split into ports of the NIC speed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.placement.collective import collective_time, job_load
from fabric_hpc.placement.collective_steps import job_steps, stepped_times
from fabric_hpc.topology import build, import_lingjun, load_fabric
from tests.real import require_real

ROOT = Path(__file__).resolve().parents[2]
SIZE = 256 * 2**20
TARGET = 0.10  # the target: the model within 10 % of SimGrid (both forms, both routings)


def simgrid_available() -> bool:
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        return importlib.util.find_spec("simgrid") is not None
    finally:
        sys.path.remove("/usr/lib/python3/dist-packages")


@pytest.fixture(scope="module", autouse=True)
def _simgrid():
    require_real("simgrid", simgrid_available(), "Debian package python3-simgrid (make sysdeps-test)")


FABRICS = {
    "superpod": lambda: load_fabric(ROOT / "topology/dgx-h100-superpod-4su.yaml"),
    "nvl72": lambda: load_fabric(ROOT / "topology/gb200-nvl72-8r.yaml"),
    "lingjun-2to1": lambda: build(import_lingjun(ROOT / "data/topologies/alibaba_lingjun2023_topo.csv",
                                                 oversubscription=2.0)),
}


def random_jobs(fab, rng: np.random.Generator) -> list[list[int]]:
    """2-3 jobs on a shared pool of hosts (two of the four smallest lowest-level groups: on Lingjun
    ToRs of 2-4 hosts, whose uplinks the jobs then share), 2-4 hosts each, all free GPUs of a host or
    a random number of them."""
    idx = fab.index
    groups, sizes = np.unique(idx.host_path[:, 0], return_counts=True)
    small = groups[np.argsort(sizes, kind="stable")[:4]]
    pick = rng.choice(small, size=min(2, len(small)), replace=False)
    pool = np.flatnonzero(np.isin(idx.host_path[:, 0], pick))
    free = np.ones(len(fab.gpus), bool)
    jobs = []
    for _ in range(int(rng.integers(2, 4))):
        hosts = rng.choice(pool, size=min(int(rng.integers(2, 5)), len(pool)), replace=False)
        gpus: list[int] = []
        for h in hosts:
            mine = np.flatnonzero((idx.gpu_host == h) & free)
            if len(mine):
                k = len(mine) if rng.random() < 0.5 else int(rng.integers(1, len(mine) + 1))
                take = rng.choice(mine, size=k, replace=False)
                gpus += take.tolist()
        if len({int(idx.gpu_host[g]) for g in gpus}) >= 2:
            free[gpus] = False
            jobs.append(sorted(gpus))
    return jobs


def crossing_jobs(fab) -> list[list[int]]:
    """Four jobs, each half of a host in one of the two smallest lowest-level groups and half of a
    host in the other: all four rings cross the same two groups' uplinks."""
    idx = fab.index
    col = idx.host_path[:, 0]
    if len(np.unique(col)) < 2:  # one leaf group (the NVL72 fabric): two racks instead
        col = idx.gpu_nvl[np.searchsorted(idx.gpu_host, np.arange(len(fab.hosts)))]
    groups, sizes = np.unique(col, return_counts=True)
    x, y = groups[np.argsort(sizes, kind="stable")[:2]]
    hx, hy = np.flatnonzero(col == x), np.flatnonzero(col == y)
    half = np.bincount(idx.gpu_host)[hx[0]] // 2
    jobs = []
    for i in range(2):
        for low in (True, False):
            part = (idx.gpu_local < half) if low else (idx.gpu_local >= half)
            jobs.append(np.flatnonzero(np.isin(idx.gpu_host, [hx[i], hy[i]]) & part).tolist())
    return jobs


def fast_times(fab, jobs: list[list[int]], salts: list[int] | None = None) -> list[float]:
    salts = salts or [None] * len(jobs)
    loads = [job_load(fab, g, SIZE, ecmp=s) for g, s in zip(jobs, salts, strict=True)]
    return [collective_time(fab, g, SIZE, algo="ring", background=loads[:j] + loads[j + 1:], ecmp=salts[j]).seconds
            for j, g in enumerate(jobs)]


def stepped(fab, jobs: list[list[int]], salts: list[int] | None = None, share: str = "flow") -> list[float]:
    salts = salts or [None] * len(jobs)
    steps = [job_steps(fab, g, SIZE, ecmp=s) for g, s in zip(jobs, salts, strict=True)]
    return stepped_times(fab, steps, share=share).tolist()


def simgrid_times(fab, jobs: list[list[int]], horizon: float, salts: list[int] | None = None) -> list[float]:
    scenario = {"spec": fab.spec.model_dump_json(), "jobs": jobs, "size": SIZE, "horizon_s": horizon,
                "ecmp": salts}
    out = subprocess.run([sys.executable, "-m", "tests.placement.simgrid_flows"], input=json.dumps(scenario),
                         capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)["seconds"]


def compare_with_simgrid(fab, *, ecmp: bool, seed: int = 13,
                         trials: int = 6) -> tuple[dict[str, list[float]], int]:
    """(relative errors against SimGrid per form: "fluid", "stepped" and "stepped-latency" (the
    stepped form with SimGrid's own latency-weighted shares); jobs slower than a reference by > 5 %
    in the fluid form) on the seeded scenarios; the reference is each job alone, or with ``ecmp``
    the same jobs on perfectly spread uplinks (then every job's flows are hashed onto single ports,
    in both models). With the default seed the first scenario is :func:`crossing_jobs`, the rest
    random; any other seed: all random."""
    rng = np.random.default_rng(seed)
    errors: dict[str, list[float]] = {"fluid": [], "stepped": [], "stepped-latency": []}
    slower = 0
    runs = []
    for trial in range(trials):
        jobs = crossing_jobs(fab) if trial == 0 and seed == 13 else random_jobs(fab, rng)
        if len(jobs) < 2:
            continue
        base = 1000 * trial + (0 if seed == 13 else 100_000 * seed)
        salts = [base + j for j in range(len(jobs))] if ecmp else None
        fast = fast_times(fab, jobs, salts)
        ref = fast_times(fab, jobs) if ecmp else [collective_time(fab, g, SIZE, algo="ring").seconds for g in jobs]
        slower += sum(f > r * 1.05 for f, r in zip(fast, ref, strict=True))
        got = {"fluid": fast, "stepped": stepped(fab, jobs, salts),
               "stepped-latency": stepped(fab, jobs, salts, "latency")}
        runs.append((jobs, salts, got))
    # one SimGrid process per scenario (one Engine per process), as many at once as there are cores
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        sims = list(pool.map(lambda run: simgrid_times(fab, run[0], horizon=2.5 * max(run[2]["fluid"]),
                                                       salts=run[1]), runs))
    for (_, _, got), sim in zip(runs, sims, strict=True):
        for form, times in got.items():
            errors[form] += [abs(f - s) / s for f, s in zip(times, sim, strict=True)]
    return errors, slower


def _show(name: str, errors: dict[str, list[float]]) -> str:
    return name + " " + "; ".join(f"{k} {np.round(v, 3).tolist()}" for k, v in errors.items())


@pytest.mark.parametrize("name", list(FABRICS))
def test_fast_model_within_10_percent_of_simgrid(name):
    errors, contended = compare_with_simgrid(FABRICS[name](), ecmp=False)
    assert len(errors["fluid"]) >= 8
    print(_show(name, errors), "contended", contended)
    assert max(errors["fluid"]) <= TARGET, _show(name, errors)
    assert max(errors["stepped"]) <= TARGET, _show(name, errors)
    if name == "lingjun-2to1":
        assert contended >= 1  # the oversubscribed uplinks are shared in this set


@pytest.mark.parametrize("name", list(FABRICS))
def test_ecmp_model_close_to_simgrid_on_the_same_hashed_routes(name):
    """ECMP: the same scenarios with every job's flows hashed onto single ports; both forms' max-min
    shares on the picked ports against SimGrid on the same routes. On Lingjun the hash makes flows
    collide (a ring slower than with perfectly spread uplinks) in this set. Both forms meet the
    issue's 10 % (fluid max 6.0 % since the ring takes the fewest NICs' channel count; it missed with
    12.5 % on one SuperPOD job before, docs/collective-model.md) and the fluid form's mean is ≤ 3 %."""
    errors, collided = compare_with_simgrid(FABRICS[name](), ecmp=True)
    assert len(errors["fluid"]) >= 8
    print(_show(name, errors), "collided", collided)
    assert max(errors["stepped"]) <= TARGET, _show(name, errors)
    assert max(errors["fluid"]) <= TARGET, _show(name, errors)
    assert float(np.mean(errors["fluid"])) <= 0.03
    if name == "lingjun-2to1":
        assert collided >= 1


@pytest.mark.parametrize("ecmp", [False, True])
@pytest.mark.parametrize("name", list(FABRICS))
def test_stepped_form_on_held_out_scenarios(name, ecmp):
    """Scenarios drawn with another seed (not looked at while the stepped form was written): both
    forms within 10 %, with SimGrid's equal and latency-weighted link shares alike. (Before every
    channel had its own NIC on each side, one SuperPOD ECMP job was 12.2 % off: a ring whose
    bottleneck NIC received two channels, one of them on a hashed spine port shared with another
    job, where CM02's latency-weighted sharing decides; docs/collective-model.md.)"""
    errors, _ = compare_with_simgrid(FABRICS[name](), ecmp=ecmp, seed=29, trials=8)
    assert len(errors["stepped"]) >= 10
    print(_show(name, errors))
    for form in ("stepped", "stepped-latency", "fluid"):
        assert max(errors[form]) <= TARGET, (form, _show(name, errors))


def test_simgrid_cm02_shares_a_link_by_inverse_route_latency():
    """Why equal per-flow shares missed one held-out SuperPOD ECMP job: SimGrid's CM02 gives a flow a
    share of a link inversely proportional to its route latency (TCP's RTT unfairness). Two 100 MB
    transfers on one 100 MB/s link, routes of 2 µs and 4 µs: 2/3 and 1/3 of the link until the
    first ends (at 1.5 s), not 1/2 each (both at 2 s)."""
    out = subprocess.run([sys.executable, "-m", "tests.placement.simgrid_flows"],
                         input=json.dumps({"two_flows": 3e-6}), capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    done = json.loads(out.stdout)
    assert done["near"] == pytest.approx(1.5, rel=1e-3)
    assert done["far"] == pytest.approx(2.0, rel=1e-3)
