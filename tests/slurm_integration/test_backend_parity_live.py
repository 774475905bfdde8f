"""The three backends read a job alike on a live Slurm 25.11 topology/block cluster (pyslurm exists
for 25.11 only): the segment size of a ``--segment`` job (pyslurm read 0, so the pyslurm agent held a
job the others handed to Slurm), and the pending reason of a job that needs a drained node (pyslurm
gave Slurm's description, ``Nodes required for job are DOWN, DRAINED or reserved for jobs in higher
priority partitions``, where the others give the reason's name), the queue they list (slurmrestd and
pyslurm listed finished jobs, squeue does not); and the deadlines of a slow or frozen Slurm: a trickling
slurmrestd, a frozen slurmctld at the pyslurm agent's first contact."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from fabric_hpc.slurm import SlurmClient
from fabric_hpc.topology import build, generators
from tests.slurm_integration.backends import every_backend

pytestmark = [pytest.mark.slurm, pytest.mark.slurm_min(25, 11)]


@pytest.fixture(scope="module")
def cluster(slurm_cluster_factory: Any) -> Iterator[Any]:
    from tests.slurm_integration.restd import jwt_cluster

    fabric = build(generators.leaf_spine(8, hosts_per_leaf=4, gpus=1, cpus=2))
    # MessageTimeout 40 s: libslurm's own wait on a frozen slurmctld, far beyond a --contact-timeout of 3 s
    with jwt_cluster(slurm_cluster_factory, fabric, "fabric-parity-", topology_plugin="block",
                     extra_conf="MessageTimeout=40\n") as c:
        yield c


@pytest.fixture(scope="module")
def clients(cluster: Any) -> Iterator[dict[str, SlurmClient]]:
    with every_backend(cluster) as found:
        yield found


def _cancel(cluster: Any, job_id: int) -> None:
    cluster.run(["scancel", str(job_id)], check=False)


def _shown(cluster: Any, job_id: int) -> str:
    return cluster.run(["scontrol", "show", "job", str(job_id)]).stdout


def test_every_backend_reads_the_segment_size(cluster: Any, clients: dict[str, SlurmClient]) -> None:
    jid = cluster.sbatch("-N4", "--segment=2", "-H", wrap="true")
    spread = cluster.sbatch("-N4", "--segment=2", "--spread-segments", "-H", wrap="true")
    try:
        for name, client in clients.items():
            assert client.job(jid).segment_size == 2, name
            (job,) = [j for j in client.jobs() if j.job_id == jid]
            assert job.segment_size == 2 and job.segment_flags == (), name
            assert client.job(spread).segment_flags == ("SPREAD_SEGMENTS",), name
    finally:
        _cancel(cluster, jid)
        _cancel(cluster, spread)


def test_every_backend_names_the_reason_of_a_job_that_needs_a_drained_node(
        cluster: Any, clients: dict[str, SlurmClient]) -> None:
    cluster.run(["scontrol", "update", "NodeName=n8", "State=DRAIN", "Reason=parity"])
    jid = cluster.sbatch("-N8", wrap="true")  # all 8 nodes: one is drained
    try:
        deadline = time.monotonic() + 90  # slurmctld's main scheduler sets the description (job_scheduler.c)
        while "Reason=Nodes_required_for_job_are_DOWN" not in _shown(cluster, jid):
            assert time.monotonic() < deadline, _shown(cluster, jid)
            time.sleep(0.5)
        reason = clients["cli"].job(jid).reason
        assert reason == "Resources"  # slurmrestd's and squeue --json's name (WAIT_RESOURCES)
        assert {name: c.job(jid).reason for name, c in clients.items()} == dict.fromkeys(clients, reason)
        assert reason[:1].isupper() and " " not in reason  # an enum name, not a description
    finally:
        _cancel(cluster, jid)
        cluster.run(["scontrol", "update", "NodeName=n8", "State=RESUME"])


def test_every_backend_lists_the_queue_alike_and_still_finds_a_finished_job(
        cluster: Any, clients: dict[str, SlurmClient]) -> None:
    """slurmrestd's GET /jobs and pyslurm's Jobs.load() also gave the jobs that ended within MinJobAge,
    which squeue --json (the cli backend) leaves out: now no backend lists them, and each finds one."""
    jid = cluster.sbatch("-N1", "-H", wrap="true")
    cluster.run(["scancel", str(jid)])
    deadline = time.monotonic() + 30
    while clients["cli"].job(jid).state != "CANCELLED":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    for name, client in clients.items():
        assert jid not in {j.job_id for j in client.jobs()}, name
        assert client.job(jid).state == "CANCELLED", name


def _trickle_proxy(real: str, path: str, stop: Any) -> Any:
    """A unix socket at ``path`` passing requests to slurmrestd at ``real`` and its answers back 50 bytes
    every 0.1 s (the admin probe's proxy passed 100 bytes/s)."""
    import socket
    import threading

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)

    def one(conn: socket.socket) -> None:
        with conn, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as up:
            up.connect(real)
            up.sendall(conn.recv(65536))
            while not stop.is_set() and (data := up.recv(50)):
                try:
                    conn.sendall(data)
                except OSError:
                    return  # the client gave up
                stop.wait(0.1)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_a_trickling_slurmrestd_fails_the_request_within_its_deadline(clients: dict[str, SlurmClient],
                                                                     tmp_path: Any) -> None:
    """Through a proxy passing 500 bytes/s, a read of slurmrestd's nodes with a 2 s timeout took 43 s
    and succeeded: the socket timeout was per receive. Now the deadline is the whole request's."""
    import threading

    from fabric_hpc.slurm.contract import SlurmError
    from fabric_hpc.slurm.rest_backend import RestClient

    rest = clients["rest"]
    stop = threading.Event()
    listener = _trickle_proxy(rest.url[5:], str(tmp_path / "slow.sock"), stop)  # type: ignore[attr-defined]
    try:
        slow = RestClient(f"unix:{tmp_path / 'slow.sock'}", token=rest.token, timeout=2.0,  # type: ignore
                          api=rest.version)  # type: ignore[attr-defined]
        with pytest.raises(SlurmError, match=r"GET /slurm/v0\.0\.\d+/nodes/ did not answer within 2 s"):
            slow.nodes()
    finally:
        stop.set()
        listener.close()


def test_the_pyslurm_agent_keeps_to_the_contact_timeout_of_a_frozen_slurmctld(cluster: Any, clients: Any,
                                                                           tmp_path: Any) -> None:
    """pyslurm's calls hold the GIL, so the first contact's thread could not time them out: a frozen
    (SIGSTOP) slurmctld ended the agent only after libslurm's own timeouts (12.6 s with
    --contact-timeout 3 and the default MessageTimeout). Now a child process reads within the deadline.
    Run last: it freezes slurmctld."""
    import os
    import signal
    import subprocess
    import sys

    from fabric_hpc.topology import save_spec

    save_spec(build(generators.leaf_spine(8, hosts_per_leaf=4, gpus=1, cpus=2)).spec, tmp_path / "topo.yaml")
    argv = [sys.executable, "-m", "fabric_hpc.cli", "agent", "run", "--topology", str(tmp_path / "topo.yaml"),
            "--state-dir", str(tmp_path / "state"), "--backend", "pyslurm", "--contact-timeout", "3"]
    ctld = cluster._procs["slurmctld"]
    os.kill(ctld.pid, signal.SIGSTOP)
    try:
        try:  # within 3 s of contact timeout; libslurm alone waits 40 s and more (MessageTimeout above)
            proc = subprocess.run(argv, env={**cluster.env, "PYTHONPATH": os.getcwd()}, capture_output=True,
                                  text=True, timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("the pyslurm agent waited for libslurm's MessageTimeout, not its --contact-timeout 3")
    finally:
        os.kill(ctld.pid, signal.SIGCONT)
    assert proc.returncode == 5, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first == "error: Slurm did not answer within 3 s (the pyslurm backend)", proc.stderr
