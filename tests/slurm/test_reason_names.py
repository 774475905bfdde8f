"""Every backend gives a pending reason as Slurm's enum name (admin probe 7): a `scontrol requeuehold`
job read `job_requeued_in_held_state` through the cli backend (scontrol's Reason= shows the job's
state_desc, spaces as `_`), `job requeued in held state` through pyslurm and `JobHeldUser` through
slurmrestd; pyslurm read `ReqNodeNotAvail, UnavailableNodes:n7` where the others read `ReqNodeNotAvail`."""

from __future__ import annotations

import time

import pytest

from fabric_hpc.slurm.cli_backend import _job_from_scontrol
from fabric_hpc.slurm.contract import HELD_REASONS, Job, Node
from fabric_hpc.slurm.parse import normal_reason
from fabric_hpc.slurm.why import explain
from fabric_hpc.slurm.why_hosts import refused_hosts


@pytest.mark.parametrize("text, name", [
    ("job_requeued_in_held_state", "JobHeldUser"), ("job requeued in held state", "JobHeldUser"),
    ("JobHeldUser", "JobHeldUser"), ("ReqNodeNotAvail, UnavailableNodes:n7", "ReqNodeNotAvail"),
    ("ReqNodeNotAvail,_UnavailableNodes:n[7-8]", "ReqNodeNotAvail"), ("ReqNodeNotAvail", "ReqNodeNotAvail"),
    ("", "None"), (None, "None"), ("(null)", "None"), ("Resources", "Resources"),
    ("some text, Slurm wrote", "some text, Slurm wrote")])
def test_a_reason_is_its_enum_name(text: str | None, name: str) -> None:
    assert normal_reason(text) == name


LINE = ("JobId=7 JobName=g UserId=ann(1000) Priority={} JobState=PENDING Reason={} "
        "Dependency=(null) NumNodes=1 NumCPUs=1 TresPerNode=gres/gpu:8 ReqNodeList=n7 "
        "SubmitTime=2026-12-06T10:00:00 Comment=fabric")


@pytest.mark.parametrize("reason, name", [("job_requeued_in_held_state", "JobHeldUser"),
                                          ("ReqNodeNotAvail,_UnavailableNodes:n7", "ReqNodeNotAvail")])
def test_the_cli_backend_reads_the_enum_name(reason: str, name: str) -> None:
    assert _job_from_scontrol(LINE.format(0, reason)).reason == name


class _One:
    def __init__(self, job: Job) -> None:
        self._job = job

    def job(self, job_id: int) -> Job:
        return self._job

    def nodes(self) -> list[Node]:
        return [Node(name="n7", state="idle", cpus=8, gpus=8)]


@pytest.mark.parametrize("reason, name", [("job_requeued_in_held_state", "JobHeldUser"),
                                          ("ReqNodeNotAvail,_UnavailableNodes:n7", "ReqNodeNotAvail")])
def test_why_says_for_the_cli_what_it_says_for_rest(reason: str, name: str, tmp_path) -> None:
    from dataclasses import replace

    cli = _job_from_scontrol(LINE.format(0 if name in HELD_REASONS else 1, reason))
    rest = replace(cli, reason=name)  # slurmrestd's state_reason: the enum name
    said = [explain(_One(j), 7, state_dir=tmp_path)["text"]  # type: ignore[arg-type]
            for j in (cli, rest)]
    assert said[0] == said[1] and reason not in said[0]
    assert name not in HELD_REASONS or "held" in said[0]
    assert name in HELD_REASONS or refused_hosts(name) and "Slurm does not start it there" in said[0]
