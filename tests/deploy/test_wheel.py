"""The wheel is complete: installed into a fresh venv with no checkout on the path, every CLI group works."""

from __future__ import annotations

import json
import tarfile
import zipfile

from fabric_hpc.cli.main import COMMAND_GROUPS
from tests.deploy.wheel_env import WheelEnv


def test_wheel_and_sdist_ship_the_slurm_files(wheel_env: WheelEnv) -> None:
    names = set(zipfile.ZipFile(wheel_env.wheel).namelist())
    assert {"fabric_hpc/slurm_plugins/job_submit.lua", "fabric_hpc/slurm_plugins/task_prolog.py",
            "fabric_hpc/topology/report_assets/report.html", "fabric_hpc/jobscripts/train_gang.sbatch",
            "fabric_hpc/jobscripts/infer_batch.sbatch", "fabric_hpc/jobscripts/ckpt_restore.sbatch",
            "fabric_hpc/fabrics/gb200-nvl72-8r.yaml", "fabric_hpc/fabrics/alibaba-lingjun-2023.yaml"} <= names
    assert not [n for n in names if n.startswith(("benchmarks/", "tests/", "plugins/"))]
    with tarfile.open(wheel_env.sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    assert "fabric_hpc/slurm_plugins/job_submit.lua" in members and "pyproject.toml" in members


def test_installed_package_is_the_wheel(wheel_env: WheelEnv) -> None:
    where = wheel_env.check_isolated()
    assert "site-packages/fabric_hpc/__init__.py" in where


def test_every_group_help_and_a_real_command(wheel_env: WheelEnv) -> None:
    top = wheel_env.fabric("--help").stdout
    for group in COMMAND_GROUPS:
        assert group in top
        assert "Usage: fabric " + group in wheel_env.fabric(group, "--help").stdout
    cwd = wheel_env.cwd
    show = json.loads(wheel_env.fabric("topology", "show", "superpod:sus=1", "--json").stdout)
    assert show["hosts"] == 32
    # a fabric file of the wheel, by name (README's examples, with no checkout)
    shipped = json.loads(wheel_env.fabric("topology", "show", "gb200-nvl72-8r", "--json").stdout)
    assert shipped["gpus"] == 576
    placed = json.loads(wheel_env.fabric("place", "-t", "superpod:sus=1", "-r", "nodes=2,gpus=8,within=leaf",
                                         "--solver", "greedy", "--json").stdout)
    assert len(placed["hosts"]) == 2 and len(placed["gpus"]) == 16
    wheel_env.fabric("sim", "run", "--trace", "synthetic:jobs=20,seed=1", "-t", "superpod:sus=1",
                     "--out", str(cwd / "sim"), "--no-topology-report", "--no-progress")
    assert (cwd / "sim").is_dir() and any((cwd / "sim").iterdir())
    wheel_env.run(str(wheel_env.bin / "python"), "-c",
                  "import numpy as np; from fabric_hpc.checkpoint import save; "
                  f"save({str(cwd / 'ck')!r}, {{'model': {{'w': np.arange(6.0)}}}}, step=3)")
    listed = json.loads(wheel_env.fabric("ckpt", "list", str(cwd / "ck"), "--json").stdout)
    assert [c["step"] for c in listed] == [3]
    assert "Usage: fabric infer run" in wheel_env.fabric("infer", "run", "--help").stdout
    lua = wheel_env.fabric("slurm", "plugin-config", "--state-dir", "/srv/fabric", "--fallback-s", "30").stdout
    assert 'local STATE_DIR = "/srv/fabric"' in lua and "local FALLBACK_S = 30" in lua
    assert "Usage: fabric agent run" in wheel_env.fabric("agent", "run", "--help").stdout
    (cwd / "js").mkdir()
    wheel_env.fabric("slurm", "jobscripts", str(cwd / "js"))
    assert sorted(p.name for p in (cwd / "js").iterdir()) == ["ckpt_restore.sbatch", "infer_batch.sbatch",
                                                              "train_gang.sbatch"]
    status = wheel_env.fabric("agent", "status", "--state-dir", str(cwd / "nostate"), check=False)
    assert status.returncode == 3 and "Traceback" not in status.stderr
