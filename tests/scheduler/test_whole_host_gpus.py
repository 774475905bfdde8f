"""A ``nodes=N, whole_hosts`` request without a GPU count counts the GPUs it would really take (the
GPUs of the ``N`` smallest hosts it may use) in priority and in the preemption benefit check."""

from __future__ import annotations

from fabric_hpc.placement import ClusterState, Request
from fabric_hpc.scheduler import fabric_policy, slurm_policy
from fabric_hpc.scheduler.contract import Job, PendingJob, SchedulerInput
from fabric_hpc.scheduler.placer import gang_gpus

from .helpers import fabric, job, run_on

FAB = fabric(2, 2)
WHOLE = Request(nodes=2, whole_hosts=True)
EIGHTS = Request(nodes=2, gpus_per_node=8)


def test_gang_gpus_of_whole_hosts():
    assert gang_gpus(Job(id="W", request=WHOLE, submit=0, walltime=100), FAB) == 16
    assert gang_gpus(Job(id="G", request=EIGHTS, submit=0, walltime=100), FAB) == 16
    assert gang_gpus(Job(id="T", request=Request(gpus=3), submit=0, walltime=100), FAB) == 3
    one = Job(id="W1", request=Request(nodes=1, whole_hosts=True, include="n2"), submit=0, walltime=100)
    assert gang_gpus(one, fabric(2, 2, gpus=4)) == 4


def test_whole_hosts_priority_size_is_its_gpus():
    pend = [PendingJob(Job(id=i, request=r, submit=0, walltime=100))
            for i, r in (("W", WHOLE), ("G", EIGHTS))]
    prio = dict(slurm_policy().schedule(SchedulerInput(0, pend, [], ClusterState(FAB), {})).priorities)
    assert prio["W"] == prio["G"]


def test_whole_hosts_preempts_like_the_same_gpu_count():
    outcome = {}
    for name, req in (("W", WHOLE), ("G", EIGHTS)):
        st = ClusterState(FAB)
        running = [run_on(st, job("s1", 1, wall=36000, tier="spot"), ["n1"]),
                   run_on(st, job("s2", 1, wall=36000, tier="spot"), ["n2"])]
        high = Job(id=name, request=req, submit=100, walltime=600, tier="high")
        view = SchedulerInput(100, [PendingJob(high)], running, st, {})
        d = fabric_policy(compact_wait_s=None).schedule(view)
        outcome[name] = (sorted(p.job_id for p in d.preempt), [j.id for j, _ in d.start])
    # 16 GPUs × ~10 h of waiting saved against 2 × 8 GPUs × ~0.1 h lost: worth it at ratio 20
    assert outcome["G"] == (["s1", "s2"], ["G"])
    assert outcome["W"] == (["s1", "s2"], ["W"])
