"""`fabric slurm why` for a gang the agent's policy holds for a compact placement (reason
``Topology``): where it waits (at most K NVLink domains or leaves), until when (its compact_wait_s
hold, which the agent now writes in the ``agent.waiting`` record as ``holds``) and how to skip the
wait. It said only "the agent's policy said: Topology"."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from pathlib import Path

from fabric_hpc.events import make_event
from fabric_hpc.placement import Request
from fabric_hpc.scheduler import Job as SchedJob, PendingJob, fabric_policy
from fabric_hpc.slurm.agent_support import compact_holds
from fabric_hpc.slurm.contract import Job
from fabric_hpc.slurm.why import explain
from fabric_hpc.topology import build, generators
from tests.clock_text import shown
from tests.slurm.test_agent_actions import Fake, agent, events, gang


def test_compact_holds_say_where_and_until_when():
    fab = build(generators.nvl72(3))
    job = SchedJob(id="5", request=Request(nodes=20, gpus_per_node=4), submit=1000.0, walltime=3600)
    holds = compact_holds(fabric_policy(), fab, {"5": PendingJob(job)}, {5: "Topology", 6: "Resources"})
    assert holds == {"5": {"until": 1900.0, "domains": 2, "level": "nvlink"}}


def _running(job_id: int, host: str) -> Job:
    return Job(job_id=job_id, name="r", state="RUNNING", nodes=1, gpus_per_node=8, node_list=(host,),
               gpus={host: tuple(range(8))}, submit_time=1.0, start_time=time.time() - 10, time_limit_min=600)


def test_the_agent_records_the_hold_and_why_explains_it(tmp_path: Path) -> None:
    # one busy host in each 4-host leaf: 12 hosts free, but no leaf holds the 4-host gang
    running = [_running(100 + i, f"n{h}") for i, h in enumerate((1, 5, 9, 13))]
    held = replace(gang(7, nodes=4), submit_time=time.time() - 60)
    a = agent(tmp_path, Fake([held, *running]))
    res = a.cycle()
    assert res.waiting.get(7) == "Topology"
    (rec,) = [e for e in events(tmp_path) if e["event"] == "agent.waiting"]
    assert rec["holds"]["7"]["domains"] == 1 and rec["holds"]["7"]["level"] == "leaf"
    assert abs(rec["holds"]["7"]["until"] - (held.submit_time + 900)) < 1e-6
    out = explain(Fake([held, *running]), 7, state_dir=tmp_path)
    text = out["text"]
    assert "held it for a compact placement" in text and "not in at most 1 leaf" in text, text
    until = shown(held.submit_time + 900)
    assert f"until {until} (its compact_wait_s hold)" in text, text
    assert "--comment=fabric:switches=N or fabric:within=LEVEL" in text
    assert "policy said: Topology" not in text
    assert out["decisions"]["waiting"]["hold"]["domains"] == 1
    json.dumps(out)


def test_a_record_without_holds_still_explains_the_wait(tmp_path: Path) -> None:
    held = replace(gang(7, nodes=4), submit_time=time.time() - 60)
    (tmp_path / "decisions.jsonl").write_text(
        json.dumps(make_event("agent.waiting", jobs={"7": "Topology"})) + "\n")
    text = explain(Fake([held]), 7, state_dir=tmp_path)["text"]
    assert re.search(r"held it for a compact placement: its GPUs are free, but not in as few NVLink "
                     r"domains or leaves as hold it; it waits for one until its compact_wait_s hold ends",
                     text)
