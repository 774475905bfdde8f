"""An SRE's probe: a job on n[1-4] with 8 GPUs each, then ``scontrol update nodename=n4 state=drain``:
``fabric_agent_gpus`` and ``fabric_agent_gpus_alloc`` (and status.json's utilisation) went 32 -> 24 while
n4 was MIXED+DRAIN with the job's 8 GPUs. docs/metrics.md: GPUs on nodes that are up; a draining node is
up, its running job's GPUs allocated. Placement still never uses a draining node (nor a drained one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.hostlist import expand
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.slurm.metrics import AgentMetrics
from tests.slurm.test_agent_actions import Fake, agent, gang

JOB_HOSTS = ["n1", "n2", "n3", "n4"]


def running() -> Job:
    return Job(job_id=100, name="big", state="RUNNING", comment="fabric", nodes=4, gpus_per_node=8, cpus=4,
               submit_time=1.0, begin_time=1.0, start_time=1.0, time_limit_min=60,
               gpus={h: tuple(range(8)) for h in JOB_HOSTS})


class Draining(Fake):
    """n1-n4 run job 100 (n4 MIXED+DRAIN), n5 is drained (idle+DRAIN), n6 is down; the rest idle."""

    def nodes(self) -> list[Node]:
        out = []
        for i in range(1, self.hosts + 1):
            name, busy = f"n{i}", f"n{i}" in JOB_HOSTS
            state, flags = ("mixed" if busy else "idle"), ()
            if name == "n4":
                flags = ("DRAIN",)
            elif name == "n5":
                state, flags = "drained", ("DRAIN",)
            elif name == "n6":
                state, flags = "down", ("NOT_RESPONDING",)
            out.append(Node(name=name, state=state, flags=flags, cpus=8, cpus_alloc=1 if busy else 0, gpus=8,
                            gpus_used=tuple(range(8)) if busy else ()))
        return out


def test_a_draining_nodes_running_gpus_stay_allocated_in_metrics_and_status(
        tmp_path: Path, metrics: AgentMetrics) -> None:
    a = agent(tmp_path, Draining([running()]))
    a.metrics = metrics
    a.run(max_cycles=1)
    up = 16 * 8 - 8  # n6 is down; n4 (draining) and n5 (drained) are up
    assert metrics.registry.get_sample_value("fabric_agent_gpus") == up
    assert metrics.registry.get_sample_value("fabric_agent_gpus_alloc") == 32
    assert metrics.registry.get_sample_value("fabric_agent_gpus_alloc_ratio") == pytest.approx(32 / up)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["utilisation"] == pytest.approx(32 / up)


def test_placement_still_never_uses_a_draining_or_drained_node(tmp_path: Path) -> None:
    """Ten hosts are free and usable (n7-n16): eleven one-host gangs, ten start there, one waits."""
    client = Draining([running(), *[gang(i, nodes=1) for i in range(1, 12)]])
    a = agent(tmp_path, client)
    assert len(a.cycle().started) == 10
    pinned = {h for c in client.calls if c[2].get("ReqNodeList") for h in expand(c[2]["ReqNodeList"])}
    assert pinned == {f"n{i}" for i in range(7, 17)}, pinned
