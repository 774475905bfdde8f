"""The shared live cluster: built from the fabric model, and real jobs run on it."""

from __future__ import annotations

import json
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


@pytest.mark.mpi
def test_srun_keeps_the_cli_exit_code_and_prints_each_ranks_error_once(slurm_cluster, tmp_path):
    """Under ``srun --mpi=pmi2`` (as infer_batch.sbatch launches it) srun returns the CLI's exit
    code as mpiexec does: 3 for bad input, 5 for a rank's external failure (MPI_Abort there made
    slurmstepd kill the other task, and srun returned 137); an error both ranks meet is printed once."""
    from tests.inference.builders import make_config, random_items, write_spool

    fabric = os.path.join(os.path.dirname(sys.executable), "fabric")
    require_real("mpi", os.path.exists(fabric), f"{fabric} is missing (pip install -e .)")
    cfg = json.loads(make_config(tmp_path).read_text())
    bad = tmp_path / "missing-engine.json"
    bad.write_text(json.dumps({**cfg, "engine_dir": str(tmp_path / "no-such-engine")}))
    spool = write_spool(tmp_path, random_items(24, seed=3))

    def srun(config, out: str, export: str = "ALL"):
        return slurm_cluster.run(["srun", "--mpi=pmi2", f"--export={export}", "-N2", "-n2", fabric, "infer",
                                  "run", "--engine-config", str(config), "--input", str(spool), "--output",
                                  str(tmp_path / out), "--no-progress"], check=False, timeout=120)

    both = srun(bad, "out-bad")  # both ranks fail
    assert both.returncode == 3, both.stderr[-2000:]
    assert [both.stderr.count(f"error: rank {r}: ") for r in (0, 1)] == [1, 0], both.stderr  # rank 0's
    assert both.stderr.count("no-such-engine") == 1 and "Traceback" not in both.stderr
    # one rank fails (the runner's test hook), its peer acknowledges and exits with its code
    one = srun(tmp_path / "engine.json", "out-fault", "ALL,FABRIC_INFER_FAULT=1:4")
    assert one.returncode == 5, one.stderr[-2000:]
    assert "error: rank 1: " in one.stderr and "error: rank 0" not in one.stderr, one.stderr
    assert "Killed" not in one.stderr and "Traceback" not in one.stderr


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
