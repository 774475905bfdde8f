"""``scontrol update`` of a pending fabric job the agent defers, by its user or an admin, on a live Slurm.

A ReqNodeList the agent did not set is the user's: the agent hands the job to Slurm keeping it (only
``StartTime=now``; one ``agent.handoff``), never pins it elsewhere, and neither its stop (SIGTERM releases
only its own pins) nor a restarted agent clears it; Slurm starts the job on exactly those hosts. Before
2026-12-07 the agent's next pin silently replaced it (and its stop cleared it). Every other update
(NumNodes, the GPUs per node, ExcNodeList, Partition, TimeLimit) is read afresh each cycle: the next
placement uses the new values. One cluster of 16 hosts in two partitions (``debug``: the first 8, ``other``:
the last 8) for the module."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fabric_hpc.events import read_json_lines
from fabric_hpc.hostlist import compress, expand
from fabric_hpc.slurm.actions import USER_PIN
from tests.slurm_integration.conftest import agent_on, plugin_cluster

pytestmark = [pytest.mark.slurm]


@pytest.fixture(scope="module")
def cluster(slurm_cluster_factory, slurm_fabric, tmp_path_factory) -> Any:
    hosts = list(slurm_fabric.hosts)
    parts = [f"PartitionName=debug Nodes={compress(hosts[:8])} Default=YES MaxTime=INFINITE State=UP",
             f"PartitionName=other Nodes={compress(hosts[8:])} MaxTime=INFINITE State=UP"]
    return plugin_cluster(slurm_cluster_factory, slurm_fabric, tmp_path_factory, partitions=parts)


@pytest.fixture()
def agent(cluster) -> Iterator[Any]:
    with agent_on(cluster, cluster.topology_file) as a:
        a.extra = ("--compact-wait", "0", "--record-cycles")
        yield a


def _until(predicate, what: str, agent, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what}\n{agent.log()}"
        time.sleep(0.2)
    return value


def _records(agent, event: str, job: int) -> list[dict]:
    return [e for e in read_json_lines(agent.state_dir / "decisions.jsonl")
            if e["event"] == event and e.get("job") == job]


def _fill(c, hosts: list[str]) -> list[int]:
    """Every GPU busy: one running 8-host job per partition (placed by the agent)."""
    busy = [c.sbatch("-p", p, "-N8", "--gres=gpu:8", "--comment=fabric", wrap="sleep 300")
            for p in ("debug", "other")]
    for jid in busy:
        c.wait_job(jid, states=("RUNNING",), timeout=30)
    return busy


def test_a_reqnodelist_someone_else_set_is_kept_by_the_agent_its_stop_and_its_restart(cluster, agent,
                                                                                     slurm_fabric):
    c, hosts = cluster, list(slurm_fabric.hosts)
    agent.start()
    busy = _fill(c, hosts)
    jid = c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 300")
    agent.wait_cycles(agent.cycles() + 2)  # deferred: no GPU free
    mine = compress([hosts[0], hosts[7]])  # two leaves apart: never the agent's choice for a 2-node gang
    c.run(["scontrol", "update", f"JobId={jid}", f"ReqNodeList={mine}"])
    hand = _until(lambda: _records(agent, "agent.handoff", jid), "no hand-over of the user's pin", agent)
    assert len(hand) == 1 and hand[0]["reason"].startswith(USER_PIN) and mine in hand[0]["reason"], hand
    assert set(expand(c.job(jid)["ReqNodeList"])) == set(expand(mine))
    agent.stop()  # SIGTERM: releases only the agent's own pins
    stop = [e for e in read_json_lines(agent.state_dir / "decisions.jsonl") if e["event"] == "agent.stop"][-1]
    assert jid not in stop["released"], stop
    assert set(expand(c.job(jid)["ReqNodeList"])) == set(expand(mine)), "the stop cleared the user's list"
    agent.start()
    agent.wait_cycles(2)
    c.run(["scancel", str(busy[0])])  # hosts[0..7] free: the agent must not place the job there itself
    info = c.wait_job(jid, states=("RUNNING",), timeout=30)
    assert set(expand(info["NodeList"])) == set(expand(mine)), info
    assert not _records(agent, "agent.place", jid), agent.log()


def _update(c, jid: int, update: str, timeout: float = 10.0) -> None:
    """``scontrol update JobId=jid update``, again while Slurm answers "Resource temporarily unavailable"
    (25.11, a partition change while its scheduler holds the job: seen after a previous test's jobs)."""
    deadline = time.monotonic() + timeout
    while (r := c.run(["scontrol", "update", f"JobId={jid}", update], check=False)).returncode:
        assert "temporarily unavailable" in r.stderr and time.monotonic() < deadline, (update, r.stderr)
        time.sleep(0.5)


def test_other_updates_are_read_afresh_by_the_next_placement(cluster, agent, slurm_fabric):
    c, hosts = cluster, list(slurm_fabric.hosts)
    agent.start()
    busy = _fill(c, hosts)
    jid = c.sbatch("-N2", "--gres=gpu:8", "--time=60", "--comment=fabric", wrap="sleep 300")
    agent.wait_cycles(agent.cycles() + 2)
    out = compress(hosts[8:11])
    # one at a time; NumNodes=3 alone is refused (a minimum over the job's maximum of 2)
    for update in ("Partition=other", "NumNodes=3-3", f"ExcNodeList={out}", "TimeLimit=7", "Gres=gpu:4"):
        _update(c, jid, update)
    info = c.job(jid)
    assert info["Partition"] == "other" and info["NumNodes"].startswith("3"), info
    agent.wait_cycles(agent.cycles() + 2)
    c.run(["scancel", *map(str, busy)])
    run = c.wait_job(jid, states=("RUNNING",), timeout=30)
    (place,) = _records(agent, "agent.place", jid)
    placed = set(place["hosts"])
    assert placed == set(expand(run["NodeList"])), (place, run)
    assert len(placed) == 3 and placed <= set(hosts[8:]) and not placed & set(hosts[8:11]), place
    assert len(place["gpus"]) == 12, place  # 4 GPUs per host, as updated
    walltimes = [p["job"]["walltime"] for line in (agent.state_dir / "cycles.jsonl").read_text().splitlines()
                 for p in json.loads(line)["input"]["pending"] if p["job"]["id"] == str(jid)]
    assert walltimes and walltimes[-1] == 7 * 60, walltimes[-3:]
