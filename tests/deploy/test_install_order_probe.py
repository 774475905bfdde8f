"""An admin's probe of install/uninstall from the wheel (the live half:
tests/slurm_integration/test_install_order_live.py):

1. uninstall before the slurm.conf lines are gone drained nodes (Prolog= named a removed file);
2. uninstall "restored" a backup that was fabric's own job_submit.lua, and kept older backups unnamed;
3. install told a site with ``JobSubmitPlugins=require_timelimit`` to write ``JobSubmitPlugins=lua``;
4. ``install --dry-run`` exited 0 where the real run refuses;
5. the unit named a public address the repository does not have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.deploy_config import load_config
from fabric_hpc.slurm.install import Installer
from fabric_hpc.slurm.unit import unit_text
from tests.deploy.test_install import REPO, fabric, tree, write_config

#: The lines of ``scontrol show config`` (Slurm 22.05) that matter, as it prints them.
SHOW_CONFIG = """Configuration data as of 2026-12-06T13:00:00
JobSubmitPlugins        = {jsp}
Prolog                  = {prolog}
SLURM_CONF              = /etc/slurm/slurm.conf
SlurmUser               = slurm(64030)
TaskProlog              = {task}
"""


def _install(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[Path, Path]:
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), *extra) == 0
    capsys.readouterr()
    return cfg, root


def _running(jsp: str = "lua", prolog: str = "/etc/fabric-hpc/prolog.py",
             task: str = "/etc/fabric-hpc/task_prolog.py") -> dict[str, str]:
    from fabric_hpc.slurm.slurm_settings import parse_show_config

    return parse_show_config(SHOW_CONFIG.format(jsp=jsp, prolog=prolog, task=task))


# -- 1. the order: slurm.conf lines and reconfigure first, then uninstall --------------------------
def test_uninstall_refuses_while_slurmctld_still_runs_its_files(tmp_path, capsys):
    cfg, root = _install(tmp_path, capsys)
    inst, before = Installer(load_config(cfg)[0], root=root), tree(root)
    with pytest.raises(ConfigError) as err:
        inst.uninstall(running=_running(jsp="require_timelimit,lua"))
    text = str(err.value)
    assert "TaskProlog=/etc/fabric-hpc/task_prolog.py" in text and "JobSubmitPlugins=" in text, text
    assert "scontrol reconfigure" in err.value.hint and "--force" in err.value.hint
    assert tree(root) == before  # nothing removed
    # the lines removed and slurmctld reconfigured (the site's own plugin stays): uninstall runs
    assert inst.uninstall(running=_running(jsp="require_timelimit", prolog="(null)", task="(null)"))
    assert not (root / "etc/fabric-hpc/task_prolog.py").exists()


def test_uninstall_force_removes_what_slurmctld_still_names(tmp_path, capsys):
    cfg, root = _install(tmp_path, capsys)
    Installer(load_config(cfg)[0], root=root).uninstall(running=_running(), force=True)
    assert not (root / "etc/slurm/job_submit.lua").exists()


def test_docs_and_output_give_the_slurm_conf_step_before_uninstall(tmp_path, capsys):
    six = (REPO / "docs/deploy.md").read_text().split("## 6. Uninstall", 1)[1].split("\n## ", 1)[0]
    assert six.index("scontrol reconfigure") < six.index("fabric slurm uninstall --config"), six[:600]
    cfg, root = _install(tmp_path, capsys)
    assert fabric("slurm", "uninstall", "--config", str(cfg), "--root", str(root)) == 0
    out = capsys.readouterr().out
    assert "Remove the fabric lines from slurm.conf" not in out  # the old "uninstall, then edit" order
    assert "before the next job starts" in out and "scontrol reconfigure" in out


# -- 2. a backup that is fabric's own is not "restored" ------------------------------------------
def _plugin_by_hand(root: Path) -> Path:
    lua = root / "etc/slurm/job_submit.lua"
    lua.parent.mkdir(parents=True, exist_ok=True)
    assert fabric("slurm", "plugin-config", "--state-dir", "/var/lib/fabric-agent", "-o", str(lua)) == 0
    return lua


def test_uninstall_removes_a_backup_of_fabrics_own_plugin(tmp_path, capsys):
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    lua = _plugin_by_hand(root)
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--force") == 0
    assert "backup  /etc/slurm/job_submit.lua" in capsys.readouterr().out
    assert fabric("slurm", "uninstall", "--config", str(cfg), "--root", str(root)) == 0
    out = capsys.readouterr().out
    assert not lua.exists() and not list(lua.parent.glob("job_submit.lua*")), tree(root)
    assert "restored /etc/slurm/job_submit.lua" not in out and "not the site's: not restored" in out, out
    assert "must not name lua in JobSubmitPlugins" in out


def test_uninstall_removes_a_backup_of_a_hand_edited_plugin(tmp_path, capsys):
    cfg, root = _install(tmp_path, capsys)
    lua = root / "etc/slurm/job_submit.lua"
    lua.write_text(re.sub(r"local FALLBACK_S = \d+", "local FALLBACK_S = 90", lua.read_text()))
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--force") == 0
    assert fabric("slurm", "uninstall", "--config", str(cfg), "--root", str(root)) == 0
    assert "not the site's: not restored" in capsys.readouterr().out
    assert not list(lua.parent.glob("job_submit.lua*"))


def test_older_backups_are_named_and_the_sites_plugin_keeps_lua(tmp_path, capsys):
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    slurm = root / "etc/slurm"
    slurm.mkdir(parents=True)
    (slurm / "gres.conf").write_text("# the site's gres.conf\n")
    (slurm / "job_submit.lua").write_text("function slurm_job_submit() return slurm.SUCCESS end\n")
    for _ in range(2):  # the admin edits fabric's gres.conf between two --force installs
        assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--force") == 0
        (slurm / "gres.conf").write_text((slurm / "gres.conf").read_text() + "# edited\n")
    assert (slurm / "gres.conf.fabric-backup.1").exists()
    capsys.readouterr()
    assert fabric("slurm", "uninstall", "--config", str(cfg), "--root", str(root), "--force") == 0
    out = capsys.readouterr().out
    assert (slurm / "gres.conf").read_text() == "# the site's gres.conf\n"
    assert "gres.conf.fabric-backup.1" in out and not (slurm / "gres.conf.fabric-backup.1").exists(), out
    assert "restored /etc/slurm/job_submit.lua" in out and "Keep lua in JobSubmitPlugins" in out, out
    assert "remove JobSubmitPlugins=lua" not in out


# -- 3. the site's JobSubmitPlugins are kept ------------------------------------------------------
def test_prologs_as_slurm_25_11_lists_them():
    from fabric_hpc.slurm.slurm_settings import parse_show_config

    text = "Prolog[0]               = /etc/fabric-hpc/prolog.py\nProlog[1]               = /site/p.sh\n"
    assert parse_show_config(text)["Prolog"] == "/etc/fabric-hpc/prolog.py,/site/p.sh"
    assert "TaskProlog" not in parse_show_config("TaskProlog              = (null)\n")


def test_job_submit_line_keeps_the_sites_plugins():
    from fabric_hpc.slurm.slurm_settings import job_submit_line

    assert job_submit_line(None) == job_submit_line("(null)") == "JobSubmitPlugins=lua"
    assert job_submit_line("require_timelimit") == "JobSubmitPlugins=require_timelimit,lua"
    assert job_submit_line("lua,require_timelimit") == "JobSubmitPlugins=lua,require_timelimit"


def test_install_prints_the_combined_line_from_an_included_file(tmp_path, capsys):
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    (root / "etc/slurm").mkdir(parents=True)
    (root / "etc/slurm/slurm.conf").write_text("ClusterName=c\nInclude site.conf\n")
    (root / "etc/slurm/site.conf").write_text("jobsubmitplugins=require_timelimit   # every job a limit\n")
    from fabric_hpc.slurm.slurm_settings import conf_file_settings

    assert conf_file_settings(Path("/etc/slurm/slurm.conf"), root)["JobSubmitPlugins"] == "require_timelimit"
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "  JobSubmitPlugins=require_timelimit,lua\n" in out and "  JobSubmitPlugins=lua\n" not in out, out


# -- 4. a dry run exits as the real run would ----------------------------------------------------
def test_dry_run_exits_3_where_install_would_refuse(tmp_path, capsys):
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    (root / "etc/slurm").mkdir(parents=True)
    (root / "etc/slurm/gres.conf").write_text("# the site's own\n")
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--dry-run") == 3
    out, err = capsys.readouterr()
    assert "would refuse without --force: /etc/slurm/gres.conf" in out and "JobSubmitPlugins=lua" in out
    assert "--force" in err and "Traceback" not in err
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--dry-run", "--force") == 0
    assert "would back up (--force): /etc/slurm/gres.conf" in capsys.readouterr().out
    assert not (root / "etc/slurm/job_submit.lua").exists()


# -- 5. the unit names no public address -----------------------------------------------------------
def test_unit_points_at_the_shipped_docs(tmp_path):
    unit = unit_text(load_config(write_config(tmp_path / "agent.toml"))[0])
    assert "https://" not in unit and "github" not in unit
    assert "fabric docs deploy" in unit
