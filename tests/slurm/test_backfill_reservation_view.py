"""A backfilled job never delays a reservation, on the agent's own path: Slurm's answer -> build_view ->
the fabric policy (as the agent runs it). An admin's burst on 16 nodes: B holds 10 nodes for up to 2 min,
then H (tier high) needs all 16 and S (tier normal, one node, 10 min) arrives. The agent started S at once
on a free node, so H waited up to S's 10 minutes; Slurm alone keeps S pending and reserves for H.

Two causes: a multi-host gang still held for a compact placement (``compact_wait_s``) that could not start
on any placement got no reservation and did not block later jobs
(tests/scheduler/test_held_gang_reserves.py), and a job fabric does not place (unmarked, ``nofabric``) held GPUs the policy never saw released, so no
reservation could be found behind it. The live burst: tests/slurm_integration/test_backfill_reservation_live.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.scheduler import make_policy
from fabric_hpc.scheduler.apply import snapshot
from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.slurm.view import UNLIMITED_WALLTIME_S, PinRules, build_view
from fabric_hpc.topology import build, generators
from tests.slurm.test_agent_actions import Fake

FAB = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
NOW = 10_000.0
BUSY = [f"n{i}" for i in range(1, 11)]


def nodes() -> list[Node]:
    """16 hosts; B's ten hold their GPUs and one CPU each (CR_Core, one task per node)."""
    return [Node(name=f"n{i}", state="mixed" if f"n{i}" in BUSY else "idle", cpus=8,
                 cpus_alloc=1 if f"n{i}" in BUSY else 0, gpus=8,
                 gpus_used=tuple(range(8)) if f"n{i}" in BUSY else ()) for i in range(1, 17)]


def blocker(comment: str, limit_min: int | None = 2, job_id: int = 1) -> Job:
    return Job(job_id=job_id, name="B", state="RUNNING", comment=comment, nodes=10, gpus_per_node=8, cpus=10,
               submit_time=NOW - 3, begin_time=NOW - 3, start_time=NOW - 3, time_limit_min=limit_min,
               gpus={h: tuple(range(8)) for h in BUSY})


def burst(comment: str, limit_min: int | None = 2) -> list[Job]:
    """B running; H (-N16, tier high, 5 min) and S (-N1, tier normal, 10 min) just submitted (deferred)."""
    h = Job(job_id=2, name="H", state="PENDING", comment="fabric:tier=high", nodes=16, gpus_per_node=8,
            cpus=16, submit_time=NOW, begin_time=NOW + 20, time_limit_min=5)
    s = Job(job_id=3, name="S", state="PENDING", comment="fabric:tier=normal", nodes=1, gpus_per_node=8,
            cpus=1, submit_time=NOW, begin_time=NOW + 20, time_limit_min=10)
    return [blocker(comment, limit_min), h, s]


def step(jobs: list[Job]):
    view = build_view(FAB, nodes(), jobs, now=NOW, pins=PinRules(30, fallback_s=20))
    pending, running = {p.job.id: p for p in view.pending}, {r.job.id: r for r in view.running}
    step_in = snapshot(NOW, pending, running, view.state)
    return view, make_policy("fabric").schedule(step_in)


@pytest.mark.parametrize("comment", ["fabric", "fabric:tier=normal", "nofabric", ""])
def test_the_burst_reserves_for_the_high_gang_and_starts_nothing_in_front_of_it(comment: str) -> None:
    view, d = step(burst(comment))
    b = next(r for r in view.running if r.job.id == "1")
    assert b.walltime_end == NOW - 3 + 120  # Slurm's start + time limit
    assert [j.id for j, _ in d.start] == []  # S would hold n11 for 10 min, past B's end
    assert d.reservations["2"].start == NOW - 3 + 120 and len(d.reservations["2"].gpus) == 128
    assert d.reasons == {"2": "Resources", "3": "Priority"}


@pytest.mark.parametrize("comment", ["nofabric", ""])
def test_a_job_fabric_does_not_place_is_running_to_the_policy_and_never_a_victim(comment: str) -> None:
    view, _ = step(burst(comment))
    b = next(r for r in view.running if r.job.id == "1")
    assert not b.preemptible  # fabric never requeues a job it does not schedule
    assert b.start == NOW - 3 and b.job.walltime == 120
    assert sorted(b.gpus) == sorted(g for h in BUSY for g in FAB.host_gpus(h))
    assert view.candidates.keys() == {2, 3}  # still no candidate: fabric never places it


def test_a_job_without_a_time_limit_ends_at_slurms_year() -> None:
    view, d = step(burst("nofabric", limit_min=None))
    b = next(r for r in view.running if r.job.id == "1")
    assert b.walltime_end == NOW - 3 + UNLIMITED_WALLTIME_S
    assert d.reservations["2"].start == b.walltime_end
    assert [j.id for j, _ in d.start] == ["3"] and d.backfilled == {"3"}  # 10 min end long before that


def test_a_short_job_still_backfills_in_front_of_the_reservation() -> None:
    jobs = burst("nofabric")
    jobs[2] = Job(job_id=3, name="S", state="PENDING", comment="fabric", nodes=1, gpus_per_node=8, cpus=1,
                  submit_time=NOW, begin_time=NOW + 20, time_limit_min=1)  # ends before B: delays nothing
    _, d = step(jobs)
    assert [j.id for j, _ in d.start] == ["3"] and d.backfilled == {"3"}
    assert d.reservations["2"].start == NOW - 3 + 120


def test_the_agent_pins_nothing_in_front_of_the_high_gang(tmp_path: Path) -> None:
    """The whole cycle (Agent.cycle on a scripted Slurm): S is not pinned, both wait."""

    class Busy(Fake):
        def nodes(self) -> list[Node]:
            return nodes()

    client = Busy(burst("nofabric"))
    res = Agent(client, FAB, AgentConfig(state_dir=str(tmp_path), fallback_s=20, pin_timeout_s=30)).cycle(NOW)
    assert res.started == [] and res.waiting == {2: "Resources", 3: "Priority"}
    assert not [c for c in client.calls if c[2].get("ReqNodeList")]
