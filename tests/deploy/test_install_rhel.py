"""RHEL 8/9 admin probe of ``fabric slurm install`` (docs/deploy.md, "RHEL 8/9"): an ``[install]
python`` that is the system's python3 (3.9 on RHEL 9, 3.6 on RHEL 8) is named as too old, not as a
missing package whose fix (pip install the wheel there) cannot work; ``install.slurm_conf_dir``
follows ``agent.slurm_conf``; an ``Include`` separated by a tab is read as Slurm reads it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.install_checks import MIN_PYTHON, check_python

REPO = Path(__file__).resolve().parents[2]


def _interpreter(tmp_path: Path, body: str) -> str:
    """A stand-in for an interpreter this machine does not have (RHEL 9's /usr/bin/python3.9): it
    answers the check's command as that Python does."""
    path = tmp_path / "python3.9"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_min_python_is_the_wheels_requires_python() -> None:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert meta["requires-python"] == ">=" + ".".join(map(str, MIN_PYTHON))


def _without_fabric(tmp_path: Path, version: str) -> ConfigError:
    """check_python's refusal of a Python ``version`` that cannot import fabric_hpc."""
    python = _interpreter(tmp_path, f"printf '{version}\\n'\n"
                                    "echo \"ModuleNotFoundError: No module named 'fabric_hpc'\" >&2; exit 1")
    with pytest.raises(ConfigError) as err:
        check_python(python)
    return err.value


def test_rhel9_system_python_is_named_too_old_with_the_venv_fix(tmp_path: Path) -> None:
    err = _without_fabric(tmp_path, "3.9.18")
    assert "is Python 3.9.18; fabric-hpc needs Python 3.11 or newer" in err.message
    assert "dnf install python3.11" in err.hint and "python3.11 -m venv" in err.hint
    assert "pip install fabric_hpc-*.whl" in err.hint


def test_an_old_python_that_imports_fabric_hpc_anyway_is_refused(tmp_path: Path) -> None:
    """pip install --ignore-requires-python puts the package there; its code would fail at run time."""
    python = _interpreter(tmp_path, "printf '3.9.18\\n0.1.0'")
    with pytest.raises(ConfigError, match=r"is Python 3\.9\.18; fabric-hpc needs Python 3\.11"):
        check_python(python)


def test_a_new_python_without_fabric_keeps_the_pip_fix(tmp_path: Path) -> None:
    err = _without_fabric(tmp_path, "3.12.1")
    assert "cannot import fabric_hpc (ModuleNotFoundError" in err.message
    assert "-m pip install fabric_hpc-*.whl" in err.hint and "dnf" not in err.hint


def _config(path: Path, *, slurm_conf: str | None = None, slurm_conf_dir: str | None = None) -> Path:
    """An agent.toml as an admin writes it: [install] without slurm_conf_dir unless given."""
    from tests.deploy.test_install import GROUP, USER

    lines = ["[agent]", 'topology = "superpod:sus=1"']
    lines += [f'slurm_conf = "{slurm_conf}"'] if slurm_conf else []
    lines += ["[install]", f'service_user = "{USER}"', f'slurm_group = "{GROUP}"',
              'python = "/usr/bin/python3"', 'slurm_version = "22.05"']
    lines += [f'slurm_conf_dir = "{slurm_conf_dir}"'] if slurm_conf_dir else []
    path.write_text("\n".join(lines) + "\n")
    return path


def _show_config(conf: str) -> dict[str, str]:
    from fabric_hpc.slurm.slurm_settings import parse_show_config

    return parse_show_config(f"JobSubmitPlugins        = (null)\nSLURM_CONF              = {conf}\n")


def test_slurm_conf_dir_follows_agent_slurm_conf(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A site whose slurm.conf is /opt/slurm/etc/slurm.conf: job_submit.lua, gres.conf and topology.conf
    go beside it (slurmctld loads them there), not to /etc/slurm where it never looks."""
    from fabric_hpc.slurm.deploy_config import load_config
    from tests.deploy.test_install import fabric

    monkeypatch.delenv("SLURM_CONF", raising=False)
    cfg = _config(tmp_path / "agent.toml", slurm_conf="/opt/slurm/etc/slurm.conf")
    assert load_config(cfg)[0].install.slurm_conf_dir == "/opt/slurm/etc"
    root = tmp_path / "root"
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root)) == 0
    assert (root / "opt/slurm/etc/job_submit.lua").is_file() and (root / "opt/slurm/etc/gres.conf").is_file()
    assert not (root / "etc/slurm").exists()
    installed = load_config(root / "etc/fabric-hpc/agent.toml")[0]
    assert installed.agent.job_submit == "/opt/slurm/etc/job_submit.lua"
    assert "Environment=SLURM_CONF=/opt/slurm/etc/slurm.conf" in \
        (root / "etc/systemd/system/fabric-agent.service").read_text()
    err = capsys.readouterr().err  # no warning about where slurm.conf is
    assert "install.slurm_conf_dir" not in err and "SLURM_CONF=" not in err, err
    given = _config(tmp_path / "given.toml", slurm_conf="/opt/slurm/etc/slurm.conf",
                    slurm_conf_dir="/etc/slurm")
    assert load_config(given)[0].install.slurm_conf_dir == "/etc/slurm"  # the admin's own choice stays


def test_running_slurmctld_in_another_directory_refuses_a_default_slurm_conf_dir(tmp_path: Path) -> None:
    """SLURM_CONF=/etc/slurm-site/slurm.conf in /etc/sysconfig/slurmctld (or the admin's shell):
    install wrote job_submit.lua to /etc/slurm, and slurmctld, told JobSubmitPlugins=lua, found none."""
    from fabric_hpc.slurm.deploy_config import load_config
    from fabric_hpc.slurm.install_checks import check_slurm_conf_dir

    cfg = load_config(_config(tmp_path / "agent.toml"))[0]
    running = _show_config("/etc/slurm-site/slurm.conf")
    with pytest.raises(ConfigError) as err:
        check_slurm_conf_dir(cfg, running, {})
    assert "the running slurmctld reads /etc/slurm-site/slurm.conf" in err.value.message
    assert "not from install.slurm_conf_dir /etc/slurm" in err.value.message
    assert 'agent.slurm_conf = "/etc/slurm-site/slurm.conf"' in err.value.hint
    assert check_slurm_conf_dir(cfg, _show_config("/etc/slurm/slurm.conf"), {}) == []
    assert check_slurm_conf_dir(cfg, None, {}) == []  # slurmctld did not answer: nothing to compare
    chosen = load_config(_config(tmp_path / "chosen.toml", slurm_conf_dir="/srv/stage/etc"))[0]
    warned = check_slurm_conf_dir(chosen, running, {})
    assert len(warned) == 1
    assert "loads job_submit.lua, gres.conf and topology.conf from /etc/slurm-site" in warned[0]


def test_a_shell_slurm_conf_the_unit_lacks_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.deploy.test_install import fabric

    monkeypatch.setenv("SLURM_CONF", "/etc/slurm-site/slurm.conf")
    cfg = _config(tmp_path / "agent.toml")
    root = str(tmp_path / "root")
    assert fabric("slurm", "install", "--config", str(cfg), "--root", root, "--dry-run") == 0
    err = capsys.readouterr().err
    assert "warning: SLURM_CONF=/etc/slurm-site/slurm.conf is set here but agent.slurm_conf is not" in err, \
        err
    assert 'set agent.slurm_conf = "/etc/slurm-site/slurm.conf"' in err
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm/slurm.conf")  # where install writes anyway: nothing to say
    assert fabric("slurm", "install", "--config", str(cfg), "--root", root, "--dry-run") == 0
    assert "SLURM_CONF=" not in capsys.readouterr().err
    both = _config(tmp_path / "both.toml", slurm_conf="/etc/slurm/slurm.conf",
                   slurm_conf_dir="/etc/slurm-llnl")
    assert fabric("slurm", "install", "--config", str(both), "--root", str(tmp_path / "r2"), "--dry-run") == 0
    err = capsys.readouterr().err
    assert "install.slurm_conf_dir /etc/slurm-llnl is not the directory of agent.slurm_conf" in err, err
    assert "SLURM_CONF=" not in err


def test_deploy_md_rhel_section_quotes_the_messages() -> None:
    docs = " ".join((REPO / "docs" / "deploy.md").read_text().split())
    section = docs[docs.index("## RHEL 8/9"):docs.index("## Tested")]
    assert "is Python 3.9.18; fabric-hpc needs Python 3.11 or newer" in section
    assert ("the running slurmctld reads /etc/slurm-site/slurm.conf (scontrol show config): it loads "
            "job_submit.lua, gres.conf and topology.conf from /etc/slurm-site, not from "
            "install.slurm_conf_dir /etc/slurm") in section
    assert "dnf install python3.11" in section and "rpmbuild -ta --with lua" in section


def test_a_derived_slurm_conf_dir_is_still_refused_beside_another(tmp_path: Path) -> None:
    """agent.slurm_conf a client copy (/etc/slurm-client/slurm.conf) and slurmctld reading /etc/slurm: the
    derived slurm_conf_dir is not the admin's choice, so install refuses rather than writing job_submit.lua
    where slurmctld never looks (it was only a warning: the derived value counted as set)."""
    from fabric_hpc.slurm.deploy_config import load_config
    from fabric_hpc.slurm.install_checks import check_slurm_conf_dir

    cfg = load_config(_config(tmp_path / "agent.toml", slurm_conf="/etc/slurm-client/slurm.conf"))[0]
    assert cfg.install.slurm_conf_dir == "/etc/slurm-client"
    assert "slurm_conf_dir" not in cfg.install.model_fields_set
    with pytest.raises(ConfigError) as err:
        check_slurm_conf_dir(cfg, _show_config("/etc/slurm/slurm.conf"), {})
    assert "not from install.slurm_conf_dir /etc/slurm-client" in err.value.message


def test_one_directory_by_two_paths_is_no_mismatch(tmp_path: Path) -> None:
    """/etc/slurm a symlink to an NFS-shared directory: slurmctld names the real path, the config the link."""
    from fabric_hpc.slurm.deploy_config import load_config
    from fabric_hpc.slurm.install_checks import check_slurm_conf_dir

    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    cfg = load_config(_config(tmp_path / "agent.toml", slurm_conf_dir=str(tmp_path / "link")))[0]
    assert check_slurm_conf_dir(cfg, _show_config(str(tmp_path / "real" / "slurm.conf")), {}) == []
    assert check_slurm_conf_dir(cfg, _show_config(str(tmp_path / "other" / "slurm.conf")), {}) != []
