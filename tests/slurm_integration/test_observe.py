"""Status, Prometheus metrics, ``fabric slurm why`` and spot requeue on the live cluster."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from fabric_hpc.events import read_json_lines

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _fabric(cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fabric_hpc.cli", *args], env=cluster.env, text=True,
                          capture_output=True, timeout=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_status_metrics_and_why(fabric_cluster, agent):
    port = _free_port()
    agent.extra = ("--metrics-port", str(port))
    agent.start()
    done = fabric_cluster.sbatch("-N2", "--gres=gpu:8", wrap="sleep 1")
    fabric_cluster.wait_job(done, timeout=60)
    # a gang restricted to n1-n2 while n1 is busy: it waits, and why says so
    busy = fabric_cluster.sbatch("-N1", "--gres=gpu:8", "-w", "n1", wrap="sleep 60")
    fabric_cluster.wait_job(busy, states=("RUNNING",), timeout=30)
    waiting = fabric_cluster.sbatch("-N2", "--gres=gpu:8", "--comment=fabric:include=n[1-2]", wrap="sleep 1")
    agent.wait_cycles(agent.cycles() + 3)

    st = json.loads(_fabric(fabric_cluster, "agent", "status", "--state-dir", str(agent.state_dir), "--json").stdout)
    assert st["running"] and st["lock_holder"] == agent.proc.pid and st["cycles"] >= 3
    assert str(waiting) in st["waiting"] and st["heartbeat_age_s"] <= 5

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
              if line.startswith("fabric_agent_") and " " in line}
    assert values["fabric_agent_jobs_placed_total"] >= 1 and values["fabric_agent_schedule_cycle_seconds_count"] >= 3
    assert values["fabric_agent_jobs_pending"] >= 1

    placed = _fabric(fabric_cluster, "slurm", "why", str(done), "--state-dir", str(agent.state_dir))
    assert placed.returncode == 0 and "The fabric agent chose n" in placed.stdout, placed
    pend = _fabric(fabric_cluster, "slurm", "why", str(waiting), "--state-dir", str(agent.state_dir))
    assert "is pending" in pend.stdout and "the agent's policy" in pend.stdout, pend.stdout
    missing = _fabric(fabric_cluster, "slurm", "why", "999999")
    assert missing.returncode == 3 and "Traceback" not in missing.stderr


def test_spot_gangs_are_requeued_for_a_high_tier_gang(fabric_cluster, agent):
    # the high gang's wait (2 hosts x 8 GPUs x 1 h: no time limit counts as 1 h) against a victim's
    # loss (32 GPUs x (seconds run + 300 s restore)): worth it at ratio 1, not at the default 20
    agent.extra = (*agent.extra, "--preempt-benefit-ratio", "1")
    agent.start()
    spots = [fabric_cluster.sbatch("-N4", "--gres=gpu:8", "--requeue", "--comment=fabric:tier=spot",
                                   wrap="sleep 120") for _ in range(4)]
    _wait(lambda: all(fabric_cluster.job(j)["JobState"] == "RUNNING" for j in spots), 60, "spot gangs start")
    normal = fabric_cluster.sbatch("-N2", "--gres=gpu:8", "--comment=fabric:tier=high", wrap="sleep 1")
    info = fabric_cluster.wait_job(normal, timeout=90)
    log = read_json_lines(agent.state_dir / "decisions.jsonl")
    requeues = [e for e in log if e["event"] == "agent.requeue" and e["for_job"] == normal]
    assert len(requeues) == 1 and requeues[0]["job"] in spots
    victim = fabric_cluster.job(requeues[0]["job"])
    assert victim["Restarts"] == "1"
    chosen = [e for e in log if e["event"] == "agent.place" and e["job"] == normal][-1]["hosts"]
    assert sorted(fabric_cluster.hostnames(info["NodeList"])) == sorted(chosen)
