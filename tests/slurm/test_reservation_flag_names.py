"""A reservation's flags read with Slurm's own names whichever backend read them: pyslurm 25.11 names
them after its ``ReservationFlags`` enum (``MAINTENANCE``, ``IGNORE_RUNNING_JOBS``, ...), scontrol and
slurmrestd as Slurm does (``MAINT``, ``IGNORE_JOBS``: src/common/slurm_protocol_defs.c
``reservation_flags_string``, data_parser v0.0.44 ``RESERVATION_FLAGS``)."""

from __future__ import annotations

import enum

import pytest

from fabric_hpc.slurm.reservations import Reservation, from_line, from_pyslurm, kept_out


class Flag(enum.Enum):  # the shape of pyslurm's flag set: members with a .name
    MAINTENANCE = 1
    IGNORE_RUNNING_JOBS = 2
    STATIC_NODES = 3
    PARTITION_NODES_ONLY = 4
    USER_DELETION = 5
    PURGE = 6
    SPECIFIC_NODES = 7
    NO_JOB_HOLD_AFTER_END = 8
    FLEX = 9
    OVERLAP = 10


class PyslurmReservation:
    name, start_time, end_time, nodes = "maint", 1000, 2000, "n[1-2]"
    flags = list(Flag)


def test_pyslurm_flag_names_read_as_slurms() -> None:
    assert from_pyslurm(PyslurmReservation()).flags == (
        "MAINT", "IGNORE_JOBS", "STATIC", "PART_NODES", "USER_DELETE", "PURGE_COMP", "SPEC_NODES",
        "NO_HOLD_JOBS_AFTER_END", "FLEX", "OVERLAP")


@pytest.mark.parametrize("flags", ["MAINT,IGNORE_JOBS", "MAINT,IGNORE_JOBS,SPEC_NODES"])
def test_scontrols_names_stay(flags: str) -> None:
    line = ("ReservationName=maint StartTime=2026-12-06T10:00:00 EndTime=2026-12-06T11:00:00 "
            f"Duration=01:00:00 Nodes=n[1-2] NodeCnt=2 CoreCnt=2 PartitionName=(null) Flags={flags}")
    assert ",".join(from_line(line).flags) == flags


@pytest.mark.parametrize("limit", [None, 0])
def test_a_job_without_a_time_limit_is_kept_off_every_reservation_to_come(limit: int | None) -> None:
    """0 is no limit, as the view reads it (Slurm's --time=0 is INFINITE: slurm_opt.c arg_set_time_limit)."""
    later = Reservation("maint", 1_000_000.0 + 3600, 1_000_000.0 + 7200, ("n1",))
    assert kept_out([later], set(), 1_000_000.0, limit) == {"n1": later}
    assert kept_out([later], set(), 1_000_000.0, 30) == {}
