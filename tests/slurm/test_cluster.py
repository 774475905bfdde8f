"""The shared live cluster: built from the fabric model, and real jobs run on it."""

from __future__ import annotations

import os
import sys

import pytest

from fabric_hpc.topology import export
from tests.real import require_real

pytestmark = pytest.mark.slurm


def test_all_nodes_idle_with_their_gpus_and_cpus(slurm_cluster, slurm_fabric):
    states = slurm_cluster.node_states()
    assert sorted(states) == sorted(slurm_fabric.hosts) and len(states) == 16
    assert set(states.values()) == {"idle"}
    out = slurm_cluster.run(["sinfo", "-h", "-N", "-o", "%N %c %G %m"]).stdout.splitlines()
    assert {line.split(" ", 1)[1] for line in out} == {"8 gpu:h100:8(S:0-1) 16384"}
    print(f"16 nodes x 8 GPUs started in {slurm_cluster.start_seconds:.2f} s")


def test_slurmctld_loaded_the_fabric_topology(slurm_cluster, slurm_fabric):
    shown = slurm_cluster.topology()
    assert set(shown) == set(slurm_fabric.groups)
    for name, group in slurm_fabric.groups.items():
        if group.hosts:  # a leaf: the same hosts, lowest level
            assert shown[name]["nodes"] == list(group.hosts) and shown[name]["level"] == 0
        else:
            children = [g.name for g in slurm_fabric.groups.values() if g.parent == name]
            assert sorted(shown[name]["switches"]) == sorted(children)
            assert sorted(shown[name]["nodes"]) == sorted(slurm_fabric.hosts)


def test_slurmd_loaded_the_fabric_gres_conf(slurm_cluster, slurm_fabric):
    gpus = slurm_cluster.gres_report("n6")
    links = export.gpu_links(slurm_fabric, "n6")
    assert [g["File"] for g in gpus] == [str(slurm_cluster.device_dir / f"nvidia{i}") for i in range(8)]
    assert {g["Type"] for g in gpus} == {"h100"}
    assert [g["Links"] for g in gpus] == [",".join(map(str, row)) for row in links]
    assert [g["Cores"] for g in gpus] == ["0-3"] * 4 + ["4-7"] * 4  # GPU i sits on socket i // 4


def _leaf_of(fabric, host):
    return next(g.name for g in fabric.groups.values() if host in g.hosts)


def test_switches_job_runs_on_two_hosts_under_one_leaf(slurm_cluster, slurm_fabric):
    # Fill three of leaf1's four hosts, so a first fit (n4, n5) would straddle two leaves.
    blocker = slurm_cluster.sbatch("-N3", "-w", "n[1-3]", "--gres=gpu:8", wrap="sleep 120")
    try:
        slurm_cluster.wait_job(blocker, ["RUNNING"], timeout=30)
        job = slurm_cluster.sbatch("-N2", "--gres=gpu:8", "--switches=1",
                                   wrap="srun -l bash -c 'echo $SLURMD_NODENAME $CUDA_VISIBLE_DEVICES'")
        info = slurm_cluster.wait_job(job, ["COMPLETED"], timeout=60)
    finally:
        slurm_cluster.run(["scancel", str(blocker)])
    hosts = slurm_cluster.hostnames(info["NodeList"])
    assert len(hosts) == 2 and not {"n1", "n2", "n3"} & set(hosts)
    assert len({_leaf_of(slurm_fabric, h) for h in hosts}) == 1
    lines = sorted(slurm_cluster.job_output(job, info).split("\n"))[1:]
    assert [line.split(" ", 1)[1] for line in lines] == [f"{h} 0,1,2,3,4,5,6,7" for h in hosts]
    slurm_cluster.wait_job(blocker, ["CANCELLED"], timeout=30)


def test_gpu_job_gets_cuda_visible_devices(slurm_cluster):
    job = slurm_cluster.sbatch("-N1", "--gres=gpu:2", wrap="echo CVD=$CUDA_VISIBLE_DEVICES")
    info = slurm_cluster.wait_job(job, timeout=60)
    assert slurm_cluster.job_output(job, info).strip() == "CVD=0,1"
    assert info["TresPerNode"] in ("gres:gpu:2", "gres/gpu:2"), info  # 22.05 / 25.11 spelling


@pytest.mark.mpi
def test_srun_pmi2_runs_mpi4py_across_two_nodes(slurm_cluster):
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        require_real("mpi", False, "mpi4py is not installed (pip install .[mpi])")
    code = ("from mpi4py import MPI; import os; c = MPI.COMM_WORLD; "
            "print(c.Get_rank(), c.Get_size(), os.environ['SLURMD_NODENAME'], c.allreduce(c.Get_rank() + 1))")
    out = slurm_cluster.run(["srun", "--mpi=pmi2", "-N2", "-n2", sys.executable, "-c", code], timeout=120)
    rows = sorted(line.split() for line in out.stdout.splitlines())
    assert [r[:2] for r in rows] == [["0", "2"], ["1", "2"]]  # one world of two ranks
    assert len({r[2] for r in rows}) == 2  # on two emulated nodes
    assert {r[3] for r in rows} == {"3"}  # a collective went through


@pytest.mark.slow
def test_restart_slurmctld_keeps_a_running_job(slurm_cluster):
    job = slurm_cluster.sbatch("-N1", wrap="sleep 120")
    before = slurm_cluster.wait_job(job, ["RUNNING"], timeout=30)
    pid = slurm_cluster.daemon_pids()["slurmctld"]
    slurm_cluster.restart_slurmctld()
    assert slurm_cluster.daemon_pids()["slurmctld"] != pid
    after = slurm_cluster.job(job)
    assert after["JobState"] == "RUNNING" and after["NodeList"] == before["NodeList"]
    slurm_cluster.run(["scancel", str(job)])
    slurm_cluster.wait_job(job, ["CANCELLED"], timeout=30)
    assert set(slurm_cluster.node_states().values()) == {"idle"}


def test_kill_and_restart_one_slurmd(slurm_cluster):
    pid = slurm_cluster.daemon_pids()["slurmd-n16"]
    slurm_cluster.kill_slurmd("n16")
    assert "slurmd-n16" not in slurm_cluster.daemon_pids() and not os.path.exists(f"/proc/{pid}")
    assert slurm_cluster.run(["scontrol", "ping"]).returncode == 0  # the controller is untouched
    slurm_cluster.start_slurmd("n16")
    assert slurm_cluster.daemon_pids()["slurmd-n16"] != pid
    assert slurm_cluster.node_states()["n16"] == "idle"
