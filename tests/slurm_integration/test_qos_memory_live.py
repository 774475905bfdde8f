"""A QOS-mapped spot gang is still spot once it runs, on every tier (unit: tests/slurm/test_qos_memory.py).

25.11 without slurmdbd shows a pending job's QOS (``squeue %q``) but none once it runs: before, the agent
then read the running gang as ``normal`` (its comment) and a ``high`` gang waited on Resources with nothing
requeued. Now the agent keeps the QOS it read while the gang was pending (``<state_dir>/qos.json``): the
running gang is ``spot`` in its recorded cycle, the high gang gets it requeued, and ``fabric slurm report``
shows it spot. 22.05 without slurmdbd shows no QOS even while pending: there a ``qos:`` entry never matches
(docs/slurm.md), and the test checks just that (the gangs are ``normal``, nothing is requeued).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fabric_hpc.events import read_json_lines
from fabric_hpc.slurm import report
from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.topology import build, generators
from tests.slurm_integration.conftest import AgentProcess, agent_on, plugin_cluster

pytestmark = [pytest.mark.slurm]


@pytest.fixture(scope="module")
def small() -> Any:
    """4 hosts of 8 GPUs under one leaf: two 2-host gangs fill it."""
    return build(generators.leaf_spine(4, hosts_per_leaf=4, gpus=8, cpus=8))


@pytest.fixture(scope="module")
def qos_cluster(slurm_cluster_factory: Any, small: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return plugin_cluster(slurm_cluster_factory, small, tmp_path_factory)


@pytest.fixture()
def agent(qos_cluster: Any) -> Iterator[AgentProcess]:
    with agent_on(qos_cluster, qos_cluster.topology_file) as a:
        yield a


def _recorded_tier(a: AgentProcess, job_id: int) -> str | None:
    record = json.loads((a.state_dir / "cycles.jsonl").read_text().splitlines()[-1])["input"]
    for entry in record.get("pending", []) + record.get("running", []):
        job = entry.get("job", entry)
        if str(job.get("id")) == str(job_id):
            return job.get("tier")
    return None


def _requeues(a: AgentProcess) -> list[dict[str, Any]]:
    return [e for e in read_json_lines(a.state_dir / "decisions.jsonl") if e["event"] == "agent.requeue"]


def _qos_shown(c: Any, job_id: int) -> str:
    shown = c.run(["squeue", "-h", "-j", str(job_id), "-o", "%q"]).stdout.strip()
    return "" if shown in ("(null)", "") else shown


def test_a_qos_mapped_spot_gang_is_spot_once_running(qos_cluster, agent, small, tmp_path):
    c, a = qos_cluster, agent
    (a.state_dir / "qos.json").unlink(missing_ok=True)
    a.extra = ("--compact-wait", "0", "--record-cycles", "--preempt-benefit-ratio", "0",
               "--tier-map", "qos:scav=spot")
    a.start()
    gangs = [c.sbatch("-N2", "--gres=gpu:8", "--qos=scav", "-t", "24:00:00", "--requeue", "--hold",
                      "--comment=fabric", wrap="sleep 300") for _ in range(2)]
    pending_qos = {_qos_shown(c, j) for j in gangs}
    a.wait_cycles(a.cycles() + 2)  # the agent reads them pending (held)
    c.run(["scontrol", "release", ",".join(map(str, gangs))])
    for job_id in gangs:
        c.wait_job(job_id, states=("RUNNING",), timeout=40)
    running_qos = {_qos_shown(c, j) for j in gangs}
    a.wait_cycles(a.cycles() + 3)
    high = c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric:tier=high", wrap="sleep 300")
    deadline = time.monotonic() + (40 if pending_qos != {""} else 0)
    a.wait_cycles(a.cycles() + 6)
    requeues = _requeues(a)
    while time.monotonic() < deadline and not requeues:
        time.sleep(0.2)
        requeues = _requeues(a)
    if pending_qos == {""}:  # 22.05 without slurmdbd: no QOS at all, so the qos: entry never matches
        assert _recorded_tier(a, gangs[0]) == "normal" and requeues == [], a.log()
        return
    assert pending_qos == {"scav"}, pending_qos
    # 25.11 without slurmdbd: the QOS is gone once the gang runs (before: read as normal, never a victim)
    assert requeues and requeues[0]["job"] in gangs and requeues[0]["for_job"] == high, (running_qos, a.log())
    assert json.loads((a.state_dir / "qos.json").read_text())["jobs"].get(str(gangs[0])) == "scav"
    c.wait_job(high, states=("RUNNING",), timeout=60)
    kept = next(j for j in gangs if j != requeues[0]["job"])
    assert _recorded_tier(a, kept) == "spot"
    out = report.write(CliClient(c.env), small, tmp_path / "r.html", state_dir=a.state_dir)
    assert {r["job"]: r["tier"] for r in out["running"]}[str(kept)] == "spot"
