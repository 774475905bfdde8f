"""fabric slurm install keeps the record of every backup across a failed run, creates its directories
0755 whatever root's umask, and removes a file the last install wrote that this plan drops."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import sys
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.deploy_config import DeployConfig
from fabric_hpc.slurm.install import Installer, plan
from fabric_hpc.slurm.site_gres import gpu_files, read_site_gres
from fabric_hpc.topology import open_fabric
from tests.real import require_real

FAB = open_fabric("superpod:sus=1")
USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name
LUA = "/etc/slurm/job_submit.lua"


def _cfg(**install: str) -> DeployConfig:
    base = {"slurm_version": "25.11", "service_user": USER, "slurm_group": GROUP, "python": sys.executable,
            **install}
    return DeployConfig.model_validate({"agent": {"topology": "superpod:sus=1",
                                                  "state_dir": "/var/lib/fabric-agent"}, "install": base})


def _files(cfg: DeployConfig, root: Path) -> tuple[Installer, list]:
    inst = Installer(cfg, root=root)
    gres = str(Path(cfg.install.slurm_conf_dir) / "gres.conf")
    site = read_site_gres(inst.at(gres), gres, FAB.hosts, root=inst.root,
                          gpu_files=gpu_files(FAB, cfg.install.gres_device_dir))
    return inst, plan(cfg, FAB, slurm_version=cfg.install.slurm_version, site_gres=site)[0]


def test_failed_force_install_keeps_the_sites_backup_on_record(tmp_path):
    root = tmp_path / "root"
    (root / "etc/slurm").mkdir(parents=True)
    (root / "etc/slurm/job_submit.lua").write_text("-- the site's own job_submit.lua\n")
    (root / "etc/systemd").mkdir(parents=True)
    (root / "etc/systemd/system").write_text("a file where unit_dir should be\n")  # the last write fails
    inst, files = _files(_cfg(), root)
    with pytest.raises(OSError):
        inst.install(files, force=True)
    entry = inst.manifest()["files"][LUA]
    assert entry["backup"] == str(root / "etc/slurm/job_submit.lua.fabric-backup"), entry
    (root / "etc/systemd/system").unlink()  # the admin fixes the cause and reruns
    inst, files = _files(_cfg(), root)
    inst.install(files)
    assert inst.manifest()["files"][LUA]["backup"] == entry["backup"]
    actions = inst.uninstall(force=True)
    assert f"restored {LUA} from job_submit.lua.fabric-backup" in actions, actions
    assert (root / "etc/slurm/job_submit.lua").read_text() == "-- the site's own job_submit.lua\n"


def test_new_directories_are_0755_under_umask_027(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "etc").mkdir(mode=0o700)  # an existing directory is left as it is
    inst, files = _files(_cfg(), root)
    old = os.umask(0o027)
    try:
        inst.install(files)
    finally:
        os.umask(old)
    assert stat.S_IMODE((root / "etc").stat().st_mode) == 0o700
    for d in ("etc/fabric-hpc", "etc/slurm", "etc/systemd", "etc/systemd/system", "var", "var/lib"):
        assert stat.S_IMODE((root / d).stat().st_mode) == 0o755, d


def test_switching_topology_format_removes_the_old_file(tmp_path):
    root = tmp_path / "root"
    inst, files = _files(_cfg(topology_format="yaml"), root)
    inst.install(files)
    assert (root / "etc/slurm/topology.yaml").exists()
    inst, files = _files(_cfg(topology_format="conf"), root)
    actions = inst.install(files)
    assert "removed /etc/slurm/topology.yaml" in actions, actions
    assert not (root / "etc/slurm/topology.yaml").exists() and (root / "etc/slurm/topology.conf").exists()
    assert "/etc/slurm/topology.yaml" not in inst.manifest()["files"]


def test_switching_format_restores_the_sites_file_and_refuses_an_edited_one(tmp_path):
    root = tmp_path / "root"
    (root / "etc/slurm").mkdir(parents=True)
    (root / "etc/slurm/topology.yaml").write_text("# the site's own topology.yaml\n")
    inst, files = _files(_cfg(topology_format="yaml"), root)
    inst.install(files, force=True)
    inst, files = _files(_cfg(topology_format="conf"), root)
    actions = inst.install(files)
    assert "restored /etc/slurm/topology.yaml from topology.yaml.fabric-backup" in actions, actions
    assert (root / "etc/slurm/topology.yaml").read_text() == "# the site's own topology.yaml\n"
    inst, files = _files(_cfg(topology_format="yaml"), root)
    inst.install(files, force=True)
    (root / "etc/slurm/topology.yaml").write_text("# edited by the admin\n")
    inst, files = _files(_cfg(topology_format="conf"), root)
    with pytest.raises(Exception, match="topology.yaml: changed since .*this install removes it"):
        inst.install(files)


def test_a_symlinked_site_gres_conf_is_refused_not_copied(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("StoragePass=hunter2\n")
    secret.chmod(0o600)
    root = tmp_path / "root"
    (root / "etc/slurm").mkdir(parents=True)
    os.symlink(secret, root / "etc/slurm/gres.conf")
    with pytest.raises(ConfigError, match="gres.conf /etc/slurm/gres.conf: a symbolic link"):
        _files(_cfg(), root)
    assert (root / "etc/slurm/gres.conf").is_symlink() and not (root / "etc/fabric-hpc").exists()


def test_a_symlinked_unit_dir_leading_outside_root_is_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    (root / "etc/systemd").mkdir(parents=True)
    os.symlink(outside, root / "etc/systemd/system")
    inst, files = _files(_cfg(), root)
    with pytest.raises(ConfigError, match=r"etc/systemd/system resolves to .*outside, outside --root"):
        inst.install(files, force=True)
    assert os.listdir(outside) == [] and not (root / "etc/slurm").exists()


def _state_cfg(state_dir: str) -> DeployConfig:
    cfg = _cfg()
    return cfg.model_copy(update={"agent": cfg.agent.model_copy(update={"state_dir": state_dir})})


@pytest.mark.parametrize("mode", [0o1777, 0o777, 0o1775])
def test_a_state_dir_in_a_directory_others_may_write_is_refused_sticky_or_not(tmp_path, mode):
    root = tmp_path / "root"
    (root / "shm").mkdir(parents=True)
    (root / "shm").chmod(mode)
    inst, files = _files(_state_cfg("/shm/fabric"), root)
    with pytest.raises(ConfigError, match="shm \\(where install puts fabric.plugin.*\\) may be changed"):
        inst.install(files)
    assert os.listdir(root / "shm") == [] and not (root / "etc").exists()
    assert inst.owner_problems(), "dry-run names it too"


def test_a_plugin_file_or_dir_another_user_made_is_not_adopted(tmp_path):
    require_real("slurm", os.geteuid() == 0, "chown to another user needs root")
    root = tmp_path / "root"
    pd = root / "var/lib/fabric-agent.plugin"
    pd.mkdir(parents=True, mode=0o755)
    (pd / "heartbeat").write_text("FORGED\n")
    os.chown(pd / "heartbeat", 65534, 65534)
    before = (pd / "heartbeat").stat().st_ino
    with open(pd / "heartbeat", "rb"):  # the other user keeps it open across install
        inst, files = _files(_cfg(), root)
        inst.install(files)
    st = (pd / "heartbeat").stat()
    assert (st.st_uid, st.st_size) == (os.getuid(), 0) and st.st_ino != before
    root2 = tmp_path / "root2"
    (root2 / "var/lib/fabric-agent.plugin").mkdir(parents=True, mode=0o755)
    os.chown(root2 / "var/lib/fabric-agent.plugin", 65534, 65534)
    inst, files = _files(_cfg(), root2)
    with pytest.raises(ConfigError, match="fabric-agent.plugin is owned by uid 65534, not by root"):
        inst.install(files)


@pytest.mark.parametrize("config_dir", ["/etc/fabric#hpc", "/etc/#fabric"])  # spaces, quotes: refused earlier
def test_a_config_dir_slurm_conf_cannot_hold_is_refused(tmp_path, config_dir):
    with pytest.raises(ConfigError, match=r"TaskProlog=.*: slurm.conf cannot hold this path") as caught:
        _files(_cfg(config_dir=config_dir), tmp_path / "root")
    assert "install.config_dir" in (caught.value.hint or "")


@pytest.mark.parametrize("version", ["17.02", "21.08", "20.11.9"])
def test_a_slurm_older_than_22_05_is_refused_naming_the_range(tmp_path, version):
    with pytest.raises(ConfigError, match=f"Slurm {version} is older than fabric supports: 22.05 to 26.05"):
        _files(_cfg(slurm_version=version, topology_format="conf"), tmp_path / "root")


def test_slurm_22_05_is_still_planned(tmp_path):
    assert _files(_cfg(slurm_version="22.05", topology_format="conf"), tmp_path / "root")[1]


def test_agent_toml_with_a_character_beyond_the_bmp_is_readable(tmp_path):
    import tomllib

    from fabric_hpc.slurm.deploy_config import load_config

    root = tmp_path / "root"
    inst, files = _files(_cfg(ckpt_root="/ckpt/\U0001F600"), root)
    inst.install(files)
    written = root / "etc/fabric-hpc/agent.toml"
    assert tomllib.loads(written.read_text())["install"]["ckpt_root"] == "/ckpt/\U0001F600"
    assert load_config(written)[0].agent.ckpt_root == "/ckpt/\U0001F600"
