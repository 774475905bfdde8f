"""Start, stop and failure of test clusters: nothing is left running, whatever happens."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fabric_hpc.errors import ExternalError
from fabric_hpc.testing import SlurmTestCluster, parse_key_values, slurm_cluster

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[2]

# A test runner that starts a cluster with one running job, prints its pids and waits.
RUNNER = textwrap.dedent("""
    import signal, sys, time
    # Ctrl-C raises KeyboardInterrupt even when the test run itself was started with SIGINT ignored
    # (a background job of a non-interactive shell, e.g. `make test &` in a script)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from fabric_hpc.testing import SlurmTestCluster, parse_key_values
    cluster = SlurmTestCluster(2, gpus_per_node=0, base_dir=sys.argv[1], prefix=sys.argv[2] or None).start()
    job = cluster.sbatch("-N1", wrap="sleep 300")
    cluster.wait_job(job, ["RUNNING"], timeout=30)
    deadline = time.monotonic() + 10
    while not any(open(f"/proc/{p}/cmdline", "rb").read().startswith(b"sleep") for p in cluster.pids()):
        assert time.monotonic() < deadline, "the job's sleep never started"
        time.sleep(0.05)
    print(" ".join(map(str, sorted(cluster.pids()))), flush=True)
    print(" ".join(map(str, sorted(cluster.daemon_pids().values()))), flush=True)
    time.sleep(300)
""")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids: set[int], timeout: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while (left := {p for p in pids if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _start_runner(tmp_path: Path, install) -> tuple[subprocess.Popen[str], set[int], set[int]]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    prefix = str(install.prefix or "")
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path), prefix], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert runner.stdout is not None
    every, daemons = (set(map(int, runner.stdout.readline().split())) for _ in range(2))
    assert daemons and daemons < every, runner.stderr.read() if runner.poll() is not None else every
    return runner, every, daemons


def test_interrupted_runner_stops_daemons_and_jobs(require_slurm, tmp_path):
    runner, every, _ = _start_runner(tmp_path, require_slurm)
    runner.send_signal(signal.SIGINT)  # KeyboardInterrupt: the atexit hook stops the cluster
    runner.wait(timeout=60)
    assert "KeyboardInterrupt" in runner.stderr.read()
    assert _wait_gone(every) == set()


def test_killed_runner_takes_its_daemons_along_and_orphans_are_reaped(require_slurm, tmp_path):
    runner, every, daemons = _start_runner(tmp_path, require_slurm)
    runner.kill()  # no Python cleanup at all: the kernel's parent-death signal stops the daemons
    runner.wait(timeout=30)
    assert _wait_gone(daemons) == set()
    orphans = every - daemons
    assert {p for p in orphans if _alive(p)}, "job steps outlive a SIGKILLed runner"
    reaped = SlurmTestCluster.reap_orphans()  # what the next start() does first
    assert {p for p in orphans if _alive(p)} <= reaped
    assert _wait_gone(every) == set()
    conf = parse_key_values((tmp_path / "etc" / "slurm.conf").read_text().replace("\n", " "))
    munge_dir = Path(conf["AuthInfo"].removeprefix("socket=")).parent
    assert not (munge_dir / "munged.pid").exists()  # munged got SIGTERM and cleaned up
    shutil.rmtree(munge_dir)  # reap_orphans() leaves it for a minute; do not litter /tmp


def test_second_cluster_beside_the_shared_one(slurm_cluster, slurm_cluster_factory):
    other = slurm_cluster_factory(nodes=2, gpus_per_node=2, cpus_per_node=2)
    ports = {other.ctld_port, *other.node_ports.values()}
    assert not ports & {slurm_cluster.ctld_port, *slurm_cluster.node_ports.values()}
    assert other.node_states() == {"n1": "idle", "n2": "idle"}
    job = other.sbatch("-N2", wrap="sleep 300")
    other.wait_job(job, ["RUNNING"], timeout=30)
    pids = other.pids()
    assert set(slurm_cluster.node_states().values()) == {"idle"}
    other.stop()
    assert not other.running and other.pids() == set()
    assert _wait_gone(pids) == set()
    assert len(slurm_cluster.node_states()) == 16


def test_failed_start_reports_the_log_and_leaves_nothing(require_slurm, tmp_path):
    cluster = SlurmTestCluster(1, base_dir=tmp_path, extra_conf="NoSuchKey=1", prefix=require_slurm.prefix)
    with pytest.raises(ExternalError) as info:
        cluster.start()
    message = str(info.value)
    assert "slurmctld exited" in message and "NoSuchKey" in message
    assert "--- slurmctld" in message  # the tail of its log is in the error
    assert cluster.daemon_pids() == {} and cluster.pids() == set() and not cluster.running


def _listen(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_a_port_taken_after_it_was_drawn_is_drawn_again(require_slurm, tmp_path):
    """Another cluster may bind a port between free_ports() and the daemon's bind: start() draws new ports."""
    cluster = SlurmTestCluster(2, gpus_per_node=0, base_dir=tmp_path, prefix=require_slurm.prefix)
    taken = cluster.node_ports["n2"]
    with _listen(taken):
        try:
            cluster.start()
            assert cluster.node_states() == {"n1": "idle", "n2": "idle"}
            assert taken not in cluster.node_ports.values()
            assert len(cluster.port_clashes) == 1 and str(taken) in cluster.port_clashes[0]
            assert str(taken) in (tmp_path / "log" / "start-1" / "slurmd-n2.log").read_text()
            assert f"Port={taken}" not in cluster.conf_path.read_text()
        finally:
            cluster.stop()


def test_a_port_clash_on_the_last_try_is_reported(require_slurm, tmp_path, monkeypatch):
    monkeypatch.setattr(slurm_cluster, "PORT_TRIES", 1)
    cluster = SlurmTestCluster(1, gpus_per_node=0, base_dir=tmp_path, prefix=require_slurm.prefix)
    with _listen(cluster.node_ports["n1"]), pytest.raises(ExternalError) as info:
        cluster.start()
    assert "slurmd-n1 exited" in str(info.value) and "Address already in use" in str(info.value)
    assert cluster.daemon_pids() == {} and cluster.pids() == set() and cluster.port_clashes == []


def _cluster_processes(base_dir: Path) -> set[int]:
    """Every live process whose working directory is in the cluster's directory (as /proc shows it)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = Path(os.readlink(entry / "cwd"))
            except OSError:
                continue
            if (cwd == base_dir or base_dir in cwd.parents) and _alive(int(entry.name)):
                found.add(int(entry.name))
    return found


def test_stop_leaves_no_process_of_the_cluster(require_slurm, tmp_path):
    """Daemons, slurmstepd (whose environment 25.11 hides) and job steps are all gone after stop()."""
    cluster = SlurmTestCluster(2, gpus_per_node=1, base_dir=tmp_path / "c", prefix=require_slurm.prefix)
    cluster.start()
    try:
        assert cluster.version == require_slurm.version()
        batch = cluster.sbatch("-N1", "--gres=gpu:1", wrap="srun sleep 300")
        cluster.wait_job(batch, ["RUNNING"], timeout=30)
        deadline = time.monotonic() + 15
        while not any(open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")[0].endswith(b"sleep")
                      for p in _cluster_processes(cluster.base_dir)):
            assert time.monotonic() < deadline, "the job step's sleep never started"
            time.sleep(0.05)
        before = cluster.pids()
        stepds = {p for p in before if Path(f"/proc/{p}/comm").read_text().strip() == "slurmstepd"}
        assert stepds, "no slurmstepd found among the cluster's processes"
        assert _cluster_processes(cluster.base_dir) <= before
    finally:
        cluster.stop()
    assert cluster.pids() == set()
    assert _wait_gone(before) == set()
    assert _cluster_processes(cluster.base_dir) == set()


def test_stop_spares_a_shell_that_exported_the_clusters_slurm_conf(require_slurm, tmp_path):
    """docs/testing.md tells users to `export SLURM_CONF=...` in another shell: stop() must not kill it
    (only job processes, with SLURM_JOB_ID, and the daemons' own slurmstepd are the cluster's)."""
    import subprocess

    cluster = SlurmTestCluster(1, gpus_per_node=1, base_dir=tmp_path / "c", prefix=require_slurm.prefix)
    cluster.start()
    bystander = subprocess.Popen(["sleep", "300"], env={**os.environ, "SLURM_CONF": str(cluster.conf_path)},
                                 cwd=tmp_path)
    try:
        assert bystander.pid not in cluster.pids()
    finally:
        cluster.stop()
        alive = bystander.poll() is None
        bystander.kill()
        bystander.wait()
    assert alive, "stop() killed a process that only had the cluster's SLURM_CONF in its environment"
