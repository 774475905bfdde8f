"""An admin operating the agent live (probe 4), both tiers: a restart keeps the agent's deferrals, a
reinstall with another fallback and a purge of the state dir while the agent runs are caught, SIGHUP
reopens the decision log (logrotate). Unit tests: tests/slurm/test_agent_ops.py."""

from __future__ import annotations

import signal
import time

import pytest

from fabric_hpc.events import read_json_lines
from tests.slurm_integration.conftest import FALLBACK_S

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _since_start(agent) -> list[dict]:
    """The audit records of the agent started last."""
    records = list(read_json_lines(agent.state_dir / "decisions.jsonl"))
    starts = [i for i, e in enumerate(records) if e["event"] == "agent.start"]
    return records[starts[-1]:] if starts else []


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _eligible(cluster, job: int) -> float:
    text = cluster.job(job).get("EligibleTime", "")
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S")) if text[:1].isdigit() else 0.0


def test_a_gang_deferred_by_a_killed_agent_is_placed_by_the_restarted_one(fabric_cluster, agent):
    """kill -9 the agent just after it renewed a waiting gang's deferral: the restarted agent knows that
    begin time as its own (deferrals.json), does not wait for it as for a --begin, and places the gang
    once the GPUs are free. Before, its first cycles said BeginTime and the gang sat on idle GPUs."""
    agent.start()
    big = fabric_cluster.sbatch("-N16", "--gres=gpu:8", "--comment=fabric", wrap="sleep 300")
    fabric_cluster.wait_job(big, states=("RUNNING",), timeout=60)
    gang = fabric_cluster.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 1")
    submitted = time.time()
    _wait(lambda: _eligible(fabric_cluster, gang) > submitted + FALLBACK_S + 2
          and _eligible(fabric_cluster, gang) - time.time() > FALLBACK_S - 2.5, 40,
          "the agent renews the deferral")
    assert agent.stop(signal.SIGKILL) == -signal.SIGKILL
    agent.start()  # its first cycle done
    agent.wait_cycles(2)
    waiting = [e["jobs"][str(gang)] for e in _since_start(agent)
               if e["event"] == "agent.waiting" and str(gang) in e["jobs"]]
    assert waiting and "BeginTime" not in waiting, waiting
    fabric_cluster.run(["scancel", str(big)])
    cycles = agent.cycles()
    _wait(lambda: [e for e in _since_start(agent) if e["event"] == "agent.place" and e["job"] == gang], 30,
          "the restarted agent places the gang")
    assert agent.cycles() - cycles <= 6  # a few cycles after the GPUs freed, not the deferral's end
    fabric_cluster.wait_job(gang, states=("RUNNING", "COMPLETING", "COMPLETED"), timeout=30)
    assert not [e for e in _since_start(agent) if e["event"] == "agent.deferrals_ignored"]


def test_sighup_reopens_the_decision_log_after_logrotate_moved_it(fabric_cluster, agent):
    """logrotate (create mode) renames decisions.jsonl and sends HUP: the agent lives on, logs
    agent.logs_reopened into the new file and goes on writing there. Before, HUP ended it (exit 129, no
    agent.stop record)."""
    agent.start()
    log = agent.state_dir / "decisions.jsonl"
    moved = agent.state_dir / "decisions.jsonl.rotated-by-test"
    moved.unlink(missing_ok=True)
    log.rename(moved)
    log.touch(mode=0o640)  # logrotate's `create`
    agent.proc.send_signal(signal.SIGHUP)
    _wait(lambda: any(e["event"] == "agent.logs_reopened" for e in read_json_lines(log)), 20,
          f"agent.logs_reopened in the new log; agent {agent.proc.poll()}: {agent.log()}")
    cycles = agent.cycles()
    agent.wait_cycles(cycles + 2)
    job = fabric_cluster.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 1")
    _wait(lambda: any(e["event"] == "agent.place" and e["job"] == job for e in read_json_lines(log)), 30,
          "the next decisions go to the new file")
    assert agent.stop() == 0
    assert [e["event"] for e in read_json_lines(log)][-1] == "agent.stop"
    before = list(read_json_lines(moved))
    assert before and before[-1]["event"] != "agent.stop"
    assert not [e for e in before if e["event"] == "agent.place" and e["job"] == job]
    moved.unlink()
