"""A site-style cluster on a live Slurm: ``GresTypes=gpu,nvme`` (n1, n2 have ``nvme:1``) and
``SelectTypeParameters=CR_Core_Memory``. A running job holding ``nvme:1`` is shown by ``scontrol -d`` as
``nvme(CNT:1)``; before, that stopped every agent cycle (``unknown GRES detail 'CNT'``) and
``fabric slurm jobs`` failed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from fabric_hpc.hostlist import expand
from tests.slurm_integration.conftest import FALLBACK_S, REPO, AgentProcess, _wait_idle
from tests.slurm_integration.test_agent_held_live import _decisions

pytestmark = [pytest.mark.slurm]
MEM = 16000  # MiB per node


@pytest.fixture(scope="module")
def site_fabric() -> Any:
    from fabric_hpc.topology import build, generators

    return build(generators.leaf_spine(4, hosts_per_leaf=4, gpus=4, cpus=8))


@pytest.fixture(scope="module")
def site_cluster(slurm_cluster_factory: Any, site_fabric: Any, tmp_path_factory: Any) -> Any:
    from fabric_hpc.slurm.plugins import render_job_submit
    from fabric_hpc.testing import NodeSpec
    from fabric_hpc.topology import export, save_spec

    nodes = []
    for h in site_fabric.hosts:
        fields = {**export.slurm_node_fields(site_fabric, h), "RealMemory": str(MEM)}
        if h in ("n1", "n2"):
            fields["Gres"] += ",nvme:1"
        nodes.append(NodeSpec.from_fields(h, fields))
    gres = export.gres_conf(site_fabric, device_dir="{device_dir}") + "NodeName=n[1-2] Name=nvme Count=1\n"
    lua = render_job_submit(state_dir="{base_dir}/agent", fallback_s=FALLBACK_S, max_gpus_per_node=8)
    cluster = slurm_cluster_factory(
        nodes=nodes, topology_conf=export.topology_conf(site_fabric), gres_conf=gres,
        settings={"JobSubmitPlugins": "lua", "GresTypes": "gpu,nvme", "TopologyPlugin": "topology/tree",
                  "SelectTypeParameters": "CR_Core_Memory"},
        config_files={"job_submit.lua": lua})
    (cluster.base_dir / "agent").mkdir(exist_ok=True)
    cluster.topology_file = save_spec(site_fabric.spec, tmp_path_factory.mktemp("site") / "topology.yaml")
    return cluster


@pytest.fixture()
def site_agent(site_cluster: Any) -> Iterator[AgentProcess]:
    c = site_cluster
    a = AgentProcess(c, c.topology_file, c.base_dir / "agent", "--compact-wait", "0")
    try:
        yield a
    finally:
        a.stop()
        c.run(["scancel", "--user", str(os.getuid())], check=False)
        _wait_idle(c)
        (c.base_dir / "agent" / "decisions.jsonl").unlink(missing_ok=True)


def fabric_cli(cluster: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**cluster.env, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "fabric_hpc.cli", *args], env=env, text=True,
                          capture_output=True, cwd=REPO, timeout=90, check=False)


def agent_errors(agent: AgentProcess) -> tuple[int, str | None]:
    import json

    status = json.loads((agent.state_dir / "status.json").read_text())
    return status["errors"], status["last_error"]


def test_a_running_job_holding_nvme_does_not_stop_the_agent(site_cluster, site_agent):
    c = site_cluster
    nvme = c.sbatch("-N1", "--gres=gpu:2,nvme:1", "--mem=1000", "--comment=nofabric", wrap="sleep 300")
    c.wait_job(nvme, states=("RUNNING",), timeout=30)
    shown = c.run(["scontrol", "-d", "show", "job", str(nvme)]).stdout
    assert "nvme(CNT:1)" in shown, shown  # the answer that stopped the agent
    site_agent.start()
    site_agent.wait_cycles(site_agent.cycles() + 4)
    assert agent_errors(site_agent) == (0, None), site_agent.log()
    jid = c.sbatch("-N1", "--gres=gpu:1", "--mem=1000", "--comment=fabric", wrap="sleep 300")
    info = c.wait_job(jid, states=("RUNNING",), timeout=30)
    assert _decisions(site_agent, "agent.place", jid), site_agent.log()
    assert set(expand(info["NodeList"])) <= {"n1", "n2", "n3", "n4"}
    assert agent_errors(site_agent) == (0, None), site_agent.log()
    for args in (("slurm", "jobs"), ("slurm", "why", str(nvme)), ("slurm", "nodes")):
        done = fabric_cli(c, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)


def _busy(c: Any) -> list[int]:
    """n1 runs a 1-GPU job (1000 MiB), n2 and n3 all their GPUs; n4 is idle. A gang of one GPU would be
    packed onto n1, the host with the fewest GPUs free."""
    jobs = [c.sbatch("-w", "n1", "--gres=gpu:1", "--mem=1000", "--comment=nofabric", wrap="sleep 300")]
    jobs += [c.sbatch("-w", h, "--gres=gpu:4", "--mem=1000", "--comment=nofabric", wrap="sleep 300")
             for h in ("n2", "n3")]
    for jid in jobs:
        c.wait_job(jid, states=("RUNNING",), timeout=30)
    return jobs


@pytest.mark.parametrize("options", [("--exclusive", "--mem=1000"), ("--mem=15500",), ()],
                         ids=["exclusive", "mem-15500", "no-mem"])
def test_a_job_is_placed_only_where_slurm_can_start_it(site_cluster, site_agent, options):
    """--exclusive: only on a host where nothing runs; --mem=15500 (15000 MiB free on n1) and no --mem
    (all of a node's memory, CR_Core_Memory without DefMemPerNode): not on n1. Before, each was pinned to
    n1 and stayed pending (Resources) until the pin went stale."""
    c = site_cluster
    _busy(c)
    site_agent.start()
    jid = c.sbatch("-N1", "--gres=gpu:1", *options, "--comment=fabric", wrap="sleep 300")
    info = c.wait_job(jid, states=("RUNNING",), timeout=30)
    assert info["NodeList"] == "n4", info
    placed = _decisions(site_agent, "agent.place", jid)
    assert placed and all(p["hosts"] == ["n4"] for p in placed), (placed, site_agent.log())
    assert agent_errors(site_agent) == (0, None), site_agent.log()


def test_slurm_nodes_shows_a_drained_node_as_drained(site_cluster):
    """Before, the table showed a drained idle node as plain ``idle``."""
    import json

    c = site_cluster
    c.run(["scontrol", "update", "NodeName=n4", "State=DRAIN", "Reason=site-probe"])
    try:
        done = fabric_cli(c, "slurm", "nodes")
        assert done.returncode == 0, done.stderr
        row = next(ln for ln in done.stdout.splitlines() if " n4 " in f" {ln} ")
        assert "drain" in row, done.stdout
        assert "drain" not in next(ln for ln in done.stdout.splitlines() if " n3 " in f" {ln} ")
        data = json.loads(fabric_cli(c, "slurm", "nodes", "--json").stdout)
        n4 = next(d for d in data if d["node"] == "n4")
        assert "drain" in n4["flags"] and n4["usable"] is False, n4
    finally:
        c.run(["scontrol", "update", "NodeName=n4", "State=RESUME"])
