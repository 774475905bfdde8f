"""Typed GPUs on a live Slurm (``Gres=gpu:h100:4`` and ``gpu:a100:2`` hosts): a gang that asks for
``--gres=gpu:a100:1`` is pinned only to a100 hosts (before: to free h100 hosts, where Slurm set
``BadConstraints``, priority 0, and the agent read that as a hold, unpinned and pinned it again every
cycle); a pin Slurm rejects is handed to Slurm once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.hostlist import expand
from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.slurm.why import explain
from tests.slurm_integration.conftest import FALLBACK_S, AgentProcess, _wait_idle
from tests.slurm_integration.test_agent_held_live import _decisions, _until

pytestmark = [pytest.mark.slurm]
H100, A100 = "n[1-2]", "n[3-4]"


@pytest.fixture(scope="module")
def typed_fabric() -> Any:
    """n1, n2: 4 × H100 (GRES type h100); n3, n4: 2 × A100 (a100); one leaf."""
    from fabric_hpc.topology import build, generators

    spec = generators.leaf_spine(4, hosts_per_leaf=4, gpus=4, cpus=8).model_dump()
    spec["host_types"]["a100"] = {**spec["host_types"]["node"], "gpus": 2, "gpu_model": "A100-SXM4-80GB",
                                  "features": ["a100"]}
    spec["hosts"] = [{"names": H100, "type": "node"}, {"names": A100, "type": "a100"}]
    return build(spec)


@pytest.fixture(scope="module")
def typed_cluster(slurm_cluster_factory: Any, typed_fabric: Any) -> Any:
    from fabric_hpc.slurm.plugins import render_job_submit

    lua = render_job_submit(state_dir="{base_dir}/agent", fallback_s=FALLBACK_S, max_gpus_per_node=8)
    cluster = slurm_cluster_factory(typed_fabric, settings={"JobSubmitPlugins": "lua"},
                                    config_files={"job_submit.lua": lua})
    (cluster.base_dir / "agent").mkdir(exist_ok=True)
    return cluster


@pytest.fixture()
def typed_agent(typed_cluster: Any, typed_fabric: Any, tmp_path: Path) -> Iterator[AgentProcess]:
    from fabric_hpc.topology import save_spec

    topology = save_spec(typed_fabric.spec, tmp_path / "topology.yaml")
    a = AgentProcess(typed_cluster, topology, typed_cluster.base_dir / "agent", "--compact-wait", "0")
    try:
        yield a
    finally:
        a.stop()
        typed_cluster.run(["scancel", "--user", "root"], check=False)
        _wait_idle(typed_cluster)
        (typed_cluster.base_dir / "agent" / "decisions.jsonl").unlink(missing_ok=True)


def _busy_a100(c: Any) -> int:
    jid = c.sbatch("-N2", "--gres=gpu:a100:2", "--comment=nofabric", wrap="sleep 300")
    c.wait_job(jid, states=("RUNNING",), timeout=30)
    return jid


def test_an_a100_gang_waits_for_a100_hosts_instead_of_a_wrong_pin(typed_cluster, typed_agent):
    c = typed_cluster
    assert c.run(["scontrol", "show", "node", "n1"]).stdout.count("gpu:h100:4")
    typed_agent.start()
    busy = _busy_a100(c)
    jid = c.sbatch("-N2", "--gres=gpu:a100:1", "--comment=fabric", wrap="sleep 300")
    typed_agent.wait_cycles(typed_agent.cycles() + 6)
    info = c.job(jid)
    assert info["JobState"] == "PENDING" and info["Reason"] != "BadConstraints", info
    assert info["ReqNodeList"] in ("(null)", ""), info  # before: ReqNodeList=n[1-2], the h100 hosts
    assert not _decisions(typed_agent, "agent.place", jid) and not _decisions(typed_agent, "agent.unpin", jid)
    c.run(["scancel", str(busy)])
    info = c.wait_job(jid, states=("RUNNING",), timeout=30)
    assert set(expand(info["NodeList"])) == set(expand(A100))
    placed = _decisions(typed_agent, "agent.place", jid)
    assert placed and set(placed[-1]["hosts"]) == set(expand(A100)), typed_agent.log()


def test_a_pin_slurm_rejects_is_handed_to_slurm_once(typed_cluster, typed_agent):
    c = typed_cluster
    if (23, 11) <= c.version[:2] < (24, 11):
        # no BadConstraints to hand over: 23.11.11's and 24.05.8's main scheduler stops at the account check
        # for every job of these accounting-less clusters (job_scheduler.c:1762-1772, "has invalid
        # account"), before the node selection whose failure sets BadConstraints (24.05 :1971, 23.11
        # :1947); backfill, which starts their jobs, never sets it (fabric_hpc/testing/_slurm_config.py).
        # The pin just never starts: a stale pin
        pytest.skip("Slurm 23.11/24.05 without accounting set no BadConstraints (job_scheduler.c:1762)")
    busy = _busy_a100(c)
    jid = c.sbatch("-N2", "--gres=gpu:a100:1", "--comment=fabric", wrap="sleep 300")
    # the pin an agent before the fix set: the h100 hosts; Slurm rejects it at its next pass
    c.run(["scontrol", "update", f"JobId={jid}", f"ReqNodeList={H100}", "StartTime=now"])
    deadline = time.monotonic() + 30
    while c.job(jid)["Reason"] != "BadConstraints":
        assert time.monotonic() < deadline, c.job(jid)
        time.sleep(0.3)
    assert c.job(jid)["Priority"] == "0"
    said = explain(CliClient(c.env), jid)["text"]  # before: "Slurm starts it as soon as those GPUs are free"
    assert "Slurm will not start it on n[1-2], the hosts it is pinned to" in said and "held" not in said, said
    typed_agent.remember_pin(jid, H100)
    typed_agent.start()
    _until(lambda: c.job(jid)["ReqNodeList"] in ("(null)", ""), "the rejected pin was not cleared", typed_agent)
    typed_agent.wait_cycles(typed_agent.cycles() + 6)
    (hand,) = _decisions(typed_agent, "agent.handoff", jid)
    assert "Slurm rejected the pin to n[1-2] (BadConstraints" in hand["reason"], hand
    assert not _decisions(typed_agent, "agent.unpin", jid) and not _decisions(typed_agent, "agent.place", jid)
    info = c.job(jid)
    assert info["ReqNodeList"] in ("(null)", "") and info["Priority"] != "0", info  # Slurm re-evaluated it
    c.run(["scancel", str(busy)])
    info = c.wait_job(jid, states=("RUNNING",), timeout=30)
    assert set(expand(info["NodeList"])) == set(expand(A100))
