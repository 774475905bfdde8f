"""One contract for every backend: cli and rest run it against the live cluster; pyslurm in test_pyslurm_contract.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fabric_hpc.errors import NotFoundError
from fabric_hpc.slurm import SlurmClient, open_client
from tests.real import require_real

SCRIPT = "#!/bin/sh\nsleep {s}\n"


@pytest.fixture(scope="module")
def restd(slurm_cluster: Any) -> Iterator[str]:
    """slurmrestd (openapi/v0.0.38, rest_auth/local) on a unix socket of the shared cluster."""
    require_real("slurm", shutil.which("slurmrestd") is not None, "slurmrestd is not installed (Debian: slurmrestd)")
    sock = slurm_cluster.base_dir / "slurmrestd.sock"
    env = {**slurm_cluster.env, "SLURMRESTD_SECURITY": "disable_user_check"}
    log = open(slurm_cluster.log_dir / "slurmrestd.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(["slurmrestd", "-a", "rest_auth/local", "-s", "openapi/v0.0.38", f"unix:{sock}"],
                            env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "slurmrestd did not start"
            time.sleep(0.05)
        yield f"unix:{sock}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture(params=["cli", "rest"])  # pyslurm: test_pyslurm_contract.py (Slurm 25.11 only)
def client(request: pytest.FixtureRequest, slurm_cluster: Any) -> Iterator[SlurmClient]:
    if request.param == "rest":
        c = open_client("rest", url=request.getfixturevalue("restd"), env=slurm_cluster.env)
    else:
        c = open_client("cli", env=slurm_cluster.env)
    yield c
    slurm_cluster.run(["scancel", "--user", str(os.getuid())], check=False)


def _wait(client: SlurmClient, jid: int, states: set[str], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        job = client.job(jid)
        if job.state in states:
            return job
        assert time.monotonic() < deadline, f"job {jid} stayed {job.state} ({job.reason})"
        time.sleep(0.1)


def test_nodes(client: SlurmClient, slurm_cluster: Any) -> None:
    nodes = {n.name: n for n in client.nodes()}
    assert sorted(nodes) == sorted(slurm_cluster.node_names)
    assert all(n.gpus == 8 and n.gpu_type == "h100" and n.cpus == 8 for n in nodes.values())


def test_submit_hold_place_release_runs_exactly_there(client: SlurmClient, slurm_cluster: Any) -> None:
    jid = client.submit(SCRIPT.format(s=30), ["-N", "2", "--gres=gpu:3", "-H", "--comment=fabric"],
                        cwd=str(slurm_cluster.work_dir))
    job = client.job(jid)
    assert (job.state, job.nodes, job.gpus_per_node, job.fabric_marked) == ("PENDING", 2, 3, True)
    assert jid in {j.job_id for j in client.jobs() if j.pending}
    client.place(jid, ["n7", "n10"])
    client.release(jid)
    job = _wait(client, jid, {"RUNNING"})
    assert job.node_list == ("n7", "n10")
    assert job.gpus == {"n7": (0, 1, 2), "n10": (0, 1, 2)}
    used = {n.name: n.gpus_used for n in client.nodes()}
    assert used["n7"] == (0, 1, 2) and used["n1"] == ()
    client.requeue(jid)
    job = _wait(client, jid, {"PENDING"})
    client.cancel(jid)
    assert _wait(client, jid, {"CANCELLED"}).state == "CANCELLED"


def test_defer_and_hold(client: SlurmClient, slurm_cluster: Any) -> None:
    jid = client.submit(SCRIPT.format(s=1), ["-N", "1", "--gres=gpu:1"], cwd=str(slurm_cluster.work_dir))
    client.hold(jid)
    client.defer(jid, 300)
    job = client.job(jid)
    assert job.state == "PENDING" and job.begin_time is not None and job.begin_time > time.time() + 200
    client.cancel(jid)


def test_unknown_job_is_not_found(client: SlurmClient) -> None:
    with pytest.raises(NotFoundError):
        client.job(9_999_999)
