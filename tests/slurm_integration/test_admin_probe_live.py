"""Defects a Slurm admin's first run found, on the live test cluster (both tiers)."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL = "leaf-spine:hosts=16,hosts_per_leaf=4,gpus=8,cpus=8"  # the hosts of the slurm_fabric fixture
#: the site's own job_submit.lua, which `install --force` backs up and `uninstall` restores
SITE_LUA = """
function slurm_job_submit(job_desc, part_list, submit_uid)
  slurm.log_user("%s", "site plugin: accepted")
  return slurm.SUCCESS
end
function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
  return slurm.SUCCESS
end
return slurm.SUCCESS
"""


@pytest.fixture(scope="module")
def site_cluster(slurm_cluster_factory: Any, slurm_fabric: Any) -> Iterator[Any]:
    """A cluster running the site's job_submit.lua."""
    yield slurm_cluster_factory(slurm_fabric, settings={"JobSubmitPlugins": "lua"},
                                config_files={"job_submit.lua": SITE_LUA})


def _config(base: Path, cluster: Any) -> Path:
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    path = base / "agent.toml"
    path.write_text(f"""[agent]
topology = "{MODEL}"
state_dir = "{base}/var/lib/fabric-agent"
fallback_s = 20

[install]
slurm_conf_dir = "{cluster.etc_dir}"
config_dir = "{base}/etc/fabric-hpc"
unit_dir = "{base}/etc/systemd/system"
service_user = "{user}"
slurm_group = "{group}"
python = "{sys.executable}"
topo_dir = "{base}/nccl"
topology_format = "conf"
slurm_version = "22.05"
""")
    return path


def _fabric(cluster: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fabric_hpc.cli", *args], text=True, capture_output=True,
                          timeout=120, env={**cluster.env, "PYTHONPATH": str(REPO)})


def _submit(cluster: Any) -> str:
    """What sbatch says for a fabric job that names its nodes (fabric's plugin refuses it)."""
    argv = ["sbatch", "--comment=fabric", "-N1", "--gres=gpu:1", "-w", "n1", "-H", "--wrap", "true"]
    proc = cluster.run(argv, check=False, cwd=cluster.work_dir)
    if proc.returncode == 0:
        cluster.run(["scancel", proc.stdout.strip().split()[-1]], check=False)
    return proc.stdout + proc.stderr


def test_uninstall_puts_the_sites_job_submit_lua_back_into_slurmctld(site_cluster: Any,
                                                                    tmp_path: Path) -> None:
    """install --force (backs the site's plugin up), submit: fabric's plugin answers; uninstall, submit
    again: the site's plugin answers, fabric's words are gone (the restored file has a fresh mtime)."""
    assert "site plugin: accepted" in _submit(site_cluster)
    cfg = _config(tmp_path, site_cluster)
    installed = _fabric(site_cluster, "slurm", "install", "--config", str(cfg), "--force")
    assert installed.returncode == 0, installed.stderr
    said = _submit(site_cluster)
    assert "fabric chooses the nodes" in said and "site plugin" not in said, said
    removed = _fabric(site_cluster, "slurm", "uninstall", "--config", str(cfg))
    assert removed.returncode == 0, removed.stderr
    lua = site_cluster.etc_dir / "job_submit.lua"
    assert lua.read_text() == SITE_LUA
    said = _submit(site_cluster)
    assert "site plugin: accepted" in said and "fabric" not in said, said
    assert f"slurmctld loads the restored {lua}" in removed.stdout
    assert "scontrol reconfigure" in removed.stdout


# -- 4: `fabric slurm why` without the agent's decision log ---------------------------------------
def test_why_without_the_decision_log_makes_no_claim_about_who_placed_a_job(
        fabric_cluster: Any, agent: Any, tmp_path: Path) -> None:
    agent.start()
    job = fabric_cluster.sbatch("-N2", "--gres=gpu:8", wrap="sleep 30")
    fabric_cluster.wait_job(job, states=("RUNNING",), timeout=60)
    told = _fabric(fabric_cluster, "slurm", "why", str(job), "--state-dir", str(agent.state_dir))
    assert told.returncode == 0 and "The fabric agent chose n" in told.stdout, told
    empty = tmp_path / "empty"
    empty.mkdir()
    for wrong in (empty, tmp_path / "absent"):
        proc = _fabric(fabric_cluster, "slurm", "why", str(job), "--state-dir", str(wrong))
        assert proc.returncode == 3, proc
        assert "fix: --state-dir: the agent's state directory" in proc.stderr
        assert "Slurm's own" not in proc.stdout
    if not os.path.lexists("/var/lib/fabric-agent"):  # the default, absent on this machine
        proc = _fabric(fabric_cluster, "slurm", "why", str(job), "--json")
        assert proc.returncode == 0, proc.stderr
        import json

        out = json.loads(proc.stdout)
        assert out["decisions"] == {"missing": {"path": "/var/lib/fabric-agent/decisions.jsonl"}}
        assert "cannot be told: no decision log at /var/lib/fabric-agent/decisions.jsonl" in out["text"]
        assert "Slurm's own scheduler did" not in out["text"]


# -- 8: CLI gaps on the live cluster -----------------------------------------------------------
def test_why_of_a_job_slurm_does_not_know_says_how_to_find_it(fabric_cluster: Any) -> None:
    for job in ("99999", "1"):  # never submitted; an id this cluster may have forgotten (MinJobAge)
        if job == "1" and fabric_cluster.run(["squeue", "-h", "-j", "1"], check=False).returncode == 0:
            continue
        proc = _fabric(fabric_cluster, "slurm", "why", job)
        assert proc.returncode == 3 and "Slurm knows no job" in proc.stderr, proc
        assert "fix: check the id with squeue -j ID" in proc.stderr and "Traceback" not in proc.stderr


def test_agent_run_resolves_a_relative_state_dir_against_the_cwd(
        fabric_cluster: Any, fabric_topology_file: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", "agent", "run", "--state-dir", "st2",
                           "--topology", str(fabric_topology_file), "--cycles", "1", "--interval", "0.5"],
                          text=True, capture_output=True, timeout=120, cwd=tmp_path,
                          env={**fabric_cluster.env, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "st2" / "status.json").is_file() and (tmp_path / "st2" / "heartbeat").is_file()
