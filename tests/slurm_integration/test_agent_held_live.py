"""Held gangs on a live Slurm (sbatch -H, scontrol hold): the agent neither pins them nor keeps GPUs for
them, so the next gang starts on the free hosts; a pin set before the hold is cleared, and a released
job is placed by the agent."""

from __future__ import annotations

import time

import pytest

from fabric_hpc.events import read_json_lines
from fabric_hpc.hostlist import compress, expand

pytestmark = [pytest.mark.slurm]


def _until(predicate, what: str, agent, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}\n{agent.log()}"
        time.sleep(0.2)


def _decisions(agent, event: str, job: int) -> list[dict]:
    return [e for e in read_json_lines(agent.state_dir / "decisions.jsonl")
            if e["event"] == event and e.get("job") == job]


def _held(info: dict) -> bool:
    return info["JobState"] == "PENDING" and info["Priority"] == "0" and info["Reason"].startswith("JobHeld")


def test_a_held_gang_leaves_the_free_hosts_to_the_next_gang(fabric_cluster, agent):
    c = fabric_cluster
    agent.extra = ("--compact-wait", "0")
    agent.start()
    busy = c.sbatch("-N14", "--gres=gpu:8", "--comment=fabric", wrap="sleep 300")
    c.wait_job(busy, states=("RUNNING",), timeout=30)
    held = c.sbatch("-H", "-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 300")
    agent.wait_cycles(agent.cycles() + 3)  # the agent saw the held gang (before: pinned it to the free hosts)
    second = c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 300")
    info = c.wait_job(second, states=("RUNNING",), timeout=30)
    free = set(expand(info["NodeList"]))
    assert not free & set(expand(c.job(busy)["NodeList"]))
    placed = _decisions(agent, "agent.place", second)
    assert placed and set(placed[-1]["hosts"]) == free, agent.log()
    state = c.job(held)
    assert _held(state) and state["ReqNodeList"] in ("(null)", ""), state
    assert not _decisions(agent, "agent.place", held)


def test_a_pinned_gang_that_is_held_is_unpinned_and_placed_once_released(fabric_cluster, agent, slurm_fabric):
    c = fabric_cluster
    jid = c.sbatch("-H", "-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 300")
    pin = compress(list(slurm_fabric.hosts[:2]))
    c.run(["scontrol", "update", f"JobId={jid}", f"ReqNodeList={pin}"])  # as the agent's pin before the hold
    assert c.job(jid)["ReqNodeList"] not in ("(null)", "")
    agent.remember_pin(jid, pin)
    agent.start()
    _until(lambda: c.job(jid)["ReqNodeList"] in ("(null)", ""), "the held job's pin was not cleared", agent)
    info = c.job(jid)
    assert _held(info), info  # still held: the update did not release it
    assert [e["reason"] for e in _decisions(agent, "agent.unpin", jid)][:1] == ["held"]
    c.run(["scontrol", "release", str(jid)])
    info = c.wait_job(jid, states=("RUNNING",), timeout=30)
    placed = _decisions(agent, "agent.place", jid)
    assert placed and set(placed[-1]["hosts"]) == set(expand(info["NodeList"])), agent.log()
