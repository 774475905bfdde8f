"""Reservations that have not started yet (``scontrol create reservation starttime=now+2hours ...``): the
agent reads them on every backend and keeps a job that does not name one off its nodes when the reservation
starts before the job's time limit would end, as Slurm's backfill does (reservation.c ``job_test_resv``).
Before, only active reservations were read (the nodes' ``RESERVED`` state): a long gang pinned onto nodes of a
maintenance two hours ahead waited with ``ReqNodeNotAvail`` until after it although other nodes were free. The
live test: tests/slurm_integration/test_agent_future_reservation_live.py."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from types import SimpleNamespace

from fabric_hpc.hostlist import expand
from fabric_hpc.slurm import reservations as resv
from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.slurm.contract import Job, Node, ReadsReservations, Reservation
from fabric_hpc.slurm.pyslurm_backend import PyslurmClient
from fabric_hpc.slurm.rest_backend import RestClient
from fabric_hpc.slurm.view import build_view
from fabric_hpc.topology import build, generators

FAB = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
NOW = 1_800_000_000.0
SOON = {f"n{i}" for i in range(1, 5)}
MAINT = Reservation(name="maint", start=NOW + 7200, end=NOW + 14400, nodes=tuple(sorted(SOON)),
                    flags=("MAINT", "SPEC_NODES"))
JOB = Job(job_id=1, name="g", state="PENDING", comment="fabric", nodes=2, gpus_per_node=8, submit_time=1.0,
          begin_time=NOW + 50, time_limit_min=180)
NODES = [Node(name=f"n{i}", state="idle", cpus=8, gpus=8) for i in range(1, 17)]


def _view(job: Job, found: list[Reservation], ignored: dict[str, str] | None = None):
    return build_view(FAB, NODES, [job], now=NOW, reservations=(found, ignored or {}))


def _exclude(view) -> set[str]:
    [pending] = view.pending
    return set(expand(pending.job.request.exclude)) if pending.job.request.exclude else set()


def test_a_job_that_would_run_into_a_reservation_to_come_avoids_its_nodes() -> None:
    view = _view(JOB, [MAINT])
    assert _exclude(view) == SOON and view.upcoming == [MAINT]
    assert _exclude(_view(replace(JOB, time_limit_min=None), [MAINT])) == SOON  # no limit: runs into it


def test_a_job_that_ends_before_the_reservation_starts_may_use_its_nodes() -> None:
    assert _exclude(_view(replace(JOB, time_limit_min=60), [MAINT])) == set()
    assert _exclude(_view(replace(JOB, time_limit_min=120), [MAINT])) == set()  # ends as it starts
    assert _exclude(_view(replace(JOB, time_limit_min=121), [MAINT])) == SOON


def test_no_flag_lets_other_jobs_onto_a_reservation_to_come() -> None:
    for flags in (("FLEX",), ("IGNORE_JOBS",), ("OVERLAP",), ("MAGNETIC",), ("MAINT", "IGNORE_JOBS")):
        assert _exclude(_view(JOB, [replace(MAINT, flags=flags)])) == SOON, flags


def test_reservations_that_ended_or_hold_no_fabric_host_change_nothing() -> None:
    ended = replace(MAINT, start=NOW - 7200, end=NOW - 10)
    elsewhere = replace(MAINT, nodes=("gpu-x1", "gpu-x2"))
    view = _view(JOB, [ended, elsewhere])
    assert _exclude(view) == set() and view.upcoming == []


def test_a_job_that_names_the_reservation_to_come_is_handed_to_slurm() -> None:
    view = _view(replace(JOB, reservation="maint"), [MAINT])
    assert not view.pending and "runs in reservation 'maint'" in view.invalid[1]
    other = replace(MAINT, name="other", nodes=("n5", "n6"))  # it still avoids another reservation
    view = build_view(FAB, [replace(n, reservation="maint") if n.name in SOON else n for n in NODES],
                      [replace(JOB, reservation="maint")], now=NOW - 7300, reservations=([other], {}))
    assert _exclude(view) == {f"n{i}" for i in range(5, 17)}


def test_jobs_of_one_shape_with_other_time_limits_are_filtered_apart() -> None:
    jobs = [replace(JOB, job_id=1, time_limit_min=60), replace(JOB, job_id=2, time_limit_min=600)]
    view = build_view(FAB, NODES, jobs, now=NOW, reservations=([MAINT], {}))
    excl = {p.job.id: p.job.request.exclude for p in view.pending}
    assert excl["1"] is None and set(expand(excl["2"])) == SOON


def test_the_json_answers_of_both_families_decode() -> None:
    new = {"reservations": [{"name": "maint", "node_list": "n[1-2]", "flags": ["MAINT", "SPEC_NODES"],
                             "start_time": {"set": True, "infinite": False, "number": 1_800_007_200},
                             "end_time": {"set": True, "infinite": False, "number": 1_800_014_400}}],
           "errors": [], "warnings": []}
    old = {"reservations": [{"name": "maint", "node_list": "n[1-2]", "flags": ["MAINT"],
                             "start_time": 1_800_007_200, "end_time": 1_800_014_400}], "errors": []}
    for data in (new, old):
        [r], ignored = resv.json_answer(data, "test")
        assert (r.name, r.start, r.end, r.nodes, ignored) == ("maint", 1_800_007_200, 1_800_014_400,
                                                              ("n1", "n2"), {})
        assert "MAINT" in r.flags
    forever = {"reservations": [{"name": "x", "node_list": "n1", "start_time": 5,
                                 "end_time": {"set": True, "infinite": True, "number": 0}}]}
    assert resv.json_answer(forever, "test")[0][0].end == resv.FOREVER
    assert resv.json_answer({"errors": []}, "test") == ([], {})


def test_records_slurm_cannot_be_trusted_with_are_ignored_with_the_reason() -> None:
    good = {"name": "ok", "node_list": "n1", "start_time": 10, "end_time": 20}
    data = {"reservations": [good, {"name": "nostart", "node_list": "n1", "end_time": 20},
                             {"name": "backwards", "node_list": "n1", "start_time": 30, "end_time": 20},
                             {"name": "badnodes", "node_list": "n[1-", "start_time": 10, "end_time": 20},
                             {"name": "strtime", "node_list": "n1", "start_time": "soon", "end_time": 20},
                             {"node_list": "n1", "start_time": 10, "end_time": 20}, "junk"]}
    found, ignored = resv.json_answer(data, "test")
    assert [r.name for r in found] == ["ok"]
    assert set(ignored) == {"nostart", "backwards", "badnodes", "strtime", "record 6", "record 7"}
    assert "no usable start time" in ignored["nostart"] and "before it starts" in ignored["backwards"]
    assert "malformed node list" in ignored["badnodes"] and "'start_time'" in ignored["strtime"]
    assert all(why.endswith("ignored") for why in ignored.values())
    view = _view(JOB, found, ignored)
    assert view.ignored_reservations == ignored


def test_the_text_answer_decodes() -> None:
    start = dt.datetime(2027, 1, 15, 12, 0, 0)
    line = (f"ReservationName=maint StartTime={start.isoformat()} EndTime=2027-01-15T14:00:00 "
            "Duration=02:00:00 Nodes=n[1-2] NodeCnt=2 CoreCnt=16 Features=(null) PartitionName=(null) "
            "Flags=MAINT,SPEC_NODES TRES=cpu=16 Users=root Groups=(null) Accounts=(null) Licenses=(null) "
            "State=INACTIVE BurstBuffer=(null) MaxStartDelay=(null)")
    [r], ignored = resv.text_answer(line + "\n")
    assert (r.name, r.start, r.end - r.start, r.nodes, r.flags) == (
        "maint", start.timestamp(), 7200.0, ("n1", "n2"), ("MAINT", "SPEC_NODES"))
    assert resv.text_answer("No reservations in the system\n") == ([], {})
    found, ignored = resv.text_answer("ReservationName=bad StartTime=whenever EndTime=2027-01-15T14:00:00 "
                                      "Nodes=n1\n")
    assert not found and "unreadable time 'whenever'" in ignored["bad"]


def test_pyslurm_reservations_decode() -> None:
    flag = SimpleNamespace(name="MAINTENANCE")
    r = SimpleNamespace(name="maint", start_time=100, end_time=200, nodes="n[1-2]", flags=[flag])
    bad = SimpleNamespace(name="bad", start_time="x", end_time=200, nodes="n1", flags=[])
    found, ignored = resv.pyslurm_answer([r, bad])
    assert found == [Reservation(name="maint", start=100.0, end=200.0, nodes=("n1", "n2"),
                                 flags=("MAINT",))]  # Slurm's name (pyslurm's MAINTENANCE)
    assert "pyslurm answered times" in ignored["bad"]


def test_every_backend_declares_the_capability() -> None:
    assert all(issubclass(c, ReadsReservations) for c in (CliClient, RestClient, PyslurmClient))


def test_scontrol_job_text_gives_the_time_limit() -> None:
    """``fabric slurm why`` reads one job from ``scontrol show job -d -o``: its time limit too."""
    from fabric_hpc.slurm.cli_backend import job_from_scontrol

    line = "JobId=7 JobName=x JobState=PENDING Reason=None TimeLimit={}"
    assert [job_from_scontrol(line.format(t)).time_limit_min
            for t in ("02:00:00", "1-00:00:00", "00:10:00", "UNLIMITED", "Partition_Limit")] == [
        120, 1440, 10, None, None]


def test_the_agent_reads_them_each_cycle_and_says_once_what_it_ignored(tmp_path) -> None:
    """A recorded cluster (the replay client) with a reservation a minute ahead on n1-n8 and one record
    Slurm answered without a start: no gang goes to n1-n8, and the ignored record is noted once."""
    import json

    from fabric_hpc.events import read_json_lines
    from fabric_hpc.slurm import audit
    from fabric_hpc.slurm.agent import Agent, AgentConfig
    from fabric_hpc.slurm.replay import ReplayClient, scale_recording
    from tests.slurm_integration.test_agent_replay import VERSIONS, recorded

    t0 = 1796313800.0
    answer = json.dumps({"reservations": [
        {"name": "maint", "node_list": "n[1-8]", "flags": ["MAINT"], "start_time": t0 + 60,
         "end_time": t0 + 3660},
        {"name": "broken", "node_list": "n9", "end_time": t0 + 3660}]})

    class Recorded(ReplayClient):
        def reservations(self) -> resv.Read:
            return resv.json_answer(json.loads(answer), "recorded reservations")

    nodes, jobs = scale_recording(*recorded(VERSIONS[-1]), FAB.hosts, pending=30, busy_fraction=0.2)
    agent = Agent(Recorded(nodes, jobs), FAB, AgentConfig(state_dir=str(tmp_path), usage_source="ledger"))
    started = [*agent.cycle(now=t0).started, *agent.cycle(now=t0 + 1).started]
    assert started and not {h for s in started for h in s["hosts"]} & {f"n{i}" for i in range(1, 9)}
    notes = [e for e in read_json_lines(tmp_path / audit.AUDIT_LOG)
             if e["event"] == "agent.reservations_ignored"]
    assert len(notes) == 1 and "no usable start time" in notes[0]["reservations"]["broken"]
    assert json.loads((tmp_path / "status.json").read_text())["upcoming_reservations"] == 1


def test_why_names_the_hosts_kept_off_for_a_reservation_to_come() -> None:
    import time

    from fabric_hpc.slurm.why import _upcoming_lines

    now = time.time()

    class Answers:  # a client that answers reservations only (what _upcoming_lines asks)
        def reservations(self) -> resv.Read:
            return [replace(MAINT, start=now + 3 * 86400, end=now + 4 * 86400)], {}

    [line] = _upcoming_lines(Answers(), replace(JOB, time_limit_min=None))  # type: ignore[arg-type]
    assert line.startswith("The fabric agent keeps it off n[1-4]: reservation maint starts there at 20")
    assert "and it has no time limit" in line
    assert _upcoming_lines(Answers(), replace(JOB, time_limit_min=60)) == []  # type: ignore[arg-type]
