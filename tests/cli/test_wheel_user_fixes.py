"""What a user of the wheel (base dependencies only: no torch, safetensors or mpi4py) met: a missing
optional dependency was a traceback (now one line naming the pip extra, exit 5), `slurm install
--config nope.toml` said "or drop --config" where --config is required, a FIFO or a directory as a
recipe/engine config/agent config skipped the input boundary (a FIFO "did not exist", a directory was
click's usage error, exit 2), the demo printed rich markup literally, and `agent status` with the
default state dir absent was exit 3 where --help promises 5 for an agent that does not run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError, ExternalError

ROOT = Path(__file__).resolve().parents[2]
#: the base install: these modules cannot be imported (as when they are not installed)
BLOCK = ("import sys\nfor m in ('torch', 'safetensors', 'transformers', 'mpi4py'):\n"
         "    sys.modules[m] = None\n")
EXTRA_HINT = "pip install 'fabric-hpc[torch]'"


def _base_install(tmp_path: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``code`` run in a fresh interpreter that cannot import the optional dependencies."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", BLOCK + code, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def _fabric(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _base_install(tmp_path, "from fabric_hpc.cli.main import main\nsys.exit(main(sys.argv[1:]))",
                         *args)


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    from fabric_hpc.checkpoint import save

    save(tmp_path / "C", {"model": {"w": np.ones((4, 4), np.float32)}}, step=1)
    (tmp_path / "hfin").mkdir()
    (tmp_path / "r.json").write_text(json.dumps({"cast": [{"match": "model/w", "to": "bfloat16"}]}))
    return tmp_path / "C"


@pytest.mark.parametrize("argv, needs", [
    (["ckpt", "import-hf", "hfin", "out"], "Hugging Face safetensors import needs safetensors"),
    (["ckpt", "import-dcp", "hfin", "out", "--trust-pickle"], "PyTorch DCP import needs torch"),
    (["ckpt", "export-dcp", "C", "out"], "PyTorch DCP export needs torch"),
    (["ckpt", "convert", "C", "out", "--recipe", "r.json"], "fabric ckpt convert needs torch"),
])
def test_a_missing_optional_dependency_is_one_line_naming_the_extra(tmp_path, ckpt, argv, needs) -> None:
    proc = _fabric(tmp_path, *argv)
    assert proc.returncode == 5, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"error: {needs}, which is not installed" in proc.stderr and EXTRA_HINT in proc.stderr
    assert not (tmp_path / "out").exists()


def test_train_tiny_without_torch_is_one_error_line_and_the_cli_exit_code(tmp_path) -> None:
    """train_gang.sbatch runs it as TRAIN_MODULE and promises one error line and the CLI's code."""
    proc = _base_install(tmp_path, "import runpy\n"
                                   "sys.argv = ['train_tiny', '--ckpt-dir', 't', '--steps', '1']\n"
                                   "runpy.run_module('fabric_hpc.inference.engines.train_tiny',"
                                   " run_name='__main__')")
    assert proc.returncode == 5, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0] == ("train_tiny: error: train_tiny (a PyTorch training program) needs "
                                           "torch, which is not installed")
    assert EXTRA_HINT in proc.stderr


def test_require_tells_a_broken_install_from_a_missing_one() -> None:
    from fabric_hpc.extras import missing_dependency, require

    broken = ImportError("libtorch_cpu.so: cannot open shared object file", name=None)
    err = missing_dependency("torch", "torch", "X", broken)
    assert isinstance(err, ExternalError) and err.exit_code == 5
    assert "installed but cannot be imported (libtorch_cpu.so" in err.message
    assert err.hint is not None and "--force-reinstall" in err.hint
    gone = missing_dependency("torch.nn", "torch", "X", ModuleNotFoundError(name="torch"))
    assert gone.message == "X needs torch, which is not installed"
    assert require("json", extra="torch", needed_for="X").dumps({}) == "{}"
    with pytest.raises(ValueError, match="unknown pip extra"):
        require("json", extra="gpu", needed_for="X")


@pytest.mark.parametrize("argv, hint", [
    (["slurm", "install", "--config", "{cfg}"], "or write one (docs/deploy.md)"),
    (["slurm", "uninstall", "--config", "{cfg}"], "or write one (docs/deploy.md)"),
    (["agent", "check", "--config", "{cfg}"], "or write one (docs/deploy.md)"),
    (["agent", "run", "--config", "{cfg}", "--cycles", "1"], "or drop --config and give --topology"),
])
def test_a_missing_config_names_a_fix_the_command_allows(tmp_path, capsys, argv, hint) -> None:
    """--config is required by install, uninstall and check: "drop --config" only for agent run."""
    assert main([a.replace("{cfg}", str(tmp_path / "nope.toml")) for a in argv]) == 3
    err = capsys.readouterr().err
    assert f"no agent config file {tmp_path / 'nope.toml'}" in err and hint in err
    assert ("drop --config" in err) == (argv[1] == "run")


@pytest.mark.parametrize("argv, what", [
    (["ckpt", "convert", "{ck}", "{out}", "--recipe", "{bad}"], "recipe"),
    (["infer", "run", "--engine-config", "{bad}", "--input", "x", "--output", "{out}"], "engine config"),
    (["agent", "check", "--config", "{bad}"], "agent config file"),
    (["slurm", "install", "--config", "{bad}", "--dry-run"], "agent config file"),
    (["agent", "run", "--config", "{bad}", "--cycles", "1"], "agent config file"),
    (["agent", "run", "--topology", "superpod:sus=1", "--job-submit", "{bad}", "--cycles", "1"],
     "job_submit.lua"),
    (["ckpt", "export-hf", "{ck}", "{out}", "--config", "{bad}"], "config"),
    (["place", "-t", "leaf-spine-16", "-s", "{bad}", "-r", "gpus=8"], "state file"),
    (["slurm", "topo-files", "--topology", "{bad}"], "fabric file"),
    (["slurm", "plugin-config", "--state-dir", "{out}", "-o", "{bad}"], "output"),
    (["sim", "compare", "{ck}", "--report", "{bad}"], "report"),
    (["infer", "prepare", "{ck}", "--config-out", "{bad}"], "engine config"),
])
@pytest.mark.parametrize("kind", ["a directory", "a FIFO"])
def test_a_directory_or_fifo_where_a_file_belongs_is_exit_3(tmp_path, ckpt, capsys, argv, what, kind) -> None:
    """Before: a FIFO recipe "does not exist", a directory was click's usage error (exit 2)."""
    bad = tmp_path / "bad"
    bad.mkdir() if kind == "a directory" else os.mkfifo(bad)
    args = [a.replace("{ck}", str(ckpt)).replace("{out}", str(tmp_path / "out")).replace("{bad}", str(bad))
            for a in argv]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"error: {what} '{bad}' is {kind}, not a regular file", err
    assert "fix: give the path of a file" in err and not (tmp_path / "out").exists()


def test_load_recipe_reads_through_the_input_boundary(tmp_path) -> None:
    from fabric_hpc.checkpoint import CheckpointError, CheckpointNotFoundError
    from fabric_hpc.checkpoint.convert import load_recipe
    from fabric_hpc.checkpoint.convert.recipe import MAX_RECIPE_BYTES

    os.mkfifo(tmp_path / "ff")
    with pytest.raises(CheckpointError, match="recipe .*ff' is a FIFO, not a regular file"):
        load_recipe(tmp_path / "ff")
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_recipe(tmp_path / "none.yaml")
    (tmp_path / "big.json").write_bytes(b" " * (MAX_RECIPE_BYTES + 1))
    with pytest.raises(ConfigError, match="more than the limit"):
        load_recipe(tmp_path / "big.json")
    (tmp_path / "a.yaml").write_text("drop: &x [a]\nrename: *x\n")
    with pytest.raises(ConfigError, match="anchors and aliases"):
        load_recipe(tmp_path / "a.yaml")
    (tmp_path / "r.yaml").write_text("drop: ['opt/.*']\n")
    assert load_recipe(tmp_path / "r.yaml").drop == ["opt/.*"]


def test_the_demo_prints_no_markup(tmp_path, capsys) -> None:
    from fabric_hpc import demo

    assert demo.main(["--out", str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fabric-hpc demo on ") and "[bold]" not in out and "[/]" not in out


@pytest.mark.skipif(os.path.lexists("/var/lib/fabric-agent"), reason="an agent state dir exists on this host")
def test_agent_status_without_the_default_state_dir_is_not_running(tmp_path, capsys) -> None:
    assert main(["agent", "status"]) == 5
    out = capsys.readouterr().out
    assert out.startswith("agent: NOT running (no state directory /var/lib/fabric-agent")
    assert main(["agent", "status", "--json"]) == 5
    doc = json.loads(capsys.readouterr().out)
    assert doc["running"] is False and doc["healthy"] is False and doc["state_dir"] == "/var/lib/fabric-agent"
    # a --state-dir given that does not exist is a wrong path
    assert main(["agent", "status", "--state-dir", str(tmp_path / "typo")]) == 3
    assert "does not exist" in capsys.readouterr().err
