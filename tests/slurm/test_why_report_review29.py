"""What `fabric slurm why` and `fabric slurm report` told admins, from a review: a pinned job waiting for
its reservation, a constraint or a down node was said to wait for GPUs other jobs hold; an idle host with
fewer GPUs in Slurm than the job asks per node read as held by other jobs; one audit record with a ``ts``
far off (1e18) stopped the report (a raw OSError) and ``why`` (as did a hold ``until`` or a reserved start
out of range); a decision of days ago showed only its time of day. Each test failed before its fix."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from fabric_hpc.slurm import report
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.slurm.why import explain


class _One:
    """A client that knows one job and the nodes."""

    backend = "fake"

    def __init__(self, job: Job, nodes: list[Node]) -> None:
        self._job, self._nodes = job, nodes

    def job(self, job_id: int) -> Job:
        return self._job

    def nodes(self) -> list[Node]:
        return self._nodes


def _pinned(reason: str, **kw: object) -> Job:
    fields = {"name": "x", "state": "PENDING", "reason": reason, "comment": "fabric", "nodes": 1,
              "gpus_per_node": 4, "req_nodes": ("n1",), "submit_time": time.time() - 60, **kw}
    return Job(job_id=42, **fields)  # type: ignore[arg-type]


def _why(job: Job, nodes: list[Node], state: Path | None = None) -> str:
    return str(explain(_One(job, nodes), job.job_id, state_dir=state)["text"])  # type: ignore[arg-type]


def _log(d: Path, *records: dict[str, object]) -> Path:
    (d / "decisions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return d


MIXED = [Node(name="n1", state="mixed", gpus=8, gpus_used=(0, 1, 2, 3, 4))]


@pytest.mark.parametrize(("reason", "extra", "said"), [
    ("Reservation", {"reservation": "maint"}, "the job waits for its reservation"),
    ("Constraints", {}, "they lack a feature the job asks for"),
    ("NodeDown", {}, "one of them is down"),
])
def test_a_pinned_job_refused_its_hosts_for_another_reason_is_not_said_to_wait_for_gpus(
        reason: str, extra: dict[str, object], said: str) -> None:
    text = _why(_pinned(reason, **extra), MIXED)
    assert "other jobs hold GPUs" not in text
    assert f"The fabric agent pinned it to n1, but Slurm does not start it there: {said}" in text


def test_req_node_not_avail_on_hosts_other_jobs_hold_still_says_so() -> None:
    text = _why(_pinned("ReqNodeNotAvail, UnavailableNodes:n1"), MIXED)
    assert "The fabric agent pinned it to n1, but other jobs hold GPUs it needs on n1: Slurm does not" in text


def test_an_idle_host_with_fewer_gpus_in_slurm_than_asked_is_not_said_to_be_held() -> None:
    job = _pinned("Resources", nodes=2, gpus_per_node=8, req_nodes=("n1", "n2", "n3"))
    nodes = [Node(name="n1", state="idle", gpus=4), Node(name="n2", state="idle", gpus=4),
             Node(name="n3", state="idle", gpus=8)]
    text = _why(job, nodes)
    assert "other jobs hold" not in text
    assert ("but n[1-2] have only 4 GPUs in Slurm each (the job asks 8 per node): Slurm cannot start it "
            "there") in text
    text = _why(job, [nodes[0], Node(name="n2", state="idle", gpus=8), nodes[2]])
    assert "but n1 has only 4 GPUs in Slurm (the job asks 8 per node)" in text


def test_a_record_with_a_time_far_off_is_damaged_not_fatal(tmp_path: Path) -> None:
    now = time.time()
    _log(tmp_path, {"ts": now, "event": "agent.start", "config": {"tier_map": []}},
         {"ts": 1e18, "event": "agent.place", "job": 7, "hosts": ["n1"], "cost": 1.0, "solver": "x"},
         {"ts": -5.0, "event": "agent.place", "job": 8, "hosts": ["n1"], "cost": 1.0, "solver": "x"},
         {"ts": now, "event": "agent.place", "job": 9, "hosts": ["n1"], "cost": 1.0, "solver": "x"})
    log = report.read_agent_log(tmp_path)
    assert log.damaged == 2 and sorted(log.placed) == [9]
    job = Job(job_id=7, name="x", state="RUNNING", comment="fabric", nodes=1, gpus_per_node=8,
              node_list=("n1",), submit_time=now - 60)
    text = _why(job, [Node(name="n1", state="allocated", gpus=8)], tmp_path)
    assert "The fabric agent chose" not in text


def test_a_hold_or_reservation_time_out_of_range_is_shown_as_a_number(tmp_path: Path) -> None:
    now = time.time()
    (tmp_path / "decisions.jsonl").write_text(
        json.dumps({"ts": now, "event": "agent.waiting", "jobs": {"42": "Topology"},
                    "holds": {"42": {"until": 1e18, "domains": 2, "level": "nvlink"}}}) + "\n"
        + '{"ts": %r, "event": "agent.waiting", "jobs": {"43": "Resources"}, '
          '"reserved": {"43": {"start": Infinity, "hosts": 2, "after": [1]}}}\n' % now)
    nodes = [Node(name="n1", state="idle", gpus=8)]
    text = _why(Job(job_id=42, name="x", state="PENDING", reason="Resources", comment="fabric", nodes=2,
                    gpus_per_node=8, submit_time=now - 60), nodes, tmp_path)
    assert "until 1e+18 s after 1970 (not a time this system can show) (its compact_wait_s hold)" in text
    text = _why(Job(job_id=43, name="x", state="PENDING", reason="Resources", comment="fabric", nodes=2,
                    gpus_per_node=8, submit_time=now - 60), nodes, tmp_path)
    assert "expected to start by inf s after 1970 (not a time this system can show) on 2 hosts" in text
    from fabric_hpc.slurm.audit import clock

    assert clock(1e18, "%Y-%m-%d %H:%M:%S UTC", utc=True).startswith("1e+18 s after 1970")


def test_a_decision_of_days_ago_says_its_date(tmp_path: Path) -> None:
    now = time.time()
    then = now - 3 * 86400
    _log(tmp_path, {"ts": then, "event": "agent.place", "job": 7, "hosts": ["n1"], "cost": 1.0,
                    "solver": "x"})
    job = Job(job_id=7, name="x", state="RUNNING", comment="fabric", nodes=1, gpus_per_node=8,
              node_list=("n1",), submit_time=then - 60)
    text = _why(job, [Node(name="n1", state="allocated", gpus=8)], tmp_path)
    stamp = dt.datetime.fromtimestamp(then).strftime("%Y-%m-%d %H:%M:%S")
    assert f"The fabric agent chose n1 at {stamp} (solver x" in text
