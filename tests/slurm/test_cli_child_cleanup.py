"""No Slurm command outlives its call: a signal's exception (Ctrl-C) while a command runs kills and reaps
it, and an interrupt() that lands while a command is being started kills that command too.
Real commands in real processes (``sh`` writing its pid, then ``sleep``)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.slurm.contract import SlurmError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pid(pidfile: Path) -> int | None:
    """The pid the command wrote (None: not yet, or killed after ``>`` made the file, before ``echo``)."""
    text = pidfile.read_text().strip() if pidfile.exists() else ""
    return int(text) if text else None


def _cleanup(pidfile: Path) -> None:
    pid = _pid(pidfile)
    if pid is not None and _alive(pid):
        os.kill(pid, signal.SIGKILL)


def test_keyboard_interrupt_while_waiting_kills_and_reaps_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    client = CliClient(dict(os.environ), timeout=300)

    def ctrl_c(signum, frame):  # what Python's SIGINT handler does, raised in the waiting thread
        if pidfile.exists() and pidfile.read_text().strip():
            raise KeyboardInterrupt
        signal.setitimer(signal.ITIMER_REAL, 0.1)  # the command has not written its pid yet

    old = signal.signal(signal.SIGALRM, ctrl_c)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        with pytest.raises(KeyboardInterrupt):
            client.run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"])
        pid = _pid(pidfile)
        assert pid is not None and not _alive(pid), \
            "the command still runs (or is an unreaped zombie) after Ctrl-C"
        assert not client._children
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        _cleanup(pidfile)


def test_interrupt_between_the_check_and_the_start_kills_the_new_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    client = CliClient(dict(os.environ), timeout=20)

    class Racing(set):
        """interrupt() lands just before the child is registered: after run() checked _interrupted."""

        def add(self, child) -> None:
            client.interrupt()
            super().add(child)

    client._children = Racing()
    try:
        with pytest.raises(SlurmError, match="abandoned: the agent is stopping"):
            client.run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"])
        pid = _pid(pidfile)
        assert pid is None or not _alive(pid)
    finally:
        _cleanup(pidfile)
