"""PidLock (the agent's ``agent.lock``, run and merge locks) and the other files the agent and install
open for writing in place never write through a symbolic link or into a FIFO or device: the agent, as
root, followed ``<state_dir>/agent.lock -> /etc/passwd`` and wrote its pid over the target."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fabric_hpc.checkpoint.store import root_lock
from fabric_hpc.errors import ConfigError
from fabric_hpc.pidlock import PidLock
from fabric_hpc.slurm.agent_support import agent_lock


def _lock(path: Path) -> PidLock:
    return PidLock(path, busy=lambda owner: f"held by {owner}", hint="wait")


def test_a_lock_that_is_a_symlink_is_refused_and_its_target_kept(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    state = tmp_path / "state"
    state.mkdir()
    (state / "agent.lock").symlink_to(victim)
    with pytest.raises(ConfigError) as err:
        agent_lock(state).acquire()
    assert "agent.lock" in str(err.value) and "symbolic link" in str(err.value)
    assert "remove" in (err.value.hint or "")
    assert victim.read_text() == "precious\n"


def test_a_dangling_symlink_lock_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "l").symlink_to(tmp_path / "made")
    with pytest.raises(ConfigError):
        _lock(tmp_path / "l").acquire()
    assert not (tmp_path / "made").exists()


def test_a_fifo_lock_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "l")
    with pytest.raises(ConfigError, match="not a regular file"):
        _lock(tmp_path / "l").acquire()


def test_holder_does_not_read_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    held = _lock(real)
    held.acquire()
    try:
        (tmp_path / "l").symlink_to(real)
        assert _lock(tmp_path / "l").holder() is None
        assert _lock(real).holder() == os.getpid()
    finally:
        held.release()


def test_the_checkpoint_save_lock_is_not_opened_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / ".lock").symlink_to(tmp_path / "made")
    with pytest.raises(ConfigError, match="symbolic link"):
        with root_lock(tmp_path):
            raise AssertionError("the lock was taken through the link")
    assert not (tmp_path / "made").exists()
