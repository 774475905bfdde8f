"""A job that ends between the agent's two reads (nodes, then jobs) must not open a backfill hole in front
of a reserved gang. The burst of tests/slurm/test_backfill_reservation_view.py: B (no fabric job, 2 h
limit) holds 10 of 16 hosts, H (-N16, tier high) waits for them, S (-N1, no time limit) waits behind H.
B ends just after the agent read the nodes: the nodes answer still shows B's GPUs and CPUs in use, the
jobs answer no longer lists B. Those GPUs were nobody's (``slurm:unattributed``, with no end), so H got no
reservation and the agent pinned S on a free host, ahead of H: the live reserved-gang test's failure on a
loaded machine (25.11; slurmctld: B ``done`` at .052, the agent's ``agent.place`` of S at .249, then
``sched: Allocate`` S on n4 while H waited). Now a nodes answer with resources no listed job holds is read
once more after the jobs: what was released meanwhile is free, and H is placed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.contract import Node
from fabric_hpc.slurm.view_hosts import settled, unexplained
from tests.slurm.test_agent_actions import Fake
from tests.slurm.test_backfill_reservation_view import BUSY, FAB, NOW, blocker, burst, nodes


class Torn(Fake):
    """The first nodes answer from before B ended, later ones after (B's hosts idle again)."""

    reads = 0

    def nodes(self) -> list[Node]:
        self.reads += 1
        if self.reads == 1:
            return nodes()
        return [replace(n, state="idle", cpus_alloc=0, gpus_used=()) for n in nodes()]


def _burst() -> list:
    """B (2 h limit), H, and S without a time limit (Slurm's UNLIMITED), as in the live test."""
    b, h, s = burst("nofabric", limit_min=120)
    return [b, h, replace(s, time_limit_min=None)]


def _agent(client: Fake, tmp_path: Path) -> Agent:
    return Agent(client, FAB, AgentConfig(state_dir=str(tmp_path), fallback_s=20, pin_timeout_s=30))


def test_a_job_ended_between_the_reads_opens_no_hole_in_front_of_the_reserved_gang(tmp_path: Path) -> None:
    client = Torn(_burst()[1:])  # the jobs answer: B gone, H and S pending
    res = _agent(client, tmp_path).cycle(NOW)
    pins = [c[1] for c in client.calls if c[2].get("ReqNodeList")]
    assert pins == [2], (pins, res.waiting)  # H on all 16 hosts; before: S pinned on a free one
    assert 3 in res.waiting  # S waits for H (on every host now)
    assert client.reads == 2


def test_resources_no_listed_job_holds_in_both_reads_stay_in_use(tmp_path: Path) -> None:
    """A hidden job (``PrivateData=jobs``) holds B's hosts in both reads: they stay in use (H is not placed
    on them)."""

    class Hidden(Fake):
        reads = 0

        def nodes(self) -> list[Node]:
            self.reads += 1
            return nodes()

    client = Hidden(_burst()[1:])
    res = _agent(client, tmp_path).cycle(NOW)
    assert client.reads == 2
    assert 2 not in [c[1] for c in client.calls if c[2].get("ReqNodeList")]
    assert 2 in res.waiting


def test_a_snapshot_every_listed_job_explains_is_read_once(tmp_path: Path) -> None:
    class Steady(Fake):
        reads = 0

        def nodes(self) -> list[Node]:
            self.reads += 1
            return nodes()

    client = Steady(_burst())  # B listed: its GPUs and CPUs are accounted for
    res = _agent(client, tmp_path).cycle(NOW)
    assert client.reads == 1 and res.waiting == {2: "Resources", 3: "Priority"}


def test_settled_keeps_what_both_reads_show_in_use() -> None:
    first = nodes()
    again = [replace(n, gpus_used=n.gpus_used[:4], cpus_alloc=0) if n.name == "n1" else n for n in first]
    merged = {n.name: n for n in settled(first, again)}
    assert merged["n1"].gpus_used == (0, 1, 2, 3) and merged["n1"].cpus_alloc == 0
    assert merged["n2"] == first[1]
    assert unexplained(first, [blocker("nofabric")]) is False
    assert unexplained(first, []) is True
    assert unexplained([n for n in first if n.name not in BUSY], []) is False
