"""What install and uninstall may touch: the manifest is trusted only for what install writes, the
state dir is fabric's alone, a plan writes each path once, and a rerun writes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fabric_hpc.slurm.manifest import MANIFEST
from tests.deploy.test_install import fabric, tree, write_config


def _install(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root)) == 0
    capsys.readouterr()
    return cfg, root


def _manifest(root: Path) -> Path:
    """Where this install keeps it (config_dir; an older one kept it in the state dir)."""
    new, old = root / "etc/fabric-hpc" / MANIFEST, root / "var/lib/fabric-agent" / MANIFEST
    return new if new.exists() else old


def _forge(root: Path, edit) -> dict:
    """What the agent's service user could do: rewrite the manifest in the state dir it owns (the
    place every install before this one kept it)."""
    path = _manifest(root)
    man = json.loads(path.read_text())
    path.unlink()
    edit(man)
    (root / "var/lib/fabric-agent" / MANIFEST).write_text(json.dumps(man))
    return man


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", ["victim-in-dirs", "foreign-file", "backup-elsewhere", "unknown-key",
                                  "dotdot"])
def test_uninstall_refuses_a_manifest_listing_what_install_never_writes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    cfg, root = _install(tmp_path, capsys)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    slurm_conf = root / "etc/slurm/slurm.conf"
    slurm_conf.write_text("ClusterName=test\n")
    gres = "/etc/slurm/gres.conf"

    def edit(man: dict) -> None:
        if case == "victim-in-dirs":
            man["dirs"].append(str(victim))
        elif case == "foreign-file":
            import hashlib

            digest = hashlib.sha256(slurm_conf.read_bytes()).hexdigest()
            man["files"]["/etc/slurm/slurm.conf"] = {"sha256": digest, "backup": None}
        elif case == "backup-elsewhere":
            man["files"][gres]["backup"] = str(victim)
        elif case == "unknown-key":
            man["files"][gres]["restore_to"] = "/etc/passwd"
        else:
            man["files"]["/etc/slurm/../fabric-hpc/../slurm/slurm.conf"] = man["files"][gres]

    _forge(root, edit)
    before = _files(root)
    assert fabric("slurm", "uninstall", "--config", str(cfg), "--root", str(root), "--force") == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and MANIFEST in err, err
    assert victim.read_text() == "precious\n" and slurm_conf.read_text() == "ClusterName=test\n"
    assert _files(root) == before  # nothing removed, nothing restored


def test_an_untrusted_manifest_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A manifest the service user wrote (its owner) or that others may write is not read at all."""
    cfg, root = _install(tmp_path, capsys)
    path = _manifest(root)
    os.chmod(path, 0o660 | 0o002)
    before = _files(root)
    assert fabric("slurm", "uninstall", "--config", str(cfg), "--root", str(root)) == 3
    assert "not trusted" in capsys.readouterr().err
    if os.geteuid() == 0:
        os.chmod(path, 0o640)
        os.chown(path, 65534, 65534)
        assert fabric("slurm", "uninstall", "--config", str(cfg), "--root", str(root)) == 3
        assert "not trusted" in capsys.readouterr().err
    assert _files(root) == before


def test_the_manifest_lives_in_config_dir_and_an_old_one_is_still_honoured(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, root = _install(tmp_path, capsys)
    state = root / "var/lib/fabric-agent"
    assert (root / "etc/fabric-hpc" / MANIFEST).is_file() and not (state / MANIFEST).exists()
    # an install of an earlier version kept it in the state dir: reinstall moves it, uninstall reads it
    (root / "etc/fabric-hpc" / MANIFEST).rename(state / MANIFEST)
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root)) == 0
    assert (root / "etc/fabric-hpc" / MANIFEST).is_file() and not (state / MANIFEST).exists()
    (root / "etc/fabric-hpc" / MANIFEST).rename(state / MANIFEST)
    assert fabric("slurm", "uninstall", "--config", str(cfg), "--root", str(root), "--purge-state") == 0
    assert tree(root) == set()


# -- the state dir is fabric's alone ----------------------------------------------------------------
@pytest.mark.parametrize("state_dir,needle", [
    ("/", "is the root directory"),
    ("/etc/slurm", "is install.slurm_conf_dir"),
    ("/etc/fabric-hpc/state", "is inside install.config_dir"),
    ("/var/lib", "holds install.topo_dir"),
    ("/etc", "holds install.slurm_conf_dir"),
])
def test_a_state_dir_that_is_not_fabrics_own_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         state_dir: str, needle: str) -> None:
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    cfg.write_text(cfg.read_text().replace('"/var/lib/fabric-agent"', json.dumps(state_dir)))
    (root / "etc/slurm").mkdir(parents=True)
    (root / "etc/slurm/slurm.conf").write_text("ClusterName=test\n")
    before = _files(root)
    for args in (("slurm", "install", "--config", str(cfg), "--root", str(root)),
                 ("slurm", "uninstall", "--config", str(cfg), "--root", str(root), "--purge-state"),
                 ("agent", "check", "--config", str(cfg))):
        assert fabric(*args) == 3, args
        err = capsys.readouterr().err
        assert "agent.state_dir" in err and needle in err and "Traceback" not in err, err
    assert _files(root) == before and (root / "etc/slurm").stat().st_mode & 0o777 != 0o750


def test_a_state_dir_holding_other_files_is_refused(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    state = root / "var/lib/fabric-agent"
    state.mkdir(parents=True)
    (state / "notes.txt").write_text("mine\n")
    (state / "heartbeat").write_text("1\n")  # an agent ran here before: its files are fine
    state.chmod(0o755)
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--dry-run") == 3
    assert "would fail: state dir /var/lib/fabric-agent holds files fabric did not create: notes.txt" in \
        capsys.readouterr().out
    for force in ((), ("--force",)):
        assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), *force) == 3
        assert "holds files fabric did not create: notes.txt" in capsys.readouterr().err
    assert tree(root) == {"var", "var/lib", "var/lib/fabric-agent", "var/lib/fabric-agent/notes.txt",
                          "var/lib/fabric-agent/heartbeat"}
    assert state.stat().st_mode & 0o777 == 0o755  # not taken over


def test_purge_state_removes_only_the_agents_files(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cfg, root = _install(tmp_path, capsys)
    state = root / "var/lib/fabric-agent"
    for name in ("decisions.jsonl", "decisions.jsonl.1", "status.json", "heartbeat", "usage.json", "agent.lock",
                 "cycles.jsonl", "cycles.jsonl.1",
                 ".status.json.host-12-0123abcd.tmp"):
        (state / name).write_text("x\n")
    (state / "slurm.conf").write_text("ClusterName=test\n")  # someone else's file, put there later
    assert fabric("slurm", "uninstall", "--config", str(cfg), "--root", str(root), "--purge-state") == 0
    out = capsys.readouterr().out
    assert "kept    /var/lib/fabric-agent (not fabric's, not removed: slurm.conf)" in out, out
    assert tree(root) == {"var", "var/lib", "var/lib/fabric-agent", "var/lib/fabric-agent/slurm.conf"}


# -- one file per path; a rerun writes nothing ------------------------------------------------------
def test_two_planned_files_on_one_path_are_refused(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    cfg.write_text(cfg.read_text().replace('config_dir = "/etc/fabric-hpc"', 'config_dir = "/etc/slurm"')
                   .replace('slurm_version = "22.05"', 'slurm_version = "25.11"') + 'topology_format = "yaml"\n')
    for extra in (("--dry-run",), ()):
        assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), *extra) == 3
        err = capsys.readouterr().err
        assert "install would write /etc/slurm/topology.yaml twice: Slurm's topology.yaml" in err, err
        assert "the fabric model" in err and "fix: give install.slurm_conf_dir and install.config_dir" in err
    assert not root.exists()


def test_a_rerun_with_nothing_changed_writes_nothing(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg, root = _install(tmp_path, capsys)

    def stamp() -> dict[str, tuple[int, int, int, int]]:
        return {str(p): (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
                for p in root.rglob("*") for st in [p.lstat()]}

    before = stamp()
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root)) == 0
    out = capsys.readouterr().out
    assert "wrote" not in out and "backup" not in out and out.count("unchanged ") >= 8, out
    assert stamp() == before
