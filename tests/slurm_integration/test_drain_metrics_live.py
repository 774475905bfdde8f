"""An SRE's probe on a real Slurm: a gang on four nodes × 8 GPUs, then ``scontrol update nodename=<one of
them> state=drain``: ``fabric_agent_gpus`` and ``fabric_agent_gpus_alloc`` dropped by that node's 8 GPUs
while it was MIXED+DRAIN running the gang (docs/metrics.md: GPUs on nodes that are up; a draining node is
up). Now they stay, and status.json's utilisation with them; a gang submitted then is not placed there."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.slurm_integration.test_observe import _fabric, _free_port

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _values(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line.startswith("fabric_agent_gpus") and " " in line}


def test_a_draining_nodes_gpus_stay_up_and_allocated(fabric_cluster, agent):
    port = _free_port()
    agent.extra = ("--metrics-port", str(port))
    agent.start()
    big = fabric_cluster.sbatch("-N4", "--gres=gpu:8", wrap="sleep 120")
    info = fabric_cluster.wait_job(big, states=("RUNNING",), timeout=60)
    hosts = fabric_cluster.hostnames(info["NodeList"])
    total = 16 * 8
    agent.wait_cycles(agent.cycles() + 2)
    assert _values(port)["fabric_agent_gpus_alloc"] == 32
    drained = hosts[-1]
    fabric_cluster.run(["scontrol", "update", f"nodename={drained}", "state=drain", "reason=probe"])
    try:
        agent.wait_cycles(agent.cycles() + 3)
        values = _values(port)
        assert values["fabric_agent_gpus"] == total and values["fabric_agent_gpus_alloc"] == 32, values
        st = json.loads(_fabric(fabric_cluster, "agent", "status", "--state-dir", str(agent.state_dir),
                                "--json").stdout)
        assert st["utilisation"] == pytest.approx(32 / total), st
        # a gang submitted now never lands on the draining node (nor would Slurm start it there)
        one = fabric_cluster.sbatch("-N1", "--gres=gpu:8", wrap="sleep 1")
        done = fabric_cluster.wait_job(one, timeout=60)
        assert drained not in fabric_cluster.hostnames(done["NodeList"])
    finally:
        fabric_cluster.run(["scontrol", "update", f"nodename={drained}", "state=resume"], check=False)
