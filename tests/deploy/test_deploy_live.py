"""docs/deploy.md, followed on the live test cluster with the installed wheel only (no checkout on any path).

install into a temporary tree (real paths, as on a cluster) → slurmctld loads the installed
job_submit.lua and runs the installed TaskProlog → `fabric agent check` → the unit's ExecStart line run
directly → sbatch a gang → placed on the agent's hosts → `fabric slurm why` → uninstall leaves nothing.
"""

from __future__ import annotations

import contextlib

import grp
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.wheel_env import REPO, WheelEnv

pytestmark = pytest.mark.slurm
MODEL = "leaf-spine:hosts=16,hosts_per_leaf=4,gpus=8,cpus=8"  # the same hosts as the slurm_fabric fixture


def _config(base: Path, wheel_env: WheelEnv, slurm_conf: Path) -> Path:
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    path = base / "agent.toml"
    path.write_text(f"""# docs/deploy.md step 2, with every path under a test directory
[agent]
topology = "{MODEL}"
state_dir = "{base}/var/lib/fabric-agent"
interval_s = 0.5
fallback_s = 20
slurm_conf = "{slurm_conf}"

[install]
slurm_conf_dir = "{base}/etc/slurm"
config_dir = "{base}/etc/fabric-hpc"
unit_dir = "{base}/etc/systemd/system"
service_user = "{user}"
slurm_group = "{group}"
python = "{wheel_env.bin / 'python'}"
topo_dir = "{base}/nccl"
ckpt_root = "{base}/ckpt"
""")
    return path


def _unit(path: Path) -> tuple[list[str], dict[str, str]]:
    """ExecStart (as argv) and Environment= of a unit file, as systemd would read these simple lines."""
    argv, env = [], {}
    for line in path.read_text().splitlines():
        if line.startswith("ExecStart="):
            argv = shlex.split(line.removeprefix("ExecStart="))
        elif line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            env[key] = value
    return argv, env


def _verify_unit(unit: Path) -> str:
    if shutil.which("systemd-analyze") is None:
        return "systemd-analyze not installed: unit not verified"
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return "verified"


def _wait_cycles(state: Path, proc: subprocess.Popen[bytes], n: int, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(FileNotFoundError, ValueError):  # not written yet, or half written
            st = json.loads((state / "status.json").read_text())
            if st.get("pid") == proc.pid and st["cycles"] >= n:
                return
        assert proc.poll() is None, f"agent exited {proc.returncode}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"agent made no {n} cycles: {log.read_text()[-3000:]}"
        time.sleep(0.2)


def test_deploy_from_the_wheel(wheel_env: WheelEnv, slurm_cluster_factory: Any, slurm_fabric: Any,
                               tmp_path: Path) -> None:
    base = tmp_path / "site"
    base.mkdir()
    slurm_dir = tmp_path / "slurm"
    cfg = _config(base, wheel_env, (slurm_dir / "etc" / "slurm.conf").resolve())
    wheel_env.check_isolated()
    out = wheel_env.fabric("slurm", "install", "--config", str(cfg)).stdout
    assert "JobSubmitPlugins=lua" in out and f"TaskProlog={base}/etc/fabric-hpc/task_prolog.py" in out
    installed = base / "etc/fabric-hpc/agent.toml"
    lua = (base / "etc/slurm/job_submit.lua").read_text()
    prolog = base / "etc/fabric-hpc/task_prolog.py"
    assert prolog.read_text().startswith(f"#!{wheel_env.bin / 'python'} -I\n")  # isolated

    # the slurm.conf lines install printed (the fixture writes its own topology, GRES and node lines)
    settings = dict(line.strip().split("=", 1) for line in out.splitlines()
                    if line.strip().split("=", 1)[0] in ("JobSubmitPlugins", "TaskProlog", "Prolog"))
    assert settings["TaskProlog"] == str(prolog)
    cluster = slurm_cluster_factory(slurm_fabric, base_dir=slurm_dir, settings=settings,
                                    config_files={"job_submit.lua": lua})
    env = {k: v for k, v in cluster.env.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{wheel_env.bin}:{env['PATH']}"
    check = wheel_env.fabric("agent", "check", "--config", str(installed), "--json", env=env)
    checks = {c["check"]: c for c in json.loads(check.stdout)["checks"]}
    assert all(c["ok"] for c in checks.values()) and "16 nodes, 16 in the fabric model" in checks["slurm"]["detail"]

    unit = base / "etc/systemd/system/fabric-agent.service"
    verified = _verify_unit(unit)
    argv, unit_env = _unit(unit)
    assert argv[0] == str(wheel_env.bin / "python") and argv[-2:] == ["--config", str(installed)]
    state = base / "var/lib/fabric-agent"
    log = tmp_path / "agent.log"
    with open(log, "wb") as fh:
        agent = subprocess.Popen(argv, env={**env, **unit_env}, cwd=wheel_env.cwd, stdout=fh, stderr=fh)
    try:
        _wait_cycles(state, agent, 1, log)
        job = cluster.sbatch("-N2", "--gres=gpu:8", "-o", str(tmp_path / "job.out"),
                             wrap="srun -l sh -c 'echo ckpt=$FABRIC_CKPT_DIR topo=${NCCL_TOPO_FILE:-none}'")
        info = cluster.wait_job(job, timeout=60)
        places = [json.loads(x) for x in (state / "decisions.jsonl").read_text().splitlines()]
        places = [e for e in places if e["event"] == "agent.place" and e["job"] == job]
        assert len(places) == 1, (state / "decisions.jsonl").read_text()
        assert cluster.run(["scontrol", "show", "hostnames", info["NodeList"]]).stdout.split() == places[0]["hosts"]
        printed = (tmp_path / "job.out").read_text()
        assert printed.count(f"ckpt={base}/ckpt/") == 2, printed  # the installed TaskProlog ran for both tasks
        assert all(t == "none" or t.startswith(f"{base}/nccl/nccl-topo-") for t in re.findall(r"topo=(\S+)", printed))
        why = wheel_env.fabric("slurm", "why", str(job), "--state-dir", str(state), env=env).stdout
        assert "The fabric agent chose" in why and "Traceback" not in why
        status = json.loads(wheel_env.fabric("agent", "status", "--state-dir", str(state), "--json", env=env).stdout)
        assert status["running"] and status["lock_holder"] == agent.pid
    finally:
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(20)
    assert code == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    # docs/deploy.md §6: slurm.conf first (uninstall refuses while slurmctld runs the prologs), then uninstall
    early = wheel_env.fabric("slurm", "uninstall", "--config", str(cfg), "--purge-state", check=False,
                             env=env)
    assert early.returncode == 3 and f"TaskProlog={prolog}" in early.stderr, early.stderr
    conf = cluster.conf_path.read_text().splitlines()
    cluster.conf_path.write_text("".join(f"{line}\n" for line in conf
                                         if line.split("=", 1)[0] not in ("TaskProlog", "Prolog")))
    cluster.run(["scontrol", "reconfigure"])
    done = wheel_env.fabric("slurm", "uninstall", "--config", str(cfg), "--purge-state", env=env).stdout
    assert "names none of the removed files" in done, done
    left = sorted(str(p.relative_to(base)) for p in base.rglob("*"))
    # only the config we wrote and what the jobs' TaskProlog wrote at run time (NCCL topology files) remain
    assert [p for p in left if not p.startswith("nccl")] == ["agent.toml"], left
    version = cluster.run(["scontrol", "--version"]).stdout.strip()
    print(f"{version}; systemd unit: {verified}; wheel {wheel_env.wheel.name}; checkout {REPO} not on any path")
