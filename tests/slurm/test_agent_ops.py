"""An admin operating the agent live (probe 4): its deferrals survive a restart, a reinstall with another
fallback and a purge of its state dir while it runs are caught, ``why`` does not blame Slurm for a decision
older than the log's part it read, SIGHUP reopens the decision log. Live: tests/slurm_integration/
test_agent_ops_live.py."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fabric_hpc.slurm.contract import Job
from fabric_hpc.slurm.deferral_store import DEFERRALS_FILE
from tests.slurm.test_agent_actions import Fake, agent, events, gang

FALLBACK = 60


def _blocker() -> Job:
    hosts = tuple(f"n{i}" for i in range(1, 17))
    now = time.time()
    return Job(job_id=1, name="big", state="RUNNING", comment="fabric", nodes=16, gpus_per_node=8,
               node_list=hosts, gpus={h: tuple(range(8)) for h in hosts}, submit_time=now - 300,
               start_time=now - 300)


def _deferred_once(tmp_path: Path) -> tuple[Fake, Job]:
    """A gang deferred by an agent (its begin time renewed: no longer submit + fallback), the agent gone."""
    now = time.time()
    waiting = replace(gang(7), submit_time=now - 50, begin_time=now + 10)  # the plugin's deferral, nearly run out
    client = Fake([_blocker(), waiting])
    first = agent(tmp_path, client, fallback_s=FALLBACK, interval_s=0.01)
    first.run(max_cycles=1)
    until = first.actions.deferrals[7]
    assert until > now + 50  # renewed: now + fallback
    return client, replace(waiting, begin_time=until)  # as Slurm keeps it


def test_a_restarted_agent_knows_its_own_renewed_deferral_and_places_the_gang(tmp_path: Path) -> None:
    client, waiting = _deferred_once(tmp_path)
    client._jobs = [waiting]  # the GPUs freed while no agent ran
    second = agent(tmp_path, client, fallback_s=FALLBACK, interval_s=0.01)
    second.run(max_cycles=1)
    assert json.loads((tmp_path / "status.json").read_text())["started"] == [7]
    assert not [e for e in events(tmp_path) if e["event"] == "agent.waiting" and
                e["jobs"].get("7") == "BeginTime"]


def test_the_deferrals_file_drops_jobs_gone_and_a_corrupt_one_is_ignored_once(tmp_path: Path) -> None:
    client, waiting = _deferred_once(tmp_path)
    assert "7" in json.loads((tmp_path / DEFERRALS_FILE).read_text())["jobs"]
    client._jobs = [_blocker()]  # job 7 ended
    agent(tmp_path, client, fallback_s=FALLBACK, interval_s=0.01).run(max_cycles=1)
    assert json.loads((tmp_path / DEFERRALS_FILE).read_text())["jobs"] == {}
    for bad in ("{not json", json.dumps({"format": "other", "jobs": {}}), json.dumps([1, 2]),
                json.dumps({"format": "fabric-agent-deferrals/1", "jobs": {"7": {"asked": ["x"]}}})):
        (tmp_path / DEFERRALS_FILE).write_text(bad)
        client._jobs = [_blocker(), waiting]
        a = agent(tmp_path, client, fallback_s=FALLBACK, interval_s=0.01)
        a.run(max_cycles=1)  # no crash
        ignored = [e for e in events(tmp_path) if e["event"] == "agent.deferrals_ignored"]
        assert ignored and ignored[-1]["file"] == str(tmp_path / DEFERRALS_FILE)
        assert json.loads((tmp_path / DEFERRALS_FILE).read_text())["jobs"]["7"]  # rewritten, whole
    assert len([e for e in events(tmp_path) if e["event"] == "agent.deferrals_ignored"]) == 4


def test_install_knows_the_agents_deferrals_file_as_its_own() -> None:
    from fabric_hpc.slurm.manifest import is_state_entry

    assert is_state_entry(DEFERRALS_FILE)
