"""A job without a time limit (Slurm's ``UNLIMITED``/``INFINITE``, ``--time=0``) runs until it ends, not
for an hour: on the agent's own path (Slurm's answer -> build_view -> the fabric policy).

Slurm reports a job submitted without ``--time`` with its partition's ``MaxTime`` (job_mgr.c packs
``part_ptr->max_time`` for NO_VAL, node_scheduler.c sets it at start), so ``UNLIMITED`` means the partition
has none either; Slurm then counts the job as ending a year after its start (job_mgr.c
``job_end_time_reset``; backfill.c ``YEAR_MINUTES``). The agent counted such a job as 1 h of walltime:

(a) backfill started an unlimited job in front of a reserved high-tier gang (Slurm would not);
(b) a high-tier gang did not preempt unlimited spot gangs (modelled as ending within the hour, and once
    running past 1 h as ending now, so the wait it saved never paid for their lost work).
"""

from __future__ import annotations

from fabric_hpc.scheduler import make_policy
from fabric_hpc.scheduler.apply import snapshot
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.slurm.view import PinRules, build_view
from fabric_hpc.topology import build, generators

FAB = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
NOW = 100_000.0
YEAR_S = 365 * 24 * 3600.0


def nodes(busy: list[str]) -> list[Node]:
    return [Node(name=f"n{i}", state="mixed" if f"n{i}" in busy else "idle", cpus=8,
                 cpus_alloc=1 if f"n{i}" in busy else 0, gpus=8,
                 gpus_used=tuple(range(8)) if f"n{i}" in busy else ()) for i in range(1, 17)]


def pending(job_id: int, comment: str, n: int, limit_min: int | None) -> Job:
    return Job(job_id=job_id, name=f"p{job_id}", state="PENDING", comment=comment, nodes=n, gpus_per_node=8,
               cpus=n, submit_time=NOW, begin_time=NOW + 20, time_limit_min=limit_min)


def running(job_id: int, comment: str, hosts: list[str], limit_min: int | None, start: float) -> Job:
    return Job(job_id=job_id, name=f"r{job_id}", state="RUNNING", comment=comment, nodes=len(hosts),
               gpus_per_node=8, cpus=len(hosts), submit_time=start, begin_time=start, start_time=start,
               time_limit_min=limit_min, node_list=tuple(hosts), gpus={h: tuple(range(8)) for h in hosts})


def step(busy: list[str], jobs: list[Job]):
    view = build_view(FAB, nodes(busy), jobs, now=NOW, pins=PinRules(30, fallback_s=20))
    step_in = snapshot(NOW, {p.job.id: p for p in view.pending}, {r.job.id: r for r in view.running},
                       view.state)
    return view, make_policy("fabric").schedule(step_in)


def test_slurms_year_for_an_infinite_time_limit() -> None:
    from fabric_hpc.slurm.view import UNLIMITED_WALLTIME_S
    assert UNLIMITED_WALLTIME_S == YEAR_S


def test_an_unlimited_job_is_never_backfilled_in_front_of_a_reserved_high_gang() -> None:
    """B (10 nodes, 2 min left) runs; H (tier high) needs all 16; S (1 node, no time limit) arrives."""
    busy = [f"n{i}" for i in range(1, 11)]
    jobs = [running(1, "nofabric", busy, 2, NOW - 3), pending(2, "fabric:tier=high", 16, 5),
            pending(3, "fabric", 1, None)]
    view, d = step(busy, jobs)
    s = next(p for p in view.pending if p.job.id == "3")
    assert s.job.walltime == YEAR_S
    assert d.reservations["2"].start == NOW - 3 + 120
    assert [j.id for j, _ in d.start] == [] and d.backfilled == set()
    assert d.reasons == {"2": "Resources", "3": "Priority"}


def test_a_job_with_time_limit_zero_is_unlimited_too() -> None:
    busy = [f"n{i}" for i in range(1, 11)]
    jobs = [running(1, "nofabric", busy, 2, NOW - 3), pending(2, "fabric:tier=high", 16, 5),
            pending(3, "fabric", 1, 0)]
    _, d = step(busy, jobs)
    assert [j.id for j, _ in d.start] == []


def test_an_unlimited_running_job_ends_a_year_after_its_start() -> None:
    busy = [f"n{i}" for i in range(1, 11)]
    jobs = [running(1, "nofabric", busy, None, NOW - 7200), pending(2, "fabric:tier=high", 16, 5)]
    view, d = step(busy, jobs)
    b = next(r for r in view.running if r.job.id == "1")
    assert b.walltime_end == NOW - 7200 + YEAR_S  # was start + 1 h: "ending now" two hours in
    assert d.reservations["2"].start == b.walltime_end


def test_a_limited_job_still_backfills_before_the_reservation() -> None:
    busy = [f"n{i}" for i in range(1, 11)]
    jobs = [running(1, "nofabric", busy, 2, NOW - 3), pending(2, "fabric:tier=high", 16, 5),
            pending(3, "fabric", 1, 1)]
    _, d = step(busy, jobs)
    assert [j.id for j, _ in d.start] == ["3"] and d.backfilled == {"3"}


def test_a_high_gang_preempts_unlimited_spot_gangs_running_past_an_hour() -> None:
    """Every host runs an unlimited spot gang started 2 h ago; H (tier high, 2 nodes) waits: the wait it
    saves (a year) pays for the spot gangs' lost 2 h; with 1 h walltime they "ended now" and H waited."""
    hosts = [f"n{i}" for i in range(1, 17)]
    jobs = [running(10 + k, "fabric:tier=spot", [h], None, NOW - 7200) for k, h in enumerate(hosts)]
    jobs.append(pending(2, "fabric:tier=high", 2, 30))
    _, d = step(hosts, jobs)
    assert len(d.preempt) == 2 and [j.id for j, _ in d.start] == ["2"]


def test_limited_spot_gangs_about_to_end_are_still_waited_for() -> None:
    """The same with spot gangs whose 2 h 1 min limit ends in a minute: waiting is cheaper, no requeue."""
    hosts = [f"n{i}" for i in range(1, 17)]
    jobs = [running(10 + k, "fabric:tier=spot", [h], 121, NOW - 7200) for k, h in enumerate(hosts)]
    jobs.append(pending(2, "fabric:tier=high", 2, 30))
    _, d = step(hosts, jobs)
    assert d.preempt == [] and d.reservations["2"].start == NOW + 60
