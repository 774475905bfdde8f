"""A ``qos:`` tier mapping still applies once the job runs: Slurm 25.11 without slurmdbd shows the QOS of
a pending job but none of a running one, so the agent keeps the QOS it read while the job was pending
(``<state_dir>/qos.json``, kept across restarts). Live: tests/slurm_integration/test_qos_memory_live.py."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.contract import Job
from fabric_hpc.slurm.qos_store import QOS_FILE, QosMemory
from tests.slurm.test_agent_actions import FAB, Fake, gang

TIER_MAP = ["qos:scav=spot"]


def _agent(tmp_path: Path, client: Fake) -> Agent:
    return Agent(client, FAB, AgentConfig(state_dir=str(tmp_path), tier_map=TIER_MAP, interval_s=0.1))


def _started(client: Fake) -> None:
    """Slurm starts the pinned gangs, and (25.11 without slurmdbd) forgets their QOS."""
    now = time.time()
    client._jobs = [replace(j, state="RUNNING", qos="", node_list=j.req_nodes, start_time=now,
                            time_limit_min=1440, gpus={h: tuple(range(8)) for h in j.req_nodes})
                    for j in client._jobs]


def _high(job_id: int) -> Job:
    now = time.time()
    return replace(gang(job_id), comment="fabric:tier=high", submit_time=now, begin_time=now + 60)


def test_a_qos_mapped_spot_job_stays_spot_once_running(tmp_path: Path) -> None:
    client = Fake([replace(gang(j), qos="scav") for j in (1, 2)], hosts=4)
    a = _agent(tmp_path, client)
    assert sorted(s["job"] for s in a.cycle().started) == [1, 2]
    _started(client)
    client._jobs.append(_high(3))
    res = a.cycle()
    assert len(res.requeued) == 1 and res.requeued[0] in (1, 2)  # a spot victim for the high gang
    assert json.loads((tmp_path / QOS_FILE).read_text())["jobs"] == {"1": "scav", "2": "scav"}


def test_the_qos_is_kept_across_a_restart(tmp_path: Path) -> None:
    client = Fake([replace(gang(j), qos="scav") for j in (1, 2)], hosts=4)
    _agent(tmp_path, client).cycle()  # read while pending, then the agent stops
    _started(client)
    client._jobs.append(_high(3))
    restarted = _agent(tmp_path, client)
    restarted.run(max_cycles=1)
    log = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [e["job"] for e in log if e["event"] == "agent.requeue"] in ([1], [2])


def test_the_memory_follows_slurm_and_forgets_ended_jobs(tmp_path: Path) -> None:
    memory = QosMemory(tmp_path)
    pending = [replace(gang(1), qos="scav"), replace(gang(2), qos="urgent"), gang(3)]
    assert [j.qos for j in memory.fill(pending)] == ["scav", "urgent", ""]
    running = [replace(gang(1), state="RUNNING"), replace(gang(3), state="RUNNING")]  # 2 ended
    assert [j.qos for j in memory.fill(running)] == ["scav", ""]
    memory.save()
    again = QosMemory(tmp_path)
    assert again.load() is None and again.jobs == {1: "scav"}
    changed = [replace(gang(1), qos="normal")]  # scontrol update QOS= while pending: Slurm's answer wins
    assert [j.qos for j in again.fill(changed)] == ["normal"]


def test_a_damaged_file_is_ignored_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / QOS_FILE).write_text("{not json")
    memory = QosMemory(tmp_path)
    assert "damaged" in (memory.load() or "") and memory.jobs == {}
    (tmp_path / QOS_FILE).write_text(json.dumps({"format": "other", "jobs": {}}))
    assert "not a fabric agent QOS file" in (memory.load() or "")


def test_the_report_shows_the_tier_of_the_remembered_qos(tmp_path: Path) -> None:
    from fabric_hpc.slurm.report import build, read_agent_log

    client = Fake([replace(gang(j), qos="scav") for j in (1, 2)], hosts=4)
    _agent(tmp_path, client).cycle()
    _started(client)
    out = build(FAB, client.nodes(), client.jobs(), now=time.time(), agent=read_agent_log(tmp_path))
    assert {r["job"]: r["tier"] for r in out.data["running"]} == {"1": "spot", "2": "spot"}


def test_install_takes_the_qos_file_for_the_agents_own(tmp_path: Path) -> None:
    from fabric_hpc.slurm.manifest import is_state_entry

    memory = QosMemory(tmp_path)
    memory.fill([replace(gang(1), qos="scav")])
    memory.save()
    assert [p.name for p in tmp_path.iterdir()] == [QOS_FILE] and is_state_entry(QOS_FILE)
