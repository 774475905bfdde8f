"""fabric slurm install / uninstall into a temporary root, the strict agent config, fabric agent run --config/check."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.slurm.deploy_config import AgentSection, InstallSection, load_config
from fabric_hpc.slurm.install import MANIFEST, UNIT_NAME
from fabric_hpc.slurm.plugins import PLUGIN_PACKAGE, PROTOCOL_VERSION, check_plugin, render_job_submit

REPO = Path(__file__).resolve().parents[2]
USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def write_config(path: Path, base: Path | None = None, **agent: object) -> Path:
    """An agent.toml; with ``base`` every path lies under it (so the files are real, not under --root)."""
    p = (lambda s: str(base / s.lstrip("/"))) if base else (lambda s: s)
    lines = ["# test config", "[agent]", 'topology = "superpod:sus=1"', "fallback_s = 30",
             f'state_dir = "{p("/var/lib/fabric-agent")}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in agent.items()]
    lines += ["[install]", f'service_user = "{USER}"', f'slurm_group = "{GROUP}"',
              # a real install (base: root /) checks that python imports fabric_hpc
              f'python = "{sys.executable if base else "/usr/bin/python3"}"',
              f'slurm_conf_dir = "{p("/etc/slurm")}"', f'config_dir = "{p("/etc/fabric-hpc")}"',
              f'unit_dir = "{p("/etc/systemd/system")}"', 'slurm_version = "22.05"']
    path.write_text("\n".join(lines) + "\n")
    return path


def fabric(*args: str) -> int:
    return main(list(args))


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def test_config_is_strict_and_every_key_is_documented(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "agent.toml", interval_s=1)
    assert load_config(cfg)[0].agent.interval_s == 1.0
    yml = tmp_path / "agent.yaml"
    yml.write_text("agent:\n  topology: superpod:sus=1\n  polcy: fabric\n")
    assert fabric("agent", "check", "--config", str(yml)) == 3
    err = capsys.readouterr().err
    assert "unknown key 'polcy' at agent.polcy" in err and "Traceback" not in err
    (tmp_path / "agent.ini").write_text("")
    assert fabric("agent", "check", "--config", str(tmp_path / "agent.ini")) == 3
    assert "unknown config format .ini" in capsys.readouterr().err
    docs = (REPO / "docs" / "deploy.md").read_text()
    for key in [*AgentSection.model_fields, *InstallSection.model_fields]:
        assert f"`{key}`" in docs, f"docs/deploy.md does not document {key}"


def test_preemption_settings_reach_the_agents_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``preemption`` / ``preempt_benefit_ratio`` in [agent] build the fabric policy the agent runs; a
    negative ratio is refused with the key named."""
    from fabric_hpc.scheduler import make_policy
    from fabric_hpc.slurm.agent import _policy_options
    from fabric_hpc.slurm.deploy_config import agent_config

    def policy(**agent: object):
        config = agent_config(load_config(write_config(tmp_path / "agent.toml", **agent))[0].agent)
        return make_policy(config.policy, **_policy_options(config))

    default = policy()
    assert default.preemption is not None and default.preempt_benefit_ratio == 20.0
    assert policy(preemption=False).preemption is None
    assert policy(preempt_benefit_ratio=4.0).preempt_benefit_ratio == 4.0
    assert policy(policy="slurm", preemption=True).preemption is None  # the baseline never preempts
    cfg = write_config(tmp_path / "bad.toml", preempt_benefit_ratio=-1)
    assert fabric("agent", "check", "--config", str(cfg)) == 3
    err = capsys.readouterr().err
    assert "preempt_benefit_ratio" in err and "Traceback" not in err


@pytest.mark.parametrize("agent,needle", [
    ({"policy": "FABRIC"}, "agent.policy"),
    ({"placement": "magic"}, "agent.placement"),
    ({"tier_map": ["qos:urgent=superhigh"]}, "unknown tier 'superhigh'"),
    ({"tier_map": ["partition:=spot"]}, "is not KIND:NAME=TIER"),
    ({"tier_map": ["qos:a=high", "qos:a=spot"]}, "mapped twice"),
    ({"state_dir": "/var/lib/fabric\nagent"}, "control characters"),
])
def test_check_refuses_what_run_would_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             agent: dict, needle: str) -> None:
    """``agent check`` validates every value ``agent run`` would refuse (policy, placement, the tier
    map, the state dir); with --json the refusal is JSON on stdout too."""
    cfg = write_config(tmp_path / "agent.toml", **{k: v for k, v in agent.items() if k != "state_dir"})
    if "state_dir" in agent:
        cfg.write_text(cfg.read_text().replace('state_dir = "/var/lib/fabric-agent"',
                                               f"state_dir = {json.dumps(agent['state_dir'])}"))
    assert fabric("agent", "check", "--config", str(cfg)) == 3
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    assert fabric("agent", "check", "--config", str(cfg), "--json") == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["checks"][0]["check"] == "config" and needle in doc["checks"][0]["detail"]


def test_check_says_a_state_dir_that_is_a_file_is_not_a_directory(tmp_path: Path) -> None:
    from fabric_hpc.cli.agent_checks import _state_dir_ok
    from fabric_hpc.errors import ConfigError

    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="exists but is not a directory"):
        _state_dir_ok(str(tmp_path / "afile"))
    with pytest.raises(ConfigError, match="no state dir"):
        _state_dir_ok(str(tmp_path / "missing"))


def test_plugin_config_refuses_a_relative_state_dir(capsys: pytest.CaptureFixture[str]) -> None:
    assert fabric("slurm", "plugin-config", "--state-dir", "relative/dir") == 3
    assert "must be an absolute path" in capsys.readouterr().err


def test_jobscripts_are_copied_and_a_changed_copy_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fabric("slurm", "jobscripts", str(tmp_path), "--json") == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert [Path(f).name for f in files] == ["ckpt_restore.sbatch", "infer_batch.sbatch", "train_gang.sbatch"]
    mine = tmp_path / "train_gang.sbatch"
    assert mine.read_bytes() == (REPO / "jobscripts" / "train_gang.sbatch").read_bytes() and os.access(mine, os.X_OK)
    mine.write_text("#!/bin/bash\n# my edits\n")
    assert fabric("slurm", "jobscripts", str(tmp_path)) == 3
    assert "differ from this version's" in capsys.readouterr().err and "my edits" in mine.read_text()
    assert fabric("slurm", "jobscripts", str(tmp_path), "--force") == 0 and "my edits" not in mine.read_text()
    assert "backup  train_gang.sbatch -> " in capsys.readouterr().out
    assert (tmp_path / "train_gang.sbatch.fabric-backup").read_text() == "#!/bin/bash\n# my edits\n"
    assert fabric("slurm", "jobscripts", str(tmp_path / "missing" / "jobs")) == 3  # only the last part made
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "missing").exists()


def test_jobscripts_creates_a_new_directory_and_force_keeps_every_edited_copy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's `fabric slurm jobscripts ~/jobs`: a missing directory whose parent exists is
    created; --force keeps each edited script as .fabric-backup (then .fabric-backup.1), as install does."""
    jobs = tmp_path / "jobs"
    assert fabric("slurm", "jobscripts", str(jobs), "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["backups"] == [] and sorted(p.name for p in jobs.iterdir()) == [
        "ckpt_restore.sbatch", "infer_batch.sbatch", "train_gang.sbatch"]
    script = jobs / "infer_batch.sbatch"
    for n, edit in enumerate(("# first edit\n", "# second edit\n")):
        script.write_text(edit)
        assert fabric("slurm", "jobscripts", str(jobs), "--force", "--json") == 0
        backup = jobs / ("infer_batch.sbatch.fabric-backup" + ("" if n == 0 else ".1"))
        assert json.loads(capsys.readouterr().out)["backups"] == [str(backup)] and backup.read_text() == edit
    assert script.read_bytes() == (REPO / "jobscripts" / "infer_batch.sbatch").read_bytes()
    (tmp_path / "afile").write_text("")
    assert fabric("slurm", "jobscripts", str(tmp_path / "afile")) == 3
    assert "is not a directory" in capsys.readouterr().err


def test_install_dry_run_uninstall(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--dry-run") == 0
    out = capsys.readouterr().out
    assert not root.exists()  # a dry run writes nothing
    assert "+++ /etc/slurm/job_submit.lua" in out and "--- /dev/null" in out
    for line in ("JobSubmitPlugins=lua", "TaskProlog=/etc/fabric-hpc/task_prolog.py", "TopologyPlugin=topology/tree"):
        assert f"  {line}\n" in out
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root)) == 0
    written = {"etc/slurm/job_submit.lua", "etc/slurm/topology.conf", "etc/slurm/gres.conf",
               "etc/fabric-hpc/task_prolog.py", "etc/fabric-hpc/prolog.json", "etc/fabric-hpc/topology.yaml",
               "etc/fabric-hpc/agent.toml", f"etc/systemd/system/{UNIT_NAME}"}
    if resources.files(PLUGIN_PACKAGE).joinpath("prolog.py").is_file():  # the Prolog, where this version has one
        written.add("etc/fabric-hpc/prolog.py")
    assert written <= tree(root)
    state = root / "var/lib/fabric-agent"
    wake = root / "var/lib/fabric-agent.plugin/wake"  # the plugin's directory, root's (docs/deploy.md)
    assert (state.stat().st_mode & 0o777, wake.stat().st_mode & 0o777) == (0o750, 0o660)
    manifest = json.loads((root / "etc/fabric-hpc" / MANIFEST).read_text())  # root's dir, not the state dir
    assert set(manifest["files"]) == {"/" + w for w in written}
    lua = (root / "etc/slurm/job_submit.lua").read_text()
    assert lua.startswith("-- Written by `fabric slurm install`")
    check_plugin(lua, state_dir="/var/lib/fabric-agent", fallback_s=30, source="lua")
    prolog = (root / "etc/fabric-hpc/task_prolog.py").read_text().splitlines()
    assert prolog[0] == "#!/usr/bin/python3 -I"  # isolated from the job's environment
    assert 'CONFIG = "/etc/fabric-hpc/prolog.json"  # fabric: config' in prolog
    assert (root / "etc/fabric-hpc/task_prolog.py").stat().st_mode & 0o777 == 0o755
    installed = load_config(root / "etc/fabric-hpc/agent.toml")[0]  # the installed config is valid and explicit
    assert installed.agent.topology == "/etc/fabric-hpc/topology.yaml"
    assert installed.agent.job_submit == "/etc/slurm/job_submit.lua" and installed.agent.fallback_s == 30
    # again: nothing changes; the dry run says so
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--dry-run") == 0
    assert "(nothing would change)" in capsys.readouterr().out
    # uninstall removes exactly what install wrote, and the directories it made
    (state / "decisions.jsonl").write_text("{}\n")  # the agent's log stays unless --purge-state
    assert fabric("slurm", "uninstall", "--config", str(cfg), "--root", str(root)) == 0
    assert tree(root) == {"var", "var/lib", "var/lib/fabric-agent", "var/lib/fabric-agent/decisions.jsonl"}


def test_dry_run_names_a_missing_service_user(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    cfg.write_text(cfg.read_text().replace(f'service_user = "{USER}"', 'service_user = "no-such-user-fabric"'))
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--dry-run") == 3
    out = capsys.readouterr().out
    assert "would fail: no user 'no-such-user-fabric' (install.service_user)" in out and "useradd" in out
    assert not root.exists()  # the real install refuses too (test_state_dir_owner_and_mode_are_checked)


def test_foreign_files_need_force_and_come_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    gres = root / "etc/slurm/gres.conf"
    gres.parent.mkdir(parents=True)
    gres.write_text("# the site's own gres.conf\n")
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--dry-run") == 3
    out = capsys.readouterr().out
    assert "-# the site's own gres.conf" in out and "would refuse without --force: /etc/slurm/gres.conf" in out
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root)) == 3
    err = capsys.readouterr().err
    assert "/etc/slurm/gres.conf: exists and was not written by fabric slurm install" in err and "--force" in err
    assert not (root / "etc/slurm/job_submit.lua").exists()  # refused before writing anything
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--force") == 0
    assert "backup  /etc/slurm/gres.conf -> gres.conf.fabric-backup" in capsys.readouterr().out
    assert gres.read_text().startswith("# Written by `fabric slurm install`")
    # an admin edits a file install wrote: reinstall and uninstall refuse it without --force
    unit = root / "etc/systemd/system" / UNIT_NAME
    unit.write_text(unit.read_text() + "# local change\n")
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root)) == 3
    assert "changed since fabric slurm install wrote it" in capsys.readouterr().err
    assert fabric("slurm", "uninstall", "--config", str(cfg), "--root", str(root)) == 3
    assert fabric("slurm", "uninstall", "--config", str(cfg), "--root", str(root), "--force", "--purge-state") == 0
    assert gres.read_text() == "# the site's own gres.conf\n"  # the backup is back
    assert tree(root) == {"etc", "etc/slurm", "etc/slurm/gres.conf"}


def test_state_dir_owner_and_mode_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    state = root / "var/lib/fabric-agent"
    state.mkdir(parents=True)
    state.chmod(0o777)
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root)) == 3
    assert "state dir /var/lib/fabric-agent: mode 777 is world-writable" in capsys.readouterr().err
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--force") == 0
    assert state.stat().st_mode & 0o777 == 0o750
    bad = write_config(tmp_path / "bad.toml")
    bad.write_text(bad.read_text().replace(f'service_user = "{USER}"', 'service_user = "no-such-user-fabric"'))
    assert fabric("slurm", "install", "--config", str(bad), "--root", str(tmp_path / "r2")) == 3
    assert "no user 'no-such-user-fabric'" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()  # refused before writing anything


def test_unit_is_hardened_and_verifies(tmp_path: Path) -> None:
    cfg, root = write_config(tmp_path / "agent.toml", slurm_conf="/etc/slurm/slurm.conf"), tmp_path / "root"
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root)) == 0
    unit = (root / "etc/systemd/system" / UNIT_NAME).read_text()
    for line in ("Type=notify", "NotifyAccess=main", "TimeoutStartSec=40", "Restart=on-failure", f"User={USER}", "NoNewPrivileges=yes", "PrivateTmp=yes",
                 "ProtectSystem=strict", "ReadWritePaths=/var/lib/fabric-agent", "CapabilityBoundingSet=",
                 "ReadWritePaths=-/var/lib/fabric-agent.plugin/heartbeat",
                 "Environment=SLURM_CONF=/etc/slurm/slurm.conf",
                 "ExecStart=/usr/bin/python3 -m fabric_hpc.cli agent run --config /etc/fabric-hpc/agent.toml"):
        assert line + "\n" in unit, line
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd): the unit was not verified")
    copy = tmp_path / UNIT_NAME
    copy.write_text(unit)
    proc = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_protocol_mismatch_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lua = render_job_submit(state_dir=str(tmp_path / "state"), fallback_s=30)
    old = lua.replace(f"local PROTOCOL = {PROTOCOL_VERSION} ", f"local PROTOCOL = {PROTOCOL_VERSION + 1} ")
    assert old != lua
    (tmp_path / "job_submit.lua").write_text(old)
    (tmp_path / "state").mkdir()
    cfg = write_config(tmp_path / "agent.toml", job_submit=str(tmp_path / "job_submit.lua"))
    cfg.write_text(cfg.read_text().replace('"/var/lib/fabric-agent"', json.dumps(str(tmp_path / "state"))))
    code = fabric("agent", "run", "--config", str(cfg), "--cycles", "1")
    err = capsys.readouterr().err
    assert code == 3, err
    assert f"speaks fabric protocol {PROTOCOL_VERSION + 1}, this agent speaks {PROTOCOL_VERSION}" in err
    assert "fix: reinstall the plugin" in err
    # a flag beats the file: the fallback given on the command line is the one compared
    (tmp_path / "job_submit.lua").write_text(lua)
    assert fabric("agent", "run", "--config", str(cfg), "--fallback", "45", "--cycles", "1") == 3
    assert "defers jobs for 30 s, the agent for 45 s" in capsys.readouterr().err


def test_agent_toml_writes_lists_as_toml_arrays() -> None:
    """tier_map (a list setting) round-trips through the agent.toml that install writes."""
    import tomllib

    from fabric_hpc.slurm.install import _toml_value

    value = ["qos:urgent=high", 'partition:"odd"=spot']
    assert tomllib.loads(f"tier_map = {_toml_value(value)}")["tier_map"] == value
    assert tomllib.loads(f"tier_map = {_toml_value([])}")["tier_map"] == []


def test_a_directory_with_dotdot_is_refused_and_nothing_is_written(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """``--root R`` prefixes every path, so ``/../../x`` would write outside R: refused at load,
    naming each key, before any file is written."""
    cfg = write_config(tmp_path / "trav.toml")
    cfg.write_text(cfg.read_text().replace('"/var/lib/fabric-agent"', '"/../../escaped-state"')
                   .replace('"/etc/slurm"', '"/etc/../../escaped"'))
    root = tmp_path / "a" / "b" / "root"
    root.mkdir(parents=True)
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root)) == 3
    err = capsys.readouterr().err
    assert "agent.state_dir" in err and "install.slurm_conf_dir" in err and "Traceback" not in err
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [cfg]
