"""Small builders shared by the scheduler tests."""

from __future__ import annotations

from fabric_hpc.placement import ClusterState, Request
from fabric_hpc.scheduler import Job, PendingJob, RunningJob
from fabric_hpc.topology import build, generators


def fabric(hosts: int = 4, per_leaf: int = 2, gpus: int = 8):
    return build(generators.leaf_spine(hosts=hosts, hosts_per_leaf=per_leaf, gpus=gpus))


def job(jid: str, nodes: int, *, gpn: int = 8, submit: float = 0.0, wall: float = 100.0, dur: float | None = None,
        tier: str = "normal", account: str = "a", ckpt: float | None = None) -> Job:
    return Job(id=jid, request=Request(nodes=nodes, gpus_per_node=gpn), submit=submit, walltime=wall,
               duration=dur if dur is not None else wall, tier=tier, account=account, checkpoint_interval=ckpt)


def run_on(state: ClusterState, j: Job, hosts: list[str], start: float = 0.0, gpn: int = 8) -> RunningJob:
    gpus = tuple(g for h in hosts for g in state.fab.host_gpus(h)[:gpn])
    state.allocate(j.id, gpus)
    return RunningJob(j, gpus, start, start)


def pend(*jobs: Job) -> list[PendingJob]:
    return [PendingJob(j) for j in jobs]
