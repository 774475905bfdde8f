"""A review of what Slurm runs for every job: the TaskProlog runs in the job's environment, and a user's
own Python settings there (``PYTHONHOME`` of another Python, a ``PYTHONPATH`` with a ``sitecustomize`` that
exits, ``PYTHONINSPECT``) made the interpreter fail: Slurm then ends every task of the job. The installed
script runs its interpreter isolated (``-I``). The test failed before the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabric_hpc.slurm.plugins import render_script


@pytest.mark.parametrize("env", [{"PYTHONHOME": "/opt/python3.9"}, {"PYTHONINSPECT": "1"}, "sitecustomize"])
def test_a_users_python_settings_do_not_break_the_task_prolog(tmp_path: Path, env) -> None:
    config = tmp_path / "prolog.json"
    config.write_text(json.dumps({"topology": str(tmp_path / "none.yaml"), "topo_dir": str(tmp_path / "nccl"),
                                  "ckpt_root": str(tmp_path / "ck")}))
    script = tmp_path / "task_prolog.py"
    script.write_text(render_script("task_prolog.py", config=str(config), python=sys.executable))
    script.chmod(0o755)
    assert script.read_text().splitlines()[0] == f"#!{sys.executable} -I"
    if env == "sitecustomize":
        site = tmp_path / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text("raise SystemExit(1)\n")
        env = {"PYTHONPATH": str(site)}
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run([str(script)], env={**base, "SLURM_JOB_ID": "7", "SLURMD_NODENAME": "n1", **env},
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "Fatal Python error" not in done.stderr
