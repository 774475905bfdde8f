"""`fabric slurm install` refuses an [install] python that cannot import fabric_hpc (the TaskProlog's #!
line and the unit's ExecStart), and paths the unit's PrivateTmp=yes would hide from the agent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.test_install import fabric, tree, write_config


def _set(cfg: Path, key: str, value: str) -> Path:
    """``cfg`` with the line of ``key`` (written by write_config) set to ``value``."""
    text = cfg.read_text()
    cfg.write_text("\n".join(f"{key} = {json.dumps(value)}" if line.startswith(f"{key} = ") else line
                             for line in text.splitlines()) + "\n")
    return cfg


def _with_python(cfg: Path, python: str) -> Path:
    return _set(cfg, "python", python)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real interpreter without fabric_hpc: a venv of its own (no pip, no site packages)."""
    venv = tmp_path_factory.mktemp("bare-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    return str(venv / "bin" / "python")


@pytest.mark.parametrize("dry", [[], ["--dry-run"]])
@pytest.mark.parametrize("which", ["missing", "bare"])
def test_real_install_refuses_a_python_without_fabric_hpc(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         bare_python: str, which: str,
                                                         dry: list[str]) -> None:
    python = "/opt/nope/bin/python" if which == "missing" else bare_python
    base = tmp_path / "site"
    cfg = _with_python(write_config(tmp_path / "agent.toml", base=base), python)
    assert fabric("slurm", "install", "--config", str(cfg), *dry) == 3
    err = capsys.readouterr().err
    assert f"install.python {python} " in err and "Traceback" not in err
    assert ("does not exist" if which == "missing" else "cannot import fabric_hpc") in err
    assert "pip install" in err and "[install] python" in err
    assert tree(base) == set()  # refused before anything was written


def test_real_install_accepts_a_python_with_fabric_hpc(tmp_path: Path) -> None:
    cfg = _with_python(write_config(tmp_path / "agent.toml", base=tmp_path / "site"), sys.executable)
    assert fabric("slurm", "install", "--config", str(cfg), "--dry-run") == 0


def test_staging_root_warns_when_python_is_not_under_it(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _with_python(write_config(tmp_path / "agent.toml"), "/opt/nope/bin/python")
    root = str(tmp_path / "root")
    assert fabric("slurm", "install", "--config", str(cfg), "--root", root, "--dry-run") == 0
    err = capsys.readouterr().err
    assert "warning: install.python /opt/nope/bin/python is not under --root" in err


def test_staging_root_checks_the_python_under_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    (root / "opt/x/bin").mkdir(parents=True)
    (root / "opt/x/bin/python").write_text("#!/bin/sh\nexit 1\n")
    (root / "opt/x/bin/python").chmod(0o755)
    cfg = _with_python(write_config(tmp_path / "agent.toml"), "/opt/x/bin/python")
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--dry-run") == 3
    assert "install.python /opt/x/bin/python" in capsys.readouterr().err


def test_agent_check_fails_on_a_python_without_fabric_hpc(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _with_python(write_config(tmp_path / "agent.toml", base=tmp_path / "site"), "/opt/nope/bin/python")
    assert fabric("agent", "check", "--config", str(cfg), "--json") != 0
    rows = {r["check"]: r for r in json.loads(capsys.readouterr().out)["checks"]}
    assert rows["python"]["ok"] is False and rows["python"]["exit_code"] == 3
    assert "/opt/nope/bin/python does not exist" in rows["python"]["detail"]


@pytest.mark.parametrize("key,value", [("state_dir", "/tmp/fabric-agent-state"),
                                       ("state_dir", "/var/tmp/fabric-agent"),
                                       ("rest_token_file", "/tmp/slurm.jwt")])
def test_real_install_refuses_agent_paths_in_private_tmp(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        key: str, value: str) -> None:
    """The unit (in /etc/systemd/system, as systemd loads it) has PrivateTmp=yes: its /tmp is not this one."""
    cfg = write_config(tmp_path / "agent.toml", **({} if key == "state_dir" else {key: value}))
    cfg = _with_python(_set(cfg, "state_dir", value) if key == "state_dir" else cfg, sys.executable)
    assert fabric("slurm", "install", "--config", str(cfg), "--dry-run") == 3
    err = capsys.readouterr().err
    assert f"agent.{key} {value} is under" in err and "PrivateTmp=yes" in err and "outside /tmp" in err


def test_real_install_refuses_a_python_in_private_tmp(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     bare_python: str) -> None:
    cfg = _with_python(write_config(tmp_path / "agent.toml"), "/tmp/venv/bin/python")
    assert fabric("slurm", "install", "--config", str(cfg), "--dry-run") == 3
    assert "install.python /tmp/venv/bin/python is under /tmp" in capsys.readouterr().err


def test_every_path_in_private_tmp_is_named_in_one_error(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A venv and a state directory both under /tmp (a checkout in mktemp -d): one edit fixes both."""
    cfg = _set(_with_python(write_config(tmp_path / "agent.toml"), "/tmp/venv/bin/python"),
               "state_dir", "/var/tmp/fabric-agent")
    assert fabric("slurm", "install", "--config", str(cfg), "--dry-run") == 3
    err = capsys.readouterr().err
    assert "install.python /tmp/venv/bin/python is under /tmp" in err
    assert "agent.state_dir /var/tmp/fabric-agent is under /var/tmp" in err
    assert "give install.python, agent.state_dir a path outside" in err and "Traceback" not in err


def test_staging_root_and_test_units_may_use_tmp(tmp_path: Path) -> None:
    """--root staging, or a unit_dir systemd never loads (a test tree under /tmp): not refused."""
    cfg = _set(write_config(tmp_path / "agent.toml"), "state_dir", "/tmp/fabric-agent-state")
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(tmp_path / "r"), "--dry-run") == 0
    cfg = _with_python(write_config(tmp_path / "agent2.toml", base=tmp_path / "site"), sys.executable)
    assert fabric("slurm", "install", "--config", str(cfg), "--dry-run") == 0
