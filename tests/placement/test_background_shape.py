"""A running tensor/pipeline-parallel job loads the fabric as its data-parallel rings, not as one ring.

With ``CostWeights(contention=True)`` the solvers share links with the running jobs' traffic
(``Problem.background``). A running ``tp=8`` job on two 8-GPU hosts all-reduces in 8 two-GPU rings
of 1/8 of the bytes each (one per TP rank), which is what the simulator's contention model charges
it (``dp_allreduce_and_load``); before, the placement cost took it as one 16-GPU ring of all the
bytes. The shape comes from the job's state metadata (``tp``/``pp``), which the scheduler, the agent's
view of Slurm and a state file give it."""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import ClusterState, Request
from fabric_hpc.placement.collective import job_load
from fabric_hpc.placement.cost import CostWeights, evaluate
from fabric_hpc.placement.parallel import dp_allreduce_and_load
from fabric_hpc.placement.problem import Problem
from fabric_hpc.placement.request import parse_request
from fabric_hpc.scheduler import Job, PendingJob, SchedulerInput, fabric_policy
from fabric_hpc.scheduler.apply import apply_decisions
from fabric_hpc.slurm.contract import Job as SlurmJob, Node
from fabric_hpc.slurm.view import build_view
from fabric_hpc.topology import build, generators

def _oversubscribed(ratio: float = 2.0):
    """leaf1: n1 n2, leaf2: n3 n4, ... (one NIC per host); each leaf's uplinks 1/ratio of its NICs."""
    spec = generators.leaf_spine(8, hosts_per_leaf=2, gpus=8)
    groups = [g.model_copy(update={"uplink_gbps": g.uplink_gbps / ratio}) if g.uplink_gbps else g
              for g in spec.network.groups]
    return build(spec.model_copy(update={"network": spec.network.model_copy(update={"groups": groups})}))


FAB = _oversubscribed()
SIZE = CostWeights().message_mb * 2**20


def _gpus(*hosts: str) -> np.ndarray:
    return np.array(sorted(FAB.gpu_pos[g] for h in hosts for g in FAB.host_gpus(h)), np.int64)


def _state(**meta) -> ClusterState:
    state = ClusterState(FAB)
    state.allocate("x", _gpus("n2", "n4"), **meta)
    return state


@pytest.mark.parametrize("tp, pp", [(8, 1), (4, 1), (2, 2), (1, 2), (8, 2)])
def test_background_is_the_simulators_load_of_the_jobs_rings(tp, pp):
    meta = {k: v for k, v in (("tp", tp), ("pp", pp)) if v > 1}
    state = ClusterState(FAB)
    state.allocate("x", _gpus("n2", "n4", "n5", "n7"), **meta)
    (bg,) = Problem(FAB, state, parse_request("gpus=16"), CostWeights(contention=True)).background()
    _, _, want = dp_allreduce_and_load(FAB, _gpus("n2", "n4", "n5", "n7"), SIZE, tp, pp)
    np.testing.assert_allclose(bg, want, rtol=1e-9)
    one_ring = job_load(FAB, _gpus("n2", "n4", "n5", "n7"), SIZE)
    assert not np.allclose(bg, one_ring)  # what the placement cost charged before


def test_a_new_gang_beside_a_pipeline_job_is_not_charged_a_ring_it_does_not_run():
    """x (pp=2) on n2 and n4 has a stage per host: its data-parallel rings stay inside each host and
    put nothing on the uplinks, so a new gang across leaf1 and leaf2 runs as on an idle fabric; taken
    as one 16-GPU ring, x slowed it by sharing the 2:1 uplinks."""
    req = parse_request("gpus=16")
    across = _gpus("n1", "n3")

    def comm(state: ClusterState) -> float:
        return evaluate(Problem(FAB, state, req, CostWeights(contention=True)), across)[1]["comm_ms"]

    assert comm(_state(pp=2)) == comm(ClusterState(FAB)) < comm(_state())


def test_a_shape_that_does_not_divide_the_jobs_gpus_is_one_ring():
    state = ClusterState(FAB)
    state.allocate("x", _gpus("n2")[:6], tp=4)  # an API caller's odd metadata: kept, not trusted
    assert state.parallel_shape("x") == (1, 1)
    assert _state(tp=8, pp=2).parallel_shape("x") == (8, 2)
    assert _state(tier="normal").parallel_shape("x") == (1, 1)


@pytest.mark.parametrize("meta, words", [
    ({"tp": 3}, "16 GPU(s) do not split into pp=1 stages of tp=3 groups"),
    ({"pp": 0}, "pp must be a whole number ≥ 1, not 0"),
    ({"tp": "8"}, "tp must be a whole number ≥ 1, not '8'"),
    ({"tp": True}, "tp must be a whole number ≥ 1, not True"),
])
def test_a_state_files_bad_shape_names_the_job_and_the_fix(meta, words):
    doc = {"version": 1, "jobs": {"job-9": {"hosts": "n[2,4]", **meta}}, "down": []}
    with pytest.raises(ConfigError) as err:
        ClusterState.from_dict(FAB, doc, source="state.json")
    assert err.value.message.startswith(f"state.json: jobs.job-9: {words}")
    assert '"tp"' in err.value.hint and '"pp"' in err.value.hint


def test_a_state_files_shape_round_trips():
    doc = {"version": 1, "jobs": {"job-9": {"hosts": "n[2,4]", "tp": 8, "pp": 2}}, "down": []}
    state = ClusterState.from_dict(FAB, doc, source="state.json")
    assert state.parallel_shape("job-9") == (8, 2)
    assert ClusterState.from_dict(FAB, state.to_dict()).parallel_shape("job-9") == (8, 2)


def test_the_scheduler_records_the_shape_of_the_gangs_it_starts():
    state = ClusterState(FAB)
    pending = {j.id: PendingJob(j) for j in (
        Job(id="tp", request=Request(nodes=2, gpus_per_node=8, tp=8), submit=0.0, walltime=600.0),
        Job(id="dp", request=Request(nodes=2, gpus_per_node=8), submit=1.0, walltime=600.0))}
    view = SchedulerInput(0.0, list(pending.values()), [], state, {}, backfill=True)
    out = fabric_policy(compact_wait_s=None).schedule(view)
    assert sorted(j.id for j, _ in out.start) == ["dp", "tp"]
    apply_decisions(out, 0.0, state, pending, {})
    assert state.parallel_shape("tp") == (8, 1) and state.parallel_shape("dp") == (1, 1)


def test_the_agents_view_gives_a_running_fabric_jobs_shape():
    nodes = [Node(name=h, state="mixed", cpus=8, gpus=8) for h in FAB.hosts]
    job = SlurmJob(job_id=7, name="t", state="RUNNING", comment="fabric:tp=8,pp=2", nodes=2, gpus_per_node=8,
                   submit_time=1.0, start_time=2.0, gpus={"n2": tuple(range(8)), "n4": tuple(range(8))})
    view = build_view(FAB, nodes, [job], now=10.0)
    assert view.state.parallel_shape("7") == (8, 2)
    assert [r.job.id for r in view.running] == ["7"]
