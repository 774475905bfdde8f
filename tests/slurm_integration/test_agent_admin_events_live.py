"""An admin's ordinary actions under a running agent (probed on 22.05 and 25.11, no fabric change
needed): a node drained under a gang the agent pinned and Slurm has not started (re-placed off it at
once, no stale pin), and ``scontrol reconfigure`` between submissions (every gang placed and run on the
agent's hosts, no failed action, no error)."""

from __future__ import annotations

import time

import pytest

from fabric_hpc.events import read_json_lines
from fabric_hpc.hostlist import compress, expand
from fabric_hpc.testing import parse_key_values

pytestmark = [pytest.mark.slurm]


def _events(agent, job: int | None = None) -> list[dict]:
    events = read_json_lines(agent.state_dir / "decisions.jsonl")
    return [e for e in events if job is None or e.get("job") == job]


def _trouble(agent, since: float) -> list[dict]:
    """This test's trouble: the state dir (and its decisions.jsonl) is the cluster's, shared with earlier
    tests, e.g. test_faults' slurmctld restart, whose agent.error was read here on 25.05.8's run."""
    return [e for e in _events(agent) if e["ts"] >= since
            and e["event"] in ("agent.failed", "agent.error", "agent.handoff", "agent.stale_pin")]


def test_a_node_drained_under_an_unstarted_pin_is_left_at_once(fabric_cluster, agent, slurm_fabric):
    c, since = fabric_cluster, time.time()
    hosts = list(slurm_fabric.hosts)
    # a begin ahead, as the plugin's deferral: no agent is alive yet, so job_submit.lua defers nothing and
    # Slurm started the job within 0.3-3 s (probed on 24.05.8 and 25.11.7), before the pin, once on other
    # hosts than the drained one ("Invalid node name specified" for the pin's update; 24.05.8, -n 2)
    jid = c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", "--begin=now+300", wrap="sleep 300")
    c.run(["scontrol", "update", f"NodeName={hosts[0]}", "State=DRAIN", "Reason=fabric-test"])
    try:  # the pin as the agent set it, the node drained between its read and the update
        c.run(["scontrol", "update", f"JobId={jid}", f"ReqNodeList={compress(hosts[:2])}", "StartTime=now"])
        agent.remember_pin(jid, compress(hosts[:2]))
        agent.start()
        info = c.wait_job(jid, states=("RUNNING",), timeout=60)
        placed = [e for e in _events(agent, jid) if e["event"] == "agent.place"]
        assert len(placed) == 1 and hosts[0] not in placed[0]["hosts"], _events(agent, jid)
        assert set(expand(info["NodeList"])) == set(placed[0]["hosts"])
        assert _trouble(agent, since) == []
    finally:
        c.run(["scontrol", "update", f"NodeName={hosts[0]}", "State=RESUME"], check=False)


def _slurmd_start_times(c) -> dict[str, str]:
    out = c.run(["scontrol", "-o", "show", "node"]).stdout
    return {f["NodeName"]: f.get("SlurmdStartTime", "") for f in map(parse_key_values, out.splitlines())
            if "NodeName" in f}


def _wait_reregistered(c, before: dict[str, str], timeout: float = 60) -> None:
    """Slurm 25.05.8's slurmctld segfaults when a reconfigure meets slurmds still re-registering after
    the last one (``clusteracct_storage_g_node_up`` calls ``ops.node_up`` of an accounting plugin the
    re-exec has not loaded: src/interfaces/accounting_storage.c:1043 at slurm-25-05-8-1; 3 crashes in 4
    runs here). There the reconfigures wait until every slurmd re-registered (SlurmdStartTime, in
    seconds, changed: the caller waits a second before the reconfigure); 22.05 and 25.11 take them back
    to back."""
    deadline = time.monotonic() + timeout
    while (left := [n for n, t in _slurmd_start_times(c).items() if t == before.get(n)]):
        assert time.monotonic() < deadline, f"slurmd of {left} did not re-register after scontrol reconfigure"
        time.sleep(0.2)


def test_reconfigure_while_the_agent_places(fabric_cluster, agent):
    c, since = fabric_cluster, time.time()
    agent.start()
    jids = []
    for _ in range(4):
        jids.append(c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 300"))
        before = _slurmd_start_times(c)
        if c.version[:2] == (25, 5):
            time.sleep(1.1)  # the restarts land in a later second than any SlurmdStartTime in `before`
        c.run(["scontrol", "reconfigure"])
        if c.version[:2] == (25, 5):
            _wait_reregistered(c, before)
    for j in jids:
        info = c.wait_job(j, states=("RUNNING",), timeout=60)
        placed = [e for e in _events(agent, j) if e["event"] == "agent.place"]
        assert placed and set(placed[-1]["hosts"]) == set(expand(info["NodeList"])), _events(agent, j)
    trouble = _trouble(agent, since)
    # a read that meets slurmctld mid-reconfigure fails that cycle ("Zero Bytes were transmitted or
    # received", 22.05 in CI): an agent.error retried at once, no decision refused or lost
    assert [e for e in trouble if e["event"] != "agent.error"] == [], trouble
    assert all(e.get("kind") == "SlurmError" and e.get("retry_in_s") is not None
               for e in trouble if e["event"] == "agent.error"), trouble
    assert agent.proc is not None and agent.proc.poll() is None
