"""Fixtures of the live-cluster tests: a cluster with fabric's job_submit.lua, the agent as a process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
FALLBACK_S = 8  # short, so the "agent down longer than the fallback" test is quick


class AgentProcess:
    """``fabric agent run`` as a child process against one test cluster."""

    def __init__(self, cluster: Any, topology: Path, state_dir: Path, *extra: str) -> None:
        self.cluster, self.topology, self.state_dir, self.extra = cluster, topology, state_dir, extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> AgentProcess:
        argv = [sys.executable, "-m", "fabric_hpc.cli", "agent", "run", "--topology", str(self.topology),
                "--state-dir", str(self.state_dir), "--interval", "0.5", "--fallback", str(FALLBACK_S), *self.extra]
        log = open(self.state_dir / "agent.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(argv, env={**self.cluster.env, "PYTHONPATH": str(REPO)}, cwd=REPO,
                                     stdout=log, stderr=log)
        log.close()
        if wait:
            self.wait_cycles(1)
        return self

    def remember_pin(self, job_id: int, hosts: str) -> None:
        """Before :meth:`start`: the agent remembers ``hosts`` as a pin it set on ``job_id`` (its
        ``deferrals.json``), for a test that sets that pin by hand (any other ReqNodeList is someone
        else's)."""
        from fabric_hpc.hostlist import expand
        from fabric_hpc.slurm.actions import Actions
        from fabric_hpc.slurm.deferral_store import DeferralStore

        store, actions = DeferralStore(self.state_dir), Actions(self.cluster, lambda *a, **k: None)
        assert store.load(actions) is None
        actions.pins[job_id] = frozenset(expand(hosts))
        store.save(actions)

    def cycles(self) -> int:
        import json

        try:
            status = json.loads((self.state_dir / "status.json").read_text())
        except (FileNotFoundError, ValueError):
            return 0
        return int(status["cycles"]) if status.get("pid") == (self.proc.pid if self.proc else None) else 0

    def wait_cycles(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.cycles() < n:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"agent did not complete {n} cycle(s) in {timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        p = self.state_dir / "agent.log"
        return p.read_text(errors="replace")[-3000:] if p.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code, self.proc = self.proc.returncode, None
        return code


@pytest.fixture(scope="session")
def fabric_topology_file(slurm_fabric: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fabric_hpc.topology import save_spec

    path = tmp_path_factory.mktemp("fabric") / "topology.yaml"
    save_spec(slurm_fabric.spec, path)
    return path


def start_fabric_cluster(factory: Callable[..., Any], fabric: Any, **settings: str) -> Any:
    """A cluster of ``fabric`` with fabric's job_submit.lua (fallback FALLBACK_S s) and ``settings``."""
    from fabric_hpc.slurm.plugins import render_job_submit

    lua = render_job_submit(state_dir="{base_dir}/agent", fallback_s=FALLBACK_S, max_gpus_per_node=8)
    cluster = factory(fabric, settings={"JobSubmitPlugins": "lua", **settings},
                      config_files={"job_submit.lua": lua})
    (cluster.base_dir / "agent").mkdir(exist_ok=True)
    return cluster


@pytest.fixture(scope="session")
def fabric_cluster(slurm_cluster_factory: Callable[..., Any], slurm_fabric: Any) -> Any:
    """16 hosts × 8 GPUs from the fabric model, with fabric's job_submit.lua (fallback FALLBACK_S s)."""
    return start_fabric_cluster(slurm_cluster_factory, slurm_fabric)


@contextlib.contextmanager
def agent_on(cluster: Any, topology: Path) -> Iterator[AgentProcess]:
    """An (unstarted) agent of ``cluster``; afterwards it is stopped and the cluster's jobs cancelled."""
    a = AgentProcess(cluster, topology, cluster.base_dir / "agent")
    try:
        yield a
    finally:
        a.stop()
        cluster.run(["scancel", "--user", str(os.getuid())], check=False)
        _wait_idle(cluster)


@pytest.fixture()
def agent(fabric_cluster: Any, fabric_topology_file: Path) -> Iterator[AgentProcess]:
    with agent_on(fabric_cluster, fabric_topology_file) as a:
        yield a


def _wait_idle(cluster: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not cluster.run(["squeue", "-h", "-o", "%i"], check=False).stdout.strip():
            return
        time.sleep(0.2)


def plugin_cluster(factory: Callable[..., Any], fab: Any, tmp_path_factory: pytest.TempPathFactory,
                   **kw: Any) -> Any:
    """A cluster of ``fab`` with fabric's job_submit.lua (state dir ``<base_dir>/agent``, FALLBACK_S) and
    the model saved as ``cluster.topology_file`` for an agent (``kw``: more of the factory's arguments)."""
    from fabric_hpc.slurm.plugins import render_job_submit
    from fabric_hpc.topology import save_spec

    lua = render_job_submit(state_dir="{base_dir}/agent", fallback_s=FALLBACK_S, max_gpus_per_node=8)
    cluster = factory(fab, settings={"JobSubmitPlugins": "lua"}, config_files={"job_submit.lua": lua}, **kw)
    (cluster.base_dir / "agent").mkdir(exist_ok=True)
    cluster.topology_file = tmp_path_factory.mktemp("small") / "topology.yaml"
    save_spec(fab.spec, cluster.topology_file)
    return cluster
