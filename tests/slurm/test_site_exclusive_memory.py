"""``--exclusive`` jobs and memory under ``SelectTypeParameters=CR_Core_Memory`` (a site's slurm.conf):
before, the agent pinned an exclusive job onto a host where another job ran, and a ``--mem=15500`` job onto a
host with 1000 of its 16000 MiB allocated; Slurm kept both pending (Resources) until the pin went stale.
Every backend's decoder reads exclusivity and memory now, and such hosts are not eligible for the job."""

from __future__ import annotations

from typing import Any

from fabric_hpc.hostlist import expand
from fabric_hpc.slurm import decode
from fabric_hpc.slurm.cli_backend import job_from_scontrol, node_from_scontrol
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.slurm.view import build_view
from fabric_hpc.slurm.view_hosts import WHOLE_NODE_MEM, mem_per_node
from fabric_hpc.topology import build, generators

FAB = build(generators.leaf_spine(4, hosts_per_leaf=4, gpus=4, cpus=8))


def _nodes(alloc_mem: int = 0) -> list[Node]:
    """n1 runs a 1-GPU job (1 CPU, ``alloc_mem`` MiB); n2..n4 are idle; 16000 MiB each."""
    return [Node("n1", "mixed", cpus=8, cpus_alloc=1, gpus=4, gpus_used=(0,), mem=16000, mem_alloc=alloc_mem),
            *(Node(h, "idle", cpus=8, gpus=4, mem=16000) for h in ("n2", "n3", "n4"))]


def _running() -> Job:
    return Job(9, "other", "RUNNING", nodes=1, gpus_per_node=1, cpus=1, node_list=("n1",), gpus={"n1": (0,)},
               start_time=100.0, time_limit_min=60)


def _job(**kw: Any) -> Job:
    fields: dict[str, Any] = {"state": "PENDING", "reason": "BeginTime", "nodes": 1, "gpus_per_node": 1,
                              "cpus": 1, "comment": "fabric", "submit_time": 100.0, "begin_time": 1000.0,
                              **kw}
    return Job(1, "j", **fields)


def _excluded(nodes: list[Node], job: Job) -> set[str]:
    view = build_view(FAB, nodes, [job, _running()], now=200.0)
    (pending,) = view.pending
    return set(expand(pending.job.request.exclude)) if pending.job.request.exclude else set()


def test_an_exclusive_job_gets_only_hosts_where_nothing_runs():
    assert _excluded(_nodes(), _job(exclusive=True)) == {"n1"}
    assert _excluded(_nodes(), _job()) == set()


def test_a_host_without_the_jobs_memory_free_is_not_eligible():
    assert _excluded(_nodes(1000), _job(mem_per_node=15500)) == {"n1"}
    assert _excluded(_nodes(1000), _job(mem_per_node=15000)) == set()
    assert _excluded(_nodes(1000), _job(mem_per_cpu=2000, cpus=8)) == {"n1"}  # 16000 MiB per node
    # no --mem (22.05 and 25.11 without DefMemPerNode): all of a node's memory
    assert _excluded(_nodes(1000), _job()) == {"n1"}
    # memory not consumable (Slurm allocates none): no memory rule
    assert _excluded(_nodes(0), _job(mem_per_node=15500)) == set()
    assert mem_per_node(_job()) == WHOLE_NODE_MEM
    assert mem_per_node(_job(mem_per_cpu=100, cpus=4, nodes=2)) == 200


# the answers of a live 22.05 / 25.11 with CR_Core_Memory (sbatch --exclusive --mem=1000; --mem-per-cpu)
def test_json_answers_of_both_releases_say_exclusive_and_memory():
    base = {"job_state": "PENDING", "tres_per_node": "gres/gpu:1"}
    j22 = decode.job({**base, "job_id": 5, "shared": "none", "memory_per_node": 1000})
    j25 = decode.job({**base, "job_id": 6, "shared": ["none"], "memory_per_node": {
        "set": True, "infinite": False, "number": 1000}, "memory_per_cpu": {"set": False, "infinite": False,
                                                                          "number": 0}})
    for j in (j22, j25):
        assert j.exclusive and j.mem_per_node == 1000 and j.mem_per_cpu == 0
    plain = decode.job({**base, "job_id": 7, "shared": [], "memory_per_cpu": 1000})
    assert not plain.exclusive and plain.mem_per_cpu == 1000
    node = decode.node({"name": "n1", "state": ["MIXED"], "real_memory": 16000, "alloc_memory": 15500})
    assert (node.mem, node.mem_alloc) == (16000, 15500)


def test_scontrol_text_says_exclusive_and_memory():
    job = job_from_scontrol("JobId=5 JobName=x JobState=PENDING Reason=Resources OverSubscribe=NO "
                            "MinMemoryNode=15500M NumNodes=1 NumCPUs=1 TresPerNode=gres:gpu:1")
    assert job.exclusive and job.mem_per_node == 15500
    job = job_from_scontrol("JobId=6 JobName=x JobState=PENDING OverSubscribe=OK MinMemoryCPU=2G NumCPUs=2")
    assert not job.exclusive and job.mem_per_cpu == 2048 and job.mem_per_node == 0
    node = node_from_scontrol("NodeName=n1 CPUAlloc=1 CPUTot=8 Gres=gpu:4 RealMemory=16000 AllocMem=1000 "
                              "State=MIXED")
    assert (node.mem, node.mem_alloc) == (16000, 1000)


def test_pyslurm_objects_say_exclusive_and_memory():
    from types import SimpleNamespace

    from fabric_hpc.slurm.pyslurm_backend import job_from_pyslurm, node_from_pyslurm

    job = dict(id=7, state="PENDING", allocated_nodes=None, gres_per_node={"gres/gpu": 1}, eligible_time=None,
               start_time=None, time_limit=None, name=None, state_reason="None", comment="fabric",
               user_name="u",
               partition="debug", num_nodes=1, required_nodes=None, submit_time=1, priority=1,
               reservation=None, excluded_nodes=None, dependencies={}, array_id=None, heterogeneous_id=None,
               account=None, qos=None, cpus=1, state_description=None)
    # pyslurm's Job.resource_sharing is slurm_job_share_string(): "NO" for --exclusive
    j = job_from_pyslurm(SimpleNamespace(**job, resource_sharing="NO", memory_per_node=15500,
                                         memory_per_cpu=None))
    assert j.exclusive and j.mem_per_node == 15500 and j.mem_per_cpu == 0
    assert not job_from_pyslurm(SimpleNamespace(**job, resource_sharing="OK")).exclusive
    node = node_from_pyslurm(SimpleNamespace(name="n1", state="MIXED", configured_gres={"gpu:h100": 4},
                                             total_cpus=8, allocated_cpus=1, partitions=["debug"],
                                             active_features=[],
                                             real_memory=16000, allocated_memory=1000))
    assert (node.mem, node.mem_alloc) == (16000, 1000)
