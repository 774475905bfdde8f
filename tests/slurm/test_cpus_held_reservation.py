"""A job holding every CPU of its nodes (a CPU-only job, or a GPU job on all cores) keeps those hosts from a
start now, not for good: a waiting gang reserves them for when that job ends. Before, such hosts were left
out of the waiting gang's placements altogether (``Hosts.kept_from``), so a gang that needs them got no
reservation and smaller jobs started ahead of it for as long as the CPU job ran."""

from __future__ import annotations

from fabric_hpc.hostlist import expand
from fabric_hpc.scheduler import make_policy
from fabric_hpc.scheduler.apply import snapshot
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.slurm.view import PinRules, build_view
from fabric_hpc.topology import build, generators

FAB = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
NOW = 10_000.0
FULL = [f"n{i}" for i in range(1, 9)]


def nodes(alloc: int = 8) -> list[Node]:
    """16 hosts, GPUs all free; n1-n8 have ``alloc`` of their 8 CPUs allocated."""
    return [Node(name=f"n{i}", state="mixed" if f"n{i}" in FULL else "idle", cpus=8,
                 cpus_alloc=alloc if f"n{i}" in FULL else 0, gpus=8) for i in range(1, 17)]


def cpu_job(limit_min: int = 5) -> Job:
    """A CPU-only job (no fabric comment, no GPUs) on n1-n8, started 60 s ago."""
    return Job(job_id=1, name="cpu", state="RUNNING", account="chem", user="ann", nodes=8, cpus=64,
               node_list=tuple(FULL), submit_time=NOW - 60, begin_time=NOW - 60, start_time=NOW - 60,
               time_limit_min=limit_min)


def waiting() -> list[Job]:
    """H (tier high) needs all 16 hosts; S (one host, 10 min) arrives after it."""
    h = Job(job_id=2, name="H", state="PENDING", comment="fabric:tier=high", nodes=16, gpus_per_node=8,
            cpus=16, submit_time=NOW, begin_time=NOW + 20, time_limit_min=30)
    s = Job(job_id=3, name="S", state="PENDING", comment="fabric:tier=normal", nodes=1, gpus_per_node=8,
            cpus=1, submit_time=NOW + 1, begin_time=NOW + 21, time_limit_min=10)
    return [h, s]


def step(node_list: list[Node], jobs: list[Job]):
    view = build_view(FAB, node_list, jobs, now=NOW, pins=PinRules(30, fallback_s=20))
    pending, running = {p.job.id: p for p in view.pending}, {r.job.id: r for r in view.running}
    return view, make_policy("fabric").schedule(snapshot(NOW, pending, running, view.state))


def test_the_gang_reserves_the_hosts_a_cpu_job_fills_for_when_it_ends() -> None:
    view, d = step(nodes(), [cpu_job(), *waiting()])
    held = [r for r in view.running if r.job.id.startswith("slurm:cpus:")]
    assert sorted(r.job.id.removeprefix("slurm:cpus:") for r in held) == sorted(FULL)
    assert all(not r.preemptible and r.walltime_end == NOW - 60 + 300 for r in held)
    assert all(r.job.account == "chem" and r.job.meta["slurm_job"] == 1 for r in held)
    h = next(p for p in view.pending if p.job.id == "2")
    assert not h.job.request.exclude  # no host left out for good
    assert d.start == []  # S (10 min) on a free host would delay H past the CPU job's end
    assert d.reservations["2"].start == NOW - 60 + 300 and len(d.reservations["2"].gpus) == 128
    assert d.reasons == {"2": "Resources", "3": "Priority"}


def test_a_short_job_still_backfills_before_the_cpu_job_ends() -> None:
    jobs = [cpu_job(limit_min=60), *waiting()]
    jobs[2] = Job(**{**jobs[2].__dict__, "time_limit_min": 2})  # S ends long before the CPU job
    view, d = step(nodes(), jobs)
    [(job, placement)] = d.start
    assert job.id == "3" and not {g.split("/")[0] for g in placement.gpus} & set(FULL)


def test_hosts_with_too_few_free_cpus_for_the_job_are_still_left_out() -> None:
    view, _ = step(nodes(alloc=7), [cpu_job(), *waiting()])  # one CPU free each: S fits, H (1/host) too
    assert not any(r.job.id.startswith("slurm:cpus:") for r in view.running)
    big = Job(job_id=4, name="B", state="PENDING", comment="fabric", nodes=2, gpus_per_node=8, cpus=8,
              submit_time=NOW, begin_time=NOW + 20, time_limit_min=10)
    view, _ = step(nodes(alloc=7), [cpu_job(), big])
    assert set(expand(view.pending[0].job.request.exclude)) == set(FULL)  # 4 CPUs per host needed, 1 free


def test_the_agent_cycle_with_a_refused_requeue_and_a_cpu_held_host(tmp_path) -> None:
    """The agent marks running jobs whose requeue Slurm refused by id; ``slurm:cpus:HOST`` is no number."""
    from tests.slurm.test_agent_actions import Fake, agent

    client = Fake([cpu_job(), *waiting()], cpus_alloc={h: 8 for h in FULL})
    a = agent(tmp_path, client)
    a.actions.unrequeueable.add(1)
    res = a.cycle(now=NOW + 30)
    assert res.started == [] and res.requeued == []  # H waits for n1-n8; S would delay it
