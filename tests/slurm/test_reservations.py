"""Slurm reservations in the agent's view: a job that names no reservation never gets a host of an active
reservation; a job that names one is placed on that reservation's hosts only, or handed to Slurm when Slurm
does not say which hosts those are (22.05's ``sinfo --json``, pyslurm: only the ``RESERVED`` flag). Before,
the agent pinned gangs onto reserved nodes, where Slurm never started them. The live test:
tests/slurm_integration/test_agent_reservation_live.py."""

from __future__ import annotations

from dataclasses import replace

from fabric_hpc.hostlist import expand
from fabric_hpc.slurm import decode
from fabric_hpc.slurm.cli_backend import job_from_scontrol, node_from_scontrol
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.slurm.view import build_view
from fabric_hpc.topology import build, generators

FAB = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
RESV = {f"n{i}" for i in range(1, 5)}
JOB = Job(job_id=1, name="g", state="PENDING", comment="fabric", nodes=2, gpus_per_node=8, submit_time=1.0,
          begin_time=150.0)


def _nodes(name: str | None) -> list[Node]:
    """16 idle nodes, n1-n4 in an active reservation (named ``name``; None: flag only, as 22.05 says)."""
    return [Node(name=f"n{i}", state="idle", cpus=8, gpus=8,
                 flags=("RESERVED",) if f"n{i}" in RESV else (),
                 reservation=(name or "") if f"n{i}" in RESV else "")
            for i in range(1, 17)]


def _exclude(view) -> set[str]:
    [pending] = view.pending
    return set(expand(pending.job.request.exclude)) if pending.job.request.exclude else set()


def test_a_job_without_a_reservation_never_gets_reserved_hosts() -> None:
    for name in ("maint", None):
        view = build_view(FAB, _nodes(name), [JOB], now=100.0)
        assert _exclude(view) == RESV


def test_a_job_in_a_reservation_is_placed_on_its_hosts_only() -> None:
    view = build_view(FAB, _nodes("ml"), [replace(JOB, reservation="ml")], now=100.0)
    assert _exclude(view) == {f"n{i}" for i in range(5, 17)}
    several = build_view(FAB, _nodes("ml"), [replace(JOB, reservation="other,ml")], now=100.0)
    assert _exclude(several) == {f"n{i}" for i in range(5, 17)}


def test_a_reservation_slurm_does_not_name_is_handed_to_slurm() -> None:
    for nodes, resv in ((_nodes(None), "ml"), (_nodes("ml"), "later")):
        view = build_view(FAB, nodes, [replace(JOB, reservation=resv)], now=100.0)
        assert not view.pending
        assert f"runs in reservation {resv!r}" in view.invalid[1]
        assert "handed to Slurm" in view.invalid[1]


def test_every_backend_reads_the_reservations() -> None:
    node = decode.node({"name": "n1", "state": ["IDLE", "RESERVED"], "reservation": "maint"})
    assert node.reserved and node.reservation == "maint"
    assert decode.node({"name": "n1", "state": ["IDLE", "RESERVED"]}).reserved  # 22.05: the flag only
    assert not decode.node({"name": "n1", "state": ["IDLE"], "reservation": ""}).reserved
    job = decode.job({"job_id": 7, "job_state": ["PENDING"], "resv_name": "ml"})
    assert job.reservation == "ml"
    text = node_from_scontrol("NodeName=n1 State=IDLE+RESERVED CPUTot=8 CPUAlloc=0 ReservationName=maint")
    assert text.reserved and text.reservation == "maint"
    line = job_from_scontrol("JobId=7 JobName=x JobState=PENDING Reason=Reservation Reservation=ml")
    assert line.reservation == "ml"
    assert job_from_scontrol("JobId=8 JobName=x JobState=PENDING Reason=None").reservation == ""
