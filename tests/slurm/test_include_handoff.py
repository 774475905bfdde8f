"""``include=`` ("only these hosts") kept by Slurm when the agent hands a job over: the hand-over's
update also sets ``ExcNodeList`` to every other node (Slurm's ``-w`` means "all of these", so
"only these" is "none of the others"), joined to the job's own exclusions. The same on live Slurm:
tests/slurm_integration/test_include_handoff_live.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fabric_hpc.hostlist import expand
from fabric_hpc.slurm.contract import Job
from fabric_hpc.slurm.view import kept_out
from tests.slurm.test_agent_actions import Fake, agent, events
from tests.slurm.test_agent_actions import gang as _gang

NAMES = [f"n{i}" for i in range(1, 17)]


def gang(job_id: int, *, comment: str, exc_nodes: tuple[str, ...] = ()) -> Job:
    return replace(_gang(job_id), comment=comment, exc_nodes=exc_nodes)


@pytest.mark.parametrize("comment, exc, want", [
    ("fabric:include=n[3-6]", (), {*NAMES} - {"n3", "n4", "n5", "n6"}),
    ("fabric:w=n[3-6];n9,within=leaf", (), {*NAMES} - {"n3", "n4", "n5", "n6", "n9"}),
    ("fabric:nodelist=n[3-6]", ("n4", "n99"), ({*NAMES} - {"n3", "n5", "n6"}) | {"n99"}),  # -x kept
])
def test_every_node_outside_include_joins_the_jobs_own_exclusions(comment, exc, want) -> None:
    job = gang(1, comment=comment, exc_nodes=exc)
    assert set(expand(kept_out(job, NAMES))) == want


@pytest.mark.parametrize("comment, exc", [
    ("fabric", ()),                                # no include=: nothing to keep it to
    ("fabric:within=leaf", ()),
    ("nofabric", ()),
    ("fabric:include=n[3-", ()),                   # a comment that does not parse
    ("fabric:include=n[1-16]", ()),                # every node allowed
    ("fabric:include=n[1-2]", tuple(NAMES[2:])),   # already excluded
])
def test_nothing_to_add_is_no_exclusion(comment: str, exc: tuple[str, ...]) -> None:
    assert kept_out(gang(1, comment=comment, exc_nodes=exc), NAMES) is None


def test_a_job_handed_over_gets_the_exclusion_in_the_same_update(tmp_path: Path) -> None:
    """``numa_local`` with 8 GPUs per node can never fit 4-GPU NUMA nodes: the agent hands it over at
    once. Before: Slurm got ``ReqNodeList= StartTime=now`` only and could start it on n1, n2."""
    job = gang(1, comment="fabric:include=n[3-6],numa_local")
    plain = gang(2, comment="fabric:numa_local")
    client = Fake([job, plain])
    agent(tmp_path, client).cycle()
    hands = {j: f for kind, j, f in client.calls if kind == "update" and f.get("StartTime") == "now"}
    assert set(hands) == {1, 2}
    assert set(expand(hands[1].pop("ExcNodeList"))) == {*NAMES} - {"n3", "n4", "n5", "n6"}
    assert hands == {1: {"ReqNodeList": "", "StartTime": "now"}, 2: {"ReqNodeList": "", "StartTime": "now"}}
    assert {e["job"] for e in events(tmp_path) if e["event"] == "agent.handoff"} == {1, 2}


def test_the_exclusion_is_read_back_from_every_backend() -> None:
    """``Job.exc_nodes`` from scontrol's ExcNodeList (the JSON readers: tests/slurm_integration)."""
    from fabric_hpc.slurm.cli_backend import job_from_scontrol

    line = ("JobId=7 JobName=x UserId=u(1) JobState=PENDING Reason=None Comment=fabric NumNodes=2 "
            "ReqNodeList=(null) ExcNodeList=n[1-2,9] TresPerNode=gres/gpu:8")
    job: Job = job_from_scontrol(line)
    assert job.exc_nodes == ("n1", "n2", "n9")
