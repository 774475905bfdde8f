"""The agent's stop abandons a Slurm command that hangs (a frozen slurmctld: squeue waits for its
MessageTimeout, then retries) at once, as it does a slurmrestd read; commands run again after resume().
A real command in a real process: a ``squeue`` on PATH that never answers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.slurm.contract import SlurmError
from tests.slurm.conftest import jobs_in_thread


def _hanging_squeue(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text(f"#!/bin/sh\ntouch {tmp_path / 'started'}\nexec sleep 300\n")
    squeue.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def test_interrupt_kills_a_hanging_command_and_resume_runs_again(tmp_path: Path) -> None:
    client = CliClient(_hanging_squeue(tmp_path), timeout=300)
    thread, out = jobs_in_thread(client)
    while not (tmp_path / "started").exists():
        thread.join(0.05)
        assert thread.is_alive()
    client.interrupt()
    thread.join(20)
    assert not thread.is_alive() and "abandoned: the agent is stopping" in str(out.get("error"))
    with pytest.raises(SlurmError, match="abandoned"):
        client.jobs()  # refused before it runs
    client.resume()
    client.timeout = 0.5
    with pytest.raises(SlurmError, match=r"did not answer within 0.5 s"):
        client.jobs()
