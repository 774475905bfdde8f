"""The plugin check compares the state dir job_submit.lua reads with the agent's as paths: a trailing
slash or a doubled one (``--state-dir /x/agent/``, ``state_dir = "/x//agent"``) is the same directory and
was refused (exit 3, "reads the heartbeat in '/x/agent', the agent writes it in '/x/agent/'")."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.plugins import check_plugin, render_job_submit


@pytest.mark.parametrize("agent", ["{d}/", "{d}//", "{p}//agent", "{p}/./agent", "{p}/x/../agent"])
def test_the_same_directory_written_another_way_passes(tmp_path: Path, agent: str) -> None:
    d = tmp_path / "agent"
    d.mkdir()
    lua = render_job_submit(state_dir=str(d), fallback_s=60)
    (tmp_path / "x").mkdir()
    check_plugin(lua, state_dir=agent.format(d=d, p=tmp_path), fallback_s=60, source="job_submit.lua")
    lua = render_job_submit(state_dir=f"{d}/", fallback_s=60)  # and the other way round
    check_plugin(lua, state_dir=str(d), fallback_s=60, source="job_submit.lua")


def test_a_symlinked_state_dir_is_the_same_directory(tmp_path: Path) -> None:
    d = tmp_path / "agent"
    d.mkdir()
    (tmp_path / "link").symlink_to(d)
    check_plugin(render_job_submit(state_dir=str(tmp_path / "link"), fallback_s=60), state_dir=str(d),
                 fallback_s=60, source="job_submit.lua")


def test_another_directory_is_still_refused(tmp_path: Path) -> None:
    lua = render_job_submit(state_dir=str(tmp_path / "a"), fallback_s=60)
    with pytest.raises(ConfigError, match="reads the heartbeat in"):
        check_plugin(lua, state_dir=f"{tmp_path}/b/", fallback_s=60, source="job_submit.lua")


def test_paths_not_made_yet_compare_normalised() -> None:
    lua = render_job_submit(state_dir="/nonexistent/fabric/agent", fallback_s=60)
    check_plugin(lua, state_dir="/nonexistent//fabric/agent/", fallback_s=60, source="job_submit.lua")
