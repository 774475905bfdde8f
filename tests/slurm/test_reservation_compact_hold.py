"""A gang in an active reservation whose hosts span two leaves is not held for one leaf (admin probe:
the cli and rest agents held such a job for the whole compact wait, "Topology", for a single leaf the
reservation can never give): the compact goal counts only the hosts the job may get."""

from __future__ import annotations

import time
from dataclasses import replace

from fabric_hpc.placement import Request
from fabric_hpc.scheduler import Job as SchedJob
from fabric_hpc.scheduler.placer import compact_job
from fabric_hpc.slurm.contract import Node
from tests.slurm.test_agent_actions import FAB, Fake, agent, gang

RESV = {"n3", "n4", "n5", "n6"}  # two hosts of leaf 1 (n1-n4), two of leaf 2 (n5-n8)


class ReservedFake(Fake):
    def nodes(self) -> list[Node]:
        return [replace(n, reservation="split" if n.name in RESV else "") for n in super().nodes()]


def test_a_reservation_across_two_leaves_starts_its_gang_at_once(tmp_path) -> None:
    job = replace(gang(7, nodes=4), reservation="split", submit_time=time.time() - 60)
    a = agent(tmp_path, ReservedFake([job]))
    res = a.cycle()
    assert res.waiting.get(7) != "Topology", res.waiting
    (started,) = res.started
    assert started["job"] == 7 and set(started["hosts"]) == RESV, started


def test_the_compact_goal_counts_only_the_hosts_a_job_may_get() -> None:
    job = SchedJob(id="7", request=Request(nodes=4, gpus_per_node=8, exclude="n[1-2,7-16]"), submit=0.0,
                   walltime=60)
    assert compact_job(job, FAB).request.max_domains == 2
    free = SchedJob(id="8", request=Request(nodes=4, gpus_per_node=8), submit=0.0, walltime=60)
    assert compact_job(free, FAB).request.max_domains == 1
