"""job_submit.lua runs inside slurmctld as SlurmUser and must not trust the agent's state dir: the
service user owns it and can put a FIFO at ``heartbeat`` (an ``io.open`` for reading blocks: every
submission stalls) or a symlink at ``wake`` (``io.open(..., "w")`` truncates what it points to). The
plugin reads the heartbeat and rewrites the wake file only in ``<state_dir>.plugin/``, a directory
install creates root-owned (the service user can rewrite the heartbeat file's contents, never swap
the name), and reads at most a few bytes of the heartbeat. Run with lua5.4 and the stub driver."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from fabric_hpc.slurm.agent_support import heartbeat_text
from fabric_hpc.slurm.plugins import lua_string, plugin_dir, render_job_submit
from tests.real import require_real
from tests.slurm.test_job_submit_lua import DRIVER, LUA, gang


def _submit(tmp_path: Path, state: Path) -> tuple[str, str]:
    """One gang submitted through the plugin; (rc, messages). Bounded: a blocked plugin fails the test."""
    require_real("lua", LUA is not None, "lua5.4 is not installed (Debian: lua5.4)")
    plugin = tmp_path / "job_submit.lua"
    plugin.write_text(render_job_submit(state_dir=str(state)))
    script = tmp_path / "driver.lua"
    script.write_text(f"PLUGIN = {lua_string(str(plugin))}\nCASES = {{{{min_nodes = 2, "
                      f"tres_per_node = \"gres:gpu:8\"}}}}\n{DRIVER}")
    try:
        proc = subprocess.run([LUA, str(script)], capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the plugin blocked (a FIFO in the state dir stalls every submission)")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    _, rc, _, msgs = proc.stdout.decode().rstrip("\n").split("\t", 3)
    return rc, msgs


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim_slurm_state"
    victim.write_text("slurmctld's own file\n")
    return victim


def _hostile_state(tmp_path: Path) -> tuple[Path, Path]:
    """The state dir as a hostile service user leaves it: a FIFO heartbeat, wake -> a victim file."""
    state, victim = tmp_path / "agent", _victim(tmp_path)
    state.mkdir()
    os.mkfifo(state / "heartbeat")
    (state / "wake").symlink_to(victim)
    return state, victim


def test_a_fifo_heartbeat_in_the_state_dir_does_not_block_the_plugin(tmp_path: Path) -> None:
    state, victim = _hostile_state(tmp_path)
    rc, msgs = _submit(tmp_path, state)
    assert rc == "0" and "agent is not running" in msgs
    assert victim.read_text() == "slurmctld's own file\n"


def test_a_symlinked_wake_in_the_state_dir_is_never_written(tmp_path: Path) -> None:
    """With a live agent (a fresh heartbeat in the plugin dir) the job is deferred and the agent woken
    through the plugin dir's wake file; the state dir's wake, a symlink, is not opened."""
    state, victim = _hostile_state(tmp_path)
    pd = plugin_dir(state)
    pd.mkdir()
    (pd / "heartbeat").write_text(heartbeat_text(time.time()))
    rc, msgs = _submit(tmp_path, state)
    assert (rc, msgs) == ("0", "")  # deferred: the agent is alive
    assert victim.read_text() == "slurmctld's own file\n"
    assert (pd / "wake").read_text().strip().isdigit()


def test_a_heartbeat_in_the_state_dir_alone_is_not_read(tmp_path: Path) -> None:
    state = tmp_path / "agent"
    state.mkdir()
    (state / "heartbeat").write_text(heartbeat_text(time.time()))
    rc, msgs = _submit(tmp_path, state)
    assert rc == "0" and "agent is not running" in msgs
    assert not (state / "wake").exists()


def test_a_huge_heartbeat_is_read_only_in_part(tmp_path: Path) -> None:
    """The service user owns the heartbeat file: a line of 64 MiB is not read into slurmctld."""
    state = tmp_path / "agent"
    state.mkdir()
    pd = plugin_dir(state)
    pd.mkdir()
    with open(pd / "heartbeat", "wb") as f:
        f.truncate(64 << 20)
    rc, msgs = _submit(tmp_path, state)
    assert rc == "0" and "agent is not running" in msgs


def test_the_agent_rewrites_the_plugins_heartbeat_in_place(tmp_path: Path) -> None:
    """No rename (the agent may not create names in root's directory): the same file, new contents;
    never written through a symlink or into a FIFO; without install the agent makes it itself."""
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.slurm.agent_support import write_heartbeat

    state = tmp_path / "agent"
    state.mkdir()
    write_heartbeat(state, 1000.0)  # no install: the directory and the file are made
    beat = plugin_dir(state) / "heartbeat"
    inode = os.stat(beat).st_ino
    write_heartbeat(state, 2_000_000_000.0)
    assert beat.read_text() == heartbeat_text(2_000_000_000.0) and os.stat(beat).st_ino == inode
    victim = _victim(tmp_path)
    beat.unlink()
    beat.symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"):
        write_heartbeat(state, 3000.0)
    beat.unlink()
    os.mkfifo(beat)
    with pytest.raises(ConfigError):
        write_heartbeat(state, 3000.0)
    assert victim.read_text() == "slurmctld's own file\n"
