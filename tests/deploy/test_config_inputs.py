"""The agent config file and the values in it: one set of numeric bounds, the file read through the
input boundary (fabric_hpc/inputs.py), paths safe for the unit, Lua and prolog.json they land in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.plugins import render_job_submit
from tests.deploy.test_install import fabric, write_config


def _run_err(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = fabric(*args)
    return code, capsys.readouterr().err


# -- item: one set of bounds ------------------------------------------------------------------------
@pytest.mark.parametrize("key,value,needle", [
    ("fallback_s", 1_000_000_000, "fallback_s must be in 5..86400"),
    ("fallback_s", 4, "fallback_s must be in 5..86400"),
    ("interval_s", 1e300, "interval_s must be 0.1..86400"),
    ("contact_timeout_s", 1e12, "contact_timeout_s must be 1..86400"),
    ("max_backoff_s", 0, "max_backoff_s 0 is below its floor of 1 s"),
    ("pin_timeout_s", 1e9, "pin_timeout_s must be 5..86400"),
    ("compact_wait_s", 1e300, "compact_wait_s must be 0..604800"),
])
def test_agent_settings_out_of_bounds_are_refused_naming_file_key_and_range(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: float, needle: str) -> None:
    cfg = write_config(tmp_path / "agent.toml", **{key: value})
    if key == "fallback_s":  # write_config sets 30
        cfg.write_text(cfg.read_text().replace("fallback_s = 30\n", ""))
    for args in (("agent", "check", "--config", str(cfg)),
                 ("slurm", "install", "--config", str(cfg), "--root", str(tmp_path / "root"))):
        code, err = _run_err(capsys, *args)
        assert code == 3, err
        assert str(cfg) in err and f"agent.{key}" in err and needle in err and "Traceback" not in err, err
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("flag,value,needle", [
    ("--fallback", "1000000000", "5<=x<=86400"),
    ("--interval", "1e300", "≥ 0.1 and ≤ 86400"),
    ("--contact-timeout", "1e12", "≥ 1 and ≤ 86400"),
    ("--pin-timeout", "1e9", "≥ 5 and ≤ 86400"),
])
def test_agent_run_options_have_the_same_bounds(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                flag: str, value: str, needle: str) -> None:
    code, err = _run_err(capsys, "agent", "run", "--topology", "superpod:sus=1", "--state-dir", str(tmp_path),
                         flag, value, "--cycles", "1")
    assert code == 2 and flag in err and needle in err, err


def test_plugin_bounds_name_the_key_and_the_fix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        render_job_submit(state_dir="/srv/fabric", fallback_s=1_000_000_000)
    assert "fallback_s must be in 5..86400" in str(exc.value) and "fix: give fallback_s" in str(exc.value)
    with pytest.raises(ConfigError, match=r"max_gpus_per_node must be in 1\.\.1024"):
        render_job_submit(state_dir="/srv/fabric", max_gpus_per_node=2048)
    code, err = _run_err(capsys, "slurm", "plugin-config", "--state-dir", "/srv/f", "--fallback-s", "3")
    assert code == 2 and "--fallback-s" in err and "5<=x<=86400" in err, err
    cfg = write_config(tmp_path / "agent.toml")
    cfg.write_text(cfg.read_text() + "max_gpus_per_node = 2048\n")
    code, err = _run_err(capsys, "slurm", "install", "--config", str(cfg), "--root", str(tmp_path / "root"))
    assert code == 3 and "install.max_gpus_per_node" in err and "1..1024" in err, err


# -- item: the config file and job_submit.lua through the input boundary ----------------------------
def _cli(*args: str, timeout: float = 60) -> tuple[int, str]:
    """The CLI as a process (a FIFO that blocks would hang the test run, not only this test)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)})
    return proc.returncode, proc.stderr


def test_a_fifo_a_device_or_a_huge_config_is_refused_before_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "f.toml"
    os.mkfifo(fifo)
    code, err = _cli("agent", "check", "--config", str(fifo))
    assert code == 3 and "agent config file" in err and "is a FIFO, not a regular file" in err, err
    zero = tmp_path / "zero.toml"
    zero.symlink_to("/dev/zero")
    code, err = _cli("agent", "check", "--config", str(zero))
    assert code == 3 and "is a character device" in err, err
    big = write_config(tmp_path / "big.toml")
    big.write_text(big.read_text() + "#" * (2 << 20) + "\n")
    code, err = _cli("agent", "check", "--config", str(big))
    assert code == 3 and "more than the limit" in err and "Traceback" not in err, err


@pytest.mark.parametrize("name,content,needle", [
    ("latin1.toml", b'[agent]\ntopology = "caf\xe9"\n', "not UTF-8 text (byte 0xe9"),
    ("dup.yaml", b"agent:\n  topology: superpod:sus=1\n  topology: superpod:sus=2\n",
     "duplicate key 'topology'"),
    ("alias.yaml", b"agent: &a\n  topology: superpod:sus=1\ninstall: *a\n", "anchors and aliases"),
    ("list.yaml", b"- agent\n", "not a mapping of sections"),
])
def test_bad_config_text_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
                                           content: bytes, needle: str) -> None:
    (tmp_path / name).write_bytes(content)
    code, err = _run_err(capsys, "agent", "check", "--config", str(tmp_path / name))
    assert code == 3 and needle in err and "Traceback" not in err, err


def test_job_submit_that_is_a_fifo_or_not_a_plugin_says_so(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    fifo = tmp_path / "js.lua"
    os.mkfifo(fifo)
    base = ("agent", "run", "--topology", "superpod:sus=1", "--state-dir", str(state), "--cycles", "1")
    code, err = _cli(*base, "--job-submit", str(fifo))
    assert code == 3 and "is a FIFO, not a regular file" in err and "no job_submit.lua" not in err, err
    garbage = tmp_path / "garbage.lua"
    garbage.write_text("x\n")
    code, err = _cli(*base, "--job-submit", str(garbage))
    assert code == 3 and "is not a fabric job_submit plugin" in err and "protocol 0" not in err, err
    code, err = _cli(*base, "--job-submit", str(tmp_path / "absent.lua"))
    assert code == 3 and "no job_submit.lua at" in err and "fabric slurm install" in err, err


def test_discover_is_install_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run_err(capsys, "agent", "run", "--topology", "discover", "--state-dir", str(tmp_path),
                         "--cycles", "1")
    assert code == 3 and "'discover' is for `fabric slurm install` only" in err, err
    assert "topology.yaml" in err
    cfg = write_config(tmp_path / "agent.toml")
    cfg.write_text(cfg.read_text().replace('"superpod:sus=1"', '"discover"'))
    assert fabric("agent", "check", "--config", str(cfg), "--json") != 0
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert "is for `fabric slurm install` only" in checks["fabric model"]["detail"]


# -- item: every path value checked at load; the unit takes only values it can hold verbatim ---------
INJECT = "/etc/slurm/slurm.conf\nExecStartPre=+/bin/touch /tmp/pwn"


@pytest.mark.parametrize("section,key,value,needle", [
    ("agent", "slurm_conf", INJECT, "control characters"),
    ("agent", "slurm_conf", "etc/slurm.conf", "must be an absolute path"),
    ("agent", "ckpt_root", "/shared/a\nb", "control characters"),
    ("agent", "ckpt_root", "shared", "must be an absolute path"),
    ("agent", "job_submit", "/etc/slurm/job_submit.lua\nx", "control characters"),
    ("agent", "topology", "superpod:sus=1\n", "control characters"),
    ("agent", "rest_url", "http://127.0.0.1:6820\r\nX: y", "control characters"),
    ("install", "python", "/opt/my venv/bin/python", "holds a space"),
    ("install", "python", "venv/bin/python", "must be an absolute path"),
    ("install", "service_user", "ro ot", "is not a user or group name"),
    ("install", "slurm_group", "slurm\nUser=root", "is not a user or group name"),
    ("install", "gres_device_dir", "/dev/my gpus", "which gres.conf would read as syntax"),
    ("install", "gres_device_dir", "/dev#x", "which gres.conf would read as syntax"),
])
def test_paths_and_names_are_checked_at_load(tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str,
                                             key: str, value: str, needle: str) -> None:
    """`agent check` (and install, before writing anything) refuse what would inject lines or not
    name a path on every node, naming the key."""
    cfg = write_config(tmp_path / "agent.toml")
    text = "\n".join(ln for ln in cfg.read_text().splitlines() if not ln.startswith(f"{key} =")) + "\n"
    line = f"{key} = {json.dumps(value)}\n"
    text = text.replace("[install]\n", line + "[install]\n") if section == "agent" else text + line
    cfg.write_text(text)
    code, err = _run_err(capsys, "agent", "check", "--config", str(cfg))
    assert code == 3 and f"{section}.{key}" in err and needle in err and "Traceback" not in err, err
    code, err = _run_err(capsys, "slurm", "install", "--config", str(cfg), "--root", str(tmp_path / "root"))
    assert code == 3 and f"{section}.{key}" in err, err
    assert not (tmp_path / "root").exists()


def test_unit_text_refuses_what_a_unit_line_cannot_hold(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """unit_text itself refuses (a config built without validation), and a value that is a fine path
    but not a verbatim unit word (a space) is refused by install naming its key."""
    from fabric_hpc.slurm.deploy_config import load_config
    from fabric_hpc.slurm.install import unit_text

    cfg = load_config(write_config(tmp_path / "agent.toml"))[0]
    assert "ExecStart=/usr/bin/python3 -m fabric_hpc.cli" in unit_text(cfg)
    for key, value in (("slurm_conf", INJECT), ("slurm_conf", "/etc/slurm%i/slurm.conf"),
                       ("state_dir", "/var/lib/a b"), ("state_dir", "/var/lib/$HOME")):
        bad = cfg.model_copy(update={"agent": cfg.agent.model_copy(update={key: value})})
        with pytest.raises(ConfigError, match=f"agent.{key} .* cannot go into the systemd unit"):
            unit_text(bad)
    bad = cfg.model_copy(update={"install": cfg.install.model_copy(update={"service_user": "root\nX=1"})})
    with pytest.raises(ConfigError, match="install.service_user"):
        unit_text(bad)
    spaced = write_config(tmp_path / "spaced.toml", slurm_conf="/etc/my slurm/slurm.conf")
    code, err = _run_err(capsys, "slurm", "install", "--config", str(spaced), "--root",
                         str(tmp_path / "root"))
    assert code == 3, err
    assert "agent.slurm_conf '/etc/my slurm/slurm.conf' cannot go into the systemd unit" in err, err
    assert not (tmp_path / "root").exists()
