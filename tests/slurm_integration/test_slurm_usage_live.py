"""Fairshare usage from Slurm's own accounting, on every tier: slurmdbd + MariaDB started by the fixture.

Jobs of two accounts with unequal GPU use run on the live cluster; ``sshare`` shows it; the agent's
fairshare input is Slurm's numbers and ranks the lighter account's job first; when ``sshare`` fails the
agent falls back to its ledger (and says so), and comes back once Slurm answers again.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.placement.request import Request
from fabric_hpc.placement.state import ClusterState
from fabric_hpc.scheduler.apply import snapshot
from fabric_hpc.scheduler.contract import Job, PendingJob
from fabric_hpc.scheduler.priority import MultifactorPriority
from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.slurm.metrics import AgentMetrics
from fabric_hpc.slurm.sshare import JSON_ARGV, PARSABLE_ARGV, read_usage
from fabric_hpc.slurm.usage import AgentUsage
from fabric_hpc.slurm.usage_source import UsageSource, command_runner
from fabric_hpc.testing import _accounting, parse_key_values
from tests.slurm.test_lifecycle import _cluster_processes

DATA = Path(__file__).parent / "data"
# 5 s suffice: alpha's 15 GPUs (8 on one host, 7 on the other) for 5 s are 75 GPU-seconds, one whole
# GPU-minute (22.05 prints whole minutes, truncated; a job of `sleep 5` has an ElapsedRaw of 5 or more), so
# every tier shows alpha >= 60 > beta. Before: alpha's 8 GPUs for 10 s (80 GPU-seconds), 5 s longer per tier.
RUN_S = 5
JOBS = (("alpha", 8), ("alpha", 7), ("beta", 1))  # (account, GPUs on one host): 16 GPUs, all busy


def run_unequal_jobs(cluster: Any) -> dict[str, float]:
    """alpha holds 15 GPUs and beta 1 GPU for RUN_S seconds, side by side; returns each account's
    GPU-seconds as sacct counts them (allocated GPUs x elapsed)."""
    ids = {cluster.sbatch("-A", acct, "-N1", f"--gres=gpu:{n}", wrap=f"sleep {RUN_S}"): n for acct, n in JOBS}
    for job_id in ids:
        cluster.wait_job(job_id, ["COMPLETED"], timeout=RUN_S + 60)
    out = cluster.run(["sacct", "-a", "-X", "-n", "-P", "-o", "JobID,Account,ElapsedRaw", "-j",
                       ",".join(map(str, ids))]).stdout
    used = {acct: 0.0 for acct, _ in JOBS}
    for job_id, acct, elapsed in (line.split("|") for line in out.splitlines() if line):
        used[acct] += ids[int(job_id)] * float(elapsed)
    return used


@pytest.fixture(scope="module")
def used(slurm_accounting_cluster: Any) -> dict[str, float]:
    used = run_unequal_jobs(slurm_accounting_cluster)
    if os.environ.get("FABRIC_RECORD_SSHARE") == "1":  # refresh the golden answers of test_sshare_decode.py
        record_answers(slurm_accounting_cluster)
    return used


def record_answers(cluster: Any) -> None:
    major, minor, _ = cluster.version
    out = DATA / f"slurm-{major}.{minor:02d}"
    if not out.is_dir():  # a release without a full recording (replay tests read every slurm-*): its own
        out = DATA / f"sshare-{major}.{minor:02d}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sshare-P.txt").write_text(cluster.run(list(PARSABLE_ARGV)).stdout)
    answer = cluster.run(list(JSON_ARGV), check=False)
    if answer.returncode == 0:
        (out / "sshare.json").write_text(answer.stdout)


def test_sshare_shows_the_unequal_gpu_use(slurm_accounting_cluster, used):
    answer = read_usage(command_runner(CliClient(slurm_accounting_cluster.env)))
    assert answer.unit == "gpu_seconds"
    assert set(answer.usage) >= {"alpha", "beta"}
    # 22.05 prints whole GPU-minutes (truncated); 25.11's JSON GPU-seconds; both decayed by a 7-day half-life
    for acct, gpu_s in used.items():
        assert used[acct] - 60 <= answer.usage[acct] <= used[acct] * 1.001 + 1, (acct, answer.usage, used)
    assert answer.usage["alpha"] > answer.usage["beta"] and answer.usage["alpha"] >= 60


def _pending(account: str, job_id: str) -> PendingJob:
    return PendingJob(Job(job_id, Request(gpus=1), submit=0.0, walltime=600.0, account=account))


def test_agent_fairshare_input_is_slurms_usage(slurm_accounting_cluster, slurm_accounting_fabric, used, tmp_path):
    client = CliClient(slurm_accounting_cluster.env)
    agent = Agent(client, slurm_accounting_fabric,
                  AgentConfig(state_dir=str(tmp_path), usage_source="auto", record_cycles=True))
    agent.metrics = AgentMetrics(0, backend=client.backend)  # port 0: any free one
    try:
        agent.cycle()
        assert agent.metrics.registry.get_sample_value("fabric_agent_usage_from_slurm") == 1
    finally:
        agent.metrics.close()
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["usage_source"], status["usage_unit"]) == ("slurm", "gpu_seconds")
    recorded = json.loads((tmp_path / "cycles.jsonl").read_text().splitlines()[-1])["input"]["usage"]
    slurm = read_usage(command_runner(client)).usage
    assert recorded == pytest.approx(slurm, rel=1e-3)
    events = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [e["source"] for e in events if e["event"] == "agent.usage_source"] == ["slurm"]
    # the same two jobs but for their account: the one of the account that used less comes first
    view = snapshot(time.time(), {"a": _pending("alpha", "a"), "b": _pending("beta", "b")}, {},
                    ClusterState(slurm_accounting_fabric), recorded)
    prio = MultifactorPriority().priorities(view)
    assert prio["b"] > prio["a"]


def test_agent_takes_slurms_account_shares(slurm_accounting_cluster, slurm_accounting_fabric, used, tmp_path):
    """``sacctmgr modify account beta set fairshare=10``: the agent's recorded input carries beta's 10 shares
    (alpha's 1), and with equal usage the fairshare formula ranks beta's job first."""
    cluster, client = slurm_accounting_cluster, CliClient(slurm_accounting_cluster.env)
    cluster.run(["sacctmgr", "-i", "modify", "account", "beta", "set", "fairshare=10"])
    try:
        deadline = time.monotonic() + 30  # slurmdbd pushes the change to slurmctld
        while read_usage(command_runner(client)).shares.get("beta") != 10:
            assert time.monotonic() < deadline, read_usage(command_runner(client)).shares
            time.sleep(0.5)
        agent = Agent(client, slurm_accounting_fabric,
                      AgentConfig(state_dir=str(tmp_path), usage_source="slurm", record_cycles=True))
        agent.cycle()
    finally:
        cluster.run(["sacctmgr", "-i", "modify", "account", "beta", "set", "fairshare=1"])
    shares = json.loads((tmp_path / "cycles.jsonl").read_text().splitlines()[-1])["input"]["shares"]
    assert shares["beta"] == 10 and shares["alpha"] == 1 and "root" not in shares
    jobs = {"a": _pending("alpha", "a"), "b": _pending("beta", "b")}
    equal = {"alpha": 100.0, "beta": 100.0}
    prio = MultifactorPriority().priorities(snapshot(time.time(), jobs, {}, ClusterState(slurm_accounting_fabric),
                                                     equal, shares=shares))
    assert prio["b"] > prio["a"]
    same = MultifactorPriority().priorities(snapshot(time.time(), jobs, {}, ClusterState(slurm_accounting_fabric),
                                                     equal))
    assert same["b"] == pytest.approx(same["a"])  # without Slurm's shares: equal (the configured default)


def test_usage_falls_back_to_the_ledger_while_sshare_fails(slurm_accounting_cluster, used, tmp_path):
    cluster = slurm_accounting_cluster
    events: list[tuple[str, dict[str, Any]]] = []
    source = UsageSource("auto", AgentUsage(tmp_path), command_runner(CliClient(cluster.env)),
                         lambda what, **f: events.append((what, f)))
    assert source.usage(time.time(), {"alpha": 2})["alpha"] > 0 and source.active == "slurm"
    # slurmdbd down: slurmctld keeps the association usage and sshare (a slurmctld RPC) still answers
    cluster.stop_slurmdbd()
    try:
        assert source.usage(time.time(), {"alpha": 2}).keys() >= {"alpha", "beta"} and source.active == "slurm"
        # slurmctld down too: sshare fails, the cycle uses the ledger (charged with alpha's 2 GPUs)
        pid = cluster.daemon_pids()["slurmctld"]
        os.kill(pid, 15)
        deadline = time.monotonic() + 30
        while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.5)
        ledger = source.usage(time.time(), {"alpha": 2})
        assert source.active == "ledger" and set(ledger) == {"alpha"} and ledger["alpha"] > 0
        assert [w for w, _ in events] == ["usage_source", "usage_error", "usage_source"]
        assert events[-1][1]["source"] == "ledger" and "sshare" in events[-1][1]["reason"]
    finally:  # slurmctld first (it starts from its state files alone), then slurmdbd, which it reconnects to
        cluster.restart_slurmctld()
        cluster.start_slurmdbd()
    assert source.usage(time.time(), {})["alpha"] >= 60 and source.active == "slurm"
    assert events[-1][0] == "usage_source" and events[-1][1]["source"] == "slurm"


def test_stop_leaves_no_process_of_mariadb_or_slurmdbd(require_slurm, tmp_path):
    missing = _accounting.missing(require_slurm)
    if missing:
        pytest.skip(f"accounting not installed: {missing}")  # the fixture above fails in CI for it
    from fabric_hpc.testing import SlurmTestCluster

    cluster = SlurmTestCluster(1, gpus_per_node=1, base_dir=tmp_path / "c", prefix=require_slurm.prefix,
                               accounting=True)
    cluster.start()
    try:
        daemons = cluster.daemon_pids()
        assert {"mariadbd", "slurmdbd"} <= set(daemons)
        db_dir = cluster.accounting.db_dir
        assert db_dir is not None and db_dir.is_dir()
        assert open(f"/proc/{daemons['mariadbd']}/status").read().count("\nUid:\t0\t") == 0  # unprivileged
    finally:
        cluster.stop()
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{p}") for p in daemons.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{p}") for p in daemons.values())
    assert _cluster_processes(cluster.base_dir) == set() and _cluster_processes(db_dir) == set()
    assert not db_dir.exists()


RUNNER = """
import sys, time
from fabric_hpc.testing import SlurmTestCluster
cluster = SlurmTestCluster(1, gpus_per_node=0, base_dir=sys.argv[1], prefix=sys.argv[2] or None, accounting=True)
cluster.start()
print(cluster.daemon_pids()["mariadbd"], cluster.daemon_pids()["slurmdbd"], cluster.accounting.db_dir, flush=True)
time.sleep(300)
"""


def test_killed_runner_takes_mariadb_and_slurmdbd_along(require_slurm, tmp_path):
    """kill -9 of the test runner: the kernel's parent-death signal stops both (also the unprivileged mariadbd)."""
    import subprocess
    import sys

    missing = _accounting.missing(require_slurm)
    if missing:
        pytest.skip(f"accounting not installed: {missing}")
    repo = Path(__file__).resolve().parents[2]
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path / "c"), str(require_slurm.prefix or "")],
                              cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert runner.stdout is not None
    line = runner.stdout.readline().split()
    assert len(line) == 3, runner.stderr.read() if runner.poll() is not None else line
    pids, db_dir = {int(line[0]), int(line[1])}, Path(line[2])
    runner.kill()
    runner.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{p}") for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{p}") for p in pids)
    assert not (db_dir / "mariadbd.pid").exists()  # mariadbd got SIGTERM and shut down cleanly
    shutil.rmtree(db_dir)  # reap_stale_dirs() (the next start) leaves it for a minute; do not litter /tmp
    conf = parse_key_values((tmp_path / "c" / "etc" / "slurm.conf").read_text().replace("\n", " "))
    shutil.rmtree(Path(conf["AuthInfo"].removeprefix("socket=")).parent)  # the killed runner's munge directory
