"""The plugin directory is checked on the descriptor the heartbeat is written through: a directory
another user puts in place between the agent's look and its write (the race a check by path left
open: ``lstat`` found nothing, then ``mkdir(exist_ok=True)`` accepted a symbolic link to their
directory) gets no heartbeat."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm import agent_support
from fabric_hpc.slurm.agent_support import write_heartbeat
from fabric_hpc.slurm.plugins import plugin_dir


def test_a_directory_linked_in_after_the_look_gets_no_heartbeat(tmp_path: Path, monkeypatch) -> None:
    state = tmp_path / "agent"
    state.mkdir(mode=0o750)
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    real_mkdir = os.mkdir

    def raced(path, mode=0o777, **kw):  # the other user wins the race: a link where the directory goes
        if Path(path) == plugin_dir(state):
            os.symlink(theirs, path)
            raise FileExistsError(path)
        return real_mkdir(path, mode, **kw)

    monkeypatch.setattr(agent_support.os, "mkdir", raced)
    with pytest.raises(ConfigError, match="a symbolic link or not a directory"):
        write_heartbeat(state, 1000.0)
    assert list(theirs.iterdir()) == []  # nothing written through the link


def test_a_world_writable_directory_put_in_place_is_refused_on_its_descriptor(tmp_path: Path,
                                                                               monkeypatch) -> None:
    state = tmp_path / "agent"
    state.mkdir(mode=0o750)
    real_mkdir = os.mkdir

    def raced(path, mode=0o777, **kw):
        if Path(path) == plugin_dir(state):
            real_mkdir(path, 0o777)
            os.chmod(path, 0o777)
            raise FileExistsError(path)
        return real_mkdir(path, mode, **kw)

    monkeypatch.setattr(agent_support.os, "mkdir", raced)
    with pytest.raises(ConfigError, match="writable by others"):
        write_heartbeat(state, 1000.0)
    assert list(plugin_dir(state).iterdir()) == []


def test_the_agent_still_makes_its_own_directory_and_heartbeat(tmp_path: Path) -> None:
    state = tmp_path / "agent"
    state.mkdir(mode=0o750)
    write_heartbeat(state, 1000.0)
    write_heartbeat(state, 2000.0)
    assert (plugin_dir(state) / "heartbeat").read_text() == agent_support.heartbeat_text(2000.0)
