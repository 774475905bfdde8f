"""A job's GPU type (``--gres=gpu:a100:1``) filters the hosts the agent places it on (Slurm's node types,
compared as Slurm compares them), priority 0 under ``BadConstraints`` is no hold, and a pin Slurm rejects
is handed to Slurm once instead of being re-pinned every cycle."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.contract import Job, Node, SlurmClient
from fabric_hpc.slurm.view import build_view
from fabric_hpc.topology import build, generators

H100, A100 = ("n1", "n2", "n3"), ("n4", "n5")
_FAB = build(generators.leaf_spine(5, hosts_per_leaf=5, gpus=4, cpus=8))


@pytest.fixture(scope="module")
def fab() -> Any:
    return _FAB


def _nodes(types: dict[str, str | None], busy: tuple[str, ...] = ()) -> list[Node]:
    return [Node(name=h, state="allocated" if h in busy else "idle", cpus=8, cpus_alloc=8 if h in busy else 0,
                 gpus=4, gpu_type=t, gpus_used=(0, 1, 2, 3) if h in busy else ()) for h, t in types.items()]


def _gang(job_id: int, gpu_type: str | None, **kw: Any) -> Job:
    fields: dict[str, Any] = {"state": "PENDING", "reason": "BeginTime", "nodes": 2, "gpus_per_node": 1,
                              "comment": "fabric", "submit_time": 100.0, "begin_time": 1000.0,
                              "gpu_type": gpu_type, "priority": 1000, **kw}
    return Job(job_id, f"j{job_id}", **fields)


TYPES = {**{h: "h100" for h in H100}, **{h: "a100" for h in A100}}


def test_a_typed_job_never_gets_hosts_of_another_type(fab):
    # both a100 hosts busy: before the fix the request had no GPU type and the job went to h100 hosts
    busy = [Job(9, "busy", "RUNNING", nodes=2, gpus_per_node=4, gpus={h: (0, 1, 2, 3) for h in A100})]
    view = build_view(fab, _nodes(TYPES, busy=A100), [_gang(1, "a100"), *busy], now=200.0)
    (pending,) = view.pending
    assert _expand(pending.job.request.exclude) == set(H100) and not view.invalid


def test_the_filter_keeps_the_right_type_and_case_as_slurm(fab):
    view = build_view(fab, _nodes(TYPES), [_gang(1, "a100"), _gang(2, "h100", submit_time=101.0)], now=200.0)
    req = {int(p.job.id): _expand(p.job.request.exclude) for p in view.pending}
    assert req == {1: set(H100), 2: set(A100)}
    # Slurm compares GRES types exactly (gres_build_id hashes the bytes): 'A100' is not 'a100'
    view = build_view(fab, _nodes(TYPES), [_gang(3, "A100")], now=200.0)
    assert not view.pending and "type 'A100'" in view.invalid[3] and "a100 on n[4-5]" in view.invalid[3]


def test_an_untyped_job_may_go_anywhere(fab):
    view = build_view(fab, _nodes(TYPES), [_gang(1, None)], now=200.0)
    assert view.pending[0].job.request.exclude is None


def test_no_host_of_the_type_hands_the_job_to_slurm_saying_why(fab):
    untyped = {h: None for h in (*H100, *A100)}
    view = build_view(fab, _nodes(untyped), [_gang(1, "a100")], now=200.0)
    assert not view.pending
    assert view.invalid[1].startswith("job 1 asks for GPUs of type 'a100'")
    assert "none on n[1-5]" in view.invalid[1]


def test_bad_constraints_with_priority_0_is_no_hold():
    bad = _gang(1, "a100", reason="BadConstraints", priority=0, req_nodes=("n1", "n2"))
    assert not bad.held and bad.blocked is None
    for reason in ("JobHeldUser", "JobHeldAdmin", "None", "JobHoldMaxRequeue", "InvalidQOS"):
        assert _gang(2, None, reason=reason, priority=0).held, reason


class TypedSlurm(SlurmClient):
    """A scripted Slurm with typed GPUs: a pin to hosts of another GPU type gets what Slurm 25.11 gives
    it at its next scheduling pass (reason BadConstraints, priority 0); any update re-evaluates it
    (priority back). The live test, tests/slurm_integration/test_agent_gres_type_live.py, runs on Slurm."""

    backend = "scripted"

    def __init__(self, types: dict[str, str | None], jobs: list[Job], busy: tuple[str, ...] = ()) -> None:
        self.types, self._jobs, self.busy = types, jobs, busy
        self.calls: list[tuple[int, dict[str, str]]] = []

    def nodes(self) -> list[Node]:
        return _nodes(self.types, self.busy)

    def jobs(self) -> list[Job]:
        out = []
        for j in self._jobs:
            if j.req_nodes and any(self.types[h] != j.gpu_type for h in j.req_nodes):
                j = replace(j, reason="BadConstraints", priority=0)
            out.append(j)
        self._jobs = out
        return out

    def update(self, job_id: int, **fields: str) -> None:
        from fabric_hpc.hostlist import expand

        self.calls.append((job_id, fields))
        out = []
        for j in self._jobs:
            if j.job_id == job_id:
                j = replace(j, reason="None", priority=1000)
                if "ReqNodeList" in fields:
                    j = replace(j, req_nodes=tuple(expand(fields["ReqNodeList"])) if fields["ReqNodeList"] else ())
                if fields.get("StartTime") == "now":
                    j = replace(j, begin_time=time.time())
            out.append(j)
        self._jobs = out

    def submit(self, script: str, args: Sequence[str] = (), *, cwd: str | None = None) -> int:
        raise NotImplementedError

    hold = release = requeue = cancel = submit  # type: ignore[assignment]


def test_the_agent_does_not_pin_a_typed_job_to_hosts_of_another_type(tmp_path: Path):
    now = time.time()  # the plugin's deferral: submit time + fallback_s (60)
    slurm = TypedSlurm(TYPES, [_gang(1, "a100", submit_time=now, begin_time=now + 60)], busy=A100)
    agent = Agent(slurm, _FAB, AgentConfig(state_dir=str(tmp_path)))
    for _ in range(3):
        agent.cycle()
    assert not [f for _, f in slurm.calls if f.get("ReqNodeList")]  # waits for the a100 hosts
    slurm.busy = ()
    agent.cycle()
    (pin,) = [f["ReqNodeList"] for _, f in slurm.calls if f.get("ReqNodeList")]
    assert pin == "n[4-5]"


def test_a_rejected_pin_is_handed_to_slurm_once(tmp_path: Path):
    """Slurm set BadConstraints on a job pinned to h100 hosts (by an agent before the fix): it was read
    as a hold (``agent.unpin`` held), pinned again the next cycle, for ever. Now: one hand-over."""
    pinned = _gang(1, "a100", req_nodes=("n1", "n2"), begin_time=time.time() - 1)
    slurm = TypedSlurm(TYPES, [pinned], busy=A100)
    agent = Agent(slurm, _FAB, AgentConfig(state_dir=str(tmp_path)))
    agent.actions.pins[1] = frozenset(pinned.req_nodes)  # the agent's own pin
    for _ in range(4):
        agent.cycle()
    assert slurm.calls == [(1, {"ReqNodeList": "", "StartTime": "now"})]
    log = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert not [e for e in log if e["event"] in ("agent.unpin", "agent.place")]
    (hand,) = [e for e in log if e["event"] == "agent.handoff"]
    assert hand["job"] == 1 and "Slurm rejected the pin to n[1-2] (BadConstraints" in hand["reason"]


def _expand(expr: str | None) -> set[str]:
    from fabric_hpc.hostlist import expand

    return set(expand(expr)) if expr else set()


def test_several_types_on_a_host_or_in_a_job(fab):
    """A host with two GPU types (``Gres=gpu:a100:2,gpu:h100:2``) may take a job of either type; a job
    that names two types goes only to hosts that have both; before, both read as untyped (None), so
    the job was unfiltered and the mixed host was excluded for every typed job."""
    from fabric_hpc.slurm.decode import gpu_type

    assert gpu_type("gpu:h100:2,gpu:a100:2(S:0-1)") == "a100,h100" and gpu_type("gpu:2") is None
    mixed = {**TYPES, "n3": "a100,h100"}
    view = build_view(fab, _nodes(mixed), [_gang(1, "a100"), _gang(2, "a100,h100", submit_time=101.0)],
                      now=200.0)
    req = {int(p.job.id): _expand(p.job.request.exclude) for p in view.pending}
    assert req == {1: {"n1", "n2"}, 2: {"n1", "n2", "n4", "n5"}}
    view = build_view(fab, _nodes(TYPES), [_gang(3, "a100,h100")], now=200.0)
    assert not view.pending and "of types 'a100,h100' on each host" in view.invalid[3]
