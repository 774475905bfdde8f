"""The client contract for the ``pyslurm`` backend: test_client_contract.py's tests, unchanged, on Slurm 25.11.

Why a module of its own: PyPI's pyslurm 25.11.x works only with Slurm 25.11, so this combination
exists on exactly one tier of the Slurm matrix. Here it is generated once, against a 25.11 cluster
of its own, and nowhere else: no pyslurm test on the 22.05 tier, so no skip line there either.

Why a worker process: libslurm reads one slurm.conf per process (and ends the process when there is
none), so the pytest process, which starts clusters of several Slurm releases, never imports
pyslurm; each cluster's pyslurm client runs in a worker bound to that cluster's slurm.conf
(:mod:`tests.slurm_integration.pyslurm_worker`).
"""

from __future__ import annotations

import importlib.util
import json
import inspect
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.slurm import SlurmClient
from fabric_hpc.slurm.contract import SlurmError
from tests.real import require_real
from tests.slurm_integration import test_client_contract as contract
from tests.slurm_integration.pyslurm_worker import PyslurmWorker

# pyslurm 25.11 exists for Slurm 25.11 only: these tests are generated on the 25.11 tier alone (tests/conftest.py)
pytestmark = [pytest.mark.slurm, pytest.mark.slurm_min(25, 11), pytest.mark.slurm_max(25, 11)]

#: The Slurm install the pyslurm wheel is built against (its libslurm is found through RUNPATH).
PYSLURM_SLURM = Path(os.environ.get("FABRIC_PYSLURM_SLURM", "/opt/slurm-25.11"))

# the contract's tests (those that take a `client`), collected here with this module's `client` and cluster
globals().update({name: test for name, test in vars(contract).items()
                  if name.startswith("test_") and "client" in inspect.signature(test).parameters})


def _slurmctld_version(slurmctld: str | None) -> str:
    if slurmctld is None:
        return "none"
    proc = subprocess.run([slurmctld, "-V"], capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout.strip().split()[-1] if proc.returncode == 0 and proc.stdout.strip() else "none"


def _cluster_options() -> dict[str, Any]:
    """Start the cluster from PYSLURM_SLURM: by ``prefix`` where the fixture has it, else from PATH."""
    from fabric_hpc.testing import SlurmTestCluster

    installed = _slurmctld_version(str(PYSLURM_SLURM / "sbin" / "slurmctld"))
    require_real("pyslurm", installed.startswith("25.11."),
                 f"pyslurm 25.11 needs Slurm 25.11 in {PYSLURM_SLURM} (make slurm-25.11), found {installed}")
    require_real("pyslurm", importlib.util.find_spec("pyslurm") is not None,
                 "pyslurm is not installed (make test installs the vendor wheel; see docs/slurm.md)")
    if "prefix" in inspect.signature(SlurmTestCluster).parameters:
        return {"prefix": PYSLURM_SLURM}
    on_path = _slurmctld_version(shutil.which("slurmctld"))
    require_real("pyslurm", on_path.startswith("25.11."),
                 f"the Slurm on PATH is {on_path}: put {PYSLURM_SLURM}/bin:{PYSLURM_SLURM}/sbin first on PATH")
    return {}


@pytest.fixture(scope="module")
def slurm_cluster(require_slurm: None, slurm_fabric: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Slurm 25.11 cluster like the shared one (16 nodes x 8 GPUs), for this module only.

    Started here rather than by ``slurm_cluster_factory`` so that it is one cluster of one release
    whatever tiers the session's factory runs; stopped at the end of the module.
    """
    from fabric_hpc.testing import SlurmTestCluster

    options = _cluster_options()
    cluster = SlurmTestCluster.from_fabric(slurm_fabric, base_dir=tmp_path_factory.mktemp("slurm-pyslurm"),
                                           **options)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def contract_cluster(slurm_cluster: Any) -> Any:
    """The contract tests' cluster: this module's 25.11 cluster."""
    return slurm_cluster


@pytest.fixture(scope="module")
def pyslurm_worker(slurm_cluster: Any) -> Iterator[PyslurmWorker]:
    worker = PyslurmWorker(slurm_cluster.env, log=slurm_cluster.log_dir / "pyslurm-worker.log")
    try:
        yield worker
    finally:
        worker.close()


@pytest.fixture()
def client(pyslurm_worker: PyslurmWorker, slurm_cluster: Any) -> Iterator[SlurmClient]:
    yield pyslurm_worker
    slurm_cluster.run(["scancel", "--user", str(os.getuid())], check=False)


def test_pyslurm_is_bound_to_one_slurm_conf(slurm_cluster: Any, tmp_path: Path) -> None:
    """A second slurm.conf in the worker's process is refused, not silently served by the first cluster."""
    other = tmp_path / "slurm.conf"
    other.write_text(slurm_cluster.conf_path.read_text())
    worker = PyslurmWorker(slurm_cluster.env, log=tmp_path / "worker.log")
    try:
        assert worker.nodes()  # bound to the cluster's slurm.conf
        with pytest.raises(SlurmError, match="bound to"):
            worker._call("__init__", str(other))
    finally:
        worker.close()


def test_without_slurm_conf_it_refuses_instead_of_exiting(slurm_cluster: Any, tmp_path: Path) -> None:
    """No SLURM_CONF (or one naming no file): a SlurmError from the worker, which stays alive to say so."""
    for env in ({k: v for k, v in slurm_cluster.env.items() if k != "SLURM_CONF"},
                {**slurm_cluster.env, "SLURM_CONF": str(tmp_path / "missing.conf")}):
        with pytest.raises(SlurmError, match="SLURM_CONF"):
            PyslurmWorker(env, log=tmp_path / "worker.log")


def test_agent_places_a_gang_through_pyslurm(slurm_cluster: Any, slurm_fabric: Any, tmp_path: Path) -> None:
    """``fabric agent run --backend pyslurm``: a deferred 2-node fabric gang runs exactly where the agent put it."""
    from fabric_hpc.topology import save_spec
    from tests.slurm_integration.conftest import AgentProcess

    topology = tmp_path / "topology.yaml"
    save_spec(slurm_fabric.spec, topology)
    jid = slurm_cluster.sbatch("-N", "2", "--gres=gpu:4", "--comment=fabric", "--begin=now+600",
                               script="#!/bin/sh\nsleep 30\n", cwd=slurm_cluster.work_dir)
    # this cluster has no job_submit.lua: --begin=now+600 stands in for its deferral, so the agent is
    # told the plugin's fallback is 600 s (a begin time that is not a fabric deferral is waited for)
    agent = AgentProcess(slurm_cluster, topology, tmp_path, "--backend", "pyslurm", "--fallback", "600").start()
    try:
        job = slurm_cluster.wait_job(jid, ("RUNNING",), timeout=60)
        placed = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
        placed = [e for e in placed if e["event"] == "agent.place" and e["job"] == jid]
        assert len(placed) == 1
        hosts = slurm_cluster.hostnames(job["NodeList"])
        assert sorted(hosts) == sorted(placed[0]["hosts"])
        assert len({dict(slurm_fabric.domains(h))["leaf"] for h in hosts}) == 1  # one leaf: the compact choice
        status = json.loads((tmp_path / "status.json").read_text())
        assert status["backend"] == "pyslurm" and status["errors"] == 0
    finally:
        assert agent.stop() == 0  # SIGTERM: a clean stop
        slurm_cluster.run(["scancel", str(jid)], check=False)


def test_agent_on_pyslurm_outlives_a_controller_outage(slurm_cluster: Any, slurm_fabric: Any, tmp_path: Path) -> None:
    """slurmctld goes away under a running pyslurm agent: agent.error and backoff, then it places again."""
    from fabric_hpc.topology import save_spec
    from tests.slurm_integration.conftest import AgentProcess

    topology = tmp_path / "topology.yaml"
    save_spec(slurm_fabric.spec, topology)
    agent = AgentProcess(slurm_cluster, topology, tmp_path, "--backend", "pyslurm", "--max-backoff", "1",
                         "--fallback", "600").start()  # --begin=now+600 below: the plugin's deferral
    log = tmp_path / "decisions.jsonl"
    try:
        slurm_cluster.run(["scontrol", "shutdown", "slurmctld"])
        deadline = time.monotonic() + 60
        while '"agent.error"' not in log.read_text():
            assert agent.proc is not None and agent.proc.poll() is None, agent.log()
            assert time.monotonic() < deadline, "no agent.error while slurmctld was down"
            time.sleep(0.2)
        slurm_cluster.restart_slurmctld()
        jid = slurm_cluster.sbatch("-N", "2", "--gres=gpu:2", "--comment=fabric", "--begin=now+600",
                                   script="#!/bin/sh\nsleep 30\n", cwd=slurm_cluster.work_dir)
        slurm_cluster.wait_job(jid, ("RUNNING",), timeout=60)
        events = [json.loads(line) for line in log.read_text().splitlines()]
        errors = [e for e in events if e["event"] == "agent.error"]
        assert errors and all(e["kind"] == "SlurmError" and "pyslurm" in e["error"] for e in errors)
        assert [e["job"] for e in events if e["event"] == "agent.place"] == [jid]
        assert [e["event"] for e in events].count("agent.start") == 1  # the same agent carried on
    finally:
        assert agent.stop() == 0
        slurm_cluster.run(["scancel", "--user", str(os.getuid())], check=False)


def test_cpu_counts_match_the_cli_backend(client: SlurmClient, slurm_cluster: Any) -> None:
    """The agent's "host has the job's CPU share free" filter reads Job.cpus and Node.cpus_alloc: pyslurm
    fills them as the cli backend does (running and pending job, allocated CPUs per node)."""
    from fabric_hpc.slurm import open_client

    cli = open_client("cli", env=slurm_cluster.env)
    run = slurm_cluster.sbatch("-N2", "--gres=gpu:1", "--ntasks-per-node=3", wrap="sleep 30")
    held = slurm_cluster.sbatch("-N1", "--gres=gpu:1", "-c", "5", "-H", wrap="true")
    job = contract._wait(client, run, {"RUNNING"})
    by_cli = {j.job_id: j for j in cli.jobs()}
    by_pyslurm = {j.job_id: j for j in client.jobs()}
    assert by_pyslurm[run].cpus == by_cli[run].cpus >= 6
    assert by_pyslurm[held].cpus == by_cli[held].cpus == 5
    alloc = {n.name: n.cpus_alloc for n in client.nodes()}
    assert alloc == {n.name: n.cpus_alloc for n in cli.nodes()}
    assert all(alloc[h] >= 3 for h in job.node_list) and sum(alloc.values()) == by_cli[run].cpus
