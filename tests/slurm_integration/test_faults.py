"""The agent dies, slurmctld restarts, the agent stays away: no job is stranded or placed twice."""

from __future__ import annotations

import signal
import time

import pytest

from fabric_hpc.events import read_json_lines
from tests.slurm_integration.conftest import FALLBACK_S, agent_on, start_fabric_cluster
from tests.slurm_integration.workload import Spec, run_sequence, watch

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

GANGS = [Spec(("-N2", "--gres=gpu:8"), 2, 2, True), Spec(("-N3", "--gres=gpu:8"), 2, 3, True),
         Spec(("-N4", "--gres=gpu:8"), 1, 4, True), Spec(("-N2", "--gres=gpu:4"), 2, 2, True)] * 3


def _places(agent) -> list[dict]:
    path = agent.state_dir / "decisions.jsonl"
    return [e for e in read_json_lines(path) if e["event"] == "agent.place"] if path.exists() else []


def _assert_exact(cluster, agent, obs) -> None:
    last = {e["job"]: sorted(e["hosts"]) for e in _places(agent)}
    for jid in obs.job_ids:
        info = cluster.job(jid)
        assert info["JobState"] == "COMPLETED" and info["Restarts"] == "0", info
        if jid in last:
            assert sorted(cluster.hostnames(info["NodeList"])) == last[jid]
    assert obs.double_booked == []


def test_kill_9_mid_cycle_then_restart(fabric_cluster, agent):
    agent.start()
    before = len(_places(agent))
    ids = [fabric_cluster.sbatch(*s.args, wrap=f"sleep {s.seconds}") for s in GANGS]
    deadline = time.monotonic() + 30
    while len(_places(agent)) == before:  # the agent is placing: kill it in the middle of that
        assert time.monotonic() < deadline, agent.log()
        time.sleep(0.01)
    agent.stop(signal.SIGKILL)
    assert len(_places(agent)) - before < len(ids)  # it really died before placing everything
    agent.start()  # the lock died with the process: a new agent takes over at once
    obs = watch(fabric_cluster, ids)
    _assert_exact(fabric_cluster, agent, obs)


def test_slurmctld_restart_agent_carries_on(fabric_cluster, agent):
    agent.start()
    pid = agent.proc.pid
    fabric_cluster.restart_slurmctld()
    time.sleep(1.0)
    assert agent.proc.poll() is None
    obs = run_sequence(fabric_cluster, GANGS[:4])
    assert agent.proc.pid == pid and agent.proc.poll() is None
    _assert_exact(fabric_cluster, agent, obs)
    assert {j for j in obs.job_ids} <= {e["job"] for e in _places(agent)}


@pytest.fixture(scope="module")
def prompt_cluster(slurm_cluster_factory, slurm_fabric):
    """fabric_cluster's setup with Slurm's main scheduling pass every second (default: 60 s). A job whose
    deferral ran out starts at the next such pass (backfill does not start it), so on fabric_cluster it
    waited up to a minute more: Slurm's timing, not the fallback's."""
    return start_fabric_cluster(slurm_cluster_factory, slurm_fabric, SchedulerParameters="sched_interval=1")


@pytest.fixture()
def prompt_agent(prompt_cluster, fabric_topology_file):
    with agent_on(prompt_cluster, fabric_topology_file) as a:
        yield a


def test_agent_down_longer_than_fallback(prompt_cluster, prompt_agent):
    cluster, agent = prompt_cluster, prompt_agent
    agent.start()
    agent.stop()  # heartbeat still fresh: new jobs are deferred, and nobody will pin them
    t0 = time.time()
    jid = cluster.sbatch("-N2", "--gres=gpu:8", wrap="sleep 1")
    assert cluster.job(jid)["Reason"] == "BeginTime"
    info = cluster.wait_job(jid, timeout=FALLBACK_S + 30)
    assert info["JobState"] == "COMPLETED"
    assert jid not in {e["job"] for e in _places(agent)}
    assert time.time() - t0 <= FALLBACK_S + 30
    # heartbeat now stale: jobs are not deferred at all, and the user is told why
    while time.time() - int((agent.state_dir / "heartbeat").read_text().split()[0]) <= FALLBACK_S:
        time.sleep(0.5)
    proc = cluster.run(["sbatch", "--parsable", "-N2", "--gres=gpu:8", "--wrap", "sleep 1"])
    assert "placement agent is not running" in proc.stderr
    jid2 = int(proc.stdout.strip())
    assert cluster.job(jid2)["Reason"] != "BeginTime"
    cluster.wait_job(jid2, timeout=30)


def test_second_agent_is_refused(fabric_cluster, agent, fabric_topology_file):
    from tests.slurm_integration.conftest import AgentProcess

    agent.start()
    other = AgentProcess(fabric_cluster, fabric_topology_file, agent.state_dir).start(wait=False)
    assert other.proc.wait(30) == 3
    assert "another fabric agent" in other.log()
    assert agent.proc.poll() is None

