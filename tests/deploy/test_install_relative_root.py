"""`fabric slurm install --root staging` (a relative staging root) and the uninstall after it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.slurm.install import MANIFEST
from tests.deploy.test_install import fabric, tree, write_config


def test_a_relative_root_installs_and_uninstalls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The manifest kept the directories install made as `staging/etc`, …, and uninstall with the same
    config and --root refused every one: "directory 'staging/etc' is not below --root 'staging'"."""
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path / "agent.toml")
    assert fabric("slurm", "install", "--config", "agent.toml", "--root", "staging") == 0
    dirs = json.loads((tmp_path / "staging/etc/fabric-hpc" / MANIFEST).read_text())["dirs"]
    assert dirs and all(d.startswith(str(tmp_path / "staging") + "/") for d in dirs), dirs
    capsys.readouterr()
    assert fabric("slurm", "uninstall", "--config", str(cfg), "--root", "staging", "--purge-state") == 0, \
        capsys.readouterr().err
    assert tree(tmp_path / "staging") == set()
    # the same tree given absolute at install and relative at uninstall (or the other way) is one root
    assert fabric("slurm", "install", "--config", "agent.toml", "--root", str(tmp_path / "staging")) == 0
    assert fabric("slurm", "uninstall", "--config", "agent.toml", "--root", "./staging/",
                  "--purge-state") == 0
    assert tree(tmp_path / "staging") == set()


def test_a_manifest_of_the_release_before_with_relative_dirs_uninstalls(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A staging tree the release before installed with `--root staging` recorded `staging/etc`, …: that
    manifest is read from the current directory, as its --root was, not refused with no way out."""
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path / "agent.toml")
    assert fabric("slurm", "install", "--config", "agent.toml", "--root", "staging") == 0
    man = tmp_path / "staging/etc/fabric-hpc" / MANIFEST
    doc = json.loads(man.read_text())
    doc["dirs"] = [str(Path(d).relative_to(tmp_path)) for d in doc["dirs"]]  # as the release before
    man.write_text(json.dumps(doc))
    assert fabric("slurm", "uninstall", "--config", "agent.toml", "--root", "staging", "--purge-state") == 0
    assert tree(tmp_path / "staging") == set()
