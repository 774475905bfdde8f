"""Admin probe 5 on a live cluster, every tier (tests/slurm/test_tier_probe_fixes.py has the rules):

* ``-p debug,lo --comment=fabric:tier=high`` with ``lo=spot`` and ``debug=normal`` mapped is ``spot``:
  it no longer preempts a spot gang (before: ``high``, and the spot gang in ``lo`` was requeued for it),
  and ``fabric slurm report --state-dir`` shows the agent's tiers;
* ``--usage-source slurm`` on a Slurm without slurmdbd (the test cluster: ``sshare`` answers its header
  alone) falls back to the ledger with an ``agent.usage_error`` naming the fix, and ``fabric agent check``
  fails its ``usage source`` row (exit 5); with slurmdbd (``slurm_accounting_cluster``) the row passes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.events import read_json_lines
from fabric_hpc.slurm import report
from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.topology import build, generators, save_spec
from tests.slurm_integration.conftest import FALLBACK_S, REPO, AgentProcess, agent_on, plugin_cluster

pytestmark = [pytest.mark.slurm]
PARTS = ["PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
         "PartitionName=lo Nodes=ALL MaxTime=INFINITE State=UP GraceTime=5",
         "PartitionName=hi Nodes=ALL MaxTime=INFINITE State=UP"]
TIER_MAP = ("--tier-map", "partition:lo=spot", "--tier-map", "partition:debug=normal",
            "--tier-map", "partition:hi=high")


@pytest.fixture(scope="module")
def small() -> Any:
    """4 hosts of 8 GPUs under one leaf: two 2-host gangs fill it."""
    return build(generators.leaf_spine(4, hosts_per_leaf=4, gpus=8, cpus=8))


@pytest.fixture(scope="module")
def parted(slurm_cluster_factory: Any, small: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return plugin_cluster(slurm_cluster_factory, small, tmp_path_factory, partitions=PARTS)


@pytest.fixture()
def agent(parted: Any) -> Iterator[AgentProcess]:
    with agent_on(parted, parted.topology_file) as a:
        yield a


def _events(a: AgentProcess, name: str) -> list[dict[str, Any]]:
    return [e for e in read_json_lines(a.state_dir / "decisions.jsonl") if e["event"] == name]


def _recorded_tier(a: AgentProcess, job_id: int) -> str | None:
    record = json.loads((a.state_dir / "cycles.jsonl").read_text().splitlines()[-1])["input"]
    for entry in record.get("pending", []) + record.get("running", []):
        job = entry.get("job", entry)
        if str(job.get("id")) == str(job_id):
            return job.get("tier")
    return None


def test_a_multi_partition_job_cannot_claim_a_tier_above_its_mapped_ones(parted, agent, small, tmp_path):
    c, a = parted, agent
    a.extra = ("--compact-wait", "0", "--record-cycles", "--preempt-benefit-ratio", "0", *TIER_MAP)
    a.start()
    spot = c.sbatch("-p", "lo", "-N2", "--gres=gpu:8", "--requeue", "--comment=fabric:tier=high",
                    wrap="sleep 300")
    normal = c.sbatch("-p", "debug", "-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 300")
    for job_id in (spot, normal):
        c.wait_job(job_id, states=("RUNNING",), timeout=40)
    multi = c.sbatch("-p", "debug,lo", "-N2", "--gres=gpu:8", "--comment=fabric:tier=high", wrap="sleep 300")
    a.wait_cycles(a.cycles() + 6)
    # before: "high"; it preempted the spot gang and ran in debug, recorded then as "normal"
    assert _recorded_tier(a, multi) == "spot" and _recorded_tier(a, spot) == "spot"
    assert _events(a, "agent.requeue") == []  # before: the spot gang was requeued for the "high" one
    assert c.job(spot)["JobState"] == "RUNNING" and c.job(multi)["JobState"] == "PENDING"
    out = report.write(CliClient(c.env), small, tmp_path / "r.html", state_dir=a.state_dir)
    tiers = {r["job"]: r["tier"] for r in out["running"] + out["pending"]}
    assert tiers == {str(spot): "spot", str(normal): "normal", str(multi): "spot"}  # before: high, -, high
    assert out["tier_map"]["entries"] == sorted(TIER_MAP[1::2])
    assert out["tier_map"]["from"].startswith("the agent.start record of")


def agent_check(c: Any, topology: Path, state_dir: Path, cfg: Path, extra: str, row: str) -> tuple[int, dict]:
    """`fabric agent check --json` on an agent.toml with ``extra`` lines: its exit code and ``row``."""
    cfg.write_text(f'[agent]\ntopology = "{topology}"\nstate_dir = "{state_dir}"\nfallback_s = {FALLBACK_S}\n'
                   + extra)
    argv = [sys.executable, "-m", "fabric_hpc.cli", "agent", "check", "--config", str(cfg), "--json"]
    p = subprocess.run(argv, env={**c.env, "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    rows = {r["check"]: r for r in json.loads(p.stdout)["checks"]}
    return p.returncode, rows[row]


def _check(c: Any, topology: Path, state_dir: Path, tmp_path: Path, usage_source: str) -> tuple[int, dict]:
    return agent_check(c, topology, state_dir, tmp_path / f"agent-{usage_source}.toml",
                       f'usage_source = "{usage_source}"\n', "usage source")


def test_usage_source_slurm_without_slurmdbd_falls_back_and_check_fails(parted, agent, tmp_path):
    c, a = parted, agent
    assert c.run(["sshare", "-a", "-P", "-o", "Account,User"]).stdout.strip() == "Account|User"  # no rows
    a.extra = ("--usage-source", "slurm")
    a.start()
    j = c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 2")
    c.wait_job(j, states=("RUNNING", "COMPLETED"), timeout=30)
    a.wait_cycles(a.cycles() + 3)
    status = json.loads((a.state_dir / "status.json").read_text())
    assert status["usage_source"] == "ledger" and status["usage_unit"] == "gpu_seconds"  # before: slurm
    errors = _events(a, "agent.usage_error")
    assert len(errors) == 1 and errors[0]["fallback"] == "ledger"  # once, not once per cycle
    assert "no user association" in errors[0]["error"] and "accounting_storage/slurmdbd" in errors[0]["hint"]
    a.stop()
    code, row = _check(c, c.topology_file, a.state_dir, tmp_path, "slurm")
    assert code == 5 and not row["ok"] and "no user association" in row["detail"]  # before: exit 0, all ok
    assert "usage_source = ledger" in row["detail"]
    code, row = _check(c, c.topology_file, a.state_dir, tmp_path, "auto")
    assert row["ok"] and "ledger" in row["detail"]


def test_usage_source_check_passes_with_slurmdbd(slurm_accounting_cluster, slurm_accounting_fabric, tmp_path):
    c = slurm_accounting_cluster
    topology = tmp_path / "topology.yaml"
    save_spec(slurm_accounting_fabric.spec, topology)
    (tmp_path / "agent").mkdir(mode=0o750)
    for mode in ("slurm", "auto"):
        _, row = _check(c, topology, tmp_path / "agent", tmp_path, mode)
        assert row["ok"] and "account(s) with user associations" in row["detail"], row
