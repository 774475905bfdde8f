"""A review of the agent's path that changes jobs: a spot gang that was ending (``COMPLETING``, or ended
between the cycle's read and the requeue) was taken for a victim and requeued, which Slurm does for an
ended batch job too, running it again; the agent's own victim still tearing down was picked again by a
second high gang; and the memory of the agent's requeue outlived the requeue, so a later requeue by a user
or by Slurm skipped Slurm's requeue delay. Each test failed before its fix."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from fabric_hpc.slurm.actions import MAX_PIN_FAILURES, Actions
from fabric_hpc.slurm.contract import Job
from fabric_hpc.slurm.view import REQUEUE_GAP_S, PinRules
from tests.slurm.test_agent_actions import Fake, agent, gang

HOSTS = tuple(f"n{i}" for i in range(1, 5))


def spot(job_id: int, state: str = "RUNNING", **kw) -> Job:
    now = time.time()
    return Job(job_id=job_id, name=f"s{job_id}", state=state, comment="fabric:tier=spot", nodes=4,
               gpus_per_node=8, cpus=2, node_list=HOSTS, gpus={h: tuple(range(8)) for h in HOSTS},
               submit_time=now - 700, begin_time=now - 600, start_time=now - 600, time_limit_min=60, **kw)


def high(job_id: int) -> Job:
    now = time.time()
    return Job(job_id=job_id, name=f"h{job_id}", state="PENDING", comment="fabric:tier=high", nodes=2,
               gpus_per_node=8, cpus=2, submit_time=now - 1, begin_time=now + 19, time_limit_min=30)


def _cycle(tmp_path: Path, jobs: list[Job], client_type: type[Fake] = Fake):
    client = client_type(jobs, hosts=4)
    a = agent(tmp_path, client, fallback_s=20, preempt_benefit_ratio=1.0)
    return a, client, a.cycle()


@pytest.mark.parametrize("flags", [(), ("PENDING",)])  # ended, or the agent's own victim tearing down
def test_a_spot_gang_that_is_ending_is_no_victim(tmp_path: Path, flags: tuple[str, ...]) -> None:
    _, client, res = _cycle(tmp_path, [spot(1, "COMPLETING", flags=flags), high(3)])
    assert res.requeued == [] and not [c for c in client.calls if c[0] == "requeue"]
    _, client, res = _cycle(tmp_path / "running", [spot(1), high(3)])  # the same gang running: the victim
    assert res.requeued == [1] and ("requeue", 1, {}) in client.calls


def test_the_memory_of_a_requeue_ends_when_the_job_runs_again() -> None:
    """Requeued by the agent, the job waits REQUEUE_GAP_S, not Slurm's delay; once it ran again, a later
    requeue (a user's, Slurm's after a node failure) keeps Slurm's requeue delay."""
    client = Fake([spot(5)])
    actions = Actions(client, lambda what, **kw: None)
    actions.apply([5], [], {}, [], 60)
    t = actions.requeued[5]
    actions.forget([], [5], {5: t - 600})  # the cycle's read before the requeue: its old start
    assert 5 in actions.requeued
    actions.forget([], [5], {5: t + REQUEUE_GAP_S + 1})  # it runs again
    assert 5 not in actions.requeued
    again = replace(gang(5), submit_time=t - 700, begin_time=t + 400)  # requeued again: Slurm's delay
    rules = PinRules(fallback_s=60, requeued=actions.requeued)
    assert rules.not_before(again, t + 300) == t + 400


def test_the_agent_forgets_its_requeue_once_it_reads_the_job_running_again(tmp_path: Path) -> None:
    a, client, res = _cycle(tmp_path, [spot(1), high(3)])
    assert res.requeued == [1] and 1 in a.actions.requeued
    t = a.actions.requeued[1]
    client._jobs = [replace(spot(1), start_time=t + 30)]  # ran again (the high gang ended meanwhile)
    a.cycle()
    assert 1 not in a.actions.requeued


# -- a hand-over keeps a begin time of the job's own ----------------------------------------------------


def test_a_hand_over_decided_earlier_keeps_a_begin_time_set_since(tmp_path: Path) -> None:
    """Three stale pins decide a hand-over; before it is sent, the user set the job's begin 3 h ahead
    (``scontrol update StartTime=``): the hand-over clears the pin and leaves that begin time."""
    now = time.time()
    job = replace(gang(7), cpus=2, submit_time=now - 600, begin_time=now + 3 * 3600, time_limit_min=30)
    client = Fake([job], hosts=4)
    a = agent(tmp_path, client, fallback_s=60)
    a.actions.stale_count[7] = 2
    a.actions.stale({7: ("n1", "n2")})  # the third stale pin
    a.cycle()
    assert [c for c in client.calls if c[1] == 7] == [("update", 7, {"ReqNodeList": ""})]


def test_a_pin_slurm_rejects_is_handed_over_keeping_the_jobs_own_begin(tmp_path: Path) -> None:
    from tests.slurm.test_agent_actions import pinned_by

    now = time.time()
    job = replace(gang(8), cpus=2, submit_time=now - 600, begin_time=now + 3600, time_limit_min=30,
                  req_nodes=("n1", "n2"), reason="BadConstraints")
    client = Fake([job], hosts=4)
    a = pinned_by(agent(tmp_path, client, fallback_s=60), [job])
    a.cycle()
    assert [c for c in client.calls if c[1] == 8] == [("update", 8, {"ReqNodeList": ""})]


# -- topology/block: hosts busy for now are a block's hosts all the same ----------------------------------


@pytest.mark.parametrize("shape", ["exclusive", "cpus", "memory"])
def test_a_gang_is_not_handed_over_for_hosts_that_are_only_busy_now(shape: str) -> None:
    """One small job on the first host of each 4-host block: an ``--exclusive`` gang of 4 (or one needing
    every CPU, or more memory than is free there) cannot start now, yet every block holds it once the small
    job ends. It was handed to Slurm ("no block of the fabric model has that many hosts this job may use")."""
    from fabric_hpc.slurm.blocks import Blocks
    from fabric_hpc.slurm.contract import Node
    from fabric_hpc.slurm.view import build_view
    from tests.slurm.test_agent_actions import FAB

    now = time.time()
    blocks = Blocks.from_fabric(FAB)
    firsts = [b[0] for b in blocks.bases]
    small = [Job(job_id=100 + i, name="s", state="RUNNING", comment="", nodes=1, gpus_per_node=1, cpus=1,
                 submit_time=now - 60, begin_time=now - 60, start_time=now - 60, time_limit_min=10,
                 node_list=(h,), gpus={h: (0,)}) for i, h in enumerate(firsts)]
    nodes = [Node(name=h, state="mixed" if h in firsts else "idle", cpus=8, cpus_alloc=int(h in firsts),
                  gpus=8, gpus_used=(0,) if h in firsts else (), mem=1000, mem_alloc=500 * (h in firsts))
             for h in FAB.hosts]
    need = {"exclusive": {"exclusive": True}, "cpus": {"cpus": 32}, "memory": {"mem_per_node": 800}}[shape]
    g = Job(**{"job_id": 2, "name": "g", "state": "PENDING", "comment": "fabric", "nodes": 4,
               "gpus_per_node": 8, "cpus": 4, "submit_time": now, "begin_time": now + 60,
               "time_limit_min": 30, **need})
    v = build_view(FAB, nodes, [*small, g], now=now, pins=PinRules(60, fallback_s=60), blocks=blocks)
    assert v.invalid == {} and 2 in v.candidates
    (p,) = v.pending
    assert set(firsts) <= _names(p.job.request.exclude)  # not now: its GPUs wait for them
    # a host with too few CPUs in all is kept out for good: no block has 4 hosts the gang may use
    nodes = [replace(n, cpus=2) if n.name in firsts else n for n in nodes]
    g = replace(g, cpus=32, exclusive=False, mem_per_node=0)
    v = build_view(FAB, nodes, [*small, g], now=now, pins=PinRules(60, fallback_s=60), blocks=blocks)
    assert list(v.invalid) == [2] and "no block of the fabric model" in v.invalid[2]


def _names(expr: str) -> set[str]:
    from fabric_hpc.hostlist import expand

    return set(expand(expr))


# -- a withdrawn pin Slurm keeps ---------------------------------------------------------------------------


def test_a_gang_is_not_pinned_onto_a_withdrawn_pin_slurm_kept(tmp_path: Path) -> None:
    """The high gang H takes the unstarted spot pin of S (n3, n4); when Slurm refuses to clear S's pin, S
    may still start there: H is deferred that cycle, not pinned onto the same hosts."""
    from fabric_hpc.slurm.contract import SlurmError
    from tests.slurm.test_agent_actions import pinned_by
    from tests.slurm.test_withdrawn_pins import FAB, NOW, jobs

    class Keeping(Fake):
        def update(self, job_id: int, **fields: str) -> None:
            super().update(job_id, **fields)
            if job_id == 2 and fields.get("ReqNodeList") == "":
                raise SlurmError("Job is no longer pending execution")  # a refusal; job 2 still pending

    from fabric_hpc.slurm.agent import Agent, AgentConfig

    client = Keeping(jobs(), hosts=4)
    a = Agent(client, FAB, AgentConfig(state_dir=str(tmp_path), fallback_s=20, preempt_benefit_ratio=1.0))
    a = pinned_by(a, jobs())
    for _ in range(MAX_PIN_FAILURES - 1):
        res = a.cycle(NOW)
        assert [s["job"] for s in res.started] == [3] and res.placed == []
        assert not [c for c in client.calls if c[1] == 3 and c[2].get("ReqNodeList")]
        assert ("update", 3, {"StartTime": "now+20"}) in client.calls  # deferred again
    # a pin Slurm keeps refusing to clear does not hold the hosts for ever
    assert [p["job"] for p in a.cycle(NOW).placed] == [3]


def test_a_withdrawn_pin_whose_job_ended_frees_its_hosts_at_once(tmp_path: Path) -> None:
    from fabric_hpc.errors import NotFoundError
    from fabric_hpc.slurm.agent import Agent, AgentConfig
    from tests.slurm.test_agent_actions import pinned_by
    from tests.slurm.test_withdrawn_pins import FAB, NOW, jobs

    class Ending(Fake):
        def update(self, job_id: int, **fields: str) -> None:
            if job_id == 2:  # cancelled between the cycle's read and the unpin
                self._jobs = [j for j in self._jobs if j.job_id != 2]
                raise NotFoundError("Slurm knows no job 2")
            super().update(job_id, **fields)

    client = Ending(jobs(), hosts=4)
    a = Agent(client, FAB, AgentConfig(state_dir=str(tmp_path), fallback_s=20, preempt_benefit_ratio=1.0))
    assert [p["job"] for p in pinned_by(a, jobs()).cycle(NOW).placed] == [3]


def test_a_postponed_hand_over_of_someone_elses_pin_keeps_a_begin_time_set_since(tmp_path: Path) -> None:
    """A job whose ReqNodeList a user set is handed to Slurm keeping it; the hand-over waits for a cycle
    without pins, and meanwhile the user sets a begin time 3 h ahead: the hand-over leaves it."""
    now = time.time()
    f = replace(gang(7), cpus=2, submit_time=now - 600, begin_time=now - 1, time_limit_min=30,
                req_nodes=("n3", "n4"))
    g = replace(gang(8), cpus=2, submit_time=now - 10, begin_time=now + 50, time_limit_min=30)
    client = Fake([f, g], hosts=4)
    a = agent(tmp_path, client, fallback_s=60)
    assert [p["job"] for p in a.cycle().placed] == [8] and 7 in a.actions.to_hand  # the hand-over waits
    client._jobs = [replace(f, begin_time=now + 3 * 3600)]  # the user's StartTime=now+3h; 8 started
    client.calls.clear()
    a.cycle()
    # handed over with nothing to change: its list and its begin time are Slurm's already (an empty update,
    # which the backends do not send)
    assert [c for c in client.calls if c[1] == 7] == [("update", 7, {})] and 7 not in a.actions.to_hand


@pytest.mark.parametrize("skew", [0.0, -40.0, 40.0])  # slurmctld's clock behind / ahead of the agent's
def test_the_requeue_is_forgotten_by_the_victims_start_time_whatever_the_clocks(tmp_path: Path,
                                                                                skew: float) -> None:
    victim = spot(1)
    a, client, res = _cycle(tmp_path, [victim, high(3)])
    assert res.requeued == [1] and a.actions.requeued_start == {1: victim.start_time}
    t = a.actions.requeued[1]
    client._jobs = [replace(victim, state="CONFIGURING", start_time=t + 6 + skew)]  # starting again
    a.cycle()
    assert 1 not in a.actions.requeued and a.actions.requeued_start == {}


@pytest.mark.parametrize(("answer", "state"), [
    ("STOPPED", ("RUNNING", ("STOPPED",))),  # scancel --signal=STOP: runs on, holds its nodes
    ("RESIZING", ("RUNNING", ("RESIZING",))),
    ("EXPEDITING", ("PENDING", ("REQUEUED", "EXPEDITING"))),  # an expedited requeue (before: unknown)
    (["RUNNING", "STOPPED"], ("RUNNING", ("STOPPED",))),  # the JSON answers: base first, unchanged
])
def test_a_flag_printed_in_place_of_the_base_state_reads_with_its_base(answer, state) -> None:
    """Slurm's job_state_string (scontrol's text, pyslurm's ``Job.state``) prints such a flag instead of the
    base state: a stopped running job read as ``STOPPED`` was not active, so its GPUs looked free."""
    from fabric_hpc.slurm.parse import parse_state

    assert parse_state(answer) == state
    job = replace(spot(1), state=state[0], flags=state[1])
    assert job.active == (state[0] == "RUNNING")
