"""The placement cost's TP and send parts see the running jobs' traffic (``CostWeights(contention=True)``):
the same max-min fair share, over the same background loads, as the data-parallel part."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.placement import ClusterState
from fabric_hpc.placement.cost import CostWeights, evaluate
from fabric_hpc.placement.problem import Problem
from fabric_hpc.placement.request import parse_request
from fabric_hpc.placement.parallel import stage_pairs
from fabric_hpc.placement.request import Request
from fabric_hpc.placement.step import TP_BYTES, group_times, network_parts
from fabric_hpc.sim import Contention
from fabric_hpc.topology import build, generators
from tests.placement.test_collective_simgrid import simgrid_available as _simgrid_available
from tests.real import require_real

ROOT = Path(__file__).resolve().parents[2]


def _oversubscribed(hosts: int = 6, per_leaf: int = 2, ratio: float = 2.0):
    """leaf1: n1 n2, leaf2: n3 n4, leaf3: n5 n6 (one NIC per host); leaf uplinks 1/ratio of the NICs."""
    spec = generators.leaf_spine(hosts=hosts, hosts_per_leaf=per_leaf)
    groups = [g.model_copy(update={"uplink_gbps": g.uplink_gbps / ratio}) if g.uplink_gbps else g
              for g in spec.network.groups]
    return build(spec.model_copy(update={"network": spec.network.model_copy(update={"groups": groups})}))


def _gpus(fab, *hosts: str) -> np.ndarray:
    return np.array(sorted(fab.gpu_pos[g] for h in hosts for g in fab.host_gpus(h)), np.int64)


@pytest.fixture(scope="module")
def busy():
    """A data-parallel job on n2 and n4: its ring crosses leaf1's and leaf2's uplinks."""
    fab = _oversubscribed()
    state = ClusterState(fab)
    state.allocate("x", _gpus(fab, "n2", "n4"))
    return fab, state


def test_sends_across_a_running_jobs_uplinks_cost_more_with_contention(busy):
    fab, state = busy
    req = parse_request("gpus=16,pp=2")
    across, inside = _gpus(fab, "n1", "n3"), _gpus(fab, "n5", "n6")
    off = Problem(fab, state, req, CostWeights())
    on = Problem(fab, state, req, CostWeights(contention=True))
    a_off, b_off = evaluate(off, across)[1], evaluate(off, inside)[1]
    a_on, b_on = evaluate(on, across)[1], evaluate(on, inside)[1]
    assert a_off["comm_pp"] == pytest.approx(b_off["comm_pp"], rel=1e-3)  # alone: alike
    # beside x's ring on the 2:1 uplinks: per-flow max-min, the 8 send flows get 8/9 of an uplink
    assert a_on["comm_pp"] == pytest.approx(a_off["comm_pp"] * 9 / 8, rel=0.02)
    assert b_on["comm_pp"] == b_off["comm_pp"]  # leaf3 carries nobody else
    assert a_on["comm_dp"] == a_off["comm_dp"]  # each stage inside a host: NVLink only
    assert evaluate(on, across)[0] > evaluate(on, inside)[0]  # the cost now ranks the quiet leaf first


@pytest.mark.parametrize("text", ["gpus=16,pp=2", "gpus=32,pp=4", "gpus=16,tp=16", "gpus=24,tp=8,pp=3"])
def test_contended_group_times_are_never_below_the_times_alone(text):
    fab = _oversubscribed(hosts=8)
    rng = np.random.default_rng(7)
    req = parse_request(text)
    n = req.gpus
    grew = 0
    for _ in range(6):
        state = ClusterState(fab)
        perm = rng.permutation(len(fab.gpus))
        state.allocate("x", perm[n:n + 16])
        state.allocate("y", perm[n + 16:n + 24])
        gpus = np.sort(perm[:n])
        bg = Problem(fab, state, req, CostWeights(contention=True)).background()
        alone = group_times(fab, gpus, req.tp or 1, req.pp or 1)
        beside = group_times(fab, gpus, req.tp or 1, req.pp or 1, background=bg)
        assert beside[0] >= alone[0] and beside[1] >= alone[1]
        grew += beside != alone
    assert grew  # random placements on a 2:1 fabric do meet the running jobs' traffic


def test_sends_of_a_16k_gpu_pipeline_beside_a_running_job_stay_small():
    """``gpus=16368,pp=2`` on a 64-SU SuperPOD beside a job on its last host: 8,184 stage pairs.
    The parts and their fair share with the background are sparse (no pairs × resources matrix)."""
    import tracemalloc

    from fabric_hpc.placement.collective import job_load
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("superpod:sus=64")
    gpus = np.arange(16368)
    bg = [job_load(fab, np.arange(16368, 16384), 256 * 2**20)]
    alone = group_times(fab, gpus, 1, 2)[1]
    tracemalloc.start()
    try:
        (part,) = network_parts(fab, gpus, 1, 2)
        beside = group_times(fab, gpus, 1, 2, background=bg)[1]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert part.kind == "pp" and part.res.size > 0
    assert alone <= beside < np.inf
    assert peak < 256 * 2**20, f"peak {peak / 2**20:.0f} MiB"


# -- against SimGrid ------------------------------------------------------------------------------
def _simgrid_main() -> None:
    """Subprocess entry (one SimGrid Engine per process): ``{"spec", "jobs", "horizon_s"}`` on
    stdin, each job ``{"ring": [gpus], "size": bytes}`` (ring all-reduces back to back, NCCL's
    schedule: ``simgrid_flows.schedule``) or ``{"pairs": [[a, b], ...], "size": bytes}`` (every pair
    sends ``size`` each way at once, back to back); prints each job's mean seconds per pass."""
    import simgrid as sg

    from fabric_hpc.placement.collective import CollectiveParams
    from fabric_hpc.topology.spec import FabricSpec
    from tests.placement.simgrid_flows import Routes, Zone, schedule

    sc = json.load(sys.stdin)
    e = sg.Engine(["stage_contention", "--cfg=network/model:CM02", "--cfg=network/TCP-gamma:0",
                   "--cfg=network/crosstraffic:0", "--log=root.thres:critical"])
    fab = build(FabricSpec.model_validate_json(sc["spec"]))
    params = CollectiveParams()
    zone = Zone(sg, e, "fabric")
    routes = Routes(fab, params, zone)
    jobs = []
    for job in sc["jobs"]:
        if "ring" in job:
            steps, edges = schedule(fab, np.array(sorted(job["ring"]), np.int64), job["size"], params)
            flows = [(a, b, x) for a, b, x, _ in edges]
        else:
            steps, flows = 1, [(a, b, job["size"]) for p in job["pairs"] for a, b in (p, p[::-1])]
        for a, b, _ in flows:
            routes.route(a, b)
        jobs.append((steps, [(routes.hosts[a], routes.hosts[b], x) for a, b, x in flows]))
    zone.seal()
    record: list[list[tuple[float, float]]] = [[] for _ in jobs]

    def actor(j: int) -> None:
        steps, flows = jobs[j]
        while sg.Engine.clock < sc["horizon_s"]:
            t0 = sg.Engine.clock
            for _ in range(steps):
                zone.wait_all([sg.Comm.sendto_async(a, b, max(int(x), 1)) for a, b, x in flows])
            record[j].append((t0, sg.Engine.clock))

    for j, (_, flows) in enumerate(jobs):
        zone.actor(f"job{j}", flows[0][0], actor, j)
    e.run()
    stop = min(r[-1][1] for r in record)
    json.dump([float(np.mean([b - a for a, b in r if b <= stop + 1e-12] or [r[0][1] - r[0][0]])) for r in record],
              sys.stdout)


def _simgrid(fab, jobs: list[dict], horizon_s: float) -> list[float]:
    scenario = {"spec": fab.spec.model_dump_json(), "jobs": jobs, "horizon_s": horizon_s}
    code = "from tests.placement.test_stage_contention import _simgrid_main; _simgrid_main()"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}/usr/lib/python3/dist-packages"}
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(scenario), capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=120, check=True)
    return json.loads(out.stdout)


def _model(c: Contention, ids: list[str], gpus: list[np.ndarray]) -> list[float]:
    """Seconds per pass of each job's network part in the simulator's fair share (its data-parallel
    ring all-reduce, or its stage sends): one filling over every part of every job, each capped at
    its rate alone (what ``Contention`` solves on the saturated links). The ring's time alone is the
    ring's (``algo="ring"``: SimGrid runs NCCL's ring schedule; the simulator may take the tree)."""
    from fabric_hpc.placement.collective import collective_time

    from tests.scheduler.test_stage_contention import full_fair_share

    got = full_fair_share(c, ids)
    out = []
    for j, g in zip(ids, gpus, strict=True):
        r = c._runs[j]
        x = {k: v for (job_id, k), v in got.items() if job_id == j}
        if r.parts:  # the sends: time alone + bandwidth part × (slow-down − 1)
            p = r.parts[0]
            out.append(r.times[2] + p.bw * (p.rate / x[0] - 1.0))
        else:
            ring = collective_time(c.fab, g, r.profile.bytes, algo="ring")
            out.append(ring.bandwidth_s * r.rate / x[-1] + ring.latency_s)
    return out


SCENARIOS = {  # job: ("dp" | "pp", hosts); every pp job's stages are one host each (NVLink rings)
    "two pipelines, one uplink pair": [("pp", ("n1", "n3")), ("pp", ("n2", "n4"))],
    "a ring beside a pipeline": [("dp", ("n1", "n3")), ("pp", ("n2", "n4"))],
    "two pipelines and a ring": [("pp", ("n1", "n3")), ("pp", ("n2", "n5")), ("dp", ("n4", "n6"))],
    "pipelines on disjoint leaves": [("pp", ("n1", "n2")), ("pp", ("n3", "n4"))],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_send_contention_within_10_percent_of_simgrid(name):
    """The simulator's fair share of stage sends and data-parallel rings on a 2:1 leaf-spine
    against SimGrid (CM02 max-min, hop-by-hop routes, every flow in flight) on the same flows."""
    require_real("simgrid", _simgrid_available(), "Debian package python3-simgrid (make sysdeps-test)")
    from fabric_hpc.scheduler.contract import Job
    from fabric_hpc.sim import Contention

    fab = _oversubscribed(hosts=6)
    c = Contention(fab)
    jobs, ids, placed = [], [], []
    for i, (kind, hosts) in enumerate(SCENARIOS[name]):
        gpus = _gpus(fab, *hosts)
        placed.append(gpus)
        req = Request(gpus=16, pp=2) if kind == "pp" else Request(nodes=2, gpus_per_node=8)
        c.start(f"j{i}", Job(id=f"j{i}", request=req, submit=0.0, walltime=1.0, duration=1.0), gpus)
        ids.append(f"j{i}")
        jobs.append({"pairs": [p.tolist() for p in stage_pairs(fab, gpus, 1, 2)], "size": TP_BYTES / 1}
                    if kind == "pp" else {"ring": gpus.tolist(), "size": 256 * 2**20})
    model = _model(c, ids, placed)
    sim = _simgrid(fab, jobs, horizon_s=0.12)
    err = [abs(m / s - 1) for m, s in zip(model, sim, strict=True)]
    assert max(err) < 0.10, (name, model, sim)
