"""Install (root) gives the state dir and its wake file to the service user, who owns that directory
and can swap ``wake`` for a symlink, a FIFO or a hard link at any moment (after any check). Every chown
and chmod install does there goes through a file descriptor opened with O_NOFOLLOW: such a ``wake`` is
refused, and the file it points to keeps its owner and mode.

The tests call ``Installer._state_dir`` directly: that is install's step after its checks, so a
``wake`` planted here is exactly what a swap between check and chown would leave (no race needed)."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.deploy_config import load_config
from fabric_hpc.slurm.install import Installer
from tests.deploy.test_install import GROUP as ROOT_GROUP
from tests.deploy.test_install import USER, fabric, write_config

SERVICE, GROUP = "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="install gives files away: needs root")


def _installed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Installer, Path]:
    """A real install (service user nobody) under tmp_path/root; returns its Installer and state dir."""
    cfg = write_config(tmp_path / "agent.toml")
    cfg.write_text(cfg.read_text().replace(f'service_user = "{USER}"', f'service_user = "{SERVICE}"')
                   .replace(f'slurm_group = "{ROOT_GROUP}"', f'slurm_group = "{GROUP}"'))
    root = tmp_path / "root"
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root)) == 0, capsys.readouterr()
    capsys.readouterr()
    inst = Installer(load_config(cfg)[0], root=root)
    return inst, inst.state_dir


def _decoy(tmp_path: Path) -> Path:
    victim = tmp_path / "decoy-root-file"
    victim.write_text("root's\n")
    os.chown(victim, 0, 0)
    victim.chmod(0o600)
    return victim


def _owner(inst: Installer) -> tuple[int, int]:
    return pwd.getpwnam(SERVICE).pw_uid, grp.getgrnam(GROUP).gr_gid


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "fifo", "dir"])
def test_a_wake_swapped_after_the_checks_is_refused_and_nothing_is_given_away(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], plant: str) -> None:
    inst, sd = _installed(tmp_path, capsys)
    victim = _decoy(tmp_path)
    wake = sd / "wake"
    wake.unlink()
    if plant == "symlink":
        wake.symlink_to(victim)
    elif plant == "hardlink":
        os.link(victim, wake)
    elif plant == "fifo":
        os.mkfifo(wake, 0o600)
    else:
        wake.mkdir()
    with pytest.raises(ConfigError) as exc:
        inst._state_dir(*_owner(inst), force=True, actions=[])
    assert "wake" in str(exc.value) and exc.value.hint, exc.value
    st = os.stat(victim)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o600)
    assert victim.read_text() == "root's\n"
    if plant == "symlink":
        assert os.readlink(wake) == str(victim)  # left as found: not followed, not replaced


def test_a_missing_wake_is_created_new_and_given_to_the_service_user(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inst, sd = _installed(tmp_path, capsys)
    (sd / "wake").unlink()
    actions: list[str] = []
    created = inst._state_dir(*_owner(inst), force=True, actions=actions)
    st = os.lstat(sd / "wake")
    assert str(sd / "wake") in created
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777, st.st_nlink) == (*_owner(inst), 0o660, 1)
    sdst = os.lstat(sd)
    assert (sdst.st_uid, sdst.st_gid, sdst.st_mode & 0o7777) == (*_owner(inst), 0o750)


def test_a_planned_file_swapped_for_a_symlink_is_not_chmodded_through_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The 'unchanged' path of install chmods an existing planned file: never through a symlink."""
    from fabric_hpc.slurm.install import _chmod

    victim = _decoy(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(victim)
    with pytest.raises(ConfigError):
        _chmod(link, 0o644)
    assert os.stat(victim).st_mode & 0o7777 == 0o600
