"""Two agents with different --state-dir on one live cluster, every tier: the lock cannot see the second
one, but each sees the other's deferral renewals of a waiting gang and says so (``agent.other_agent``).
Unit rules: tests/slurm/test_other_agent.py."""

from __future__ import annotations

import time
from typing import Any

import pytest

from fabric_hpc.events import read_json_lines
from fabric_hpc.topology import build, generators
from tests.slurm_integration.conftest import FALLBACK_S, AgentProcess, agent_on, plugin_cluster

pytestmark = [pytest.mark.slurm]


@pytest.fixture(scope="module")
def small_cluster(slurm_cluster_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    small = build(generators.leaf_spine(4, hosts_per_leaf=4, gpus=8, cpus=8))
    return plugin_cluster(slurm_cluster_factory, small, tmp_path_factory)


def _warnings(a: AgentProcess, since: float = 0.0) -> list[dict[str, Any]]:
    """The agent's ``agent.other_agent`` records since that time (the state dir is the module's)."""
    path = a.state_dir / "decisions.jsonl"
    found = read_json_lines(path) if path.exists() else []
    return [e for e in found if e["event"] == "agent.other_agent" and e["ts"] >= since]


def test_a_second_agent_on_another_state_dir_is_reported(small_cluster, tmp_path):
    c, since = small_cluster, time.time()
    other_dir = tmp_path / "other"
    other_dir.mkdir(mode=0o750)
    with agent_on(c, c.topology_file) as a:
        b = AgentProcess(c, c.topology_file, other_dir)
        try:
            a.start()
            b.start()
            c.sbatch("-N4", "--gres=gpu:8", "--comment=nofabric", wrap="sleep 300")  # fills the cluster
            gang = c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 300")  # waits
            deadline = time.monotonic() + 20 * FALLBACK_S
            while time.monotonic() < deadline and not (_warnings(a, since) or _warnings(b)):
                time.sleep(0.5)
            found = _warnings(a, since) + _warnings(b)
            assert found, f"no agent.other_agent\n{a.log()}\n{b.log()}"
            assert gang in found[0]["jobs"] and "another fabric agent" in found[0]["detail"]
        finally:
            b.stop()


def test_one_agent_renewing_and_taking_over_a_begin_is_not_another(small_cluster):
    c, since = small_cluster, time.time()
    with agent_on(c, c.topology_file) as a:
        a.start()
        c.sbatch("-N4", "--gres=gpu:8", "--comment=nofabric", wrap="sleep 300")  # fills the cluster
        c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 300")  # waits, renewed
        c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", "--begin=now+20", wrap="sleep 300")  # taken over
        n = a.cycles()
        a.wait_cycles(n + 10)
        time.sleep(4 * FALLBACK_S)  # several renewals of the agent's own
        a.wait_cycles(a.cycles() + 2)
        waiting = [e for e in read_json_lines(a.state_dir / "decisions.jsonl")
                   if e["event"] == "agent.waiting" and e["ts"] >= since]
        assert waiting and _warnings(a, since) == [], a.log()
