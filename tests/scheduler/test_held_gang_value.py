"""A gang held for a compact placement that fits the free GPUs now weighs a preemption by the run
time it would lose on that placement (the simulator's stretch alone), not by its hold alone."""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.placement import ClusterState, Request
from fabric_hpc.scheduler import Job, fabric_policy
from fabric_hpc.scheduler.contract import SchedulerInput
from fabric_hpc.scheduler.slowdown import stretch_alone, stretch_loss
from fabric_hpc.sim import Contention
from fabric_hpc.topology import build, generators

from .helpers import fabric, job, pend, run_on

NVL = build(generators.nvl72(racks=3))  # three 72-GPU NVLink racks of 18 four-GPU hosts
LEAF = fabric(4, 2)  # non-blocking leaf-spine: leaves {n1, n2} and {n3, n4}


def _hosts(rack: int, first: int, last: int) -> list[str]:
    return [f"r{rack:03d}-h{h:02d}" for h in range(first, last + 1)]


def _nvl_cluster(now: float) -> tuple[ClusterState, list]:
    """Rack 1: a spot gang on 6 hosts that started a minute ago (the rest free); racks 2 and 3:
    normal gangs on 12 hosts each for 10 h. 96 GPUs are free (12 + 6 + 6 hosts), no rack is."""
    st = ClusterState(NVL)
    running = [run_on(st, job("spot", 6, gpn=4, wall=36000, tier="spot"), _hosts(1, 1, 6), start=now - 60),
               run_on(st, job("n2", 12, gpn=4, wall=36000), _hosts(2, 1, 12), start=now - 600),
               run_on(st, job("n3", 12, gpn=4, wall=36000), _hosts(3, 1, 12), start=now - 600)]
    return st, running


def _racks(placement) -> set[str]:
    return {g.split("-")[0] for g in placement.gpus}


@pytest.mark.parametrize("ratio", [0.0, 20.0])
def test_nvl72_held_long_gang_preempts_a_fresh_spot_gang(ratio):
    # fits the free GPUs now across two racks (its all-reduce partly over the network, not NVLink):
    # 6.6 % of 24 h lost, which pays for the spot gang's minute of 24 GPUs many times over
    now = 100.0
    st, running = _nvl_cluster(now)
    big = job("H", 18, gpn=4, submit=now, wall=24 * 3600, tier="high")
    spread = [g for h in _hosts(1, 7, 18) + _hosts(2, 13, 18) for g in NVL.host_gpus(h)]
    assert stretch_loss(NVL, big, tuple(spread)) > 0.05
    d = fabric_policy(preempt_benefit_ratio=ratio).schedule(SchedulerInput(now, pend(big), running, st, {}))
    assert [p.job_id for p in d.preempt] == ["spot"]
    assert [(j.id, _racks(p)) for j, p in d.start] == [("H", {"r001"})]


def test_nvl72_short_gang_does_not_pay_for_a_long_victim_loss():
    # the same gang for 6 minutes loses too little run time to pay for 24 GPUs' 5 hours of work
    now = 5 * 3600.0
    st, running = _nvl_cluster(now)
    running[0] = running[0].__class__(running[0].job, running[0].gpus, 0.0, 0.0)
    small = job("H", 18, gpn=4, submit=now, wall=360, tier="high")
    d = fabric_policy().schedule(SchedulerInput(now, pend(small), running, st, {}))
    assert d.preempt == [] and d.start == [] and d.reasons["H"] == "Topology"


@pytest.mark.parametrize("ratio", [0.0, 20.0])
@pytest.mark.parametrize("wait", [900.0, 4 * 3600.0])
def test_leaf_spine_hold_alone_is_no_reason_to_preempt(ratio, wait):
    # the probe's case (tests/scheduler/test_compact_hold_preempt.py): across leaves the gang runs
    # as fast as on one leaf but for a hop's latency, so neither a short nor a long hold preempts
    st = ClusterState(LEAF)
    running = [run_on(st, job("sa", 1, wall=36000, tier="spot"), ["n1"]),
               run_on(st, job("sb", 1, wall=36000, tier="spot"), ["n3"])]
    high = job("H", 2, submit=100, wall=3600, tier="high")
    policy = fabric_policy(preempt_benefit_ratio=ratio, compact_wait_s=wait)
    d = policy.schedule(SchedulerInput(100, pend(high), running, st, {}))
    assert d.preempt == [] and d.start == [] and d.reasons["H"] == "Topology"


@pytest.mark.parametrize("req", [Request(nodes=18, gpus_per_node=4), Request(nodes=18, gpus_per_node=4, tp=4, pp=2)])
def test_stretch_alone_is_the_simulators(req):
    # the scheduler prices a placement with the simulator's model: Contention with contention off
    j = Job(id="x", request=req, submit=0, walltime=3600, duration=3600, meta={"comm_fraction": 0.4})
    spread = [g for h in _hosts(1, 7, 18) + _hosts(2, 13, 15) + _hosts(3, 13, 15) for g in NVL.host_gpus(h)]
    for gpus in (spread, NVL.gpus[:72], NVL.gpus[36:108]):
        ours = stretch_alone(NVL, j, gpus)
        assert ours == pytest.approx(Contention(NVL, contention=False).start("x", j, gpus)["x"], rel=1e-12)
    assert stretch_alone(NVL, j, np.arange(72)) == 1.0
    assert stretch_alone(NVL, j, spread) > 1.05
