"""`fabric slurm why` said untrue things in an admin's live tests (probe 5): a requeued gang's leftover
ReqNodeList read as a live pin ("Slurm starts it as soon as those GPUs are free" while its begin time was
two minutes ahead and its hosts were another job's, or down); a failed dependency whose reason the agent's
deferral had reset to None read as "unfulfilled" (22.05); a pinned gang held back by licenses, a
completing spot victim's still-completing node read as "Slurm ran it on", and a policy reason from before
the pin. Live: tests/slurm_integration/test_why_probe_fixes_live.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.events import JsonLinesWriter, make_event
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.slurm.why import dependency_failed, explain

NODES = [Node(name=f"n{i}", state="idle", cpus=8, gpus=8) for i in range(1, 17)]


class _One:
    """A client that knows one job and the nodes; counts what why reads."""

    def __init__(self, job: Job, nodes: list[Node] = NODES) -> None:
        self._job, self._nodes, self.reads = job, nodes, []

    def job(self, job_id: int) -> Job:
        self.reads.append("job")
        return self._job

    def nodes(self) -> list[Node]:
        self.reads.append("nodes")
        return self._nodes


def gang(job_id: int, **kw: Any) -> Job:
    fields = {"name": f"g{job_id}", "state": "PENDING", "comment": "fabric", "nodes": 2, "gpus_per_node": 8,
              "submit_time": time.time() - 100, **kw}
    return Job(job_id=job_id, **fields)


def audit(tmp_path: Path, *events: tuple[str, float, dict[str, Any]]) -> Path:
    log = JsonLinesWriter(tmp_path / "decisions.jsonl")
    for name, ts, fields in events:
        log.write({**make_event(name, **fields), "ts": ts})
    log.close()
    return tmp_path


def _busy(*hosts: str) -> list[Node]:
    return [Node(name=n.name, state="allocated", cpus=8, gpus=8, gpus_used=tuple(range(8)))
            if n.name in hosts else n for n in NODES]


def _why(job: Job, state: Path, nodes: list[Node] = NODES) -> tuple[str, list[str]]:
    client = _One(job, nodes)
    return explain(client, job.job_id, state_dir=state)["text"], client.reads  # type: ignore[arg-type]


# -- 5: a requeued job's leftover pin -----------------------------------------------------------------


def test_a_requeued_pinned_job_waits_for_its_begin_time_not_for_its_old_hosts(tmp_path: Path) -> None:
    """`scontrol requeue R` of a running fabric gang on n[1-2]: BeginTime 2 min ahead, ReqNodeList left,
    another gang took n[1-14]. Before: "The fabric agent pinned it to n[1-2]; Slurm starts it as soon as
    those GPUs are free", and the agent's BeginTime read as fabric's own deferral."""
    now = time.time()
    state = audit(tmp_path, ("agent.place", now - 30, {"job": 17, "hosts": ["n1", "n2"]}),
                  ("agent.waiting", now - 5, {"jobs": {"17": "BeginTime"}}))
    job = gang(17, reason="BeginTime", req_nodes=("n1", "n2"), begin_time=now + 120)
    text, reads = _why(job, state, _busy(*(f"n{i}" for i in range(1, 15))))
    assert "It may not start before" in text and "Slurm's delay after a requeue" in text, text
    assert "the pin to n[1-2] it still carries is from before (other jobs hold GPUs it needs on n[1-2])" \
        in text, text
    assert "places it once that time has come, not necessarily there" in text, text
    assert "as soon as those GPUs are free" not in text and "fabric defers a job this way" not in text, text
    assert "its own begin time (--begin, or Slurm's delay after a requeue) has not come" in text, text
    assert reads == ["job", "nodes"]


def test_a_requeued_pinned_job_on_a_down_node_says_the_node_is_down(tmp_path: Path) -> None:
    """`scontrol update NodeName=n1 State=DOWN` of a running gang: Slurm requeues it, pin left on n[1-2]."""
    now = time.time()
    state = audit(tmp_path, ("agent.waiting", now - 5, {"jobs": {"18": "BeginTime"}}))
    nodes = [Node(name="n1", state="down", cpus=8, gpus=8), *NODES[1:]]
    text, _ = _why(gang(18, reason="BeginTime", req_nodes=("n1", "n2"), begin_time=now + 120), state, nodes)
    assert "the pin to n[1-2] it still carries is from before (n1 is down)" in text, text
    assert "as soon as those GPUs are free" not in text, text


def test_a_pin_on_down_or_busy_hosts_is_not_called_a_pin_that_starts_it(tmp_path: Path) -> None:
    now = time.time()
    drained = [Node(name="n1", state="idle", flags=("DRAIN",), cpus=8, gpus=8),
               Node(name="n2", state="down", flags=("NOT_RESPONDING",), cpus=8, gpus=8), *NODES[2:]]
    job = gang(15, reason="None", req_nodes=("n1", "n2"), begin_time=now - 5)
    text, _ = _why(job, tmp_path, drained)
    said = "pinned it to n[1-2], but n1 is idle+drain, n2 is down+not responding: Slurm cannot start it there"
    assert said in text, text
    assert "places it on other hosts at its next cycle" in text, text
    text, _ = _why(job, tmp_path, _busy("n2"))
    assert "but other jobs hold GPUs it needs on n2: Slurm starts it there once they are free" in text, text
    text, reads = _why(job, tmp_path)  # all free: as before
    assert "pinned it to n[1-2]; Slurm starts it as soon as those GPUs are free" in text, text
    assert reads == ["job", "nodes"]
    _, reads = _why(gang(16, begin_time=now + 30), tmp_path)  # no pin: no nodes read
    assert reads == ["job"]


# -- 6: a failed dependency whose reason reads None --------------------------------------------------


def test_a_failed_dependency_with_reason_none_can_never_start(tmp_path: Path) -> None:
    """22.05: after the agent's deferral renewal Slurm's reason reads None, Dependency=afterok:12(failed).
    Before: "while its dependency is unfulfilled… once it is satisfied"."""
    job = gang(13, reason="None", priority=9, dependency="afterok:12(failed)", begin_time=time.time() + 60)
    text, _ = _why(job, tmp_path)
    never = "as its dependency can never be satisfied (afterok:12(failed): job 12 did not complete"
    assert never in text, text  # before (test_why_dependency_words.py): "a job it depends on failed"
    assert "only if its dependency is changed (scontrol update JobId=13 Dependency=...)" in text, text
    assert "unfulfilled" not in text and "once it is satisfied" not in text, text
    text, _ = _why(gang(9, reason="None", priority=9, dependency="afterok:8(unfulfilled)"), tmp_path)
    assert "while its dependency is unfulfilled" in text, text


@pytest.mark.parametrize("dependency, never", [
    ("afterok:12(failed)", True), ("afterok:12(unfulfilled),afterany:13(failed)", True),
    ("afterok:12(failed)?afterok:13(unfulfilled)", False), ("afterok:12(failed)?afterok:13(failed)", True),
    ("afterok:12(unfulfilled)", False), ("", False),
])
def test_dependency_failed_reads_all_of_and_any_of_lists(dependency: str, never: bool) -> None:
    assert dependency_failed(dependency) is never


# -- 7: licenses, completing victims, older policy reasons ------------------------------------------


@pytest.mark.parametrize("reason, says", [
    ("Licenses", "it waits for licenses (--licenses) that other jobs hold"),
    ("BurstBufferStageIn", "it waits for its burst buffer to be staged in"),
    ("Cleaning", "Slurm is still cleaning up its previous run (after a requeue)"),
])
def test_a_pinned_job_held_back_by_licenses_does_not_wait_for_gpus(tmp_path: Path, reason: str, says: str
                                                                  ) -> None:
    job = gang(15, reason=reason, req_nodes=("n2", "n3"), begin_time=time.time() - 5)
    text, _ = _why(job, tmp_path)
    assert f"is pending: {says}." in text, text  # Slurm's reason in words, not "Licenses"
    assert "pinned it to n[2-3], but free GPUs there do not start it: Slurm waits until its reason" \
        in text, text
    assert "pin_timeout_s" in text and "as soon as those GPUs are free" not in text, text


def test_a_completing_spot_victim_is_not_said_to_have_run_elsewhere(tmp_path: Path) -> None:
    """Before: "Job 1 (1 node(s) × 8 GPU(s)) is completing on n13. The fabric agent chose n[13-16] …, but
    Slurm ran it on n13": Slurm lists (and counts in -N) only the nodes still completing."""
    place = {"job": 1, "hosts": ["n13", "n14", "n15", "n16"], "solver": "greedy", "cost": 11.23}
    state = audit(tmp_path, ("agent.place", time.time() - 60, place))
    job = gang(1, state="COMPLETING", nodes=1, node_list=("n13",))
    text, reads = _why(job, state)
    assert text.startswith("Job 1 (4 node(s) × 8 GPU(s)) is completing (still finishing on n13)."), text
    assert "The fabric agent chose n[13-16]" in text and "ran it on" not in text, text
    assert reads == ["job"]
    text, _ = _why(gang(1, state="COMPLETING", nodes=1, node_list=("n2",)), state)
    assert "but it is completing on n2, which the agent did not choose" in text, text
    text, _ = _why(gang(1, state="RUNNING", nodes=4, node_list=("n1", "n2", "n3", "n4")), state)
    assert "but Slurm ran it on n[1-4]" in text, text


def test_a_policy_reason_from_before_the_pin_is_not_shown(tmp_path: Path) -> None:
    now = time.time()
    state = audit(tmp_path, ("agent.waiting", now - 20, {"jobs": {"15": "Resources"}}),
                  ("agent.place", now - 10, {"job": 15, "hosts": ["n1", "n2"]}))
    job = gang(15, reason="None", req_nodes=("n1", "n2"), begin_time=now - 10)
    text, _ = _why(job, state)
    assert "policy said" not in text, text
    audit(tmp_path, ("agent.waiting", now - 20, {"jobs": {"15": "Resources"}}),
          ("agent.place", now - 10, {"job": 15, "hosts": ["n1", "n2"]}),
          ("agent.waiting", now - 2, {"jobs": {"15": "Priority"}}))
    text, _ = _why(job, state)
    assert "the agent's policy said: other jobs have higher priority and go first" in text, text
