"""A job Slurm holds back under a limit (a partition's time limit, a down or inactive partition, a QOS or
association limit) is handed to Slurm once and not placed again. Before, the agent kept pinning and
deferring it, so squeue showed ``BeginTime`` instead of Slurm's reason (e.g. ``PartitionTimeLimit``, which
tells the user to fix ``--time``) and ``fabric slurm why`` promised a start that could never come.
The live test: tests/slurm_integration/test_slurm_limits_live.py."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from fabric_hpc.slurm.actions import Actions
from fabric_hpc.slurm.contract import Job, Node, limit_reason
from fabric_hpc.slurm.view import build_view
from fabric_hpc.topology import build, generators

FAB = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
NODES = [Node(name=f"n{i}", state="idle", cpus=8, gpus=8) for i in range(1, 17)]
JOB = Job(job_id=5, name="g", state="PENDING", comment="fabric", nodes=2, gpus_per_node=8, submit_time=1.0,
          begin_time=90.0, req_nodes=("n1", "n2"))


@pytest.mark.parametrize("reason, limited", [
    ("PartitionTimeLimit", True), ("PartitionDown", True), ("PartitionInactive", True),
    ("QOSGrpGRES", True), ("AssocMaxJobsLimit", True), ("MaxGRESPerAccount", True),
    ("MaxCpuRunMinsPerUser", True), ("AccountNotAllowed", True),
    ("Resources", False), ("Priority", False), ("BeginTime", False), ("ReqNodeNotAvail", False),
    ("MaxPoweredUpNodes", False), ("Reservation", False), ("None", False),
])
def test_limit_reasons(reason: str, limited: bool) -> None:
    assert limit_reason(reason) is limited


def test_a_job_under_a_limit_is_handed_over_once_and_not_placed() -> None:
    view = build_view(FAB, NODES, [replace(JOB, reason="PartitionTimeLimit")], now=100.0)
    assert view.limited == {5: "PartitionTimeLimit"} and not view.pending and 5 not in view.pinned
    notes: list[tuple[str, dict]] = []
    actions = Actions(client=None, note=lambda what, **f: notes.append((what, f)))  # type: ignore[arg-type]
    actions.limited(view.limited)
    actions.limited(view.limited)  # the next cycle, before Slurm shows another reason: nothing new
    assert 5 in actions.handed_off and "PartitionTimeLimit" in actions.to_hand[5]
    assert "longer than its partition allows" in actions.to_hand[5]
    plain = build_view(FAB, NODES, [replace(JOB, reason="Resources", req_nodes=())], now=100.0)
    assert not plain.limited and list(plain.candidates) == [5]


class _One:
    def __init__(self, job: Job) -> None:
        self._job = job

    def job(self, job_id: int) -> Job:
        return self._job


def test_why_says_the_limit_and_the_hand_over(tmp_path: Path) -> None:
    from fabric_hpc.slurm.why import explain

    job = replace(JOB, reason="PartitionTimeLimit", begin_time=time.time() - 5)
    text = explain(_One(job), 5, state_dir=tmp_path)["text"]  # type: ignore[arg-type]
    limit = "Slurm holds it back under a limit (its time limit is longer than its partition allows)"
    assert limit in text, text
    assert "hands it to Slurm's own scheduler" in text and "as soon as those GPUs are free" not in text, text


def test_a_users_begin_time_is_waited_for_before_a_limit_hands_the_job_over() -> None:
    """A job in an INACTIVE partition with its own --begin ahead: Slurm shows PartitionInactive, but a
    hand-over (StartTime=now) would undo the --begin; the begin time is waited for first."""
    from fabric_hpc.slurm.view import PinRules

    job = replace(JOB, reason="PartitionInactive", req_nodes=(), begin_time=130.0)
    view = build_view(FAB, NODES, [job], now=100.0, pins=PinRules(fallback_s=60))
    assert view.not_before == {5: 130.0} and not view.limited
