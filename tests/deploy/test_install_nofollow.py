"""Install (root) gives the state dir to the service user, who owns it and can swap any name in it
(``wake`` was one) for a symlink, a FIFO or a hard link at any moment, after any check. Install no
longer opens or chowns anything by name there: the plugin's files live in ``<state_dir>.plugin``,
root's; and every chown and chmod install does goes through a file descriptor opened with
O_NOFOLLOW (fchown/fchmod), so a symlink, FIFO or hard link at such a path is refused, and the file
it points to keeps its owner and mode.

The tests call ``Installer._state_dir`` directly: that is install's step after its checks, so a file
planted here is exactly what a swap between check and chown would leave (no race needed)."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.deploy_config import load_config
from fabric_hpc.slurm.install import Installer
from fabric_hpc.slurm.plugins import plugin_dir
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


@pytest.mark.parametrize("name", ["heartbeat", "wake"])
@pytest.mark.parametrize("plant", ["symlink", "hardlink", "fifo", "dir"])
def test_a_plugin_file_swapped_after_the_checks_is_refused_and_nothing_is_given_away(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], plant: str, name: str) -> None:
    """The plugin's directory is root's, so only root could plant these; install still never follows
    them (its chown and chmod go through an O_NOFOLLOW fd)."""
    inst, sd = _installed(tmp_path, capsys)
    victim = _decoy(tmp_path)
    target = plugin_dir(sd) / name
    target.unlink()
    if plant == "symlink":
        target.symlink_to(victim)
    elif plant == "hardlink":
        os.link(victim, target)
    elif plant == "fifo":
        os.mkfifo(target, 0o600)
    else:
        target.mkdir()
    with pytest.raises(ConfigError) as exc:
        inst._state_dir(*_owner(inst), force=True, actions=[])
    assert name in str(exc.value) and exc.value.hint, exc.value
    st = os.stat(victim)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o600)
    assert victim.read_text() == "root's\n"
    if plant == "symlink":
        assert os.readlink(target) == str(victim)  # left as found: not followed, not replaced


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "fifo"])
def test_a_wake_the_service_user_swaps_in_the_state_dir_is_not_touched(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], plant: str) -> None:
    """The race of the report: the service user swaps <state_dir>/wake for a link to a root file
    between install's check and its chown. Install no longer chowns or opens anything by that name
    (the plugin's files live in root's <state_dir>.plugin), so there is nothing to win."""
    inst, sd = _installed(tmp_path, capsys)
    victim = _decoy(tmp_path)
    wake = sd / "wake"
    wake.unlink(missing_ok=True)
    if plant == "symlink":
        wake.symlink_to(victim)
    elif plant == "hardlink":
        os.link(victim, wake)
    else:
        os.mkfifo(wake, 0o600)
    inst._state_dir(*_owner(inst), force=True, actions=[])
    st = os.stat(victim)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o600)


def test_the_plugin_dir_is_created_roots_with_its_two_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inst, sd = _installed(tmp_path, capsys)
    uid, gid = _owner(inst)
    pd = plugin_dir(sd)
    st = {n: os.lstat(p) for n, p in (("dir", pd), ("heartbeat", pd / "heartbeat"), ("wake", pd / "wake"))}
    assert (st["dir"].st_uid, st["dir"].st_gid, st["dir"].st_mode & 0o7777) == (0, gid, 0o755)
    hb = st["heartbeat"]
    assert (hb.st_uid, hb.st_gid, hb.st_mode & 0o7777) == (uid, gid, 0o644)
    assert (st["wake"].st_uid, st["wake"].st_gid, st["wake"].st_mode & 0o7777) == (0, gid, 0o660)
    sdst = os.lstat(sd)
    assert (sdst.st_uid, sdst.st_gid, sdst.st_mode & 0o7777) == (uid, gid, 0o750)
    (pd / "wake").unlink()
    created = inst._state_dir(uid, gid, force=True, actions=[])
    assert created == [str(pd / "wake")] and os.lstat(pd / "wake").st_nlink == 1
    cfg = tmp_path / "agent.toml"
    assert fabric("slurm", "uninstall", "--config", str(cfg), "--root", str(inst.root)) == 0
    assert not pd.exists()


def test_a_state_dir_in_a_directory_others_may_write_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inst, sd = _installed(tmp_path, capsys)
    sd.parent.chmod(0o777)
    with pytest.raises(ConfigError, match="may be changed by users other than root"):
        inst._check_state_dir()  # before anything is written


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
