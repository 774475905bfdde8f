"""A job's ``--comment=fabric:include=n[1-99998]`` (a host list of ~100,000 names, almost none of them
hosts) is not expanded by the agent: each place that asks which hosts a list names (the view's
``kept_out`` and ``_avoiding``, the block fit, the scheduler's ``gang_gpus``/``compact_job``, the
placement problem's eligible hosts) works on the fabric's hosts. Live clusters: 40 such jobs stretched
an agent cycle from 0.12 s to 2.7-5.2 s (~157 ms per expansion, several per job per cycle)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import ClusterState, Request
from fabric_hpc.placement.problem import Problem
from fabric_hpc.scheduler.contract import Job
from fabric_hpc.scheduler.placer import compact_job, gang_gpus
from fabric_hpc.slurm.blocks import Blocks
from fabric_hpc.slurm.view import _avoiding, kept_out
from fabric_hpc.topology import build, generators
from tests.slurm.test_agent_actions import gang
from tests.slurm.test_block_topology_view import NVL3, pending, step
from tests.hostlist_counter import made  # noqa: F401  (fixture: names generated or examined)

FAB = build(generators.leaf_spine(hosts=16, hosts_per_leaf=4, gpus=8))
NAMES = list(FAB.hosts)
HUGE = "n[3-99998]"  # 99,996 names; of the fabric's n1..n16: n3..n16


def test_kept_out_of_a_huge_include(made) -> None:  # noqa: F811
    job = replace(gang(1), comment=f"fabric:include={HUGE}")
    assert kept_out(job, NAMES) == "n[1-2]"
    assert kept_out(replace(job, comment="fabric:include=x[1-99998]"), NAMES) == "n[1-16]"  # names none
    assert made[0] <= 2 * len(NAMES)


def test_avoiding_a_huge_exclude_expands_nothing_when_it_holds_the_hosts(made) -> None:  # noqa: F811
    req = Request(nodes=2, gpus_per_node=8, exclude=HUGE)
    assert _avoiding(req, ["n4", "n5"]) is req
    assert made[0] <= 2
    assert _avoiding(Request(nodes=2, gpus_per_node=8, exclude="n[3-4]"), ["n4", "n9"]).exclude == "n[3-4,9]"


def test_the_scheduler_and_the_problem_do_not_expand_it(made) -> None:  # noqa: F811
    whole = Job(id="W", request=Request(nodes=2, whole_hosts=True, include=HUGE), submit=0, walltime=100)
    assert gang_gpus(whole, FAB) == 16
    assert compact_job(whole, FAB).request.max_domains == 1
    made[0] = 0
    with pytest.raises(ConfigError, match="request names host 'n17', which is not in fabric"):
        Problem(FAB, ClusterState(FAB), Request(nodes=2, gpus_per_node=8, include=HUGE))
    with pytest.raises(ConfigError, match="request names host 'n17', which is not in fabric"):
        Problem(FAB, ClusterState(FAB), Request(nodes=2, gpus_per_node=8, exclude="n[1-99998]"))
    assert made[0] <= 4 * len(NAMES)
    p = Problem(FAB, ClusterState(FAB), Request(nodes=2, gpus_per_node=8, include="n[3-16],n[3-4]",
                                                 exclude="n[15-16]"))
    assert p.eligible_hosts_with(8) == 12


def test_a_block_fabric_cycle_with_a_huge_include(made) -> None:  # noqa: F811
    """The whole view and scheduling step (blocks, kept-out hosts, placement) on 54 hosts: it names
    r001-h19, which the fabric lacks, so the job goes to Slurm as with ``r001-h[01-19]``."""
    blocks = Blocks.from_fabric(NVL3)
    huge, _ = step(NVL3, [], [pending(4, comment="fabric:include=r001-h[01-99998]")], blocks)
    assert made[0] <= 20 * len(NVL3.hosts)
    small, _ = step(NVL3, [], [pending(4, comment="fabric:include=r001-h[01-19]")], blocks)
    assert huge.invalid.keys() == small.invalid.keys()
    assert [p.job.request.include for p in huge.pending] == [p.job.request.include for p in small.pending]
