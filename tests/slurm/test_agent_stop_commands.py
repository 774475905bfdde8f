"""The agent's stop abandons every Slurm command it runs, not only its client's: ``sshare`` and ``scontrol
show config`` (usage source), ``scontrol show topology`` (blocks), ``sacctmgr`` (the tier map's check at
start) and the rest backend's ``scontrol requeue``. A hung one would otherwise hold a SIGTERM for its
30 s timeout, the unit's TimeoutStopSec. Real commands in real processes: Slurm commands on PATH that
never answer."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.slurm.rest_backend import RestClient
from tests.slurm.test_agent_actions import FAB


def _hanging(tmp_path: Path, *names: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in names:
        cmd = bin_dir / name
        cmd.write_text(f"#!/bin/sh\ntouch {tmp_path / name}.started\nexec sleep 300\n")
        cmd.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def _abandoned(tmp_path: Path, name: str, call: Callable[[], object], stop: Callable[[], None]) -> str:
    """The error of ``call`` (which runs the hanging ``name``) after ``stop()`` while it waits."""
    out: dict = {}

    def work() -> None:
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - the test reads it
            out["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while not (tmp_path / f"{name}.started").exists():
        thread.join(0.05)
        assert thread.is_alive(), out
    stop()
    thread.join(120)  # generous: the old code ended only at the command's timeout, with another error
    assert not thread.is_alive()
    return str(out.get("error"))


def test_agent_stop_abandons_its_other_slurm_commands(tmp_path: Path) -> None:
    env = _hanging(tmp_path, "sshare", "scontrol", "sacctmgr")
    state = tmp_path / "state"
    state.mkdir()
    agent = Agent(CliClient(env), FAB, AgentConfig(state_dir=str(state), contact_timeout_s=60))
    assert agent.start_commands.timeout == 60  # the check at start waits contact_timeout_s, not 10 s
    calls = {"sshare": lambda: agent.usage_source.run(["sshare", "-a"]),
             "scontrol": lambda: agent.blocks.run(["scontrol", "show", "topology"]),
             "sacctmgr": lambda: agent.start_commands.run(["sacctmgr", "-nP", "show", "qos"])}
    for name, call in calls.items():
        assert "abandoned: the agent is stopping" in _abandoned(tmp_path, name, call, agent.stop), name
        agent.commands.resume()
        agent.start_commands.resume()


def test_rest_interrupt_abandons_a_requeue_and_resume_runs_it_again(tmp_path: Path) -> None:
    env = _hanging(tmp_path, "scontrol")
    client = RestClient("http://127.0.0.1:9", token="x", env=env, timeout=60)
    assert "abandoned: the agent is stopping" in _abandoned(tmp_path, "scontrol", lambda: client.requeue(5),
                                                            client.interrupt)
    client.resume()
    assert not client._cli._interrupted
