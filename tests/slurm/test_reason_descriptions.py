"""Every description slurmctld 25.11 sets as a job's ``state_desc`` (which pyslurm's ``state_reason``
and scontrol's ``Reason=`` show instead of the reason's name) reads as the enum name slurmrestd and
``squeue --json`` give. The texts are Slurm 25.11.7's (``slurm-25.11.7.tar.xz`` in SLURM_VENDOR): each
``state_desc`` set in src/slurmctld with the ``state_reason`` set next to it, the names from
src/common/job_state_reason.c (``jsra[]``)."""

from __future__ import annotations

import pytest

from fabric_hpc.slurm.parse import normal_reason

DESCRIBED = [
    # src/slurmctld/job_scheduler.c:1763 (WAIT_RESOURCES): a drained or down node the job needs
    ("Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions",
     "Resources"),
    ("Nodes required for job are DOWN, DRAINED, REBOOTING or reserved for jobs in higher priority partitions",
     "Resources"),
    ("Nodes_required_for_job_are_DOWN,_DRAINED_or_reserved_for_jobs_in_higher_priority_partitions",
     "Resources"),  # scontrol's Reason=
    ("job requeued in special exit state", "JobHeldUser"),  # job_mgr.c:18051 (WAIT_HELD_USER)
    ("launch failure limit exceeded requeued held", "JobHoldMaxRequeue"),  # job_mgr.c:6074
    ("Reservation big was deleted", "ReservationDeleted"),  # reservation.c:992
    ("Reservation big is invalid", "ReservationInvalid"),  # reservation.c:5347
    ("uid 1000 not in group permitted to use this partition (gpu). groups allowed: ops",
     "AccountNotAllowed"),  # node_scheduler.c:2571 (WAIT_ACCOUNT)
    ("Job's QOS not known, so it can't use this partition (gpu allows high)", "QOSNotAllowed"),
    ("Job's QOS not permitted to use this partition (gpu allows high not low)", "QOSNotAllowed"),
    ("Job's QOS not permitted to use this partition (gpu denies low including low)", "QOSNotAllowed"),
    ("License request 'lic:2' is no longer valid, holding job", "JobHeldAdmin"),  # job_mgr.c:16730
    ("Unable to load job batch script", "SystemFailure"), ("Unable to load job environment", "SystemFailure"),
    ("invalid het_job_id_set", "SystemFailure"), ("Invalid HetJob component", "SystemFailure"),
    ("incomplete hetjob", "SystemFailure"),  # read_config.c _abort_job (FAIL_SYSTEM)
    ("RaisedSignal:9(Killed)", "RaisedSignal"),  # job_mgr.c:6254 (FAIL_SIGNAL)
    ("Job is at or exceeds QOS normal's group wall limit of 10 with 11", "TimeLimit"),  # acct_policy.c
    ("ReqNodeNotAvail, Reserved for maintenance", "ReqNodeNotAvail"),  # node_scheduler.c:3762
    ("ReqNodeNotAvail, May be reserved for other job", "ReqNodeNotAvail"),
]


@pytest.mark.parametrize("text, name", DESCRIBED)
def test_a_slurm_description_reads_as_its_reason_name(text: str, name: str) -> None:
    assert normal_reason(text) == name


def test_other_text_is_kept() -> None:
    text = "Nodes required for job are somewhere else"
    assert normal_reason(text) == text
