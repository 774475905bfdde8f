"""The agent writes the plugin's heartbeat only into a `<state_dir>.plugin/` no other user controls. With
a fresh heartbeat, job_submit.lua (inside slurmctld, whose Lua `io.open` follows symbolic links) rewrites
`wake` there for each job it defers: a directory another user pre-created (the state dir under /tmp) or
may write let them point `wake` at any file root may write. The agent now refuses to write the heartbeat
there (an `agent.error` naming the directory and the fix), so the plugin takes it for dead and writes
nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.agent_support import write_heartbeat
from fabric_hpc.slurm.plugins import plugin_dir
from tests.real import require_real


def _state(tmp_path: Path) -> Path:
    state = tmp_path / "agent"
    state.mkdir(mode=0o750)
    return state


def test_a_plugin_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    require_real("slurm", os.geteuid() == 0, "chown to another user needs root")
    state = _state(tmp_path)
    pd = plugin_dir(state)
    pd.mkdir(mode=0o755)
    os.chown(pd, 65534, 65534)
    with pytest.raises(ConfigError, match=r"owned by uid 65534, not by root or this user") as caught:
        write_heartbeat(state, 1000.0)
    assert "fabric slurm install" in (caught.value.hint or "")
    assert list(pd.iterdir()) == []


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775])
def test_a_plugin_dir_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    state = _state(tmp_path)
    pd = plugin_dir(state)
    pd.mkdir()
    pd.chmod(mode)
    with pytest.raises(ConfigError, match=f"writable by others \\(mode {mode:o}\\)"):
        write_heartbeat(state, 1000.0)
    assert list(pd.iterdir()) == []


def test_a_symlinked_plugin_dir_is_refused(tmp_path: Path) -> None:
    state = _state(tmp_path)
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o755)
    plugin_dir(state).symlink_to(real)
    with pytest.raises(ConfigError, match="a symbolic link or not a directory"):
        write_heartbeat(state, 1000.0)
    assert list(real.iterdir()) == []


def test_the_agents_own_or_roots_plugin_dir_is_used(tmp_path: Path) -> None:
    state = _state(tmp_path)
    write_heartbeat(state, 1000.0)  # made by the agent itself (no install): 0755, its own
    assert (plugin_dir(state) / "heartbeat").read_text().startswith("1000\n")
